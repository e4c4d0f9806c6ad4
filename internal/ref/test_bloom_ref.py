"""Self-check of llama_ref.py's BLOOM forward and train_ref.py's BLOOM LoRA.

    /usr/bin/python3 internal/ref/test_bloom_ref.py

Builds tiny random BLOOM checkpoints (4 heads, and 6 heads for the
non-power-of-two ALiBi slopes; tied and untied heads;
apply_residual_connection_post_layernorm both ways), runs the CLI and checks:

  (a) each sequence alone gives the same hidden states and logits as in the
      right-padded batch;
  (b) an independent float64 implementation written here (one sequence at a
      time, explicit formulas for LayerNorm, the slopes, the fused-qkv row
      layout, per-head attention with explicit ALiBi and causal loop)
      agrees to 1e-5;
  (c) the same weights under bare names ("h.0...", "word_embeddings...",
      bigscience's files) give identical output;
  (d) `generate` is the independent greedy continuation;
  (e) train_ref.py on a PEFT adapter keyed base_model.model.transformer.h.{i}
      .self_attention.query_key_value... : the first step's loss and LoRA
      gradients equal float64 autograd through the independent forward with
      merged weights W + scale * B @ A, and training runs all steps.

Also compares the slopes (torch's f32 pow, as build_alibi_tensor) with
float32(pow(float64(float32(base)), k)), what a Go port computes: within 1
ulp for 1..64 heads (torch's vectorised powf is not correctly rounded).
"""
import json
import math
import os
import subprocess
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import safetensors_io  # noqa: E402

PY = sys.executable
FAILS = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        FAILS.append(what)


# ---------------------------------------------------------------- model

def make_state(hidden, heads, layers, vocab, tied, seed):
    g = torch.Generator().manual_seed(seed)

    def rn(*shape, std=1.0):
        return torch.randn(*shape, generator=g) * std

    s = {}
    P = "transformer."
    s[P + "word_embeddings.weight"] = rn(vocab, hidden)
    s[P + "word_embeddings_layernorm.weight"] = 1 + rn(hidden, std=0.1)
    s[P + "word_embeddings_layernorm.bias"] = rn(hidden, std=0.1)
    for i in range(layers):
        p = P + "h.%d." % i
        s[p + "input_layernorm.weight"] = 1 + rn(hidden, std=0.1)
        s[p + "input_layernorm.bias"] = rn(hidden, std=0.1)
        s[p + "self_attention.query_key_value.weight"] = rn(3 * hidden, hidden, std=0.3 / math.sqrt(hidden) * 3)
        s[p + "self_attention.query_key_value.bias"] = rn(3 * hidden, std=0.1)
        s[p + "self_attention.dense.weight"] = rn(hidden, hidden, std=1 / math.sqrt(hidden))
        s[p + "self_attention.dense.bias"] = rn(hidden, std=0.1)
        s[p + "post_attention_layernorm.weight"] = 1 + rn(hidden, std=0.1)
        s[p + "post_attention_layernorm.bias"] = rn(hidden, std=0.1)
        s[p + "mlp.dense_h_to_4h.weight"] = rn(4 * hidden, hidden, std=1 / math.sqrt(hidden))
        s[p + "mlp.dense_h_to_4h.bias"] = rn(4 * hidden, std=0.1)
        s[p + "mlp.dense_4h_to_h.weight"] = rn(hidden, 4 * hidden, std=1 / math.sqrt(4 * hidden))
        s[p + "mlp.dense_4h_to_h.bias"] = rn(hidden, std=0.1)
    s[P + "ln_f.weight"] = 1 + rn(hidden, std=0.1)
    s[P + "ln_f.bias"] = rn(hidden, std=0.1)
    if not tied:
        s["lm_head.weight"] = rn(vocab, hidden, std=0.2)
    return s


def save_model(dir, state, cfg, bare=False):
    os.makedirs(dir, exist_ok=True)
    if bare:
        state = {(k[len("transformer."):] if k.startswith("transformer.") else k): v for k, v in state.items()}
    safetensors_io.save(os.path.join(dir, "model.safetensors"), state)
    with open(os.path.join(dir, "config.json"), "w") as f:
        json.dump(cfg, f)


# ---------------------------------------------------------------- independent f64 reference

def ind_slopes(n):
    """Closed form: 2^(-8k/p), k = 1..p, then 2^(-4(2k-1)/p) for the rest."""
    p = 1
    while p * 2 <= n:
        p *= 2
    out = [2.0 ** (-8.0 * k / p) for k in range(1, p + 1)]
    out += [2.0 ** (-4.0 * (2 * k - 1) / p) for k in range(1, n - p + 1)]
    return out


def ind_ln(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def ind_gelu(x):
    return 0.5 * x * (1.0 + torch.tanh(0.79788456 * (x + 0.044715 * x ** 3)))


def ind_forward(W, cfg, seq, upto=None):
    """One sequence, float64 (W: name -> f64 tensor, "transformer." names).
    Returns hs list of [T, d] and logits [T, vocab]; with upto < n_layer,
    hs[0..upto] only (no ln_f) and no logits."""
    d = cfg["hidden_size"]
    H = cfg["n_head"]
    hd = d // H
    eps = cfg["layer_norm_epsilon"]
    post = cfg.get("apply_residual_connection_post_layernorm", False)
    T = len(seq)
    P = "transformer."
    slopes = ind_slopes(H)
    x = ind_ln(W[P + "word_embeddings.weight"][torch.tensor(seq)], W[P + "word_embeddings_layernorm.weight"],
               W[P + "word_embeddings_layernorm.bias"], eps)
    hs = [x]
    for l in range(cfg["n_layer"] if upto is None else upto):
        p = P + "h.%d." % l
        ln1 = ind_ln(x, W[p + "input_layernorm.weight"], W[p + "input_layernorm.bias"], eps)
        Wqkv, bqkv = W[p + "self_attention.query_key_value.weight"], W[p + "self_attention.query_key_value.bias"]
        heads = []
        for h in range(H):
            # fused rows: head h, part c (q, k, v), dim e at h*3*hd + c*hd + e
            rows = [slice(h * 3 * hd + c * hd, h * 3 * hd + (c + 1) * hd) for c in range(3)]
            q = ln1 @ Wqkv[rows[0]].T + bqkv[rows[0]]
            k = ln1 @ Wqkv[rows[1]].T + bqkv[rows[1]]
            v = ln1 @ Wqkv[rows[2]].T + bqkv[rows[2]]
            out = []
            for i in range(T):
                sc = torch.stack([(q[i] * k[j]).sum() / math.sqrt(hd) + slopes[h] * j for j in range(i + 1)])
                pr = torch.softmax(sc, 0)
                out.append((pr[:, None] * v[: i + 1]).sum(0))
            heads.append(torch.stack(out))
        ctx = torch.cat(heads, dim=-1)
        attn = ctx @ W[p + "self_attention.dense.weight"].T + W[p + "self_attention.dense.bias"]
        a = (ln1 if post else x) + attn
        ln2 = ind_ln(a, W[p + "post_attention_layernorm.weight"], W[p + "post_attention_layernorm.bias"], eps)
        m = ind_gelu(ln2 @ W[p + "mlp.dense_h_to_4h.weight"].T + W[p + "mlp.dense_h_to_4h.bias"])
        m = m @ W[p + "mlp.dense_4h_to_h.weight"].T + W[p + "mlp.dense_4h_to_h.bias"]
        x = (ln2 if post else a) + m
        hs.append(x)
    if upto is not None and upto < cfg["n_layer"]:
        return hs, None
    hs[-1] = ind_ln(x, W[P + "ln_f.weight"], W[P + "ln_f.bias"], eps)
    head = W[P + "word_embeddings.weight"] if cfg.get("tie_word_embeddings", True) else W["lm_head.weight"]
    return hs, hs[-1] @ head.T


# ---------------------------------------------------------------- CLI helpers

def run_forward(mdir, seqs, tmp, tag, dtype="f32"):
    req = os.path.join(tmp, tag + ".json")
    out = os.path.join(tmp, tag + ".safetensors")
    with open(req, "w") as f:
        json.dump({"seqs": seqs, "logits": True}, f)
    subprocess.run([PY, os.path.join(HERE, "llama_ref.py"), "forward", "--model", mdir, "--request", req,
                    "--out", out, "--dtype", dtype], check=True)
    t, _ = safetensors_io.load(out)
    return t


def maxrel(a, b):
    return float((a.double() - b.double()).abs().max() / max(float(b.double().abs().max()), 1e-30))


def maxabs(a, b):
    return float((a.double() - b.double()).abs().max())


def check_model(tmp, name, hidden, heads, layers, vocab, tied, post, seed):
    cfg = {"model_type": "bloom", "architectures": ["BloomForCausalLM"], "hidden_size": hidden,
           "n_layer": layers, "n_head": heads, "layer_norm_epsilon": 1e-5, "vocab_size": vocab,
           "apply_residual_connection_post_layernorm": post, "bos_token_id": 1, "eos_token_id": 2}
    if not tied:
        cfg["tie_word_embeddings"] = False
    state = make_state(hidden, heads, layers, vocab, tied, seed)
    mdir = os.path.join(tmp, name)
    save_model(mdir, state, cfg)
    bdir = os.path.join(tmp, name + "-bare")
    save_model(bdir, state, cfg, bare=True)
    g = torch.Generator().manual_seed(seed + 1)
    seqs = [torch.randint(3, vocab, (n,), generator=g).tolist() for n in (7, 3, 12, 1, 9)]
    batch = run_forward(mdir, seqs, tmp, name + "-batch")
    nk = layers + 1
    # (a) alone vs batch
    worst = 0.0
    for i, s in enumerate(seqs):
        alone = run_forward(mdir, [s], tmp, name + "-alone%d" % i)
        for k in range(nk):
            worst = max(worst, maxrel(alone["s0.h%d" % k], batch["s%d.h%d" % (i, k)]))
        worst = max(worst, maxrel(alone["s0.logits"], batch["s%d.logits" % i]))
    check(worst <= 1e-6, "%s: (a) each sequence alone = in the padded batch (max diff / max |x| %.3g)" % (name, worst))
    # (b) independent float64
    W = {k: v.double() for k, v in state.items()}
    worst = 0.0
    for i, s in enumerate(seqs):
        hs, logits = ind_forward(W, cfg, s)
        for k in range(nk):
            worst = max(worst, maxabs(batch["s%d.h%d" % (i, k)], hs[k]) / max(1.0, float(hs[k].abs().max())))
        worst = max(worst, maxabs(batch["s%d.logits" % i], logits) / max(1.0, float(logits.abs().max())))
    check(worst <= 1e-5, "%s: (b) independent float64 implementation (max diff / max(1, max |x|) %.3g)" % (name, worst))
    # (c) bare names
    bare = run_forward(bdir, seqs, tmp, name + "-bare")
    same = set(bare) == set(batch) and all(torch.equal(bare[k], batch[k]) for k in batch)
    check(same, "%s: (c) bare tensor names give identical output" % name)
    # bf16 runs and stays near f32
    b16 = run_forward(mdir, seqs, tmp, name + "-bf16", "bf16")
    r = max(maxrel(b16["s%d.h%d" % (i, layers)], batch["s%d.h%d" % (i, layers)]) for i in range(len(seqs)))
    check(r < 0.1, "%s: bf16 forward near f32 (max rel %.3g)" % (name, r))
    # (d) generate
    prompt = seqs[0][:5]
    out = subprocess.run([PY, os.path.join(HERE, "llama_ref.py"), "generate", "--model", mdir, "--prompt",
                          ",".join(map(str, prompt)), "--max-new", "6"], check=True, capture_output=True, text=True)
    got = json.loads(out.stdout)
    want, seq = [], list(prompt)
    for _ in range(6):
        _, logits = ind_forward(W, cfg, seq)
        t = int(logits[-1].argmax())
        want.append(t)
        seq.append(t)
        if t == 2:
            break
    check(got["tokens"] == want, "%s: (d) generate = independent greedy %s (min margin %.3g)"
          % (name, want, min(got["margins"])))
    return mdir, cfg, state


# ---------------------------------------------------------------- training

def check_train(tmp, mdir, cfg, state):
    layers, d = cfg["n_layer"], cfg["hidden_size"]
    r, alpha = 4, 8
    scale = alpha / r
    g = torch.Generator().manual_seed(7)
    mods = {"self_attention.query_key_value": (3 * d, d), "self_attention.dense": (d, d),
            "mlp.dense_h_to_4h": (4 * d, d), "mlp.dense_4h_to_h": (d, 4 * d)}
    target = 2
    ad = {}
    for l in range(target):
        for m, (o, i) in mods.items():
            path = "transformer.h.%d.%s" % (l, m)
            ad["base_model.model.%s.lora_A.weight" % path] = torch.randn(r, i, generator=g) * 0.1
            ad["base_model.model.%s.lora_B.weight" % path] = torch.randn(o, r, generator=g) * 0.05
    adir = os.path.join(tmp, "adapter")
    os.makedirs(adir, exist_ok=True)
    safetensors_io.save(os.path.join(adir, "adapter_model.safetensors"), ad)
    with open(os.path.join(adir, "adapter_config.json"), "w") as f:
        json.dump({"r": r, "lora_alpha": alpha, "lora_dropout": 0.0, "peft_type": "LORA",
                   "target_modules": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"]}, f)
    vocab = cfg["vocab_size"]
    batches = []
    for b in range(2):
        sw = [torch.randint(3, vocab, (n,), generator=g).tolist() for n in (4, 2, 6, 3)]
        en = [torch.randint(3, vocab, (n,), generator=g).tolist() for n in (3, 5, 2, 4)]
        batches.append({"sw": sw, "en": en})
    req = {"batches": batches, "target_layer": target, "margin": 0.4, "lr": 2e-3, "warmup": 2, "total": 10,
           "steps": 5, "pool": "content"}
    rp, op = os.path.join(tmp, "train.json"), os.path.join(tmp, "train.safetensors")
    with open(rp, "w") as f:
        json.dump(req, f)
    subprocess.run([PY, os.path.join(HERE, "train_ref.py"), "--model", mdir, "--adapter", adir, "--request", rp,
                    "--out", op], check=True)
    out, _ = safetensors_io.load(op)
    losses = out["losses"]
    check(losses.shape[0] == 5 and bool(torch.isfinite(losses).all()), "train: 5 finite losses %s" % losses.tolist())
    keys = sorted(ad)
    check(all(("grad." + k) in out for k in keys) and all(k in out for k in keys),
          "train: gradients and weights of all %d adapter tensors, under their PEFT names" % len(keys))

    # float64 autograd through the independent forward with merged weights
    A = {k: v.double().requires_grad_(True) for k, v in ad.items()}
    W = {k: v.double() for k, v in state.items()}
    for l in range(target):
        for m in mods:
            path = "transformer.h.%d.%s" % (l, m)
            a = A["base_model.model.%s.lora_A.weight" % path]
            bm = A["base_model.model.%s.lora_B.weight" % path]
            W[path + ".weight"] = W[path + ".weight"] + scale * (bm @ a)
    def pooled(seqs):  # "content": tokens 1.. of hs[target]
        rows = []
        for s in seqs:
            hs, _ = ind_forward(W, cfg, s, upto=target)
            rows.append(hs[target][1:].mean(0))
        return torch.nn.functional.normalize(torch.stack(rows), dim=1)

    b = batches[0]
    s, e = pooled(b["sw"]), pooled(b["en"])
    sim = s @ e.T
    n = sim.shape[0]
    neg = sim.masked_fill(torch.eye(n, dtype=torch.bool), float("-inf")).max(dim=1).values
    loss = torch.relu(0.4 + neg - sim.diag()).mean()
    loss.backward()
    check(abs(float(loss) - float(losses[0])) <= 1e-5,
          "train: first loss %.8f = float64 %.8f" % (float(losses[0]), float(loss)))
    worst = max(maxrel(out["grad." + k], A[k].grad) for k in keys)
    check(worst <= 1e-4, "train: first-step LoRA gradients = float64 autograd (max rel %.3g)" % worst)


def main():
    torch.set_num_threads(2)
    # slopes a Go port computes: float32(pow(float64(float32(base)), k))
    import llama_ref
    ulps = 0
    for n in range(1, 65):
        t = llama_ref.bloom_alibi_slopes(n)
        p = 2 ** math.floor(math.log2(n))
        b1 = float(torch.tensor(2 ** (-(2 ** -(math.log2(p) - 3))), dtype=torch.float32))
        b2 = float(torch.tensor(2 ** (-(2 ** -(math.log2(2 * p) - 3))), dtype=torch.float32))
        go = [b1 ** k for k in range(1, p + 1)] + [b2 ** k for k in range(1, 2 * min(p, n - p), 2)]
        go = torch.tensor(go, dtype=torch.float64).float()
        ulps = max(ulps, int((go.view(torch.int32).long() - t.view(torch.int32).long()).abs().max()))
        closed = torch.tensor(ind_slopes(n), dtype=torch.float64)
        assert float((t.double() - closed).abs().max()) < 1e-6
    check(ulps <= 1, "slopes within %d ulp of float32(pow(float64(float32(base)), k)) for 1..64 heads" % ulps)
    with tempfile.TemporaryDirectory() as tmp:
        check_model(tmp, "bloom-h4", 64, 4, 3, 300, True, False, 1)
        check_model(tmp, "bloom-h6-untied", 48, 6, 3, 300, False, False, 2)
        mdir, cfg, state = check_model(tmp, "bloom-h6-post", 48, 6, 3, 300, True, True, 3)
        mdir, cfg, state = check_model(tmp, "bloom-h5", 40, 5, 3, 300, True, False, 4)
        check_train(tmp, mdir, cfg, state)
    print("FAILED: %d" % len(FAILS) if FAILS else "all ok")
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
