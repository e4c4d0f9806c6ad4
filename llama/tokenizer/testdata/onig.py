# onig.py runs a regex through Oniguruma (libonig.so.5, the library Hugging
# Face tokenizers uses) with Python's ctypes, for the Go tests of the
# hand-written pre-tokenizer patterns.
#
# usage: python3 onig.py < request.json > answer.json
#
# request: {"pattern": "...", "texts": ["..."]}
# answer: {"Ruby": [[match, ...], ...], "Oniguruma": [[...], ...]}: the
# successive leftmost matches in each text (as Split finds them), with the
# Ruby syntax (the onig crate's default) and Oniguruma's own.
# Exits with status 3 when libonig cannot be loaded.
import ctypes
import json
import sys

try:
    lib = ctypes.CDLL("libonig.so.5")
except OSError as e:
    print("cannot load libonig.so.5: %s" % e, file=sys.stderr)
    sys.exit(3)


class Region(ctypes.Structure):
    _fields_ = [("allocated", ctypes.c_int), ("num_regs", ctypes.c_int),
                ("beg", ctypes.POINTER(ctypes.c_int)), ("end", ctypes.POINTER(ctypes.c_int))]


vp = ctypes.c_void_p
utf8 = vp(ctypes.addressof(ctypes.c_char.in_dll(lib, "OnigEncodingUTF8")))
if lib.onig_initialize((vp * 1)(utf8), 1) != 0:
    sys.exit("onig_initialize failed")
lib.onig_region_new.restype = ctypes.POINTER(Region)
lib.onig_search.argtypes = [vp] * 5 + [ctypes.POINTER(Region), ctypes.c_uint]
lib.onig_new.argtypes = [ctypes.POINTER(vp), vp, vp, ctypes.c_uint, vp, vp, vp]

req = json.load(sys.stdin)
pat = req["pattern"].encode()
pbuf = ctypes.create_string_buffer(pat, len(pat))
out = {}
for name in ["Ruby", "Oniguruma"]:
    syntax = vp(ctypes.addressof(ctypes.c_char.in_dll(lib, "OnigSyntax" + name)))
    reg = vp()
    einfo = ctypes.create_string_buffer(256)
    base = ctypes.addressof(pbuf)
    r = lib.onig_new(ctypes.byref(reg), vp(base), vp(base + len(pat)), 0, utf8, syntax, vp(ctypes.addressof(einfo)))
    if r != 0:
        sys.exit("onig_new(%r): error %d" % (req["pattern"], r))
    region = lib.onig_region_new()
    res = []
    for text in req["texts"]:
        b = text.encode()
        tbuf = ctypes.create_string_buffer(b, len(b))
        start = ctypes.addressof(tbuf)
        end = start + len(b)
        pos, found = 0, []
        while pos < len(b):
            if lib.onig_search(reg, vp(start), vp(end), vp(start + pos), vp(end), region, 0) < 0:
                break
            mb, me = region.contents.beg[0], region.contents.end[0]
            if me <= mb:  # the patterns tested never match the empty string
                sys.exit("empty match")
            found.append(b[mb:me].decode())
            pos = me
        res.append(found)
    out[name] = res
json.dump(out, sys.stdout)
