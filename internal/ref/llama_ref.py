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

Importable API (other tests build on it):

    model = load_model(dir, dtype=torch.float32)   # dict-based model
    hs = forward(model, [[ids...], [ids...]])       # list (per sequence) of
                                                    # lists of [L, d] tensors
                                                    # (under torch.no_grad)
    hs = forward_padded(model, ids[B, L], upto, lengths=None)
                                                    # differentiable; [B, L, d]

Every projection goes through the module-level function linear(x, w), so a
caller may replace llama_ref.linear to add LoRA branches (train_ref.py does);
biases are added outside it (BLOOM's dense(), Qwen2's proj()).
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
"""
import argparse
import json
import math
import os
import sys

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


def load_model(dir, dtype=torch.float32):
    """Load config.json and weights, converted to dtype."""
    with open(os.path.join(dir, "config.json")) as f:
        cfg = json.load(f)
    if cfg.get("model_type") == "bloom":
        return load_bloom(cfg, load_state(dir), dtype)
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
    state = {k: v.to(dtype) for k, v in load_state(dir).items()}
    return {"config": cfg, "w": state, "dtype": dtype}


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


def forward(model, seqs, upto=None):
    """Hidden states of each sequence: result[s][k] is [len(seqs[s]), d]."""
    L = max(len(s) for s in seqs)
    ids = torch.zeros((len(seqs), L), dtype=torch.int64)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.int64)
    with torch.no_grad():
        hs = forward_padded(model, ids, upto, [len(s) for s in seqs])
    return [[h[i, :len(s)] for h in hs] for i, s in enumerate(seqs)]


def lm_logits(model, h):
    """Logits of final-normed hidden states h [..., d]."""
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
    w = {}
    for k, v in state.items():
        if not k.startswith(BLOOM_PREFIX) and k != "lm_head.weight":
            k = BLOOM_PREFIX + k
        w[k] = v.to(dtype)
    return {"config": cfg, "w": w, "dtype": dtype}


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


# ---------------------------------------------------------------- CLI

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["forward", "generate"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    ap.add_argument("--request")
    ap.add_argument("--out")
    ap.add_argument("--prompt")
    ap.add_argument("--max-new", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dtype = torch.float32 if a.dtype == "f32" else torch.bfloat16
    model = load_model(a.model, dtype)
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
