#!/usr/bin/python3
"""PyTorch peer for kernels' BenchmarkGEMM: the same shapes, 2 threads.

Run with /usr/bin/python3 (the interpreter with PyTorch). Prints one line per
shape: the layout/dtype, MxKxN and GFLOP/s, named like the Go sub-benchmarks
so the two outputs can be paired. f32 uses PyTorch's CPU BLAS (OpenBLAS in
Debian's build), bf16 uses oneDNN (AVX512_BF16 where present).
"""
import sys
import time

import torch

torch.set_num_threads(2)
torch.manual_seed(0)

SHAPES = [(512, 4096, 4096), (80, 4096, 4096), (80, 4096, 14336), (80, 14336, 4096), (2048, 2048, 2048)]
BACKWARD = [("NN", 80, 4096, 4096), ("NN", 80, 14336, 4096), ("TN", 4096, 80, 4096), ("TN", 4096, 512, 4096)]


def bench(fn, flops, min_time=1.0):
    fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= min_time and n >= 3:
            return flops * n / dt / 1e9


def main():
    only = sys.argv[1:]
    rows = []
    for dtype, name in ((torch.float32, "f32"), (torch.bfloat16, "bf16")):
        for m, k, n in SHAPES:
            a = torch.randn(m, k).to(dtype)
            w = torch.randn(n, k).to(dtype)  # Linear weight [out x in]
            rows.append((f"{name}/{m}x{k}x{n}", lambda a=a, w=w: torch.matmul(a, w.t()), 2 * m * n * k))
    for lay, m, k, n in BACKWARD:
        if lay == "NN":
            a, b = torch.randn(m, k), torch.randn(k, n)
            rows.append((f"f32-NN/{m}x{k}x{n}", lambda a=a, b=b: torch.matmul(a, b), 2 * m * n * k))
        else:
            a, b = torch.randn(k, m), torch.randn(k, n)
            rows.append((f"f32-TN/{m}x{k}x{n}", lambda a=a, b=b: torch.matmul(a.t(), b), 2 * m * n * k))
    print(f"# torch {torch.__version__}, threads {torch.get_num_threads()}, blas: {'openblas' if 'openblas' in torch.__config__.show().lower() else 'other'}")
    for name, fn, flops in rows:
        if only and not any(o in name for o in only):
            continue
        print(f"{name}\t{bench(fn, flops):.1f} GFLOP/s", flush=True)


if __name__ == "__main__":
    main()
