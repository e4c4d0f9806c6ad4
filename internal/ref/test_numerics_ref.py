"""Self-check of the published numerics of llama_ref.py / train_ref.py
(--quant none|nf4|fp4, --activations f32|bf16|fp16).

    /usr/bin/python3 internal/ref/test_numerics_ref.py

Builds a tiny random Llama checkpoint (2 layers, hidden 64, GQA 4/2 heads,
intermediate 172) and checks:

  (a) --quant none --activations f32 (CLI flags and keyword arguments) is
      the plain reference bit for bit;
  (b) --activations fp16 / bf16 move the hidden states by ~1e-3 / ~1e-2 of
      their RMS; --quant nf4 / fp4 by ~1e-1;
  (c) the vectorised quantiser (quantize4 / dequantize4) equals
      quant/testdata/bnb_ref.py's scalar restatement of bitsandbytes on the
      model's fp16 weights and on edge cases (a zero block, -0, an odd
      count, a partial last block, values on and beside the pivots);
  (d) the bf16 product of a quantised Linear is within 1 bf16 ulp of
      torch's own bf16 matmul of the same bf16 operands;
  (e) `quantize` writes bitsandbytes' tensors; a pre-quantised checkpoint
      (those tensors plus the rest in fp16) gives the same hidden states
      as quantising at load; double quantisation is refused clearly;
  (f) an independent numpy restatement of decoder layer 0 (float16 via
      np.float16, bf16 by bit arithmetic, the attention as explicit loops;
      rope's f32 cos/sin taken from llama_ref) reproduces hidden_states[1] under fp16 + nf4;
  (g) rnd() is straight-through: values rounded, gradient 1; training under
      fp16 + nf4 runs, its first loss equals the loss of the no-grad
      forward, and its gradients are finite and non-zero;
  (h) each sequence alone equals its row of the padded batch.
"""
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import llama_ref  # noqa: E402
import safetensors_io  # noqa: E402

PY = sys.executable
BNB_REF = os.path.join(HERE, "..", "..", "quant", "testdata", "bnb_ref.py")
FAILS = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        FAILS.append(what)


def make_llama(dir, seed=5):
    cfg = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 128, "rms_norm_eps": 1e-5,
           "rope_theta": 10000.0, "tie_word_embeddings": False, "eos_token_id": 2}
    g = torch.Generator().manual_seed(seed)
    d, f, V = 64, 172, 128

    def rn(*shape, std=1.0):
        return torch.randn(*shape, generator=g) * std

    s = {"model.embed_tokens.weight": rn(V, d), "model.norm.weight": 1 + rn(d, std=0.1),
         "lm_head.weight": rn(V, d, std=0.2)}
    for i in range(2):
        p = "model.layers.%d." % i
        s[p + "input_layernorm.weight"] = 1 + rn(d, std=0.1)
        s[p + "post_attention_layernorm.weight"] = 1 + rn(d, std=0.1)
        s[p + "self_attn.q_proj.weight"] = rn(64, d, std=2 / math.sqrt(d))
        s[p + "self_attn.k_proj.weight"] = rn(32, d, std=2 / math.sqrt(d))
        s[p + "self_attn.v_proj.weight"] = rn(32, d, std=1 / math.sqrt(d))
        s[p + "self_attn.o_proj.weight"] = rn(d, 64, std=1 / math.sqrt(d))
        s[p + "mlp.gate_proj.weight"] = rn(f, d, std=1 / math.sqrt(d))
        s[p + "mlp.up_proj.weight"] = rn(f, d, std=1 / math.sqrt(d))
        s[p + "mlp.down_proj.weight"] = rn(d, f, std=1 / math.sqrt(f))
    os.makedirs(dir, exist_ok=True)
    safetensors_io.save(os.path.join(dir, "model.safetensors"), s)
    with open(os.path.join(dir, "config.json"), "w") as fh:
        json.dump(cfg, fh)
    return s, cfg


SEQS = [[1, 5, 9, 33, 100, 20, 7, 8, 9, 10, 11], [1, 2, 3], [4, 40, 30, 20, 21, 22, 23]]


def rel(a, b):
    return float((a.double() - b.double()).pow(2).mean().sqrt() / b.double().pow(2).mean().sqrt())


def cli_forward(tmp, model, *flags):
    req = os.path.join(tmp, "req.json")
    with open(req, "w") as f:
        json.dump({"seqs": SEQS, "logits": True}, f)
    out = os.path.join(tmp, "out.safetensors")
    subprocess.run([PY, os.path.join(HERE, "llama_ref.py"), "forward", "--model", model, "--request", req,
                    "--out", out] + list(flags), check=True)
    return safetensors_io.load(out)[0]


# ---------------------------------------------------------------- (f) independent layer 0

def np_bf16(x):
    """float64 -> the nearest bfloat16 (round to nearest even), as float64."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16 << 16
    return u.astype(np.uint32).view(np.float32).astype(np.float64)


def h16(x):
    """float64 -> float16 through float32, as torch's cast (numpy's own
    float64 -> float16 rounds once)."""
    return np.asarray(x, dtype=np.float64).astype(np.float32).astype(np.float16).astype(np.float64)


def np_dequant(packed, absmax, shape, kind):
    cb = llama_ref.codebook(kind)
    p = packed.reshape(-1)
    c = np.stack([p >> 4, p & 15], axis=1).reshape(-1)[:shape[0] * shape[1]]
    v = (cb[c] * np.repeat(absmax.astype(np.float64), 64)[:c.size]).astype(np.float32)
    return np_bf16(h16(v)).reshape(shape)


def independent_layer0(state, q, seq):
    """hidden_states[1] of seq under fp16 activations and the quantised
    Linears q (name -> (packed, absmax)), numpy float64 throughout."""
    E = h16(state["model.embed_tokens.weight"].numpy())
    x = E[seq]
    T, d, hd = len(seq), 64, 16
    p = "model.layers.0."

    def W(n):
        packed, absmax = q[p + n + ".weight"]
        return np_dequant(packed, absmax, tuple(state[p + n + ".weight"].shape), "nf4")

    def lin(v, n):
        return h16(np_bf16(np_bf16(v) @ W(n).T))

    def norm(v, w):
        r = (1.0 / np.sqrt((v * v).mean(-1, keepdims=True) + 1e-5)).astype(np.float32).astype(np.float64)
        return h16(h16(w) * h16(v * r))

    h = norm(x, state[p + "input_layernorm.weight"].numpy())
    Q = lin(h, "self_attn.q_proj").reshape(T, 4, hd)
    K = lin(h, "self_attn.k_proj").reshape(T, 2, hd)
    V = lin(h, "self_attn.v_proj").reshape(T, 2, hd)
    cos, sin = llama_ref.rope_cos_sin({"head_dim": hd, "rope_theta": 10000.0}, torch.arange(T)[None, :], torch.float32)
    cos, sin = h16(cos[0].double().numpy()), h16(sin[0].double().numpy())  # the f32 values of today, then fp16

    def rope(v):
        rh = np.concatenate([-v[..., hd // 2:], v[..., :hd // 2]], axis=-1)
        return h16(h16(v * cos[:, None, :]) + h16(rh * sin[:, None, :]))

    Q, K = rope(Q), rope(K)
    out = np.zeros((T, 4, hd))
    for hh in range(4):
        kv = hh // 2
        for i in range(T):
            s = np.array([Q[i, hh] @ K[j, kv] * 0.25 for j in range(i + 1)])
            e = np.exp(s - s.max())
            out[i, hh] = (e / e.sum()) @ V[:i + 1, kv]
    att = lin(h16(out).reshape(T, 64), "self_attn.o_proj")
    x = h16(x + att)
    h = norm(x, state[p + "post_attention_layernorm.weight"].numpy())
    g = lin(h, "mlp.gate_proj")
    u = lin(h, "mlp.up_proj")
    a = h16(g / (1.0 + np.exp(-g)))
    return h16(x + lin(h16(a * u), "mlp.down_proj"))


def main():
    torch.set_num_threads(2)
    tmp = tempfile.mkdtemp(prefix="numerics_ref_")
    mdir = os.path.join(tmp, "llama")
    state, cfg = make_llama(mdir)

    # (a) defaults are the plain reference
    base = cli_forward(tmp, mdir)
    same = cli_forward(tmp, mdir, "--quant", "none", "--activations", "f32")
    check(all(torch.equal(base[k], same[k]) for k in base), "(a) CLI --quant none --activations f32 == plain, bit for bit")
    m0 = llama_ref.load_model(mdir)
    m1 = llama_ref.load_model(mdir, quant="none", activations="f32")
    h0, h1 = llama_ref.forward(m0, SEQS), llama_ref.forward(m1, SEQS)
    h2 = llama_ref.forward(m0, SEQS, quant="none", activations="f32")
    check(m1.get("numerics") is None and all(torch.equal(a, b) and torch.equal(a, c) for s0, s1, s2 in zip(h0, h1, h2)
                                             for a, b, c in zip(s0, s1, s2)),
          "(a) load_model/forward keywords none/f32 == plain, bit for bit")

    # (b) sizes of the numerics' effects
    def rels(out):
        return [rel(out["s0.h%d" % k], base["s0.h%d" % k]) for k in range(1, 3)] + [rel(out["s0.logits"], base["s0.logits"])]

    expect = {("none", "fp16"): (1e-4, 5e-3), ("none", "bf16"): (1e-3, 5e-2),
              ("nf4", "fp16"): (3e-2, 0.4), ("fp4", "fp16"): (3e-2, 0.6), ("nf4", "f32"): (3e-2, 0.4)}
    outs = {}
    for (q, a), (lo, hi) in expect.items():
        outs[q, a] = o = cli_forward(tmp, mdir, "--quant", q, "--activations", a)
        r = rels(o)
        check(all(lo <= x <= hi for x in r), "(b) --quant %s --activations %s: relative RMS change %s in [%g, %g]"
              % (q, a, " ".join("%.2g" % x for x in r), lo, hi))
        dt = {"fp16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32}[a]
        check(all(torch.equal(v, v.to(dt).float()) for v in o.values()), "(b) %s/%s outputs are %s values" % (q, a, a))
    m16 = llama_ref.forward(m0, SEQS, quant="nf4", activations="fp16")
    check(all(torch.equal(m16[0][k].float(), outs["nf4", "fp16"]["s0.h%d" % k]) for k in range(3)),
          "(b) forward(model, quant=, activations=) == the CLI")

    # (c) the vectorised quantiser against bnb_ref.py
    rng = np.random.default_rng(3)
    cases = []
    for name in ["model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"]:
        cases.append(state[name].to(torch.float16).float().numpy().reshape(-1))
    piv = np.concatenate([llama_ref.NF4_PIVOTS, llama_ref.FP4_PIVOTS, -llama_ref.FP4_PIVOTS]).astype(np.float32)
    edge = np.concatenate([np.zeros(64, np.float32), np.array([-0.0, 1.0] + [0.0] * 62, np.float32),
                           np.concatenate([piv, np.nextafter(piv, np.float32(2)), np.nextafter(piv, np.float32(-2)),
                                           np.ones(3, np.float32)])[:64],
                           rng.standard_normal(37).astype(np.float32)])  # 229 values: odd, partial last block
    cases.append(edge)
    cases.append(rng.standard_normal(4096).astype(np.float32) * 1e-3)
    man = {"cases": []}
    for i, w in enumerate(cases):
        for kind in ("nf4", "fp4"):
            fn = os.path.join(tmp, "w%d.bin" % i)
            w.astype("<f4").tofile(fn)
            man["cases"].append({"file": fn, "kind": kind, "blocksize": 64, "dtype": "float16"})
    with open(os.path.join(tmp, "man.json"), "w") as f:
        json.dump(man, f)
    subprocess.run([PY, BNB_REF, os.path.join(tmp, "man.json"), os.path.join(tmp, "bnb.json")], check=True)
    with open(os.path.join(tmp, "bnb.json")) as f:
        res = json.load(f)
    ok = True
    for c, r in zip(man["cases"], res["cases"]):
        w = np.fromfile(c["file"], dtype="<f4")
        codes, absmax = llama_ref.quantize4(c["kind"], w, 64)
        packed = llama_ref.pack4(codes)
        deq = llama_ref.dequantize4(c["kind"], codes, absmax, (w.size,), 64, torch.float16)
        want_abs = np.array(r["absmax"], dtype=np.uint32).view(np.float32)
        want_deq = torch.from_numpy(np.array(r["deq"], dtype=np.uint32).view(np.float32)).to(torch.bfloat16).double()
        ok &= list(packed) == r["packed"] and np.array_equal(absmax.view(np.uint32), want_abs.view(np.uint32))
        ok &= torch.equal(deq, want_deq)
    check(ok, "(c) quantize4/pack4/dequantize4 == bnb_ref.py (codes, absmax, dequantised) on %d cases" % len(man["cases"]))
    check(np.array_equal(llama_ref.codebook("nf4"), np.array(res["nf4"], dtype=np.uint32).view(np.float32).astype(np.float64))
          and np.array_equal(llama_ref.codebook("fp4"), np.array(res["fp4"], dtype=np.uint32).view(np.float32).astype(np.float64)),
          "(c) codebooks == bnb_ref.py's")

    # (d) the bf16 product against torch's bf16 matmul
    mq = llama_ref.with_numerics(m0, "nf4", "fp16")
    W = mq["w"]["model.layers.0.mlp.gate_proj.weight"]
    x = llama_ref.rnd(torch.randn(40, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64), torch.float16)
    ours = llama_ref.rnd(torch.matmul(llama_ref.rnd(x, torch.bfloat16), W.T), torch.bfloat16)
    theirs = torch.matmul(x.to(torch.bfloat16), W.to(torch.bfloat16).T).double()
    ulp = torch.tensor([math.ldexp(1.0, math.frexp(v)[1] - 8) if v != 0 else 0.0 for v in ours.abs().reshape(-1).tolist()],
                       dtype=torch.float64).reshape(ours.shape)
    diff = (ours - theirs).abs()
    check(bool((diff <= ulp + 1e-300).all()), "(d) bf16 Linear product within 1 bf16 ulp of torch's bf16 matmul "
          "(%d of %d differ)" % (int((diff > 0).sum()), diff.numel()))

    # (e) quantize mode and a pre-quantised checkpoint
    for kind in ("nf4", "fp4"):
        qout = os.path.join(tmp, "q-%s.safetensors" % kind)
        subprocess.run([PY, os.path.join(HERE, "llama_ref.py"), "quantize", "--model", mdir, "--quant", kind,
                        "--activations", "fp16", "--out", qout], check=True)
        qt, _ = safetensors_io.load(qout)
        name = "model.layers.1.mlp.up_proj.weight"
        js = json.loads(bytes(qt[name + ".quant_state.bitsandbytes__" + kind].numpy()).decode())
        check(qt[name].dtype == torch.uint8 and list(qt[name].shape) == [64 * 172 // 2, 1]
              and qt[name + ".absmax"].dtype == torch.float32 and qt[name + ".absmax"].numel() == 172
              and js == {"quant_type": kind, "blocksize": 64, "dtype": "float16", "shape": [172, 64]}
              and sum(1 for k in qt if k.endswith(".weight") and ".layers." in k) == 14,
              "(e) quantize %s: U8 [n/2, 1] codes, F32 absmax, quant_state JSON for all 14 Linears" % kind)
        pdir = os.path.join(tmp, "pre-" + kind)
        os.makedirs(pdir, exist_ok=True)
        full = {k: v.to(torch.float16) for k, v in state.items() if k not in qt}
        full.update(qt)
        safetensors_io.save(os.path.join(pdir, "model.safetensors"), full)
        with open(os.path.join(pdir, "config.json"), "w") as f:
            json.dump(cfg, f)
        pre = cli_forward(tmp, pdir, "--activations", "fp16")
        onfly = outs.get((kind, "fp16")) or cli_forward(tmp, mdir, "--quant", kind, "--activations", "fp16")
        check(all(torch.equal(pre[k], onfly[k]) for k in onfly), "(e) pre-quantised %s checkpoint == quantised at load, bit for bit" % kind)
        if kind == "nf4":
            full["model.layers.0.self_attn.q_proj.weight.nested_absmax"] = torch.zeros(1)
            safetensors_io.save(os.path.join(pdir, "model.safetensors"), full)
            try:
                llama_ref.load_model(pdir, activations="fp16")
                check(False, "(e) double quantisation refused")
            except ValueError as e:
                check("double quantisation" in str(e), "(e) double quantisation refused: %s" % e)

    # (f) independent restatement of layer 0
    qt, _ = safetensors_io.load(os.path.join(tmp, "q-nf4.safetensors"))
    q = {k: (qt[k].numpy(), qt[k + ".absmax"].numpy()) for k in qt if k.endswith(".weight")}
    for s, seq in enumerate(SEQS):
        ind = independent_layer0(state, q, seq)
        got = outs["nf4", "fp16"]["s%d.h1" % s].double().numpy()
        check(np.array_equal(ind, got), "(f) independent numpy layer 0 == hidden_states[1], seq %d (%d of %d differ, max %.3g)"
              % (s, int((ind != got).sum()), ind.size, float(np.abs(ind - got).max())))

    # (g) straight-through rounding and training
    xg = torch.tensor([1.0 + 2 ** -12, 3e-8, 1e-3, 70000.0], dtype=torch.float64, requires_grad=True)
    y = llama_ref.rnd(xg, torch.float16)
    y.sum().backward()
    check(torch.equal(y.detach(), xg.detach().to(torch.float16).double()) and torch.equal(xg.grad, torch.ones(4, dtype=torch.float64)),
          "(g) rnd: values as torch's cast (ties to even, subnormal, overflow), gradient 1")
    adir = os.path.join(tmp, "adapter")
    os.makedirs(adir, exist_ok=True)
    g = torch.Generator().manual_seed(9)
    ad = {}
    for k, v in state.items():
        if llama_ref.LINEAR_RE.match(k):
            path = k[:-len(".weight")]
            ad["base_model.model.%s.lora_A.weight" % path] = torch.randn(4, v.shape[1], generator=g) * 0.1
            ad["base_model.model.%s.lora_B.weight" % path] = torch.randn(v.shape[0], 4, generator=g) * 0.1
    safetensors_io.save(os.path.join(adir, "adapter_model.safetensors"), ad)
    with open(os.path.join(adir, "adapter_config.json"), "w") as f:
        json.dump({"r": 4, "lora_alpha": 8}, f)
    batch = {"sw": [[1, 5, 9], [1, 33, 100, 20, 7], [1, 4]], "en": [[1, 40, 41, 42], [1, 7], [1, 30, 31, 32, 33, 34]]}
    treq = {"batches": [batch], "target_layer": 2, "margin": 0.4, "lr": 5e-3, "warmup": 1, "total": 4, "steps": 3,
            "pool": "all"}
    with open(os.path.join(tmp, "treq.json"), "w") as f:
        json.dump(treq, f)
    tout = os.path.join(tmp, "train.safetensors")
    subprocess.run([PY, os.path.join(HERE, "train_ref.py"), "--model", mdir, "--adapter", adir, "--request",
                    os.path.join(tmp, "treq.json"), "--out", tout, "--quant", "nf4", "--activations", "fp16"], check=True)
    tr, _ = safetensors_io.load(tout)
    import train_ref  # noqa: E402
    cfg_ad, adapters = train_ref.load_adapter(adir)
    mt = llama_ref.load_model(mdir, quant="nf4", activations="fp16")
    train_ref.install_lora(mt, adapters, 2.0, 0.0)
    with torch.no_grad():
        s_ = train_ref.pooled(mt, batch["sw"], 2, "all")
        e_ = train_ref.pooled(mt, batch["en"], 2, "all")
        loss0 = float(train_ref.tli_loss(s_, e_, 0.4))
    llama_ref.lora_branch = None
    grads = [v for k, v in tr.items() if k.startswith("grad.")]
    check(abs(float(tr["losses"][0]) - loss0) <= 1e-7 * abs(loss0) and loss0 > 0,
          "(g) training fp16+nf4: first loss %.6g == no-grad forward's %.6g" % (float(tr["losses"][0]), loss0))
    check(len(grads) == 28 and all(bool(torch.isfinite(v).all()) for v in grads) and all(float(v.abs().max()) > 0 for v in grads),
          "(g) training fp16+nf4: 28 finite, non-zero gradients; losses %s" % [round(float(v), 5) for v in tr["losses"]])

    # (h) each sequence alone == its row of the padded batch
    mq = llama_ref.load_model(mdir, quant="nf4", activations="fp16")
    batch_hs = llama_ref.forward(mq, SEQS)
    ok = all(torch.equal(a, b) for s, seq in enumerate(SEQS) for a, b in zip(llama_ref.forward(mq, [seq])[0], batch_hs[s]))
    check(ok, "(h) fp16+nf4: each sequence alone == its row of the padded batch")

    print("%d failure(s)" % len(FAILS))
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
