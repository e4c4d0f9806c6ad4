"""PyTorch peer for engine's tests (families_test.go).

Reads a JSON list of requests on stdin and writes the list of answers on
stdout (one Python start, as importing torch takes seconds):
  {"op": "alibi", "heads": [n, ...]}       -> [[slope, ...], ...] as float32 bit patterns
  {"op": "gelu", "x": [...]}                -> gelu(x, approximate="tanh") in float32
  {"op": "layernorm", "x": [...], "w": [...], "b": [...] or null,
   "T": T, "d": d, "eps": eps}              -> torch.nn.functional.layer_norm in float32
The ALiBi slopes come from the project's PyTorch reference
(internal/ref/llama_ref.py, bloom_alibi_slopes: build_alibi_tensor's).
"""
import json
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "internal", "ref"))
from llama_ref import bloom_alibi_slopes as alibi_slopes  # noqa: E402


def bits(t):
    return [struct.unpack("<I", struct.pack("<f", v))[0] for v in t.tolist()]


def answer(req):
    op = req["op"]
    if op == "alibi":
        return [bits(alibi_slopes(n)) for n in req["heads"]]
    if op == "gelu":
        x = torch.tensor(req["x"], dtype=torch.float32)
        return torch.nn.functional.gelu(x, approximate="tanh").tolist()
    if op == "layernorm":
        T, d = req["T"], req["d"]
        x = torch.tensor(req["x"], dtype=torch.float32).reshape(T, d)
        w = torch.tensor(req["w"], dtype=torch.float32)
        b = None if req["b"] is None else torch.tensor(req["b"], dtype=torch.float32)
        return torch.nn.functional.layer_norm(x, (d,), w, b, req["eps"]).reshape(-1).tolist()
    raise SystemExit("unknown op " + op)


def main():
    json.dump([answer(req) for req in json.load(sys.stdin)], sys.stdout)


if __name__ == "__main__":
    main()
