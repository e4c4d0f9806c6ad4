"""Reference of bitsandbytes' 4-bit blockwise quantisation (the CUDA kernels
kQuantizeBlockwise with dQuantizeNF4/dQuantizeFP4, kDequantizeBlockwise, and
double quantisation through quantize_blockwise with the dynamic map), written
independently of tli: float64 arithmetic with explicit float32 rounding, and
the decision trees restated as counts of float32 pivots strictly below the
value. Used by quant's tests; reads a manifest JSON (argv[1]) and writes the
results as JSON (argv[2]).

bitsandbytes is not needed: its algorithm is restated here from its source
(csrc/kernels.cu, bitsandbytes/functional.py)."""
import json
from fractions import Fraction
import struct
import sys

import numpy as np
import torch


def f32(x):
    return float(np.float32(x))


def f32_literal(text):
    """The float32 nearest the decimal text, as a C compiler reads a float
    literal (np.float32 of the double would round twice)."""
    exact = Fraction(text)
    c = np.float32(float(text))
    best = None
    for v in (np.nextafter(c, np.float32(-2)), c, np.nextafter(c, np.float32(2))):
        d = abs(Fraction(float(v)) - exact)
        even = struct.unpack("<I", struct.pack("<f", float(v)))[0] % 2 == 0
        if best is None or d < best[0] or (d == best[0] and even):
            best = (d, float(v))
    return best[1]


# NF4: 15 pivots (midpoints, as float32 literals), sorted; code = number below x.
NF4_PIVOTS = [f32_literal(p) for p in [
    "-0.8480964004993439", "-0.6106329262256622", "-0.4599952697753906",
    "-0.33967943489551544", "-0.23460740596055984", "-0.13791173323988914",
    "-0.045525018125772476", "0.03979014977812767", "0.1202552504837513",
    "0.2035212516784668", "0.2920137718319893", "0.3893125355243683",
    "0.5016634166240692", "0.6427869200706482", "0.8614784181118011"]]
# FP4: magnitudes sorted and their codes; 7 pivots on |x|.
FP4_MAG_CODES = [0, 1, 6, 7, 4, 5, 2, 3]
FP4_PIVOTS = [f32_literal(p) for p in ["0.00260417", "0.0859375", "0.20833333", "0.29166667",
                                        "0.4166667", "0.583333", "0.8333333"]]


def nf4_code(x):
    if x != x:
        return 0
    return sum(1 for p in NF4_PIVOTS if x > p)


def fp4_code(x):
    if x != x:
        return 0
    sign = 8 if x < 0 else 0
    a = abs(x)
    return FP4_MAG_CODES[sum(1 for p in FP4_PIVOTS if a > p)] | sign


def codebook(kind):
    # get_4bit_type: torch float32 tensor divided by its abs max.
    if kind == "nf4":
        data = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                0.07958029955625534, 0.16093020141124725, 0.24611230194568634,
                0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                0.7229568362236023, 1.0]
    else:
        data = [0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0, -0, -0.0625, -8.0, -12.0, -4.0, -6.0, -2.0, -3.0]
    t = torch.tensor(data, dtype=torch.float32)
    t.div_(t.abs().max())
    vals = [float(v) for v in t.tolist()]
    if kind == "fp4":  # the CUDA dequantiser: lut[v & 7] * (1 - 2*sign)
        vals = [vals[i & 7] * (-1.0 if i & 8 else 1.0) for i in range(16)]
    return vals


def quantize4(kind, w, blocksize):
    n = len(w)
    codes, absmax = [], []
    q = nf4_code if kind == "nf4" else fp4_code
    for lo in range(0, n, blocksize):
        blk = w[lo:lo + blocksize]
        m = max(abs(v) for v in blk)
        absmax.append(m)
        inv = f32(1.0 / m) if m != 0 else float("inf")
        for v in blk:
            s = v * inv if not (v == 0 and inv == float("inf")) else float("nan")
            codes.append(q(f32(s) if s == s else s))
        if len(blk) % 2:  # the padded low nibble: 0 * inv
            pad = 0.0 * inv if inv != float("inf") else float("nan")
            codes.append(q(pad))
    packed = [(codes[i] << 4) | codes[i + 1] for i in range(0, len(codes), 2)]
    return packed, absmax


def round_dtype(vals, dtype):
    t = torch.tensor(vals, dtype=torch.float32)
    if dtype == "bfloat16":
        t = t.to(torch.bfloat16)
    elif dtype == "float16":
        t = t.to(torch.float16)
    return [float(v) for v in t.to(torch.float32).tolist()]


def dequantize4(kind, packed, absmax, n, blocksize, dtype):
    cb = codebook(kind)
    out = []
    for i in range(n):
        c = packed[i // 2] >> 4 if i % 2 == 0 else packed[i // 2] & 15
        out.append(f32(cb[c] * absmax[i // blocksize]))
    return round_dtype(out, dtype)


def dynamic_map():
    # create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)
    data = []
    for i in range(7):
        items = int(2 ** i + 1)
        b = torch.linspace(0.1, 1, items, dtype=torch.float32)
        means = (b[:-1] + b[1:]) / 2.0
        data += ((10 ** (-6 + i)) * means).tolist()
        data += (-(10 ** (-6 + i)) * means).tolist()
    data.append(0)
    data.append(1.0)
    data.sort()
    return [float(v) for v in torch.tensor(data, dtype=torch.float32).tolist()]


def quantize8(code, x):
    # dQuantize<0>: binary search from 127, then the nearer neighbour by
    # float32 midpoints.
    pivot, up, lp = 127, 255, 0
    lower, upper = -1.0, 1.0
    val = code[pivot]
    i = 64
    while i > 0:
        if x > val:
            lp, lower, pivot = pivot, val, pivot + i
        else:
            up, upper, pivot = pivot, val, pivot - i
        val = code[pivot]
        i >>= 1
    if up == 255:
        upper = code[up]
    if lp == 0:
        lower = code[lp]
    if x > val:
        return up if x > f32((upper + val) * 0.5) else pivot
    return lp if x < f32((lower + val) * 0.5) else pivot


def double_quant(absmax, code):
    offset = f32(sum(absmax) / len(absmax))
    torch_mean = float(torch.tensor(absmax, dtype=torch.float32).mean())
    q, nested = [], []
    for lo in range(0, len(absmax), 256):
        blk = [f32(a - offset) for a in absmax[lo:lo + 256]]
        m = max(abs(v) for v in blk)
        nested.append(m)
        inv = f32(1.0 / m) if m != 0 else float("inf")
        for v in blk:
            s = f32(v * inv) if m != 0 else float("nan")
            q.append(quantize8(code, s))
    deq = [f32(f32(code[c] * nested[i // 256]) + offset) for i, c in enumerate(q)]
    return {"offset": offset, "torch_mean": torch_mean, "q": q, "nested": nested, "absmax": deq}


def bits(vals):
    """float32 bit patterns, so that JSON carries Inf and -0 exactly."""
    return [struct.unpack("<I", struct.pack("<f", v))[0] for v in vals]


def main():
    man = json.load(open(sys.argv[1]))
    res = {"nf4": bits(codebook("nf4")), "fp4": bits(codebook("fp4")), "dynamic": bits(dynamic_map()), "cases": []}
    for c in man["cases"]:
        raw = open(c["file"], "rb").read()
        w = [float(v) for v in struct.unpack("<%df" % (len(raw) // 4), raw)]
        packed, absmax = quantize4(c["kind"], w, c["blocksize"])
        out = {"packed": packed, "absmax": bits(absmax),
               "deq": bits(dequantize4(c["kind"], packed, absmax, len(w), c["blocksize"], c["dtype"]))}
        if c.get("double"):
            d = double_quant(absmax, dynamic_map())
            out["double"] = {"offset": bits([d["offset"]])[0], "torch_mean": bits([d["torch_mean"]])[0],
                             "q": d["q"], "nested": bits(d["nested"]), "absmax": bits(d["absmax"])}
        res["cases"].append(out)
    res["dumps"] = [json.dumps(json.loads(s)) for s in man.get("states", [])]
    json.dump(res, open(sys.argv[2], "w"))


main()
