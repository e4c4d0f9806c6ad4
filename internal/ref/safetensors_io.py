"""Minimal safetensors reader/writer with json + numpy + torch (no
`safetensors` package needed).

    load(path) -> (dict name -> torch.Tensor, metadata dict)
    save(path, dict name -> torch.Tensor | numpy.ndarray, metadata=None)

Supported dtypes: F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL. BF16 is
read as raw int16 bits and reinterpreted as torch.bfloat16 (numpy has no
bf16). Files are little-endian, as the format requires.
"""
import json
import struct

import numpy as np
import torch

_NP = {
    "F32": np.float32, "F16": np.float16, "F64": np.float64,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U8": np.uint8, "BOOL": np.bool_, "BF16": np.int16,  # raw bits
}
_TORCH_NAME = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.float64: "F64", torch.int64: "I64", torch.int32: "I32",
    torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}


def load(path):
    """Read every tensor of a safetensors file as torch tensors (copies)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + n
    out = {}
    for name, info in header.items():
        dt = info["dtype"]
        shape = [int(s) for s in info["shape"]]
        b, e = info["data_offsets"]
        arr = np.frombuffer(data, dtype=_NP[dt], count=(e - b) // np.dtype(_NP[dt]).itemsize,
                            offset=base + b).copy().reshape(shape)
        t = torch.from_numpy(arr)
        if dt == "BF16":
            t = t.view(torch.bfloat16)
        out[name] = t
    return out, meta


def save(path, tensors, metadata=None):
    """Write tensors (torch or numpy) in name order to path."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    off = 0
    for name in sorted(tensors):
        t = tensors[name]
        if isinstance(t, np.ndarray):
            t = torch.from_numpy(np.ascontiguousarray(t))
        t = t.detach().contiguous().cpu()
        dt = _TORCH_NAME[t.dtype]
        if t.dtype == torch.bfloat16:
            raw = t.view(torch.int16).numpy().tobytes()
        else:
            raw = t.numpy().tobytes()
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    hj = json.dumps(header).encode("utf-8")
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)
