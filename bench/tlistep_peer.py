"""PyTorch peer of BenchmarkTLIStep: one TLI training step on a Llama layer
stack, as the published scripts run it with transformers + PEFT, written in
plain torch (Hugging Face eager semantics) so that it needs no downloads.

    /usr/bin/python3 bench/tlistep_peer.py --dtype f32|bf16 --layers 2 --steps 3

Shape: Llama 3 8B layers (d 4096, 32/8 heads, ffn 14336), LoRA r=16 on
q_proj and v_proj, 8 pairs (16 words) of 5 tokens each, forward to
hidden_states[layers], mean pooling, L2 normalisation, hardest-negative
triplet loss, backward, AdamW. Prints JSON: {"seconds": [per step], "median": s}.
Weights are random (timing only); torch.set_num_threads(2).
"""
import argparse
import json
import math
import time

import torch
import torch.nn.functional as F


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtype", default="f32")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dt = torch.float32 if args.dtype == "f32" else torch.bfloat16
    d, H, KV, hd, ffn, V, r = 4096, 32, 8, 128, 14336, 4096, 16
    def w(o, i):
        return (torch.randn(o, i) * (1 / math.sqrt(i))).to(dt)
    emb = torch.randn(V, d).to(dt)
    layers = []
    for _ in range(args.layers):
        layers.append(dict(q=w(H * hd, d), k=w(KV * hd, d), v=w(KV * hd, d), o=w(d, H * hd),
                           g=w(ffn, d), u=w(ffn, d), dn=w(d, ffn),
                           n1=torch.ones(d, dtype=dt), n2=torch.ones(d, dtype=dt)))
    lora = []
    for _ in range(args.layers):
        for out in (H * hd, KV * hd):
            a = (torch.rand(r, d) * 2 - 1) / math.sqrt(d)
            b = torch.randn(out, r) * 0.01
            lora.append((a.to(dt).requires_grad_(True), b.to(dt).requires_grad_(True)))
    opt = torch.optim.AdamW([p for ab in lora for p in ab], lr=2e-4)
    inv = 1.0 / (500000.0 ** (torch.arange(0, hd, 2).float() / hd))

    def rms(x, g):
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + 1e-5)
        return g * x32.to(x.dtype)

    def rot(x):
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return torch.cat((-x2, x1), dim=-1)

    n, T = 2 * args.pairs, args.tokens
    ids = torch.randint(0, V, (n, T))
    pos = torch.arange(T).float()
    fr = torch.outer(pos, inv)
    e = torch.cat((fr, fr), -1)
    cos, sin = e.cos().to(dt), e.sin().to(dt)
    mask = torch.full((T, T), float("-inf")).triu(1)
    scale = 32 / 16  # alpha / r

    def step():
        x = emb[ids]
        for li, L in enumerate(layers):
            h = rms(x, L["n1"])
            qa, qb = lora[2 * li]
            va, vb = lora[2 * li + 1]
            q = h @ L["q"].T + (h @ qa.T) @ qb.T * scale
            k = h @ L["k"].T
            v = h @ L["v"].T + (h @ va.T) @ vb.T * scale
            q = q.view(n, T, H, hd).transpose(1, 2)
            k = k.view(n, T, KV, hd).transpose(1, 2)
            v = v.view(n, T, KV, hd).transpose(1, 2)
            q = q * cos + rot(q) * sin
            k = k * cos + rot(k) * sin
            k = k.repeat_interleave(H // KV, dim=1)
            v = v.repeat_interleave(H // KV, dim=1)
            att = (q @ k.transpose(2, 3)) / math.sqrt(hd) + mask.to(q.dtype)
            att = F.softmax(att.float(), dim=-1).to(q.dtype)
            o = (att @ v).transpose(1, 2).reshape(n, T, H * hd)
            x = x + o @ L["o"].T
            h = rms(x, L["n2"])
            x = x + (F.silu(h @ L["g"].T) * (h @ L["u"].T)) @ L["dn"].T
        p = F.normalize(x.float().mean(1), dim=-1)
        s, en = p[: args.pairs], p[args.pairs:]
        sim = s @ en.T
        pos_ = sim.diag()
        neg = sim.masked_fill(torch.eye(args.pairs, dtype=torch.bool), float("-inf")).max(1).values
        loss = F.relu(0.4 + neg - pos_).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    step()  # warm-up
    secs = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        secs.append(time.perf_counter() - t0)
    secs.sort()
    print(json.dumps({"seconds": secs, "median": secs[len(secs) // 2], "torch": torch.__version__}))


if __name__ == "__main__":
    main()
