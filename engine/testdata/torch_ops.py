"""PyTorch peer for engine's tests (families_test.go).

Reads a JSON list of requests on stdin and writes the list of answers on
stdout (one Python start, as importing torch takes seconds):
  {"op": "alibi", "heads": [n, ...]}       -> [[slope, ...], ...] as float32 bit patterns
  {"op": "gelu", "x": [...]}                -> gelu(x, approximate="tanh") in float32
  {"op": "layernorm", "x": [...], "w": [...], "b": [...] or null,
   "T": T, "d": d, "eps": eps}              -> torch.nn.functional.layer_norm in float32
The ALiBi slopes are computed line for line as transformers'
build_alibi_tensor (models/bloom/modeling_bloom.py) does.
"""
import json
import math
import struct
import sys

import torch


def alibi_slopes(n_head):
    closest_power_of_2 = 2 ** math.floor(math.log2(n_head))
    base = torch.tensor(2 ** (-(2 ** -(math.log2(closest_power_of_2) - 3))), dtype=torch.float32)
    powers = torch.arange(1, 1 + closest_power_of_2, dtype=torch.int32)
    slopes = torch.pow(base, powers)
    if closest_power_of_2 != n_head:
        extra_base = torch.tensor(2 ** (-(2 ** -(math.log2(2 * closest_power_of_2) - 3))), dtype=torch.float32)
        num_remaining_heads = min(closest_power_of_2, n_head - closest_power_of_2)
        extra_powers = torch.arange(1, 1 + 2 * num_remaining_heads, 2, dtype=torch.int32)
        slopes = torch.cat([slopes, torch.pow(extra_base, extra_powers)], dim=0)
    return slopes


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
