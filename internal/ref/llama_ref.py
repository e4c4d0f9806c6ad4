"""Plain-PyTorch reference of Hugging Face LlamaModel / LlamaForCausalLM.

This re-implements, without the transformers package, exactly what
transformers' modeling_llama.py computes in eager mode:

  * LlamaRMSNorm: x.float(); x * rsqrt(mean(x^2) + eps); weight * x.to(dtype)
  * rotary embeddings with rotate_half, inv_freq from rope_theta and the
    rope_scaling types of transformers' modeling_rope_utils: default,
    linear (_compute_linear_scaling_rope_parameters), dynamic
    (_compute_dynamic_ntk_parameters, recomputed per forward from the
    longest sequence as a freshly loaded model does) and llama3
    (_compute_llama3_parameters); cos/sin computed in f32 and cast to the
    activation dtype
  * grouped-query attention via repeat_kv, eager attention with the
    1/sqrt(head_dim) scale, causal mask, softmax in f32 cast back
  * SwiGLU MLP: down(silu(gate(x)) * up(x))
  * output_hidden_states numbering: hs[0] = embeddings, hs[k] = output of
    decoder layer k-1 for k < L, hs[L] = final norm of layer L-1's output
  * lm_head, or the embedding when tie_word_embeddings

Other families, by config.json's model_type, as their modeling_*.py files:

  * mistral: a sliding window over every layer (key j is visible from
    query i when 0 <= i - j < sliding_window; masking_utils'
    sliding_window_overlay)
  * qwen2: biases on q_proj, k_proj, v_proj; with use_sliding_window the
    window on layers >= max_window_layers (or where layer_types says
    sliding_attention)
  * qwen3: Qwen3RMSNorm of q and k over head_dim per head (q_norm,
    k_norm) before rope; the window as qwen2
  * gemma: GemmaRMSNorm (x.float() normalised, times 1 + w.float(), cast
    back), embeddings times tensor(hidden_size ** 0.5, dtype), the gated
    MLP with gelu_pytorch_tanh (config hidden_activation), tied head
  * gemma2: gemma plus post_attention_layernorm on the attention's output,
    pre_feedforward_layernorm and post_feedforward_layernorm around the
    MLP, scores scaled by query_pre_attn_scalar ** -0.5 and soft-capped
    (attn_logit_softcapping), logits soft-capped (final_logit_softcapping),
    the sliding window on even layers (Gemma2Config's layer_types default)
  * bloom (BloomForCausalLM, modeling_bloom.py), its own forward
    (bloom_forward_padded): LayerNorm with bias everywhere,
    word_embeddings_layernorm on the embeddings, fused query_key_value whose
    output is viewed as [T, n_head, 3, head_dim], ALiBi from
    build_alibi_tensor (slope * ((mask.cumsum - 1) * mask), in f32, cast to
    the compute dtype) added by baddbmm(alibi, q, k^T, beta=1,
    alpha=1/sqrt(head_dim)), causal (and padding) mask of finfo(dtype).min
    added, softmax in f32 cast back, bloom_gelu_forward (tanh GELU with
    0.79788456) in a 4*hidden MLP, biases on every Linear,
    apply_residual_connection_post_layernorm, ln_f, head tied by default.
    Weights may be named "transformer.h.0..." or bare "h.0..." (bigscience
    files); load_model renames bare names to "transformer.".
    hidden states: hs[0] = word_embeddings_layernorm(embeddings), hs[k] =
    output of block k-1 for k < L, hs[L] = ln_f(block L-1's output).
    load_model also stores the resolved sizes under the Llama names
    (hidden_size, num_hidden_layers, num_attention_heads, head_dim).

Published numerics (--quant, --activations). The TLI paper loaded its
models with transformers + bitsandbytes 4-bit and no torch_dtype, so
everything not quantised is float16. With --quant nf4|fp4 or --activations
bf16|fp16 (or a pre-quantised checkpoint) the forward restates that in
float64 with explicit roundings rnd(x, dt) = x.to(float32).to(dt).to(float64)
(torch's casts: round to nearest even, float16 with subnormals; torch itself
casts float64 to float16/bfloat16 through float32, and so does rnd). A is
the activation dtype (--activations); every tensor is float64 holding
A-valued (or bf16-valued) numbers:

  1. storage: every non-quantised tensor (embeddings, norms, lm_head,
     biases) is rnd(., A) once at load. With --quant each decoder-layer
     Linear weight (q, k, v, o, gate, up, down; BLOOM's query_key_value,
     dense, dense_h_to_4h, dense_4h_to_h) is rounded to A, quantised as
     bitsandbytes does (blocks of --blocksize (64) over the flat row-major
     weight, absmax per block in f32, codes by the pivots of
     quant/testdata/bnb_ref.py) and used dequantised as
     Wdeq = rnd(rnd(f32(codebook[code] * absmax), A), bf16). A
     pre-quantised checkpoint (<name>.weight U8 packed two codes a byte,
     high nibble first, .weight.absmax F32, .weight.quant_map F32[16],
     .weight.quant_state.bitsandbytes__nf4|fp4 U8 JSON with quant_type,
     blocksize, dtype, shape) is dequantised the same way with the JSON's
     dtype as the middle rounding; double quantisation (nested_absmax,
     nested_quant_map) is refused.
  2. embedding: rows of the A-rounded table (Gemma: rnd(h * rnd(sqrt(d),
     A), A)).
  3. RMSNorm: r = f32(1 / sqrt(mean(x^2) + eps)) (float64, rounded once to
     f32); out = rnd(w * rnd(x * r, A), A). Gemma: rnd(f32(f32(x * r) *
     f32(1 + w)), A). LayerNorm (BLOOM): rnd(layer_norm(x) in f64, A).
  4. Linear, quantised (bnb Linear4bit, compute dtype bf16):
     rnd(rnd(rnd(x, bf16) @ Wdeq^T + rnd(b, bf16), bf16), A), the sum in
     float64. Not quantised: rnd(x @ W^T + b, A).
  5. rope: cos, sin in f32 as the plain reference, then rnd(., A);
     q' = rnd(rnd(q * cos, A) + rnd(rotate_half(q) * sin, A), A), k alike.
     Qwen3's q_norm / k_norm as 3.
  6. attention (SDPA-like: no rounding inside): from A-valued q, k, v the
     scores (times the scale; Gemma2's soft cap; BLOOM's A-rounded ALiBi
     added), the causal / window / padding mask and the softmax in float64,
     the output rnd(P @ V, A).
  7. MLP: rnd(act(g), A) (SiLU; Gemma's tanh GELU; BLOOM's GELU), then
     rnd(a * u, A).
  8. residual adds: rnd(h + y, A).
  9. final norm as 3; hidden_states[k] are the A-valued tensors; logits
     rnd(h @ head^T, A) (the head never quantised; Gemma2's final soft cap
     rounded after each of its three ops).
With --quant none --activations f32 (the defaults) and a checkpoint without
4-bit tensors nothing of this applies: the plain reference runs unchanged,
bit for bit. test_numerics_ref.py checks all of this.

Importable API (other tests build on it):

    model = load_model(dir, dtype=torch.float32,    # dict-based model
                       quant=None, activations=None, blocksize=64)
                                                    # quant "none"|"nf4"|"fp4",
                                                    # activations "f32"|"bf16"|"fp16"
                                                    # (or a torch dtype)
    hs = forward(model, [[ids...], [ids...]],       # list (per sequence) of
                 quant=None, activations=None)      # lists of [L, d] tensors
                                                    # (under torch.no_grad);
                                                    # quant/activations given:
                                                    # the same checkpoint under
                                                    # those numerics (with_numerics,
                                                    # cached in the model)
    tensors = quantize_checkpoint(dir, quant, activations)
                                                    # what the quantize mode writes
    hs = forward_padded(model, ids[B, L], upto, lengths=None)
                                                    # differentiable; [B, L, d]

Every projection goes through the module-level function linear(x, w), so a
caller may replace llama_ref.linear to add LoRA branches (train_ref.py does);
biases are added outside it (BLOOM's dense(), Qwen2's proj()). Under the
published numerics projections go through n_linear(model, x, path) instead,
which adds the module-level lora_branch(path, x) (None: no LoRA) with PEFT's
roundings; every rnd() there is straight-through for gradients.
    logits = lm_logits(model, hs_last)              # [L, vocab]
    toks = generate_greedy(model, prompt, max_new, eos_ids)

Sequences of a batch are right-padded to the longest; with a causal mask
padding never reaches real tokens, so no padding mask is needed (BLOOM's
forward also takes the real lengths for its alibi/padding mask, as
transformers does with an attention_mask; real tokens' results are the same
without them).
`dtype` is the compute dtype: weights stored in another dtype are converted
(bf16 storage widened to f32 with dtype=float32, as the Go exact mode does).

CLI (the Go tests call it):

    python3 llama_ref.py forward  --model DIR --request REQ.json --out OUT.safetensors [--dtype f32|bf16]
        REQ.json: {"seqs": [[ids]...], "layers": [k...] (optional: all),
                   "logits": true (optional)}
        OUT: float32 tensors "s{i}.h{k}" of shape [len_i, d], and with
             "logits" (when the last layer is asked for) "s{i}.logits" [len_i, vocab]
    python3 llama_ref.py generate --model DIR --prompt 1,2,3 --max-new N [--dtype f32|bf16]
        prints JSON {"tokens": [...], "margins": [...]}: greedy continuation
        (stopping at config eos ids) and each step's top-1 minus top-2 logit
    python3 llama_ref.py quantize --model DIR --quant nf4|fp4 --activations f32|bf16|fp16 --out OUT.safetensors
        OUT: for every decoder-layer Linear <name> (transformers' names,
        BLOOM's with the "transformer." prefix) the tensors bitsandbytes
        saves: "<name>.weight" U8 [ceil(n/2), 1] (two codes a byte, high
        nibble first), "<name>.weight.absmax" F32 [ceil(n/blocksize)],
        "<name>.weight.quant_map" F32 [16],
        "<name>.weight.quant_state.bitsandbytes__<quant>" U8 JSON
        {"quant_type", "blocksize", "dtype" (the activation dtype's torch
        name: float32, bfloat16, float16), "shape" [out, in]}; the codes are
        those of the weight rounded to the activation dtype.

    forward and generate also take
        --quant none|nf4|fp4      (default none) 4-bit quantisation of the
                                  decoder-layer Linears, as 1. above
        --activations f32|bf16|fp16  (default f32) the activation dtype A
        --blocksize N             (default 64) the quantisation block size
    (also quantize's). Anything but the defaults, or a pre-quantised
    checkpoint (found by its quant_state tensors; --quant then must be none
    or its own type), selects the published numerics above; --dtype must
    then stay f32. OUT's tensors are still float32 (holding A values).
"""
import argparse
from fractions import Fraction
import json
import math
import os
import re
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402


# ---------------------------------------------------------------- loading

def load_state(dir):
    """All tensors of a checkpoint folder (single file or index + shards)."""
    idx = os.path.join(dir, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            wm = json.load(f)["weight_map"]
        state = {}
        for shard in sorted(set(wm.values())):
            t, _ = safetensors_io.load(os.path.join(dir, shard))
            state.update(t)
        return state
    t, _ = safetensors_io.load(os.path.join(dir, "model.safetensors"))
    return t


def load_model(dir, dtype=torch.float32, quant=None, activations=None, blocksize=64):
    """Load config.json and weights, converted to dtype.

    quant ("none", "nf4", "fp4") and activations ("f32", "bf16", "fp16")
    select the published numerics (see the module docstring): unless both
    are at their defaults (None/"none" and None/"f32") and the checkpoint
    holds no bitsandbytes 4-bit tensors, the model is prepared by
    prepare_numerics (float64 values, rounded as the options say) and dtype
    must be float32. Otherwise this is the plain reference, unchanged."""
    with open(os.path.join(dir, "config.json")) as f:
        cfg = json.load(f)
    state = load_state(dir)
    num = resolve_numerics(quant, activations, state)
    if num is not None:
        if dtype != torch.float32:
            raise ValueError("--dtype must be f32 with --quant/--activations (the published numerics compute in float64)")
        return prepare_numerics(cfg, state, num[0], num[1], blocksize)
    if cfg.get("model_type") == "bloom":
        return load_bloom(cfg, state, dtype)
    setup_config(cfg)
    w = {k: v.to(dtype) for k, v in state.items()}
    return {"config": cfg, "w": w, "dtype": dtype, "state": state}


def setup_config(cfg):
    """The defaults of a Llama-family config.json (in place)."""
    cfg.setdefault("num_key_value_heads", cfg["num_attention_heads"])
    if not cfg.get("head_dim"):
        cfg["head_dim"] = cfg["hidden_size"] // cfg["num_attention_heads"]
    cfg.setdefault("rms_norm_eps", 1e-6)
    cfg.setdefault("rope_theta", 10000.0)
    cfg.setdefault("max_position_embeddings", 2048)
    mt = cfg.get("model_type", "llama")
    cfg["model_type"] = mt
    cfg.setdefault("tie_word_embeddings", mt in ("gemma", "gemma2"))
    if mt == "gemma2":  # Gemma2Config's defaults
        cfg.setdefault("query_pre_attn_scalar", 256)
        cfg.setdefault("attn_logit_softcapping", 50.0)
        cfg.setdefault("final_logit_softcapping", 30.0)
        cfg.setdefault("sliding_window", 4096)
    if mt in ("qwen2", "qwen3"):
        cfg.setdefault("max_window_layers", 28)
        if not cfg.get("use_sliding_window", False):
            cfg["sliding_window"] = None
    return cfg


# ---------------------------------------------------------------- rope

def default_inv_freq(base, dim):
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))


def rope_inv_freq(cfg, seq_len):
    """inv_freq and attention scaling as transformers' ROPE_INIT_FUNCTIONS
    (plus the dynamic update for a forward of seq_len positions)."""
    dim = cfg["head_dim"]
    base = cfg["rope_theta"]
    rs = cfg.get("rope_scaling") or {}
    kind = rs.get("rope_type", rs.get("type", "default"))
    if kind == "default":
        return default_inv_freq(base, dim), 1.0
    if kind == "linear":
        return default_inv_freq(base, dim) / rs["factor"], 1.0
    if kind == "dynamic":
        maxpos = cfg["max_position_embeddings"]
        factor = rs["factor"]
        sl = seq_len if seq_len > maxpos else maxpos
        base = base * ((factor * sl / maxpos) - (factor - 1)) ** (dim / (dim - 2))
        return default_inv_freq(base, dim), 1.0
    if kind == "llama3":
        inv_freq = default_inv_freq(base, dim)
        factor = rs["factor"]
        low_freq_factor = rs["low_freq_factor"]
        high_freq_factor = rs["high_freq_factor"]
        old_context_len = rs["original_max_position_embeddings"]
        low_freq_wavelen = old_context_len / low_freq_factor
        high_freq_wavelen = old_context_len / high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
        smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
        is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
        inv_freq_llama = torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)
        return inv_freq_llama, 1.0
    raise ValueError("unsupported rope_scaling type %r" % kind)


def rope_cos_sin(cfg, position_ids, dtype):
    """LlamaRotaryEmbedding.forward: position_ids [B, L] -> cos, sin [B, L, head_dim]."""
    seq_len = int(position_ids.max()) + 1
    inv_freq, scaling = rope_inv_freq(cfg, seq_len)
    inv_freq_expanded = inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
    position_ids_expanded = position_ids[:, None, :].float()
    freqs = (inv_freq_expanded.float() @ position_ids_expanded.float()).transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos = emb.cos() * scaling
    sin = emb.sin() * scaling
    return cos.to(dtype), sin.to(dtype)


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin):
    cos = cos.unsqueeze(1)
    sin = sin.unsqueeze(1)
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


# ---------------------------------------------------------------- layers

def rms_norm(x, weight, eps, plus_one=False):
    if plus_one:  # GemmaRMSNorm
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
        return (h * (1.0 + weight.float())).type_as(x)
    input_dtype = x.dtype
    h = x.to(torch.float32)
    variance = h.pow(2).mean(-1, keepdim=True)
    h = h * torch.rsqrt(variance + eps)
    return weight * h.to(input_dtype)


def linear(x, w):
    return torch.nn.functional.linear(x, w)


def repeat_kv(h, n_rep):
    b, nkv, L, hd = h.shape
    if n_rep == 1:
        return h
    h = h[:, :, None, :, :].expand(b, nkv, n_rep, L, hd)
    return h.reshape(b, nkv * n_rep, L, hd)


def proj(w, p, x, name):
    """x @ W.T (+ bias when the checkpoint has one: Qwen2's q, k, v)."""
    y = linear(x, w[p + name + ".weight"])
    b = w.get(p + name + ".bias")
    return y if b is None else y + b


def attention(cfg, w, p, x, cos, sin, mask):
    B, L, _ = x.shape
    hd, nh, nkv = cfg["head_dim"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    eps = cfg["rms_norm_eps"]
    q = proj(w, p, x, "self_attn.q_proj").view(B, L, -1, hd)
    k = proj(w, p, x, "self_attn.k_proj").view(B, L, -1, hd)
    v = proj(w, p, x, "self_attn.v_proj").view(B, L, -1, hd).transpose(1, 2)
    if p + "self_attn.q_norm.weight" in w:  # Qwen3
        q = rms_norm(q, w[p + "self_attn.q_norm.weight"], eps)
        k = rms_norm(k, w[p + "self_attn.k_norm.weight"], eps)
    q, k = q.transpose(1, 2), k.transpose(1, 2)
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    k = repeat_kv(k, nh // nkv)
    v = repeat_kv(v, nh // nkv)
    if cfg["model_type"] == "gemma2":
        scores = torch.matmul(q, k.transpose(2, 3)) * (cfg["query_pre_attn_scalar"] ** -0.5)
        cap = cfg.get("attn_logit_softcapping")
        if cap:
            scores = torch.tanh(scores / cap) * cap
    else:
        scores = torch.matmul(q, k.transpose(2, 3)) * (hd ** -0.5)
    scores = scores + mask
    probs = torch.nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    out = torch.matmul(probs, v).transpose(1, 2).contiguous().reshape(B, L, -1)
    return linear(out, w[p + "self_attn.o_proj.weight"])


def mlp(cfg, w, p, x):
    g = linear(x, w[p + "mlp.gate_proj.weight"])
    u = linear(x, w[p + "mlp.up_proj.weight"])
    if cfg["model_type"] in ("gemma", "gemma2"):
        a = torch.nn.functional.gelu(g, approximate="tanh")
    else:
        a = torch.nn.functional.silu(g)
    return linear(a * u, w[p + "mlp.down_proj.weight"])


def window_of(cfg, i):
    """The sliding window of decoder layer i (None: full attention)."""
    sw = cfg.get("sliding_window")
    if not sw:
        return None
    mt = cfg["model_type"]
    lt = cfg.get("layer_types")
    if mt == "mistral":
        return sw if lt is None or lt[i] == "sliding_attention" else None
    if mt in ("qwen2", "qwen3"):
        if lt is not None:
            return sw if lt[i] == "sliding_attention" else None
        return sw if i >= cfg["max_window_layers"] else None
    if mt == "gemma2":  # layer_types default: sliding on even layers
        if lt is not None:
            return sw if lt[i] == "sliding_attention" else None
        return sw if i % 2 == 0 else None
    return None


def layer_mask(L, dtype, window):
    """Causal mask, plus the sliding window when given: query i sees key j
    when 0 <= i - j < window."""
    i = torch.arange(L)[:, None]
    j = torch.arange(L)[None, :]
    ok = j <= i
    if window is not None:
        ok = ok & (i - j < window)
    m = torch.zeros((L, L), dtype=dtype)
    m[~ok] = torch.finfo(dtype).min
    return m[None, None]


def forward_padded(model, ids, upto=None, lengths=None):
    """ids [B, L] (right-padded). Returns the list of hidden states
    hs[0..upto] (each [B, L, d]); upto defaults to num_hidden_layers.
    lengths (the real length of each row) only matters to BLOOM's
    alibi/padding mask; it never changes real tokens' results."""
    if model.get("numerics") is not None:
        return n_forward_padded(model, ids, upto, lengths)
    if model["config"]["model_type"] == "bloom":
        return bloom_forward_padded(model, ids, upto, lengths)
    cfg, w, dtype = model["config"], model["w"], model["dtype"]
    nl = cfg["num_hidden_layers"]
    if upto is None:
        upto = nl
    B, L = ids.shape
    eps = cfg["rms_norm_eps"]
    gemma = cfg["model_type"] in ("gemma", "gemma2")
    sandwich = cfg["model_type"] == "gemma2"
    h = w["model.embed_tokens.weight"][ids]
    if gemma:
        h = h * torch.tensor(cfg["hidden_size"] ** 0.5, dtype=h.dtype)
    pos = torch.arange(L)[None, :].expand(B, L)
    cos, sin = rope_cos_sin(cfg, pos, dtype)
    hs = [h]
    for i in range(min(upto, nl)):
        p = "model.layers.%d." % i
        mask = layer_mask(L, dtype, window_of(cfg, i))
        r = h
        h = rms_norm(h, w[p + "input_layernorm.weight"], eps, gemma)
        if sandwich:  # Gemma2DecoderLayer: norms after each block too
            h = r + rms_norm(attention(cfg, w, p, h, cos, sin, mask), w[p + "post_attention_layernorm.weight"], eps, True)
            r = h
            h = rms_norm(h, w[p + "pre_feedforward_layernorm.weight"], eps, True)
            h = r + rms_norm(mlp(cfg, w, p, h), w[p + "post_feedforward_layernorm.weight"], eps, True)
            hs.append(h)
            continue
        h = r + attention(cfg, w, p, h, cos, sin, mask)
        r = h
        h = rms_norm(h, w[p + "post_attention_layernorm.weight"], eps, gemma)
        h = r + mlp(cfg, w, p, h)
        hs.append(h)
    if upto >= nl:
        hs[nl] = rms_norm(h, w["model.norm.weight"], eps, gemma)
    return hs


def forward(model, seqs, upto=None, quant=None, activations=None):
    """Hidden states of each sequence: result[s][k] is [len(seqs[s]), d].
    quant / activations (as load_model's; None: the model's own) run the
    same checkpoint under other numerics (with_numerics)."""
    model = with_numerics(model, quant, activations)
    L = max(len(s) for s in seqs)
    ids = torch.zeros((len(seqs), L), dtype=torch.int64)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.int64)
    with torch.no_grad():
        hs = forward_padded(model, ids, upto, [len(s) for s in seqs])
    return [[h[i, :len(s)] for h in hs] for i, s in enumerate(seqs)]


def lm_logits(model, h):
    """Logits of final-normed hidden states h [..., d]."""
    if model.get("numerics") is not None:
        return n_lm_logits(model, h)
    w = model["w"]
    head = w.get("lm_head.weight")
    if head is None or model["config"]["tie_word_embeddings"]:
        if model["config"]["model_type"] == "bloom":
            head = w[BLOOM_PREFIX + "word_embeddings.weight"]
        else:
            head = w["model.embed_tokens.weight"]
    logits = linear(h, head)
    cap = model["config"].get("final_logit_softcapping")
    if model["config"]["model_type"] == "gemma2" and cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def eos_ids(cfg):
    e = cfg.get("eos_token_id")
    if e is None:
        return []
    return e if isinstance(e, list) else [e]


def generate_greedy(model, prompt, max_new, eos=None):
    """Greedy decoding by full recomputation (no cache). Returns (tokens,
    margins): the new tokens (ending with an eos id if one was produced) and
    each step's top-1 minus top-2 logit (small margins mean near-ties)."""
    eos = eos_ids(model["config"]) if eos is None else eos
    seq = list(prompt)
    toks, margins = [], []
    for _ in range(max_new):
        hs = forward(model, [seq])[0]
        with torch.no_grad():
            logits = lm_logits(model, hs[-1][-1]).float()
        top = torch.topk(logits, 2)
        t = int(top.indices[0])
        margins.append(float(top.values[0] - top.values[1]))
        toks.append(t)
        seq.append(t)
        if t in eos:
            break
    return toks, margins


# ---------------------------------------------------------------- bloom

BLOOM_PREFIX = "transformer."


def load_bloom(cfg, state, dtype):
    """BloomConfig semantics: n_embed overrides hidden_size, and
    num_hidden_layers / num_attention_heads (attribute_map) override n_layer
    / n_head; other defaults as BloomConfig.__init__ and PretrainedConfig
    (tie_word_embeddings true, eos_token_id 2). The resolved values are also
    stored under the Llama names (num_hidden_layers, ...). Bare tensor names
    ("h.0...", bigscience files) get the "transformer." prefix."""
    bloom_config(cfg)
    w = {}
    for k, v in bloom_names(state).items():
        w[k] = v.to(dtype)
    return {"config": cfg, "w": w, "dtype": dtype, "state": state}


def bloom_config(cfg):
    """load_bloom's config resolution (in place)."""
    hidden = cfg.get("n_embed")
    if hidden is None:
        hidden = cfg.get("hidden_size", 64)
    nl = cfg.get("num_hidden_layers", cfg.get("n_layer", 2))
    nh = cfg.get("num_attention_heads", cfg.get("n_head", 8))
    if hidden % nh:
        raise ValueError("bloom: hidden_size %d is not divisible by n_head %d" % (hidden, nh))
    cfg["hidden_size"] = hidden
    cfg["n_layer"] = cfg["num_hidden_layers"] = nl
    cfg["n_head"] = cfg["num_attention_heads"] = nh
    cfg["head_dim"] = hidden // nh
    cfg["intermediate_size"] = 4 * hidden
    cfg.setdefault("layer_norm_epsilon", 1e-5)
    cfg.setdefault("apply_residual_connection_post_layernorm", False)
    cfg.setdefault("tie_word_embeddings", True)
    cfg.setdefault("bos_token_id", 1)
    cfg.setdefault("eos_token_id", 2)
    if cfg.get("pretraining_tp", 1) > 1 and cfg.get("slow_but_exact", False):
        raise ValueError("bloom: slow_but_exact with pretraining_tp > 1 is not supported")
    return cfg


def bloom_names(state):
    """state with bare names ("h.0...") given the "transformer." prefix."""
    out = {}
    for k, v in state.items():
        if not k.startswith(BLOOM_PREFIX) and k != "lm_head.weight":
            k = BLOOM_PREFIX + k
        out[k] = v
    return out


def bloom_alibi_slopes(n_head):
    """The per-head slopes of build_alibi_tensor (f32): base =
    f32(2 ** -(8 / p)) for p the largest power of two <= n_head, slopes
    base ** 1..p (f32 pow); for the remaining heads f32(2 ** -(4 / p)) **
    1, 3, 5, ..."""
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


def bloom_alibi(attention_mask, n_head, dtype):
    """build_alibi_tensor: attention_mask [B, L] (f32 0/1) -> alibi
    [B * n_head, 1, L] = slope * key position, computed in f32, cast to
    dtype."""
    batch_size, seq_length = attention_mask.shape
    slopes = bloom_alibi_slopes(n_head)
    arange_tensor = ((attention_mask.cumsum(dim=-1) - 1) * attention_mask)[:, None, :]
    alibi = slopes[..., None] * arange_tensor
    return alibi.reshape(batch_size * n_head, 1, seq_length).to(dtype)


def bloom_mask(attention_mask, dtype):
    """_prepare_4d_causal_attention_mask_with_cache_position without a
    cache: finfo(dtype).min where key j > query i or key j is padding,
    else 0; [B, 1, L, L]."""
    B, L = attention_mask.shape
    i = torch.arange(L)[:, None]
    j = torch.arange(L)[None, :]
    bad = (j > i)[None, None] | (attention_mask[:, None, None, :] == 0)
    m = torch.zeros((B, 1, L, L), dtype=dtype)
    m[bad] = torch.finfo(dtype).min
    return m


def bloom_gelu_forward(x):
    return x * 0.5 * (1.0 + torch.tanh(0.79788456 * x * (1 + 0.044715 * x * x)))


class BloomGeLUFunction(torch.autograd.Function):
    """BloomGelu in training mode (GeLUFunction): forward
    bloom_gelu_forward, backward bloom_gelu_back."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return bloom_gelu_forward(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        tanh_out = torch.tanh(0.79788456 * x * (1 + 0.044715 * x * x))
        ff = 0.5 * x * ((1 - tanh_out * tanh_out) * (0.79788456 + 0.1070322243 * x * x)) + 0.5 * (1 + tanh_out)
        return ff * g


def bloom_gelu(x):
    if torch.is_grad_enabled() and x.requires_grad:
        return BloomGeLUFunction.apply(x)
    return bloom_gelu_forward(x)


def layer_norm(x, w, p, eps):
    """nn.LayerNorm with weight and bias p.weight, p.bias."""
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), w[p + ".weight"], w[p + ".bias"], eps)


def dense(w, p, x):
    """nn.Linear with bias: linear(x, W) + b (the bias outside linear, so a
    LoRA branch adds to the product as PEFT's base_layer(x) + lora does)."""
    return linear(x, w[p + ".weight"]) + w[p + ".bias"]


def bloom_attention(cfg, w, p, x, residual, alibi, mask):
    """BloomAttention.forward (eager, no cache); returns residual + dense."""
    B, L, _ = x.shape
    nh, hd = cfg["n_head"], cfg["head_dim"]
    fused = dense(w, p + "self_attention.query_key_value", x).view(B, L, nh, 3, hd)
    q = fused[..., 0, :].transpose(1, 2).reshape(B * nh, -1, hd)
    k = fused[..., 1, :].transpose(1, 2).reshape(B * nh, -1, hd).transpose(-1, -2)
    v = fused[..., 2, :].transpose(1, 2).reshape(B * nh, -1, hd)
    scores = alibi.baddbmm(batch1=q, batch2=k, beta=1.0, alpha=1.0 / math.sqrt(hd))
    scores = scores.view(B, nh, L, -1) + mask
    probs = torch.nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    ctx = torch.bmm(probs.view(B * nh, L, -1), v)
    ctx = ctx.view(B, nh, L, hd).permute(0, 2, 1, 3).reshape(B, L, nh * hd)
    return residual + dense(w, p + "self_attention.dense", ctx)


def bloom_mlp(w, p, x, residual):
    h = bloom_gelu(dense(w, p + "mlp.dense_h_to_4h", x))
    return residual + dense(w, p + "mlp.dense_4h_to_h", h)


def bloom_forward_padded(model, ids, upto=None, lengths=None):
    """BloomModel with output_hidden_states on right-padded ids [B, L];
    lengths: each row's real length, the attention_mask (default: none, all
    positions real)."""
    cfg, w, dtype = model["config"], model["w"], model["dtype"]
    nl, nh = cfg["n_layer"], cfg["n_head"]
    eps = cfg["layer_norm_epsilon"]
    post = cfg["apply_residual_connection_post_layernorm"]
    if upto is None:
        upto = nl
    B, L = ids.shape
    P = BLOOM_PREFIX
    attn = torch.ones((B, L), dtype=torch.float32)
    if lengths is not None:
        for b, n in enumerate(lengths):
            attn[b, n:] = 0
    alibi = bloom_alibi(attn, nh, dtype)
    mask = bloom_mask(attn, dtype)
    h = layer_norm(w[P + "word_embeddings.weight"][ids], w, P + "word_embeddings_layernorm", eps)
    hs = [h]
    for i in range(min(upto, nl)):
        p = P + "h.%d." % i
        ln = layer_norm(h, w, p + "input_layernorm", eps)
        a = bloom_attention(cfg, w, p, ln, ln if post else h, alibi, mask)
        ln = layer_norm(a, w, p + "post_attention_layernorm", eps)
        h = bloom_mlp(w, p, ln, ln if post else a)
        hs.append(h)
    if upto >= nl:
        hs[nl] = layer_norm(h, w, P + "ln_f", eps)
    return hs


# ---------------------------------------------------------------- published numerics
#
# The TLI paper loaded its models with transformers + bitsandbytes 4-bit
# and no torch_dtype: everything not quantised is float16, every Linear of
# the decoder layers is a bnb Linear4bit computing in bfloat16. What follows
# restates those numerics in float64 with an explicit rounding (rnd) after
# each operation whose output torch would store in a narrower dtype.

F16, BF16, F32, F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
ACTIVATIONS = {"f32": F32, "bf16": BF16, "fp16": F16}
STORAGE_NAMES = {F32: "float32", BF16: "bfloat16", F16: "float16"}
QUANT_KINDS = ("nf4", "fp4")

# Decoder-layer Linear weights, the ones bitsandbytes quantises (lm_head
# and embeddings never are).
LINEAR_RE = re.compile(r"^(model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)"
                       r"|transformer\.h\.\d+\.(self_attention\.(query_key_value|dense)"
                       r"|mlp\.(dense_h_to_4h|dense_4h_to_h)))\.weight$")
QSTATE = ".weight.quant_state.bitsandbytes__"

# A caller (train_ref.py) may set this to f(path, x) -> float64 tensor or
# None: the LoRA branch (before any rounding) of the Linear whose weight is
# path + ".weight", given its float64 input x. Only the published-numerics
# forward uses it; the plain forward goes through linear(x, w).
lora_branch = None


def rnd(x, dt):
    """x (float64) rounded to dt and widened back: torch's casts, round to
    nearest even, float16 with subnormals, overflow to inf. The rounding
    goes through float32 (x.to(float32).to(dt)), which is what torch's own
    float64 -> float16/bfloat16 cast does (c10::Half and c10::BFloat16 are
    built from a float): it differs from one direct rounding only when x
    lies within 2^-24 relative of a dt tie. When x needs a gradient the
    rounding is straight-through: the value is rounded, the gradient is the
    unrounded graph's (x + (r - x) is exactly r in float64, Sterbenz)."""
    if dt == F64:
        return x
    r = x.to(F32).to(dt).to(F64)
    if x.requires_grad and torch.is_grad_enabled():
        return x + (r - x).detach()
    return r


def parse_activations(a):
    if a is None:
        return None
    if isinstance(a, torch.dtype):
        if a not in STORAGE_NAMES:
            raise ValueError("activations %r: want float32, bfloat16 or float16" % a)
        return a
    if a not in ACTIVATIONS:
        raise ValueError("activations %r: want f32, bf16 or fp16" % a)
    return ACTIVATIONS[a]


def parse_quant(q):
    if q is None or q == "none":
        return None
    if q not in QUANT_KINDS:
        raise ValueError("quant %r: want none, nf4 or fp4" % q)
    return q


def prequantised(state):
    """{weight name: kind} of the bitsandbytes 4-bit tensors in state."""
    out = {}
    for k in state:
        i = k.find(QSTATE)
        if i >= 0:
            kind = k[i + len(QSTATE):]
            if kind not in QUANT_KINDS:
                raise ValueError("%s: unknown 4-bit type %r" % (k, kind))
            out[k[:i] + ".weight"] = kind
    return out


def resolve_numerics(quant, activations, state=None):
    """(quant kind or None, activation dtype) of the published numerics, or
    None for the plain reference (no quantisation, f32 activations, no
    pre-quantised tensors in state)."""
    q = parse_quant(quant)
    a = parse_activations(activations)
    pre = prequantised(state) if state is not None else {}
    if q is None and (a is None or a == F32) and not pre:
        return None
    kinds = set(pre.values())
    if q is not None and kinds and kinds != {q}:
        raise ValueError("the checkpoint is pre-quantised as %s, --quant %s asked" % ("/".join(sorted(kinds)), q))
    return q, (F32 if a is None else a)


# bitsandbytes' 4-bit algorithm, vectorised. The constants and the pivot
# logic are those of quant/testdata/bnb_ref.py (which restates the CUDA
# kernels kQuantizeBlockwise / dQuantizeNF4 / dQuantizeFP4 /
# kDequantizeBlockwise); that file runs main() when imported, so they are
# copied here. test_numerics_ref.py checks this copy against it.

def f32_literal(text):
    """The float32 nearest the decimal text, as a C compiler reads a float
    literal."""
    exact = Fraction(text)
    c = np.float32(float(text))
    best = None
    for v in (np.nextafter(c, np.float32(-2)), c, np.nextafter(c, np.float32(2))):
        d = abs(Fraction(float(v)) - exact)
        even = struct.unpack("<I", struct.pack("<f", float(v)))[0] % 2 == 0
        if best is None or d < best[0] or (d == best[0] and even):
            best = (d, float(v))
    return best[1]


NF4_PIVOTS = np.array([f32_literal(p) for p in [
    "-0.8480964004993439", "-0.6106329262256622", "-0.4599952697753906",
    "-0.33967943489551544", "-0.23460740596055984", "-0.13791173323988914",
    "-0.045525018125772476", "0.03979014977812767", "0.1202552504837513",
    "0.2035212516784668", "0.2920137718319893", "0.3893125355243683",
    "0.5016634166240692", "0.6427869200706482", "0.8614784181118011"]], dtype=np.float64)
FP4_MAG_CODES = np.array([0, 1, 6, 7, 4, 5, 2, 3], dtype=np.uint8)
FP4_PIVOTS = np.array([f32_literal(p) for p in ["0.00260417", "0.0859375", "0.20833333", "0.29166667",
                                                "0.4166667", "0.583333", "0.8333333"]], dtype=np.float64)


def codebook(kind):
    """The 16 dequantisation values (float32) the CUDA kernel uses: NF4's
    table, FP4's lut[c & 7] * (1 - 2 * sign); both get_4bit_type's float32
    tensor divided by its abs max."""
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
    if kind == "fp4":
        vals = [vals[i & 7] * (-1.0 if i & 8 else 1.0) for i in range(16)]
    return np.array(vals, dtype=np.float64)


def quant_map(kind):
    """The quant_map tensor transformers saves (FP4's -0 is a Python int's +0)."""
    cb = codebook(kind).astype(np.float32)
    if kind == "fp4":
        cb[8] = 0.0
    return cb


def quantize4(kind, w, blocksize=64):
    """bitsandbytes' blockwise 4-bit quantisation of w (float32 values, any
    shape, taken flat in row-major order): (codes uint8 [n + n % 2], one per
    value plus the padded low nibble of an odd count, absmax float32
    [blocks]). absmax = max |w| of each block; inv = f32(1 / absmax); code
    = the number of the float32 pivots strictly below f32(w * inv) (FP4:
    of |.|, with the sign bit); a block of zeros gives 0 * inf = NaN, code
    0."""
    w = np.ascontiguousarray(np.asarray(w, dtype=np.float32)).reshape(-1)
    n = w.size
    nb = -(-n // blocksize)
    padded = np.zeros(nb * blocksize, dtype=np.float32)
    padded[:n] = w
    blk = padded.reshape(nb, blocksize)
    absmax = np.abs(blk).max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inv = (1.0 / absmax.astype(np.float64)).astype(np.float32)
        s = (blk.astype(np.float64) * inv.astype(np.float64)[:, None]).astype(np.float32).astype(np.float64)
    s = s.reshape(-1)[:n + n % 2]
    nan = np.isnan(s)
    # searchsorted(side="left") counts the pivots strictly below.
    if kind == "nf4":
        codes = np.searchsorted(NF4_PIVOTS, s, side="left").astype(np.uint8)
    else:
        mag = np.searchsorted(FP4_PIVOTS, np.abs(s), side="left")
        codes = FP4_MAG_CODES[np.minimum(mag, 7)] | np.where(s < 0, 8, 0).astype(np.uint8)
    codes[nan] = 0
    return codes, absmax


def pack4(codes):
    """Two codes a byte, the first in the high nibble."""
    c = np.asarray(codes, dtype=np.uint8)
    if c.size % 2:
        c = np.concatenate([c, np.zeros(1, dtype=np.uint8)])
    return (c[0::2] << 4) | c[1::2]


def unpack4(packed, n):
    p = np.asarray(packed, dtype=np.uint8).reshape(-1)
    c = np.empty(2 * p.size, dtype=np.uint8)
    c[0::2] = p >> 4
    c[1::2] = p & 15
    return c[:n]


def dequantize4(kind, codes, absmax, shape, blocksize, storage):
    """The weight bitsandbytes' Linear4bit multiplies with, as float64:
    rnd(rnd(f32(codebook[code] * absmax), storage), bf16), i.e.
    dequantize_4bit's float32 product stored in the weight's dtype before
    quantisation (quant_state.dtype), then .to(the bf16 compute dtype)."""
    n = int(np.prod(shape))
    c = np.asarray(codes)[:n]
    am = np.asarray(absmax, dtype=np.float32).astype(np.float64)
    blk = np.arange(n) // blocksize
    v = (codebook(kind)[c] * am[blk]).astype(np.float32)
    t = torch.from_numpy(v).to(storage).to(BF16).to(F64)
    return t.reshape(shape)


def quantize_weight(kind, w, act, blocksize=64):
    """(codes, absmax, deq) of a Linear weight: w rounded to the activation
    dtype act (the dtype the model was loaded in), then quantised."""
    wa = w.to(F64).to(act).to(F32).numpy()
    codes, absmax = quantize4(kind, wa, blocksize)
    deq = dequantize4(kind, codes, absmax, tuple(w.shape), blocksize, act)
    return codes, absmax, deq


def load_prequantised(state, name, kind):
    """The dequantised float64 weight of name (".weight") stored as
    bitsandbytes saves a Linear4bit (QuantState.as_dict(packed=True))."""
    qs = json.loads(bytes(state[name + ".quant_state.bitsandbytes__" + kind].numpy().astype(np.uint8)).decode("utf-8"))
    if name + ".nested_absmax" in state or name + ".nested_quant_map" in state or "nested_blocksize" in qs:
        raise ValueError("%s: double quantisation (nested_absmax / nested_quant_map) is not supported by the reference yet" % name)
    if qs.get("quant_type") != kind:
        raise ValueError("%s: quant_type %r in a tensor named for %s" % (name, qs.get("quant_type"), kind))
    bs = qs["blocksize"]
    shape = tuple(qs["shape"])
    storage = {v: k for k, v in STORAGE_NAMES.items()}.get(qs["dtype"])
    if storage is None or len(shape) != 2:
        raise ValueError("%s: quant_state dtype %r / shape %r not supported" % (name, qs["dtype"], shape))
    n = shape[0] * shape[1]
    packed = state[name].contiguous().view(torch.uint8).reshape(-1).numpy()
    if packed.size < (n + 1) // 2:
        raise ValueError("%s: %d packed bytes for %d values" % (name, packed.size, n))
    absmax = state[name + ".absmax"]
    if absmax.dtype != F32 or absmax.numel() != -(-n // bs):
        raise ValueError("%s.absmax: %s [%d], want float32 [%d]" % (name, absmax.dtype, absmax.numel(), -(-n // bs)))
    qm = state.get(name + ".quant_map")
    if qm is not None and not np.all(np.abs(qm.float().numpy() - codebook(kind)) <= 1e-6):
        raise ValueError("%s.quant_map is not the %s codebook" % (name, kind))
    codes = unpack4(packed, n)
    return dequantize4(kind, codes, absmax.numpy(), shape, bs, storage)


def prepare_numerics(cfg, state, quant, act, blocksize=64):
    """The model of the published numerics: every tensor as float64; the
    non-quantised ones rounded to act; each decoder-layer Linear weight,
    with quant, rounded to act, quantised and dequantised (dequantize4);
    pre-quantised tensors dequantised with their own quant_state."""
    bloom = cfg.get("model_type") == "bloom"
    if bloom:
        bloom_config(cfg)
        state = bloom_names(state)
    else:
        setup_config(cfg)
    pre = prequantised(state)
    aux = set()
    for name in pre:
        aux.update(k for k in state if k.startswith(name + ".") and k != name)
    w, quantised = {}, {}
    for k, v in state.items():
        if k in aux:
            continue
        if k in pre:
            w[k] = load_prequantised(state, k, pre[k])
            quantised[k[:-len(".weight")]] = pre[k]
        elif quant is not None and LINEAR_RE.match(k):
            w[k] = quantize_weight(quant, v, act, blocksize)[2]
            quantised[k[:-len(".weight")]] = quant
        else:
            w[k] = rnd(v.to(F64), act)
    num = {"act": act, "quant": quant, "quantised": quantised, "blocksize": blocksize}
    return {"config": cfg, "w": w, "dtype": F64, "numerics": num, "state": state}


def with_numerics(model, quant=None, activations=None):
    """model, or the same checkpoint under other numerics (cached): quant and
    activations as load_model's; None keeps the model's own."""
    if quant is None and activations is None:
        return model
    num = model.get("numerics")
    q = parse_quant(quant) if quant is not None else (num["quant"] if num else None)
    a = parse_activations(activations) if activations is not None else (num["act"] if num else F32)
    if num is not None and q == num["quant"] and a == num["act"]:
        return model
    if num is None and q is None and a == F32 and model["dtype"] == F32:
        return model
    cache = model.setdefault("derived", {})
    key = (q, a)
    if key not in cache:
        cfg = json.loads(json.dumps({k: v for k, v in model["config"].items()}))
        target = resolve_numerics(q, a, model["state"])
        if target is None:
            if cfg.get("model_type") == "bloom":
                cache[key] = load_bloom(cfg, model["state"], F32)
            else:
                cache[key] = {"config": setup_config(cfg), "w": {k: v.to(F32) for k, v in model["state"].items()},
                              "dtype": F32, "state": model["state"]}
        else:
            bs = num["blocksize"] if num else 64
            cache[key] = prepare_numerics(cfg, model["state"], target[0], target[1], bs)
    return cache[key]


def n_linear(m, x, path):
    """A Linear (weight path.weight, bias path.bias when present) of the
    published numerics. bitsandbytes Linear4bit (quantised weight, compute
    dtype bf16): rnd(rnd(rnd(x, bf16) @ Wdeq^T + rnd(b, bf16), bf16), A).
    nn.Linear: rnd(x @ W^T + b, A). A LoRA branch (lora_branch) is added as
    PEFT does: on a 4-bit base rnd(out + rnd(lora, A), A) (the lora output
    cast to the input dtype, then added in A); on a plain base
    rnd(out + lora, A) (added in f32, cast back)."""
    num = m["numerics"]
    A = num["act"]
    W = m["w"][path + ".weight"]
    b = m["w"].get(path + ".bias")
    lo = lora_branch(path, x) if lora_branch is not None else None
    if path in num["quantised"]:
        y = torch.matmul(rnd(x, BF16), W.T)
        if b is not None:
            y = y + rnd(b, BF16)
        y = rnd(rnd(y, BF16), A)
        if lo is not None:
            y = rnd(y + rnd(lo, A), A)
        return y
    y = torch.matmul(x, W.T)
    if b is not None:
        y = y + b
    y = rnd(y, A)
    if lo is not None:
        y = rnd(y + lo, A)
    return y


def n_rms_norm(x, weight, eps, A, plus_one=False):
    """LlamaRMSNorm on A-valued x: r = f32(1 / sqrt(mean(x^2) + eps)) (the
    float64 value rounded once to float32), n = rnd(x * r, A), out =
    rnd(weight * n, A). GemmaRMSNorm: rnd(f32(f32(x * r) * f32(1 + w)), A)."""
    r = rnd(1.0 / torch.sqrt((x * x).mean(-1, keepdim=True) + eps), F32)
    if plus_one:
        n = rnd(x * r, F32)
        return rnd(rnd(n * rnd(1.0 + weight, F32), F32), A)
    return rnd(weight * rnd(x * r, A), A)


def n_rope(x, cos, sin, A):
    """rnd(rnd(x * cos, A) + rnd(rotate_half(x) * sin, A), A); cos, sin
    A-valued [B, L, hd]."""
    cos = cos.unsqueeze(1)
    sin = sin.unsqueeze(1)
    return rnd(rnd(x * cos, A) + rnd(rotate_half(x) * sin, A), A)


def n_attend(q, k, v, scale, ok, A, bias=None, cap=None):
    """Attention of A-valued q, k, v [B, H, L, hd] as SDPA computes it,
    without intermediate roundings: scores, mask (ok [.., L, L]: key
    visible), softmax and P @ V in float64, the output rounded to A.
    bias (ALiBi) is added to the scaled scores; cap soft-caps them."""
    s = torch.matmul(q, k.transpose(-1, -2)) * scale
    if cap:
        s = torch.tanh(s / cap) * cap
    if bias is not None:
        s = s + bias
    s = s.masked_fill(~ok, float("-inf"))
    p = torch.softmax(s, dim=-1)
    return rnd(torch.matmul(p, v), A)


def n_attention(cfg, m, p, x, cos, sin, ok):
    A = m["numerics"]["act"]
    w = m["w"]
    B, L, _ = x.shape
    hd, nh, nkv = cfg["head_dim"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    eps = cfg["rms_norm_eps"]
    q = n_linear(m, x, p + "self_attn.q_proj").view(B, L, -1, hd)
    k = n_linear(m, x, p + "self_attn.k_proj").view(B, L, -1, hd)
    v = n_linear(m, x, p + "self_attn.v_proj").view(B, L, -1, hd).transpose(1, 2)
    if p + "self_attn.q_norm.weight" in w:  # Qwen3
        q = n_rms_norm(q, w[p + "self_attn.q_norm.weight"], eps, A)
        k = n_rms_norm(k, w[p + "self_attn.k_norm.weight"], eps, A)
    q, k = q.transpose(1, 2), k.transpose(1, 2)
    q, k = n_rope(q, cos, sin, A), n_rope(k, cos, sin, A)
    k = repeat_kv(k, nh // nkv)
    v = repeat_kv(v, nh // nkv)
    if cfg["model_type"] == "gemma2":
        out = n_attend(q, k, v, cfg["query_pre_attn_scalar"] ** -0.5, ok, A, cap=cfg.get("attn_logit_softcapping"))
    else:
        out = n_attend(q, k, v, hd ** -0.5, ok, A)
    out = out.transpose(1, 2).contiguous().reshape(B, L, -1)
    return n_linear(m, out, p + "self_attn.o_proj")


def n_mlp(cfg, m, p, x):
    A = m["numerics"]["act"]
    g = n_linear(m, x, p + "mlp.gate_proj")
    u = n_linear(m, x, p + "mlp.up_proj")
    if cfg["model_type"] in ("gemma", "gemma2"):
        a = rnd(torch.nn.functional.gelu(g, approximate="tanh"), A)
    else:
        a = rnd(torch.nn.functional.silu(g), A)
    return n_linear(m, rnd(a * u, A), p + "mlp.down_proj")


def visible(L, window=None):
    """[1, 1, L, L] bool: key j visible from query i (causal, window)."""
    i = torch.arange(L)[:, None]
    j = torch.arange(L)[None, :]
    ok = j <= i
    if window is not None:
        ok = ok & (i - j < window)
    return ok[None, None]


def n_forward_padded(model, ids, upto=None, lengths=None):
    """forward_padded under the published numerics (float64 tensors holding
    A-valued hidden states)."""
    cfg, w = model["config"], model["w"]
    if cfg["model_type"] == "bloom":
        return n_bloom_forward_padded(model, ids, upto, lengths)
    A = model["numerics"]["act"]
    nl = cfg["num_hidden_layers"]
    if upto is None:
        upto = nl
    B, L = ids.shape
    eps = cfg["rms_norm_eps"]
    gemma = cfg["model_type"] in ("gemma", "gemma2")
    sandwich = cfg["model_type"] == "gemma2"
    h = w["model.embed_tokens.weight"][ids]
    if gemma:
        h = rnd(h * rnd(torch.tensor(cfg["hidden_size"] ** 0.5, dtype=F64), A), A)
    pos = torch.arange(L)[None, :].expand(B, L)
    cos, sin = rope_cos_sin(cfg, pos, F32)
    cos, sin = rnd(cos.to(F64), A), rnd(sin.to(F64), A)
    hs = [h]
    for i in range(min(upto, nl)):
        p = "model.layers.%d." % i
        ok = visible(L, window_of(cfg, i))
        r = h
        h = n_rms_norm(h, w[p + "input_layernorm.weight"], eps, A, gemma)
        if sandwich:
            a = n_attention(cfg, model, p, h, cos, sin, ok)
            h = rnd(r + n_rms_norm(a, w[p + "post_attention_layernorm.weight"], eps, A, True), A)
            r = h
            h = n_rms_norm(h, w[p + "pre_feedforward_layernorm.weight"], eps, A, True)
            f = n_mlp(cfg, model, p, h)
            h = rnd(r + n_rms_norm(f, w[p + "post_feedforward_layernorm.weight"], eps, A, True), A)
            hs.append(h)
            continue
        h = rnd(r + n_attention(cfg, model, p, h, cos, sin, ok), A)
        r = h
        h = n_rms_norm(h, w[p + "post_attention_layernorm.weight"], eps, A, gemma)
        h = rnd(r + n_mlp(cfg, model, p, h), A)
        hs.append(h)
    if upto >= nl:
        hs[nl] = n_rms_norm(h, w["model.norm.weight"], eps, A, gemma)
    return hs


def n_lm_logits(model, h):
    """rnd(h @ head^T, A) (the head is never quantised); Gemma2's soft cap
    rounded after each of its three operations."""
    A = model["numerics"]["act"]
    w, cfg = model["w"], model["config"]
    head = w.get("lm_head.weight")
    if head is None or cfg["tie_word_embeddings"]:
        head = w[BLOOM_PREFIX + "word_embeddings.weight"] if cfg["model_type"] == "bloom" else w["model.embed_tokens.weight"]
    logits = rnd(torch.matmul(h, head.T), A)
    cap = cfg.get("final_logit_softcapping")
    if cfg["model_type"] == "gemma2" and cap:
        logits = rnd(rnd(torch.tanh(rnd(logits / cap, A)), A) * cap, A)
    return logits


def n_layer_norm(x, w, p, eps, A):
    """nn.LayerNorm in float64, the output rounded to A."""
    return rnd(torch.nn.functional.layer_norm(x, (x.shape[-1],), w[p + ".weight"], w[p + ".bias"], eps), A)


def n_bloom_forward_padded(model, ids, upto=None, lengths=None):
    """bloom_forward_padded under the published numerics: ALiBi computed in
    f32 and rounded to A, added to the scaled scores inside the float64
    attention; LayerNorm, GELU, residual adds rounded to A."""
    cfg, w = model["config"], model["w"]
    A = model["numerics"]["act"]
    nl, nh, hd = cfg["n_layer"], cfg["n_head"], cfg["head_dim"]
    eps = cfg["layer_norm_epsilon"]
    post = cfg["apply_residual_connection_post_layernorm"]
    if upto is None:
        upto = nl
    B, L = ids.shape
    P = BLOOM_PREFIX
    attn = torch.ones((B, L), dtype=torch.float32)
    if lengths is not None:
        for b, n in enumerate(lengths):
            attn[b, n:] = 0
    alibi = rnd(bloom_alibi(attn, nh, F32).to(F64), A).view(B, nh, 1, L)
    ok = visible(L) & (attn[:, None, None, :] != 0)
    h = n_layer_norm(w[P + "word_embeddings.weight"][ids], w, P + "word_embeddings_layernorm", eps, A)
    hs = [h]
    for i in range(min(upto, nl)):
        p = P + "h.%d." % i
        ln = n_layer_norm(h, w, p + "input_layernorm", eps, A)
        fused = n_linear(model, ln, p + "self_attention.query_key_value").view(B, L, nh, 3, hd)
        q = fused[..., 0, :].transpose(1, 2)
        k = fused[..., 1, :].transpose(1, 2)
        v = fused[..., 2, :].transpose(1, 2)
        ctx = n_attend(q, k, v, 1.0 / math.sqrt(hd), ok, A, bias=alibi)
        ctx = ctx.transpose(1, 2).reshape(B, L, nh * hd)
        a = rnd((ln if post else h) + n_linear(model, ctx, p + "self_attention.dense"), A)
        ln = n_layer_norm(a, w, p + "post_attention_layernorm", eps, A)
        g = rnd(bloom_gelu(n_linear(model, ln, p + "mlp.dense_h_to_4h")), A)
        h = rnd((ln if post else a) + n_linear(model, g, p + "mlp.dense_4h_to_h"), A)
        hs.append(h)
    if upto >= nl:
        hs[nl] = n_layer_norm(h, w, P + "ln_f", eps, A)
    return hs


def quantize_checkpoint(dir, quant, activations, blocksize=64):
    """The tensors bitsandbytes/transformers save for every decoder-layer
    Linear of the checkpoint in dir, quantised as load_model(quant=,
    activations=) does: name.weight U8 [packed, 1], name.weight.absmax F32,
    name.weight.quant_map F32 [16], name.weight.quant_state.bitsandbytes__<q>
    U8 JSON (quant_type, blocksize, dtype = the activation dtype, shape)."""
    q = parse_quant(quant)
    act = parse_activations(activations) or F32
    if q is None:
        raise ValueError("quantize needs --quant nf4 or fp4")
    with open(os.path.join(dir, "config.json")) as f:
        cfg = json.load(f)
    state = load_state(dir)
    if prequantised(state):
        raise ValueError("%s is already quantised" % dir)
    if cfg.get("model_type") == "bloom":
        state = bloom_names(state)
    out = {}
    for k, v in state.items():
        if not LINEAR_RE.match(k):
            continue
        codes, absmax, _ = quantize_weight(q, v, act, blocksize)
        packed = pack4(codes)
        js = json.dumps({"quant_type": q, "blocksize": blocksize, "dtype": STORAGE_NAMES[act], "shape": list(v.shape)})
        out[k] = torch.from_numpy(packed.reshape(-1, 1).copy())
        out[k + ".absmax"] = torch.from_numpy(absmax.copy())
        out[k + ".quant_map"] = torch.from_numpy(quant_map(q))
        out[k + ".quant_state.bitsandbytes__" + q] = torch.tensor(list(js.encode("utf-8")), dtype=torch.uint8)
    return out


# ---------------------------------------------------------------- CLI

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["forward", "generate", "quantize"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    ap.add_argument("--quant", default="none", choices=["none", "nf4", "fp4"])
    ap.add_argument("--activations", default="f32", choices=["f32", "bf16", "fp16"])
    ap.add_argument("--blocksize", type=int, default=64)
    ap.add_argument("--request")
    ap.add_argument("--out")
    ap.add_argument("--prompt")
    ap.add_argument("--max-new", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.mode == "quantize":
        if not a.out:
            ap.error("quantize needs --out")
        safetensors_io.save(a.out, quantize_checkpoint(a.model, a.quant, a.activations, a.blocksize))
        return
    dtype = torch.float32 if a.dtype == "f32" else torch.bfloat16
    model = load_model(a.model, dtype, quant=a.quant, activations=a.activations, blocksize=a.blocksize)
    if a.mode == "forward":
        with open(a.request) as f:
            req = json.load(f)
        layers = req.get("layers")
        nl = model["config"]["num_hidden_layers"]
        if layers is None:
            layers = list(range(nl + 1))
        hs = forward(model, req["seqs"], upto=max(layers))
        out = {}
        for i, per in enumerate(hs):
            for k in layers:
                out["s%d.h%d" % (i, k)] = per[k].float().contiguous()
            if req.get("logits") and max(layers) == nl:
                with torch.no_grad():
                    out["s%d.logits" % i] = lm_logits(model, per[nl]).float().contiguous()
        safetensors_io.save(a.out, out)
    else:
        prompt = [int(x) for x in a.prompt.split(",") if x]
        with torch.no_grad():
            toks, margins = generate_greedy(model, prompt, a.max_new)
        print(json.dumps({"tokens": toks, "margins": margins}))


if __name__ == "__main__":
    main()
