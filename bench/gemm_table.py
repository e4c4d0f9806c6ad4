#!/usr/bin/python3
"""Ratio table of kernels' matrix products against their peers, same run.

Run from anywhere with the interpreter that has PyTorch:

    /usr/bin/python3 bench/gemm_table.py [--rounds N] [--calls N] [--paths P,P] [substring ...]

It builds the kernels test binary (`go test -c`), then runs N interleaved
rounds of: the PyTorch peer (gemm_peer.py's cases: torch.matmul and oneDNN,
2 threads), tli's BenchmarkGEMM on every kernel path this CPU supports
(TLI_KERNELS=avx512, avx2, neon; 2 worker goroutines), and the pure-Go pair
(the generic path and gonum's Sgemm, on the shapes BenchmarkGonumSgemm
has). Each figure is the best single call over all rounds, with the same
number of timed calls (--calls, after one untimed call) for every engine
and shape: on a shared machine the best call is the least disturbed one,
the same count keeps that fair, and interleaving the rounds puts every
engine in the same windows. Substrings select shapes
(e.g. bf16fast/2048 f32/80x).

It prints two Markdown tables: every shape with each path's GFLOP/s,
PyTorch's, tli/PyTorch (the path dispatch selects, the first column,
against the faster of the two PyTorch engines; the bf16 and bf16fast rows both compare with PyTorch's
bf16 matmul; the f16 rows, f16 weights widened, have no PyTorch peer) and,
where both paths ran, avx2/avx512; then generic against gonum. Ratios > 1
mean tli is faster.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

LINE = re.compile(r"^Benchmark(?:GEMM|GonumSgemm|GonumSgemmNN)/(\S+?)(?:-\d+)?\s+\d+\s+\d+ ns/op\s+([\d.]+) GFLOP/s")
GONUM_SHAPES = ("f32/512x4096x4096", "f32/80x4096x4096", "f32/2048x2048x2048", "f32-NN/80x4096x4096")


def go_bench(binary, bench, calls, env_path=None):
    """Runs one benchmark pattern on the test binary; returns {shape: GFLOP/s}."""
    env = dict(os.environ)
    env.pop("TLI_KERNELS", None)
    if env_path:
        env["TLI_KERNELS"] = env_path
    out = subprocess.run([binary, "-test.run", "XXX", "-test.bench", bench, "-test.benchtime", "1x",
                          "-test.count", str(calls)], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{binary} -test.bench {bench} (TLI_KERNELS={env_path}): {out.stderr.strip() or out.stdout.strip()}")
    res = {}
    for line in out.stdout.splitlines():
        m = LINE.match(line)
        if m:
            res[m.group(1)] = max(res.get(m.group(1), 0.0), float(m.group(2)))
    return res


def supported_paths(binary):
    """The kernel paths this CPU runs, fastest first, generic excluded."""
    paths = []
    for p in ("avx512", "avx2", "neon"):
        env = dict(os.environ, TLI_KERNELS=p)
        if subprocess.run([binary, "-test.run", "XXX"], env=env, capture_output=True).returncode == 0:
            paths.append(p)
    return paths


def pattern(shapes):
    """A -test.bench pattern for BenchmarkGEMM restricted to shapes."""
    by_dtype = {}
    for s in shapes:
        d, mkn = s.split("/")
        by_dtype.setdefault(d, []).append(mkn)
    if len(by_dtype) == 1:
        (d, mkns), = by_dtype.items()
        return f"^BenchmarkGEMM$/^{re.escape(d)}$/^({'|'.join(mkns)})$"
    dts = "|".join(re.escape(d) for d in by_dtype)
    mkns = "|".join(sorted({m for v in by_dtype.values() for m in v}))
    return f"^BenchmarkGEMM$/^({dts})$/^({mkns})$"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=5, help="timed calls per engine, shape and round")
    ap.add_argument("--paths", default="", help="comma-separated tli paths (default: all this CPU supports)")
    ap.add_argument("--no-generic", action="store_true", help="skip the generic-vs-gonum table")
    ap.add_argument("only", nargs="*", help="substrings selecting shapes")
    args = ap.parse_args()

    import gemm_peer  # sets torch to 2 threads
    cases = [c for c in gemm_peer.cases() if not args.only or any(o in c[1] for o in args.only)]
    tdir = tempfile.mkdtemp(prefix="tli-gemm-table-")
    binary = os.path.join(tdir, "kernels.test")
    subprocess.run(["go", "test", "-c", "-o", binary, "./kernels"], cwd=ROOT, check=True)
    paths = [p for p in args.paths.split(",") if p] or supported_paths(binary)

    # The tli shapes: every torch case name, with bf16 standing for both
    # bf16 (widened) and bf16fast.
    shapes = []
    for _, name, _, _ in cases:
        for s in (name, name.replace("bf16/", "bf16fast/"), name.replace("bf16/", "f16/")) if name.startswith("bf16/") else (name,):
            if s not in shapes:
                shapes.append(s)
    gshapes = [s for s in GONUM_SHAPES if not args.only or any(o in s for o in args.only)]
    if args.no_generic:
        gshapes = []

    best = {}

    def keep(engine, res):
        for k, v in res.items():
            best[(engine, k)] = max(best.get((engine, k), 0.0), v)

    for r in range(args.rounds):
        print(f"# round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
        for engine, name, fn, flops in cases:
            keep(engine, {name: gemm_peer.bench(fn, flops, min_time=0.0, min_calls=args.calls)})
        if shapes:
            for p in paths:
                keep(p, go_bench(binary, pattern(shapes), args.calls, p))
        if gshapes:
            keep("generic", go_bench(binary, pattern(gshapes), args.calls, "generic"))
            keep("gonum", go_bench(binary, pattern(gshapes).replace("^BenchmarkGEMM$", "^BenchmarkGonumSgemm(NN)?$"), args.calls))

    def f(x):
        return f"{x:.0f}" if x else "–"

    print(f"| benchmark (dtype/MxKxN) | {' | '.join('tli ' + p for p in paths)} | torch matmul | torch oneDNN | tli/torch |"
          + (" avx2/avx512 |" if {"avx2", "avx512"} <= set(paths) else ""))
    print("|---" * (len(paths) + 4 + ({"avx2", "avx512"} <= set(paths))) + "|")
    for s in sorted(shapes):
        tl = [best.get((p, s), 0.0) for p in paths]
        tn = s.replace("bf16fast/", "bf16/")
        tm, to = best.get(("matmul", tn), 0.0), best.get(("onednn", tn), 0.0)
        # The first path is the fastest this CPU has, the one dispatch
        # selects: that is what a user gets, even where another path happens
        # to measure faster.
        ratio = f"{tl[0] / max(tm, to):.2f}" if max(tm, to) and tl[0] else "–"
        row = f"| {s} | {' | '.join(f(x) for x in tl)} | {f(tm)} | {f(to)} | {ratio} |"
        if {"avx2", "avx512"} <= set(paths):
            a2, a5 = best.get(("avx2", s), 0.0), best.get(("avx512", s), 0.0)
            row += f" {a2 / a5:.2f} |" if a2 and a5 else " – |"
        print(row)
    if gshapes:
        print()
        print("| generic vs gonum | generic | gonum Sgemm | generic/gonum |")
        print("|---|---|---|---|")
        for s in gshapes:
            g, o = best.get(("generic", s), 0.0), best.get(("gonum", s), 0.0)
            print(f"| {s} | {g:.1f} | {o:.1f} | {g / o:.2f} |" if g and o else f"| {s} | {g:.1f} | {o:.1f} | – |")


if __name__ == "__main__":
    main()
