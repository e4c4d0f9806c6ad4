"""Plain-PyTorch reference of TLI LoRA training (no transformers/peft).

Builds on llama_ref.py (Hugging Face Llama semantics) and adds what PEFT and
the TLI training script do:

  * LoRA on chosen Linear layers as PEFT's lora.Linear computes it:
    result = base(x) + lora_B(lora_A(dropout(x))) * (lora_alpha / r)
    (dropout must be 0 here: masks cannot match another RNG)
  * the adapter read from PEFT files (adapter_config.json,
    adapter_model.safetensors with base_model.model.<module>.lora_A.weight
    ...): <module> is the base weight's name less ".weight", e.g.
    model.layers.{i}.self_attn.q_proj (Llama family) or
    transformer.h.{i}.self_attention.query_key_value (BLOOM: also dense,
    mlp.dense_h_to_4h, mlp.dense_4h_to_h); biases stay frozen
  * forward up to hidden_states[target_layer], mean pooling over each
    word's tokens (all tokens including BOS, or content tokens only),
    F.normalize, sim = S @ E.T, hardest in-batch negative
    (masked_fill(eye, -inf).max(dim=1)), loss = relu(margin + neg - pos).mean()
  * torch.optim.AdamW (defaults: betas 0.9/0.999, eps 1e-8, weight_decay
    0.01) with transformers' get_linear_schedule_with_warmup as a LambdaLR

CLI (the Go parity test calls it):

    python3 train_ref.py --model DIR --adapter DIR --request REQ.json --out OUT.safetensors
        REQ.json: {"batches": [{"sw": [[ids]...], "en": [[ids]...]}...],
                   "target_layer": 2, "margin": 0.4, "lr": 2e-4,
                   "warmup": 50, "total": 1000, "steps": 20,
                   "pool": "all" | "content"}
        step k uses batches[k % len(batches)].
        OUT: "losses" [steps] (f32), "grad.<key>" the gradients of the first
        step, and "<key>" the adapter weights after the last step (f32).

    Also: --quant none|nf4|fp4 (default none), --activations f32|bf16|fp16
    (default f32), --blocksize N (default 64): the base model under
    llama_ref.py's published numerics (see its docstring; the defaults are
    the plain reference, bit for bit). The LoRA branch of an adapted Linear
    is then lora = (dropout(x) @ A^T @ B^T) * scale in float64 from the f32
    adapter values A, B (x the Linear's float64, A-valued input), added as
    PEFT does: on a 4-bit base (bnb Linear4bit LoRA, output cast to the
    input dtype) out = rnd(base_out + rnd(lora, A), A); on a plain base
    (lora.Linear, result cast back) out = rnd(base_out + lora, A). Every
    rnd() is straight-through (x + (rnd(x) - x).detach()): the losses are
    those of the rounded forward, the gradients those of the unrounded
    graph. Pooling, normalize, similarity and loss are float64; the adapter,
    its gradients and AdamW stay float32.
"""
import argparse
import json
import os
import re
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref  # noqa: E402
import safetensors_io  # noqa: E402

# base_model.model.<path>.lora_A.weight, <path> = <...>.<layer>.<part>.<module>
PEFT_KEY = re.compile(r"^base_model\.model\.(.+\.(\d+)\.[^.]+\.([^.]+))\.(lora_A|lora_B)(?:\.default)?\.weight$")


def peft_key(path, ab):
    return "base_model.model.%s.%s.weight" % (path, ab)


def load_adapter(dir):
    """(config dict, {(layer, module, path): (A, B)}) with A, B trainable f32
    leaves; path is the adapted weight's name less ".weight"."""
    with open(os.path.join(dir, "adapter_config.json")) as f:
        cfg = json.load(f)
    tensors, _ = safetensors_io.load(os.path.join(dir, "adapter_model.safetensors"))
    ad = {}
    for name, t in tensors.items():
        m = PEFT_KEY.match(name)
        if m is None:
            raise ValueError("unexpected adapter tensor %r" % name)
        path, layer, module, ab = m.group(1), int(m.group(2)), m.group(3), m.group(4)
        a, b = ad.get((layer, module, path), (None, None))
        t = t.float().clone().requires_grad_(True)
        if ab == "lora_A":
            a = t
        else:
            b = t
        ad[(layer, module, path)] = (a, b)
    return cfg, ad


def install_lora(model, adapters, scale, dropout):
    """Route llama_ref.linear through the LoRA branch for adapted weights
    (plain reference), or set llama_ref.lora_branch (published numerics:
    the branch (dropout(x) @ A^T @ B^T) * scale in float64 from the f32
    adapter values, which llama_ref.n_linear adds to the base output with
    PEFT's roundings)."""
    if model.get("numerics") is not None:
        by_path = {path: ab for (layer, module, path), ab in adapters.items()}

        def branch(path, x):
            ab = by_path.get(path)
            if ab is None:
                return None
            a, b = ab
            if dropout:
                x = F.dropout(x, dropout)
            return torch.matmul(torch.matmul(x, a.to(torch.float64).T), b.to(torch.float64).T) * scale

        llama_ref.lora_branch = branch
        return
    by_weight = {}
    for (layer, module, path), (a, b) in adapters.items():
        w = model["w"][path + ".weight"]
        by_weight[id(w)] = (a, b)

    def linear(x, w):
        result = F.linear(x, w)
        ab = by_weight.get(id(w))
        if ab is None:
            return result
        a, b = ab
        return result + F.linear(F.linear(F.dropout(x, dropout), a), b) * scale

    llama_ref.linear = linear


def pooled(model, seqs, target, pool):
    """Mean-pooled hidden_states[target] of each sequence, L2-normalised."""
    L = max(len(s) for s in seqs)
    ids = torch.zeros((len(seqs), L), dtype=torch.int64)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.int64)
    h = llama_ref.forward_padded(model, ids, upto=target, lengths=[len(s) for s in seqs])[target]
    start = 1 if pool == "content" else 0
    rows = [h[i, start:len(s)].mean(dim=0) for i, s in enumerate(seqs)]
    return F.normalize(torch.stack(rows), p=2, dim=1, eps=1e-12)


def tli_loss(s, e, margin):
    sim = s @ e.T
    n = sim.shape[0]
    pos = sim.diag()
    neg = sim.masked_fill(torch.eye(n, dtype=torch.bool), float("-inf")).max(dim=1).values
    return F.relu(margin + neg - pos).mean()


def linear_schedule(warmup, total):
    def f(step):
        if step < warmup:
            return float(step) / float(max(1, warmup))
        return max(0.0, float(total - step) / float(max(1, total - warmup)))
    return f


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--request", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quant", default="none", choices=["none", "nf4", "fp4"])
    ap.add_argument("--activations", default="f32", choices=["f32", "bf16", "fp16"])
    ap.add_argument("--blocksize", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with open(a.request) as f:
        req = json.load(f)
    model = llama_ref.load_model(a.model, torch.float32, quant=a.quant, activations=a.activations,
                                 blocksize=a.blocksize)
    cfg, adapters = load_adapter(a.adapter)
    r, alpha = cfg["r"], cfg["lora_alpha"]
    scale = alpha / (r ** 0.5) if cfg.get("use_rslora") else alpha / r
    install_lora(model, adapters, scale, 0.0)
    keys = sorted(adapters)
    params = []
    for k in keys:
        params += list(adapters[k])
    opt = torch.optim.AdamW(params, lr=req["lr"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_schedule(req["warmup"], req["total"]))
    losses, out = [], {}
    for step in range(req["steps"]):
        batch = req["batches"][step % len(req["batches"])]
        opt.zero_grad(set_to_none=True)
        s = pooled(model, batch["sw"], req["target_layer"], req["pool"])
        e = pooled(model, batch["en"], req["target_layer"], req["pool"])
        loss = tli_loss(s, e, req["margin"])
        loss.backward()
        losses.append(float(loss))
        if step == 0:
            for k in keys:
                A, B = adapters[k]
                if A.grad is not None:
                    out["grad." + peft_key(k[2], "lora_A")] = A.grad.clone()
                    out["grad." + peft_key(k[2], "lora_B")] = B.grad.clone()
        opt.step()
        sched.step()
    for k in keys:
        A, B = adapters[k]
        out[peft_key(k[2], "lora_A")] = A.detach()
        out[peft_key(k[2], "lora_B")] = B.detach()
    out["losses"] = torch.tensor(losses, dtype=torch.float32)
    safetensors_io.save(a.out, out)


if __name__ == "__main__":
    main()
