package llama

import (
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/tli-project/tli/engine"
)

// This file is the forward pass, written llama2.c style: embed, then for
// each decoder layer an attention block and an MLP block added to the
// residual stream h [T×d], then the final norm. Every token of the packed
// batch goes through layer i before any goes through layer i+1, so each
// weight is read once per pass.

// mlpChunk bounds the rows of the MLP's [rows × ffn] buffers, so a batch of
// many thousands of tokens does not need gigabytes of scratch (512 rows of
// the 8B shape: 2 × 29 MB). Each chunk reads the three MLP weights once, so
// larger chunks read them less often; 512 rows keep a 512-token batch in one
// chunk.
const mlpChunk = 512

// scratch holds the per-pass buffers of the forward.
type scratch struct {
	h, x, q, k, v, att []float32 // [T×d] ×2, [T×qd], [T×kd], [T×kd], [T×qd]
	gate, up           []float32 // [mlpChunk×ffn]
	qkv                []float32 // [T×3qd], BLOOM's fused projection
}

// scratchPool keeps the buffers of finished passes: a 512-token pass of the
// 8B shape needs about 90 MB of them, which would otherwise be allocated,
// zeroed and collected on every call.
var scratchPool sync.Pool

// getScratch returns buffers for a pass of T tokens, reusing pooled ones
// that are large enough; give them back with putScratch.
func (m *Model) getScratch(T int) *scratch {
	c := m.Config
	qd, kd := c.NumHeads*c.HeadDim, c.NumKVHeads*c.HeadDim
	r := min(T, mlpChunk)
	s, _ := scratchPool.Get().(*scratch)
	if s == nil {
		s = new(scratch)
	}
	grow := func(b *[]float32, n int) {
		if cap(*b) < n {
			*b = make([]float32, n)
		}
		*b = (*b)[:n]
	}
	grow(&s.h, T*c.HiddenSize)
	grow(&s.x, T*c.HiddenSize)
	grow(&s.q, T*qd)
	grow(&s.k, T*kd)
	grow(&s.v, T*kd)
	grow(&s.att, T*qd)
	grow(&s.gate, r*c.IntermediateSize)
	grow(&s.up, r*c.IntermediateSize)
	if c.arch().FusedQKV {
		grow(&s.qkv, T*3*qd)
	}
	return s
}

func putScratch(s *scratch) { scratchPool.Put(s) }

// matmul is y (+)= x·Wᵀ with the model's bf16 mode. With rounded
// activations the product is rounded to their dtype, and an accumulation
// is a residual add rounded again.
func (m *Model) matmul(y, x []float32, rows int, w *engine.Tensor, acc bool) {
	m.linear(y, x, rows, w, nil, acc)
}

// linear is y (+)= x·Wᵀ + b (b may be nil) as a Linear layer computes it
// in the model's numerics: in f32 one fused product; in bf16 or fp16 the
// output x·Wᵀ + b rounded once (a 4-bit weight's product is rounded to
// bf16 first, Linear4bit's compute dtype), and with acc the residual add
// h + y rounded again.
func (m *Model) linear(y, x []float32, rows int, w *engine.Tensor, b []float32, acc bool) {
	a, out := m.act(), w.Shape[0]
	if a == engine.F32 {
		engine.MatMulNT(y, x, rows, w, acc, m.FastBF16)
		if b != nil {
			engine.AddBias(y, b, rows, out)
		}
		return
	}
	dst := y[:rows*out]
	if acc {
		dst = make([]float32, rows*out)
	}
	engine.MatMulNT(dst, x, rows, w, false, m.FastBF16)
	if b != nil {
		engine.AddBias(dst, b, rows, out)
	}
	m.round(dst)
	if acc {
		engine.AddRounded(y[:rows*out], dst, a)
	}
}

// attend computes attention outputs att from rotated q, k and v of the
// layer; the packed forward and the cached generation differ only here.
type attend func(layer int, q, k, v, att []float32)

// norm writes RMSNorm(x)·w of T rows of width d into out (out may be x);
// Gemma's norm multiplies by 1 + w; BLOOM's is LayerNorm with bias b.
func (m *Model) norm(out, x, w, b []float32, T, d int) {
	eps := float32(m.Config.RMSNormEps)
	if m.Config.arch().LayerNorm {
		engine.LayerNorm(out, x, w, b, T, d, eps, nil, nil)
		m.round(out[:T*d]) // F.layer_norm: f32 inside, one rounding
		return
	}
	if m.Config.arch().NormPlusOne { // GemmaRMSNorm: f32 throughout, cast once
		engine.RMSNorm(out, x, m.normWeight(w), T, d, eps, nil)
		m.round(out[:T*d])
		return
	}
	engine.RMSNormRounded(out, x, w, T, d, eps, m.act(), nil)
}

// normWeight is the factor an RMSNorm with weight w multiplies by: w, or
// for Gemma 1 + w (in f32, as GemmaRMSNorm computes it).
func (m *Model) normWeight(w []float32) []float32 {
	if !m.Config.arch().NormPlusOne || len(w) == 0 {
		return w
	}
	// Computed once per norm weight, not on every pass.
	m.plusOneMu.Lock()
	defer m.plusOneMu.Unlock()
	if p, ok := m.plusOne[&w[0]]; ok && len(p) == len(w) {
		return p
	}
	out := make([]float32, len(w))
	for i, v := range w {
		out[i] = 1 + v
	}
	if m.plusOne == nil {
		m.plusOne = map[*float32][]float32{}
	}
	m.plusOne[&w[0]] = out
	return out
}

// embed writes the embeddings of ids into h: hidden_states[0], which Gemma
// scales by sqrt(hidden_size) and BLOOM normalises (word_embeddings_layernorm).
func (m *Model) embed(h []float32, ids []int) {
	engine.Embed(h, m.Embed, ids)
	if m.Config.arch().EmbedNorm {
		d := m.Config.HiddenSize
		engine.LayerNorm(h, h, m.EmbedNorm, m.EmbedNormBias, len(ids), d, float32(m.Config.RMSNormEps), nil, nil)
	}
	if m.Config.arch().EmbedScale {
		// torch.tensor(hidden_size**0.5, dtype=hidden_states.dtype)
		sc := float32(math.Sqrt(float64(m.Config.HiddenSize)))
		if a := m.act(); a != engine.F32 {
			s := []float32{sc}
			engine.RoundTo(s, a)
			sc = s[0]
		}
		engine.ParallelFor(len(ids), func(t int) {
			row := h[t*m.Config.HiddenSize : (t+1)*m.Config.HiddenSize]
			for i := range row {
				row[i] *= sc
			}
		})
		m.round(h[:len(ids)*m.Config.HiddenSize])
	}
}

// attentionOptions are the attention variants of decoder layer i: its
// sliding window, BLOOM's ALiBi slopes.
func (c Config) attentionOptions(i int) engine.AttentionOptions {
	o := engine.AttentionOptions{Window: c.WindowAt(i)}
	if c.arch().ALiBi {
		o.Slopes = engine.ALiBiSlopes(c.NumHeads)
	}
	if c.QueryPreAttnScalar > 0 {
		o.Scale = float32(1 / math.Sqrt(c.QueryPreAttnScalar))
	}
	o.SoftCap = float32(c.AttnLogitSoftcapping)
	return o
}

// ropeTables are the rotary tables for the given positions (nil for
// BLOOM, whose positions are ALiBi's).
func (m *Model) ropeTables(pos []int, maxLen int) (cos, sin []float32) {
	if m.Rope == nil {
		return nil, nil
	}
	cos, sin = m.Rope.Tables(pos, maxLen)
	if m.act() != engine.F32 { // computed in f32, cast to the activations' dtype
		cos, sin = slices.Clone(cos), slices.Clone(sin)
		m.round(cos)
		m.round(sin)
	}
	return cos, sin
}

// rope rotates q and k (nothing for BLOOM).
func (m *Model) rope(q, k []float32, T int, cos, sin []float32) {
	if m.Rope == nil {
		return
	}
	c, a := m.Config, m.act()
	engine.ApplyRopeRounded(q, T, c.NumHeads, c.HeadDim, cos, sin, a)
	engine.ApplyRopeRounded(k, T, c.NumKVHeads, c.HeadDim, cos, sin, a)
}

// attentionBlock adds self-attention of layer i to the residual stream h:
// h += o_proj(attention(rope(q_proj(x)), rope(k_proj(x)), v_proj(x))) with
// x = input_layernorm(h). Qwen2 adds biases to q, k and v; Qwen3 normalises
// q and k per head (q_norm, k_norm) before rope. BLOOM projects q, k and v
// in one fused product, has no rope (ALiBi is in the attention), biases
// everywhere, and with apply_residual_connection_post_layernorm adds to x
// instead of h.
func (m *Model) attentionBlock(i int, h []float32, T int, s *scratch, cos, sin []float32, att attend) {
	c, L := m.Config, m.Layers[i]
	d, hd := c.HiddenSize, c.HeadDim
	qd, kd := c.NumHeads*hd, c.NumKVHeads*hd
	x, q, k, v, o := s.x[:T*d], s.q[:T*qd], s.k[:T*kd], s.v[:T*kd], s.att[:T*qd]
	m.norm(x, h, L.AttnNorm, L.AttnNormBias, T, d)
	if L.QKV != nil {
		qkv := s.qkv[:T*3*qd]
		m.linear(qkv, x, T, L.QKV, L.QKVBias, false)
		for part, dst := range [][]float32{q, k, v} { // rows [heads, 3, headDim]
			engine.HeadPart(dst, qkv, T, c.NumHeads, 3, part, hd, false)
		}
	} else {
		m.linear(q, x, T, L.Q, L.QBias, false)
		m.linear(k, x, T, L.K, L.KBias, false)
		m.linear(v, x, T, L.V, L.VBias, false)
	}
	if L.QNorm != nil {
		eps, a := float32(c.RMSNormEps), m.act()
		engine.RMSNormRounded(q, q, L.QNorm, T*c.NumHeads, hd, eps, a, nil)
		engine.RMSNormRounded(k, k, L.KNorm, T*c.NumKVHeads, hd, eps, a, nil)
	}
	m.rope(q, k, T, cos, sin)
	att(i, q, k, v, o)
	m.round(o)
	if L.PostAttnNorm != nil { // Gemma 2: h += post_attention_layernorm(o_proj(att))
		m.matmul(x, o, T, L.O, false)
		m.norm(x, x, L.PostAttnNorm, nil, T, d)
		engine.AddRounded(h, x, m.act())
		return
	}
	if c.ResidualPostNorm {
		copy(h, x)
	}
	m.linear(h, o, T, L.O, L.OBias, true)
}

// mlpBlock adds the gated MLP of layer i to h, mlpChunk rows at a time:
// h += down_proj(act(gate_proj(x)) · up_proj(x)) with
// x = post_attention_layernorm(h) and act SiLU (SwiGLU), or tanh GELU for
// Gemma (GeGLU). BLOOM's MLP has no gate: h += dense_4h_to_h(gelu(dense_h_to_4h(x))).
func (m *Model) mlpBlock(i int, h []float32, T int, s *scratch) {
	if m.Config.arch().PlainMLP {
		m.plainMLP(i, h, T, s)
		return
	}
	c, L := m.Config, m.Layers[i]
	d, ffn := c.HiddenSize, c.IntermediateSize
	act, actFn := engine.SiLUMul, engine.SiLU
	if c.arch().GELU {
		act, actFn = engine.GELUTanhMul, engine.GELUTanh
	}
	for r0 := 0; r0 < T; r0 += mlpChunk {
		n := min(mlpChunk, T-r0)
		hr, x := h[r0*d:(r0+n)*d], s.x[:n*d]
		gate, up := s.gate[:n*ffn], s.up[:n*ffn]
		m.norm(x, hr, L.MLPNorm, nil, n, d)
		m.matmul(gate, x, n, L.Gate, false)
		m.matmul(up, x, n, L.Up, false)
		if a := m.act(); a != engine.F32 {
			engine.GatedRounded(gate, gate, up, actFn, a)
		} else {
			engine.ParallelFor(n, func(r int) {
				act(gate[r*ffn:(r+1)*ffn], gate[r*ffn:(r+1)*ffn], up[r*ffn:(r+1)*ffn])
			})
		}
		if L.PostFFNorm != nil { // Gemma 2: h += post_feedforward_layernorm(down_proj(...))
			m.matmul(x, gate, n, L.Down, false)
			m.norm(x, x, L.PostFFNorm, nil, n, d)
			engine.AddRounded(hr, x, m.act())
			continue
		}
		m.matmul(hr, gate, n, L.Down, true)
	}
}

// plainMLP is BLOOM's MLP block (see mlpBlock), with biases, mlpChunk rows
// at a time.
func (m *Model) plainMLP(i int, h []float32, T int, s *scratch) {
	c, L := m.Config, m.Layers[i]
	d, ffn := c.HiddenSize, c.IntermediateSize
	for r0 := 0; r0 < T; r0 += mlpChunk {
		n := min(mlpChunk, T-r0)
		hr, x, up := h[r0*d:(r0+n)*d], s.x[:n*d], s.up[:n*ffn]
		m.norm(x, hr, L.MLPNorm, L.MLPNormBias, n, d)
		m.linear(up, x, n, L.Up, L.UpBias, false)
		engine.GELUTanhInPlace(up)
		m.round(up)
		if c.ResidualPostNorm {
			copy(hr, x)
		}
		m.linear(hr, up, n, L.Down, L.DownBias, true)
	}
}

// finalNorm writes the final norm of h (model.norm, BLOOM's ln_f) into out.
func (m *Model) finalNorm(out, h []float32, T int) {
	m.norm(out, h, m.Norm, m.NormBias, T, m.Config.HiddenSize)
}

// checkBatch validates the batch's offsets and token ids.
func (m *Model) checkBatch(b Batch) error {
	if err := m.Config.checkBatch(b, true); err != nil {
		return fmt.Errorf("llama: %w", err)
	}
	return nil
}

// checkBatch is the one check of a packed batch that Forward, Generate and
// ForwardTrain make: offsets delimit the tokens and do not decrease (with
// emptyOK false, every sequence has a token), no sequence is longer than
// MaxContext, every token id is in the vocabulary.
func (c Config) checkBatch(b Batch, emptyOK bool) error {
	if len(b.Offsets) < 1 || b.Offsets[0] != 0 || b.Offsets[len(b.Offsets)-1] != len(b.Tokens) {
		return fmt.Errorf("batch offsets %v do not delimit %d tokens", b.Offsets, len(b.Tokens))
	}
	for s := 1; s < len(b.Offsets); s++ {
		if b.Offsets[s] < b.Offsets[s-1] || (!emptyOK && b.Offsets[s] == b.Offsets[s-1]) {
			return fmt.Errorf("batch sequence %d is empty or offsets decrease (%v)", s-1, b.Offsets)
		}
	}
	if !emptyOK && len(b.Offsets) < 2 {
		return fmt.Errorf("batch holds no sequence")
	}
	if err := c.checkLengths(b); err != nil {
		return err
	}
	for i, id := range b.Tokens {
		if id < 0 || id >= c.VocabSize {
			return fmt.Errorf("token %d (position %d of the batch) is outside the vocabulary [0, %d)", id, i, c.VocabSize)
		}
	}
	return nil
}

// checkLengths refuses a batch with a sequence longer than MaxContext.
func (c Config) checkLengths(b Batch) error {
	limit := c.MaxContext()
	for s := 0; s+1 < len(b.Offsets); s++ {
		if n := b.Offsets[s+1] - b.Offsets[s]; n > limit {
			return fmt.Errorf("sequence %d has %d tokens, more than %s", s, n, c.contextLimit())
		}
	}
	return nil
}

// Forward runs the packed batch b through the model once and calls fn with
// hidden_states[k] for every k in layers (Hugging Face numbering: 0 is the
// embeddings, k is the output of decoder layer k-1, and NumLayers is the
// final norm of the last layer's output), in increasing k. A sequence longer
// than Config.MaxContext is an error. It stops after
// the highest layer requested, so only the layers below it need be loaded.
// h is [T×d] row-major in the batch's token order and is valid only during
// the call; fn's error stops the pass and is returned.
func (m *Model) Forward(b Batch, layers []int, fn func(layer int, h []float32) error) error {
	c := m.Config
	if err := m.checkBatch(b); err != nil {
		return err
	}
	want := make([]bool, c.NumLayers+1)
	top := -1
	for _, k := range layers {
		if k < 0 || k > c.NumLayers {
			return fmt.Errorf("llama: hidden state %d does not exist (the model has hidden_states 0..%d)", k, c.NumLayers)
		}
		want[k] = true
		top = max(top, k)
	}
	if top < 0 || len(b.Tokens) == 0 {
		return nil
	}
	if m.Embed == nil {
		return fmt.Errorf("llama: the embedding is not loaded")
	}
	for i := 0; i < top; i++ {
		if m.Layers[i] == nil {
			return fmt.Errorf("llama: hidden state %d needs layer %d, which was not loaded (see LoadOptions.MaxLayer)", top, i)
		}
	}
	if top == c.NumLayers && m.Norm == nil {
		return fmt.Errorf("llama: hidden state %d needs the final norm, which was not loaded", top)
	}
	if err := m.verify(keyEmbed); err != nil {
		return err
	}

	T, d := len(b.Tokens), c.HiddenSize
	s := m.getScratch(T)
	defer putScratch(s)
	h := s.h
	m.embed(h, b.Tokens)
	if want[0] {
		if err := fn(0, h); err != nil {
			return err
		}
	}
	cos, sin := m.ropeTables(engine.Positions(b.Offsets), b.MaxLen())
	packed := func(layer int, q, k, v, att []float32) {
		opt := c.attentionOptions(layer)
		if b.MaxLen() < 32 {
			// Short sequences (words): one parallel loop over all of them.
			engine.AttentionWith(att, q, k, v, b.Offsets, c.NumHeads, c.NumKVHeads, c.HeadDim, nil, opt)
			return
		}
		// Longer ones: sequence by sequence with matrix products.
		qd, kd := c.NumHeads*c.HeadDim, c.NumKVHeads*c.HeadDim
		for s := 0; s < b.NumSeqs(); s++ {
			t0, t1 := b.Offsets[s], b.Offsets[s+1]
			engine.AttentionCachedWith(att[t0*qd:t1*qd], q[t0*qd:t1*qd], t1-t0, 0, k[t0*kd:t1*kd], v[t0*kd:t1*kd], c.NumHeads, c.NumKVHeads, c.HeadDim, opt)
		}
	}
	if m.OnLayer != nil {
		m.OnLayer(0, top, T)
	}
	for i := 0; i < top; i++ {
		if err := m.verify(i); err != nil {
			return err
		}
		m.attentionBlock(i, h, T, s, cos, sin, packed)
		m.mlpBlock(i, h, T, s)
		if m.OnLayer != nil {
			m.OnLayer(i+1, top, T)
		}
		k := i + 1
		if !want[k] {
			continue
		}
		out := h
		if k == c.NumLayers {
			out = s.x[:T*d]
			m.finalNorm(out, h, T)
		}
		if err := fn(k, out); err != nil {
			return err
		}
	}
	return nil
}

// HiddenStates is Forward collecting copies of the requested hidden states,
// each [T×d].
func (m *Model) HiddenStates(b Batch, layers []int) (map[int][]float32, error) {
	out := make(map[int][]float32, len(layers))
	err := m.Forward(b, layers, func(k int, h []float32) error {
		out[k] = append([]float32(nil), h...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Logits computes the LM head (lm_head.weight, or the embedding when tied)
// of final-normed hidden states h [T×d], returning [T×vocab].
func (m *Model) Logits(h []float32, T int) ([]float32, error) {
	head := m.LMHead
	if m.Config.TieWordEmbeddings || head == nil {
		if !m.Config.TieWordEmbeddings {
			return nil, fmt.Errorf("llama: lm_head.weight is not loaded (see LoadOptions.NeedLMHead)")
		}
		head = m.Embed
		if err := m.verify(keyEmbed); err != nil {
			return nil, err
		}
	} else if err := m.verify(keyHead); err != nil {
		return nil, err
	}
	if len(h) < T*m.Config.HiddenSize {
		return nil, fmt.Errorf("llama: Logits: %d values for %d rows of %d", len(h), T, m.Config.HiddenSize)
	}
	out := make([]float32, T*m.Config.VocabSize)
	m.matmul(out, h, T, head, false)                           // rounded to the activations' dtype, as lm_head is
	if sc := float32(m.Config.FinalLogitSoftcapping); sc > 0 { // Gemma 2
		engine.ParallelFor(T, func(t int) {
			row := out[t*m.Config.VocabSize : (t+1)*m.Config.VocabSize]
			for i, v := range row {
				row[i] = sc * float32(math.Tanh(float64(v/sc)))
			}
		})
	}
	return out, nil
}
