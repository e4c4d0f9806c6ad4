#!/usr/bin/python3
"""PyTorch peer for kernels' BenchmarkGEMM: the same shapes on 2 threads.

Run with /usr/bin/python3 (the interpreter with PyTorch):

    /usr/bin/python3 bench/gemm_peer.py [substring ...]

Each line is "<engine> <dtype>/<M>x<K>x<N> <GFLOP/s>" (best single call),
named like the Go sub-benchmarks so the outputs pair up. Engines:

  matmul  torch.matmul on plain tensors, i.e. what a PyTorch model runs. For
          f32 this is whatever libblas.so.3 resolves to (Debian's torch is
          built with BLAS_INFO=generic): the reference netlib BLAS (a few
          GFLOP/s) or, where libopenblas is the installed alternative,
          OpenBLAS. The header line names the library. For bf16 it is
          PyTorch's own or oneDNN's kernel, depending on the shape.
  onednn  oneDNN's inner product (torch._C._nn.mkldnn_linear) with both
          operands already in oneDNN layout: the strongest f32 and bf16 CPU
          GEMM this PyTorch has, used as the f32 yardstick here. NN and TN
          shapes run as the linear of the same M, K, N.
"""
import os
import sys
import time

import torch

torch.set_num_threads(2)
torch.manual_seed(0)

SHAPES = [(512, 4096, 4096), (80, 4096, 4096), (80, 4096, 14336), (80, 14336, 4096), (2048, 2048, 2048)]
BACKWARD = [("f32-NN", 80, 4096, 4096), ("f32-NN", 80, 14336, 4096), ("bf16-NN", 80, 4096, 4096),
            ("f32-TN", 4096, 80, 4096), ("f32-TN", 4096, 512, 4096)]


def bench(fn, flops, min_time=1.0, min_calls=3):
    """Best GFLOP/s of single calls over at least min_time and min_calls: on
    a shared machine the best call is the one least disturbed by other load
    (the Go side reports the same with -benchtime 1x -count N).
    gemm_table.py passes min_time=0 to time exactly min_calls calls, as
    many as it times for tli."""
    t = time.perf_counter()
    fn()
    if min_time > 0 and time.perf_counter() - t > min_time:  # very slow (reference BLAS): one more call is enough
        min_calls = 1
    best, n, t0 = 0.0, 0, time.perf_counter()
    while True:
        t = time.perf_counter()
        fn()
        best = max(best, flops / (time.perf_counter() - t) / 1e9)
        n += 1
        if time.perf_counter() - t0 >= min_time and n >= min_calls:
            return best


def cases():
    for name, dtype in (("f32", torch.float32), ("bf16", torch.bfloat16)):
        for m, k, n in SHAPES:
            a = torch.randn(m, k).to(dtype)
            w = torch.randn(n, k).to(dtype)  # Linear weight [out x in]
            yield "matmul", f"{name}/{m}x{k}x{n}", (lambda a=a, w=w: torch.matmul(a, w.t())), 2 * m * n * k
            am, wm = a.to_mkldnn(), w.to_mkldnn()
            yield "onednn", f"{name}/{m}x{k}x{n}", (lambda am=am, wm=wm: torch._C._nn.mkldnn_linear(am, wm, None)), 2 * m * n * k
    for name, m, k, n in BACKWARD:
        dtype = torch.bfloat16 if name.startswith("bf16") else torch.float32
        if "NN" in name:
            a, b = torch.randn(m, k), torch.randn(k, n).to(dtype)
            yield "matmul", f"{name}/{m}x{k}x{n}", (lambda a=a.to(dtype), b=b: torch.matmul(a, b)), 2 * m * n * k
        else:
            a, b = torch.randn(k, m), torch.randn(k, n)
            yield "matmul", f"{name}/{m}x{k}x{n}", (lambda a=a, b=b: torch.matmul(a.t(), b)), 2 * m * n * k
        am = torch.randn(m, k).to(dtype).to_mkldnn()
        wm = torch.randn(n, k).to(dtype).to_mkldnn()
        yield "onednn", f"{name}/{m}x{k}x{n}", (lambda am=am, wm=wm: torch._C._nn.mkldnn_linear(am, wm, None)), 2 * m * n * k


def main():
    only = sys.argv[1:]
    cfg = torch.__config__.show()
    blas = cfg.split("BLAS_INFO=")[1].split(",")[0] if "BLAS_INFO=" in cfg else "?"
    lib = "/etc/alternatives/libblas.so.3-x86_64-linux-gnu"
    lib = os.path.realpath(lib) if os.path.exists(lib) else "?"
    print(f"# torch {torch.__version__}, threads {torch.get_num_threads()}, BLAS_INFO={blas}, libblas.so.3 -> {lib}")
    for engine, name, fn, flops in cases():
        if only and not any(o in name for o in only):
            continue
        print(f"{engine}\t{name}\t{bench(fn, flops):.1f}", flush=True)


if __name__ == "__main__":
    main()
