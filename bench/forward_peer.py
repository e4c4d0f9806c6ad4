"""PyTorch peer of bench/forward_test.go: times the hidden-states forward of
internal/ref/llama_ref.py in bf16 (torch_dtype=bfloat16 semantics) on the
same checkpoint and inputs as the Go benchmark.

    /usr/bin/python3 bench/forward_peer.py --model DIR --request REQ.json [--threads 2] [--reps 3]

REQ.json: {"seqs": [[ids]...]}. Sequences are right-padded to the longest
(as a Hugging Face batch is). Prints JSON: {"seconds": best time of one
forward, "tokens": real tokens, "padded_tokens": B*Lmax}.
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "internal", "ref"))
import llama_ref  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--request", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f32"])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    model = llama_ref.load_model(a.model, dtype)
    with open(a.request) as f:
        seqs = json.load(f)["seqs"]
    L = max(len(s) for s in seqs)
    ids = torch.zeros((len(seqs), L), dtype=torch.int64)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
    best = float("inf")
    with torch.no_grad():
        llama_ref.forward_padded(model, ids)  # warm-up
        for _ in range(a.reps):
            t0 = time.perf_counter()
            llama_ref.forward_padded(model, ids)
            best = min(best, time.perf_counter() - t0)
    print(json.dumps({"seconds": best, "tokens": sum(len(s) for s in seqs), "padded_tokens": len(seqs) * L}))


if __name__ == "__main__":
    main()
