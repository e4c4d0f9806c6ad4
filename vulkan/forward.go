//go:build vulkan && (amd64 || arm64) && (linux || darwin || windows)

package vulkan

import (
	"errors"
	"fmt"
	"sync"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/llama"
)

// The inference forward of a Llama-family model on a Vulkan device: the
// weights are uploaded once (Upload) and stay on the device; a Forward
// uploads the batch's token ids, sequence offsets and rotary tables,
// records every kernel of the pass into the Context's command buffer, and
// downloads only the hidden states asked for. It computes what
// llama.Model.Forward computes with f32 activations (the default
// Numerics), layer by layer: embed; per decoder layer h += o_proj(
// attention(rope(q_proj(x)), rope(k_proj(x)), v_proj(x))) with x =
// input_layernorm(h), then h += down_proj(silu(gate_proj(x))·up_proj(x))
// with x = post_attention_layernorm(h); the final norm. Qwen2's q/k/v
// biases are added by a GEMM of a column of ones with the bias (exact: 1·b
// added to the product), Qwen3's q_norm and k_norm are RMSNorm over rows of
// head_dim.

// Model is a llama.Model's weights uploaded to a device once.
type Model struct {
	c    *Context
	cfg  llama.Config
	rope *engine.Rope
	eps  float32

	embed  weightBuf
	layers []*deviceLayer // nil where the llama.Model had not loaded the layer
	norm   *Buffer        // nil when the final norm was not loaded
	biases bool           // some layer has q/k/v biases (the ones column is needed)

	mu     sync.Mutex
	closed bool
	owned  []*Buffer // every weight buffer, for Close
	act    *activations
	host   []float32 // a downloaded hidden state
}

// weightBuf is a Linear or embedding weight on the device.
type weightBuf struct {
	b  *Buffer
	wt WeightType
}

func (w weightBuf) span() Span { return w.b.All() }

// deviceLayer is one decoder layer's weights.
type deviceLayer struct {
	attnNorm, mlpNorm          *Buffer
	q, k, v, o, gate, up, down weightBuf
	qBias, kBias, vBias        *Buffer // nil unless the model has them (Qwen2)
	qNorm, kNorm               *Buffer // nil unless the model has them (Qwen3)
}

// activations are the per-pass buffers, for up to tokens tokens and seqs
// sequences; a larger batch replaces them.
type activations struct {
	tokens, seqs, mlpRows int
	h, x, q, k, v, att    *Buffer
	gate, up              *Buffer // [mlpRows × ffn]
	ids, offsets          *Buffer // uint32 [tokens], [seqs+1]
	cos, sin              *Buffer // [tokens × headDim/2]
	ones                  *Buffer // [tokens] of 1, when the model has biases
}

func (a *activations) free() {
	for _, b := range []*Buffer{a.h, a.x, a.q, a.k, a.v, a.att, a.gate, a.up, a.ids, a.offsets, a.cos, a.sin, a.ones} {
		if b != nil {
			b.Free()
		}
	}
}

// unsupported names the first feature of m the device forward does not
// implement, or returns "".
func unsupported(m *llama.Model) string {
	c := m.Config
	a := c.Arch
	if a == nil {
		a = llama.LlamaArch
	}
	fam := c.Family()
	switch {
	case m.Numerics.Activations != engine.F32:
		return fmt.Sprintf("%v activations (Numerics %s; only f32 activations are implemented)", m.Numerics.Activations, m.Numerics)
	case m.Numerics.Quant != "":
		return fmt.Sprintf("4-bit weights (Numerics %s)", m.Numerics)
	case m.FastBF16:
		return "FastBF16 (bf16-rounded activations in products)"
	case c.Quantization != nil:
		return "4-bit weights (a quantization_config checkpoint)"
	case a.LayerNorm:
		return fmt.Sprintf("LayerNorm with bias (%s)", fam)
	case a.ALiBi || m.Rope == nil:
		return fmt.Sprintf("ALiBi attention (%s)", fam)
	case a.EmbedNorm:
		return fmt.Sprintf("the embedding LayerNorm (%s)", fam)
	case a.FusedQKV:
		return fmt.Sprintf("the fused query_key_value projection (%s)", fam)
	case a.Biases:
		return fmt.Sprintf("biases on every Linear (%s)", fam)
	case a.PlainMLP:
		return fmt.Sprintf("the ungated GELU MLP (%s)", fam)
	case a.NormPlusOne:
		return fmt.Sprintf("RMSNorm by 1 + weight (%s)", fam)
	case a.EmbedScale:
		return fmt.Sprintf("the embedding scaled by sqrt(hidden_size) (%s)", fam)
	case a.GELU:
		return fmt.Sprintf("the GELU-gated MLP (%s)", fam)
	case a.SandwichNorms:
		return fmt.Sprintf("post-attention and post-feedforward norms (%s)", fam)
	case a.SoftCaps || c.AttnLogitSoftcapping > 0 || c.FinalLogitSoftcapping > 0:
		return fmt.Sprintf("logit soft-capping (%s)", fam)
	case c.QueryPreAttnScalar > 0:
		return fmt.Sprintf("query_pre_attn_scalar %v (%s)", c.QueryPreAttnScalar, fam)
	case c.ResidualPostNorm:
		return "apply_residual_connection_post_layernorm"
	case c.HeadDim%2 != 0 || c.HeadDim > 8*attentionWG:
		return fmt.Sprintf("head_dim %d (the attention kernel takes even head dims up to %d)", c.HeadDim, 8*attentionWG)
	}
	for i := 0; i < c.NumLayers; i++ {
		if w := c.WindowAt(i); w > 0 {
			return fmt.Sprintf("the sliding window of %d positions (%s, layer %d)", w, fam, i)
		}
	}
	for i, L := range m.Layers {
		if L == nil {
			continue
		}
		for _, t := range []*engine.Tensor{L.Q, L.K, L.V, L.O, L.Gate, L.Up, L.Down} {
			if t == nil {
				return fmt.Sprintf("a layer without q/k/v/o/gate/up/down projections (%s, layer %d)", fam, i)
			}
			if _, err := weightType(t); err != nil {
				return fmt.Sprintf("%v weights (layer %d)", t.DType, i)
			}
		}
		if L.PostAttnNorm != nil || L.PostFFNorm != nil {
			return fmt.Sprintf("post-attention and post-feedforward norms (%s)", fam)
		}
		if L.QKV != nil || L.OBias != nil || L.UpBias != nil || L.DownBias != nil || L.AttnNormBias != nil || L.MLPNormBias != nil {
			return fmt.Sprintf("biases on every Linear (%s)", fam)
		}
	}
	if m.Embed != nil {
		if _, err := weightType(m.Embed); err != nil {
			return fmt.Sprintf("a %v embedding", m.Embed.DType)
		}
	}
	return ""
}

// weightType maps a tensor's dtype to the kernels'.
func weightType(t *engine.Tensor) (WeightType, error) {
	switch t.DType {
	case engine.F32:
		return F32, nil
	case engine.BF16:
		return BF16, nil
	case engine.F16:
		return F16, nil
	}
	return 0, fmt.Errorf("%v weights are not supported on the device", t.DType)
}

// tensorBytes is the size of t on the device.
func tensorBytes(t *engine.Tensor) uint64 {
	if t.DType == engine.F32 {
		return 4 * uint64(t.Numel())
	}
	return alignUp(2*uint64(t.Numel()), 4)
}

// weightBytes is what Upload allocates for m's loaded weights.
func weightBytes(m *llama.Model) uint64 {
	var n uint64
	if m.Embed != nil {
		n += tensorBytes(m.Embed)
	}
	vec := func(v []float32) uint64 { return 4 * uint64(len(v)) }
	n += vec(m.Norm)
	for _, L := range m.Layers {
		if L == nil {
			continue
		}
		for _, t := range []*engine.Tensor{L.Q, L.K, L.V, L.O, L.Gate, L.Up, L.Down} {
			n += tensorBytes(t)
		}
		for _, v := range [][]float32{L.AttnNorm, L.MLPNorm, L.QBias, L.KBias, L.VBias, L.QNorm, L.KNorm} {
			n += vec(v)
		}
	}
	return n
}

// Upload copies the loaded weights of m (the embedding, the decoder layers
// that are loaded, the final norm if loaded; not the LM head) to the
// device, in the dtype they are held in (f32, bf16 or f16). A model using
// a feature the device forward does not implement (see unsupported: Gemma,
// Gemma 2, BLOOM, sliding windows, 4-bit weights, activations other than
// f32, FastBF16) is refused with an error naming it. Weights that do not
// fit the device memory (the heap, or Options.MemoryLimit) are an error
// wrapping ErrOutOfMemory; nothing stays allocated then. Weights read from
// memory-mapped shards are checked for NaN/Inf first (llama.Model.Verify).
func Upload(c *Context, m *llama.Model) (*Model, error) {
	if c == nil || m == nil {
		return nil, errors.New("vulkan: Upload: nil context or model")
	}
	if f := unsupported(m); f != "" {
		return nil, fmt.Errorf("vulkan: the device forward does not implement %s; run this model on the CPU", f)
	}
	cfg := m.Config
	if cfg.HiddenSize <= 0 || cfg.NumHeads <= 0 || cfg.NumKVHeads <= 0 || cfg.HeadDim <= 0 || cfg.NumHeads%cfg.NumKVHeads != 0 {
		return nil, fmt.Errorf("vulkan: Upload: invalid shape (hidden %d, %d heads, %d KV heads, head_dim %d)", cfg.HiddenSize, cfg.NumHeads, cfg.NumKVHeads, cfg.HeadDim)
	}
	if err := m.Verify(); err != nil {
		return nil, err
	}
	need := weightBytes(m)
	c.mu.Lock()
	closed := c.in == nil
	limit, allocated := c.mem.limit, c.mem.allocated
	var free uint64
	for _, blocks := range c.mem.blocks {
		for _, blk := range blocks {
			free += blk.ra.freeBytes()
		}
	}
	c.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if avail := limit - min(limit, allocated) + free; need > avail {
		return nil, fmt.Errorf("vulkan: Upload: the model's weights (%s) do not fit the device memory (%s available of %s; streaming the layers is not implemented): %w",
			byteSize(need), byteSize(avail), byteSize(limit), ErrOutOfMemory)
	}

	dm := &Model{c: c, cfg: cfg, rope: m.Rope, eps: float32(cfg.RMSNormEps), layers: make([]*deviceLayer, len(m.Layers))}
	fail := func(err error) (*Model, error) {
		dm.Close()
		if errors.Is(err, ErrOutOfMemory) {
			return nil, fmt.Errorf("vulkan: Upload: the model's weights (%s) do not fit the device memory (limit %s): %w", byteSize(need), byteSize(limit), err)
		}
		return nil, fmt.Errorf("vulkan: Upload: %w", err)
	}
	vector := func(v []float32) (*Buffer, error) {
		if v == nil {
			return nil, nil
		}
		b, err := c.Alloc(4 * len(v))
		if err != nil {
			return nil, err
		}
		dm.owned = append(dm.owned, b)
		return b, b.UploadF32(0, v)
	}
	tensor := func(t *engine.Tensor) (weightBuf, error) {
		wt, err := weightType(t)
		if err != nil {
			return weightBuf{}, err
		}
		b, err := c.Alloc(int(tensorBytes(t)))
		if err != nil {
			return weightBuf{}, err
		}
		dm.owned = append(dm.owned, b)
		if wt == F32 {
			err = b.UploadF32(0, t.F32[:t.Numel()])
		} else {
			err = b.UploadU16(0, t.Half[:t.Numel()])
		}
		return weightBuf{b, wt}, err
	}
	var err error
	if m.Embed != nil {
		if dm.embed, err = tensor(m.Embed); err != nil {
			return fail(err)
		}
	}
	if dm.norm, err = vector(m.Norm); err != nil {
		return fail(err)
	}
	for i, L := range m.Layers {
		if L == nil {
			continue
		}
		dl := &deviceLayer{}
		for _, p := range []struct {
			dst *weightBuf
			t   *engine.Tensor
		}{{&dl.q, L.Q}, {&dl.k, L.K}, {&dl.v, L.V}, {&dl.o, L.O}, {&dl.gate, L.Gate}, {&dl.up, L.Up}, {&dl.down, L.Down}} {
			if *p.dst, err = tensor(p.t); err != nil {
				return fail(err)
			}
		}
		for _, p := range []struct {
			dst **Buffer
			v   []float32
		}{{&dl.attnNorm, L.AttnNorm}, {&dl.mlpNorm, L.MLPNorm}, {&dl.qBias, L.QBias}, {&dl.kBias, L.KBias}, {&dl.vBias, L.VBias},
			{&dl.qNorm, L.QNorm}, {&dl.kNorm, L.KNorm}} {
			if *p.dst, err = vector(p.v); err != nil {
				return fail(err)
			}
		}
		if dl.attnNorm == nil || dl.mlpNorm == nil {
			return fail(fmt.Errorf("layer %d has no input_layernorm or post_attention_layernorm weight", i))
		}
		if (dl.qNorm == nil) != (dl.kNorm == nil) {
			return fail(fmt.Errorf("layer %d has only one of q_norm and k_norm", i))
		}
		dm.biases = dm.biases || dl.qBias != nil || dl.kBias != nil || dl.vBias != nil
		dm.layers[i] = dl
	}
	if err := c.Sync(); err != nil {
		return fail(err)
	}
	return dm, nil
}

// Close frees the model's device buffers (weights and activations). The
// Context stays open. Close is idempotent.
func (dm *Model) Close() error {
	dm.mu.Lock()
	defer dm.mu.Unlock()
	if dm.closed {
		return nil
	}
	dm.closed = true
	if dm.act != nil {
		dm.act.free()
		dm.act = nil
	}
	for _, b := range dm.owned {
		b.Free()
	}
	dm.owned, dm.layers, dm.norm, dm.embed, dm.host = nil, nil, nil, weightBuf{}, nil
	return nil
}

// maxMLPRows bounds the rows of one MLP chunk (its gate and up buffers).
const maxMLPRows = 2048

// ensure returns activation buffers for T tokens and nSeq sequences,
// reusing the current ones when large enough.
func (dm *Model) ensure(T, nSeq int) (*activations, error) {
	if a := dm.act; a != nil && a.tokens >= T && a.seqs >= nSeq {
		return a, nil
	}
	if dm.act != nil {
		dm.act.free()
		dm.act = nil
	}
	c, cfg := dm.c, dm.cfg
	d, qd, kd, ffn := cfg.HiddenSize, cfg.NumHeads*cfg.HeadDim, cfg.NumKVHeads*cfg.HeadDim, cfg.IntermediateSize
	if w := max(d, qd); 4*uint64(T)*uint64(w) > c.rangeLimit {
		return nil, fmt.Errorf("vulkan: Forward: a batch of %d tokens needs activations of %s in one binding, more than the device's maxStorageBufferRange (%s): split the batch",
			T, byteSize(4*uint64(T)*uint64(w)), byteSize(c.rangeLimit))
	}
	rows := min(T, maxMLPRows)
	if byRange := int(c.rangeLimit / (4 * uint64(ffn))); rows > byRange {
		rows = byRange &^ 63 // chunk offsets stay aligned
		if rows == 0 {
			return nil, fmt.Errorf("vulkan: Forward: 64 rows of the MLP (intermediate_size %d) exceed the device's maxStorageBufferRange (%s)", ffn, byteSize(c.rangeLimit))
		}
	}
	a := &activations{tokens: T, seqs: nSeq, mlpRows: rows}
	var err error
	alloc := func(dst **Buffer, n int) {
		if err == nil {
			*dst, err = c.Alloc(4 * n)
		}
	}
	alloc(&a.h, T*d)
	alloc(&a.x, T*d)
	alloc(&a.q, T*qd)
	alloc(&a.k, T*kd)
	alloc(&a.v, T*kd)
	alloc(&a.att, T*qd)
	alloc(&a.gate, rows*ffn)
	alloc(&a.up, rows*ffn)
	alloc(&a.ids, T)
	alloc(&a.offsets, nSeq+1)
	alloc(&a.cos, T*cfg.HeadDim/2)
	alloc(&a.sin, T*cfg.HeadDim/2)
	if dm.biases {
		alloc(&a.ones, T)
		if err == nil {
			ones := make([]float32, T)
			for i := range ones {
				ones[i] = 1
			}
			err = a.ones.UploadF32(0, ones)
		}
	}
	if err != nil {
		a.free()
		if errors.Is(err, ErrOutOfMemory) {
			return nil, fmt.Errorf("vulkan: Forward: the activations of a batch of %d tokens do not fit the device memory beside the weights: %w", T, err)
		}
		return nil, fmt.Errorf("vulkan: Forward: %w", err)
	}
	dm.act = a
	return a, nil
}

// checkBatch makes the checks llama.Model.Forward makes of a packed batch:
// offsets delimit the tokens and do not decrease, no sequence is longer
// than the model's context, every token is in the vocabulary.
func checkBatch(cfg llama.Config, b llama.Batch) error {
	if len(b.Offsets) < 1 || b.Offsets[0] != 0 || b.Offsets[len(b.Offsets)-1] != len(b.Tokens) {
		return fmt.Errorf("vulkan: batch offsets %v do not delimit %d tokens", b.Offsets, len(b.Tokens))
	}
	limit := cfg.MaxContext()
	for s := 1; s < len(b.Offsets); s++ {
		if b.Offsets[s] < b.Offsets[s-1] {
			return fmt.Errorf("vulkan: batch sequence %d is empty or offsets decrease (%v)", s-1, b.Offsets)
		}
		if n := b.Offsets[s] - b.Offsets[s-1]; n > limit {
			return fmt.Errorf("vulkan: sequence %d has %d tokens, more than the model's context of %d", s-1, n, limit)
		}
	}
	for i, id := range b.Tokens {
		if id < 0 || id >= cfg.VocabSize {
			return fmt.Errorf("vulkan: token %d (position %d of the batch) is outside the vocabulary [0, %d)", id, i, cfg.VocabSize)
		}
	}
	return nil
}

// Forward has llama.Model.Forward's contract: it runs the packed batch b
// through the model and calls fn with hidden_states[k] for every k in
// layers (0: the embeddings, k: the output of decoder layer k-1,
// NumLayers: after the final norm), in increasing k, with h [T×d] valid
// only during the call; it stops after the highest layer asked. The
// activations stay on the device; only the requested hidden states are
// downloaded. fn's error stops the pass and is returned. Calls on one
// Model are serialised.
func (dm *Model) Forward(b llama.Batch, layers []int, fn func(layer int, h []float32) error) error {
	cfg := dm.cfg
	if err := checkBatch(cfg, b); err != nil {
		return err
	}
	want := make([]bool, cfg.NumLayers+1)
	top := -1
	for _, k := range layers {
		if k < 0 || k > cfg.NumLayers {
			return fmt.Errorf("vulkan: hidden state %d does not exist (the model has hidden_states 0..%d)", k, cfg.NumLayers)
		}
		want[k] = true
		top = max(top, k)
	}
	if top < 0 || len(b.Tokens) == 0 {
		return nil
	}
	dm.mu.Lock()
	defer dm.mu.Unlock()
	if dm.closed {
		return fmt.Errorf("vulkan: Forward on a closed Model: %w", ErrClosed)
	}
	if dm.embed.b == nil {
		return fmt.Errorf("vulkan: the embedding was not loaded")
	}
	for i := 0; i < top; i++ {
		if dm.layers[i] == nil {
			return fmt.Errorf("vulkan: hidden state %d needs layer %d, which was not loaded (see llama.LoadOptions.MaxLayer)", top, i)
		}
	}
	if top == cfg.NumLayers && dm.norm == nil {
		return fmt.Errorf("vulkan: hidden state %d needs the final norm, which was not loaded", top)
	}

	c := dm.c
	T, nSeq := len(b.Tokens), b.NumSeqs()
	d, hd, nH, nKV, ffn := cfg.HiddenSize, cfg.HeadDim, cfg.NumHeads, cfg.NumKVHeads, cfg.IntermediateSize
	qd, kd := nH*hd, nKV*hd
	a, err := dm.ensure(T, nSeq)
	if err != nil {
		return err
	}
	ids := make([]uint32, T)
	for i, id := range b.Tokens {
		ids[i] = uint32(id)
	}
	offs := make([]uint32, nSeq+1)
	for i, o := range b.Offsets {
		offs[i] = uint32(o)
	}
	cos, sin := dm.rope.Tables(engine.Positions(b.Offsets), b.MaxLen())
	for _, up := range []func() error{
		func() error { return a.ids.UploadU32(0, ids) },
		func() error { return a.offsets.UploadU32(0, offs) },
		func() error { return a.cos.UploadF32(0, cos) },
		func() error { return a.sin.UploadF32(0, sin) },
	} {
		if err := up(); err != nil {
			return fmt.Errorf("vulkan: Forward: %w", err)
		}
	}
	if cap(dm.host) < T*d {
		dm.host = make([]float32, T*d)
	}
	host := dm.host[:T*d]
	emit := func(k int, buf *Buffer) error {
		if err := buf.DownloadF32(0, host); err != nil {
			return fmt.Errorf("vulkan: Forward: downloading hidden state %d: %w", k, err)
		}
		return fn(k, host)
	}

	h, x := a.h.F32(0, T*d), a.x.F32(0, T*d)
	q, k, v, att := a.q.F32(0, T*qd), a.k.F32(0, T*kd), a.v.F32(0, T*kd), a.att.F32(0, T*qd)
	cosS, sinS := a.cos.F32(0, T*hd/2), a.sin.F32(0, T*hd/2)
	var ones Span
	if a.ones != nil {
		ones = a.ones.F32(0, T)
	}
	if err := c.Embed(h, dm.embed.span(), a.ids.U32(0, T), T, d, cfg.VocabSize, dm.embed.wt); err != nil {
		return err
	}
	if want[0] {
		if err := emit(0, a.h); err != nil {
			return err
		}
	}
	for i := 0; i < top; i++ {
		if err := dm.layer(dm.layers[i], a, T, nSeq, h, x, q, k, v, att, cosS, sinS, ones); err != nil {
			return fmt.Errorf("vulkan: layer %d: %w", i, err)
		}
		// MLP, in chunks of rows.
		L := dm.layers[i]
		if err := c.RMSNorm(x, h, L.mlpNorm.All(), T, d, dm.eps); err != nil {
			return err
		}
		for r0 := 0; r0 < T; r0 += a.mlpRows {
			n := min(a.mlpRows, T-r0)
			hr, xr := a.h.F32(r0*d, n*d), a.x.F32(r0*d, n*d)
			gate, up := a.gate.F32(0, n*ffn), a.up.F32(0, n*ffn)
			if err := c.GEMM(gate, xr, L.gate.span(), n, ffn, d, L.gate.wt, false); err != nil {
				return err
			}
			if err := c.GEMM(up, xr, L.up.span(), n, ffn, d, L.up.wt, false); err != nil {
				return err
			}
			if err := c.SiLUMul(gate, gate, up, n*ffn); err != nil {
				return err
			}
			if err := c.GEMM(hr, gate, L.down.span(), n, d, ffn, L.down.wt, true); err != nil {
				return err
			}
		}
		kk := i + 1
		if !want[kk] {
			continue
		}
		out := a.h
		if kk == cfg.NumLayers {
			if err := c.RMSNorm(x, h, dm.norm.All(), T, d, dm.eps); err != nil {
				return err
			}
			out = a.x
		}
		if err := emit(kk, out); err != nil {
			return err
		}
	}
	return c.Sync()
}

// layer records the attention block of a decoder layer: h += o_proj(att).
func (dm *Model) layer(L *deviceLayer, a *activations, T, nSeq int, h, x, q, k, v, att, cos, sin, ones Span) error {
	c, cfg := dm.c, dm.cfg
	d, hd, nH, nKV := cfg.HiddenSize, cfg.HeadDim, cfg.NumHeads, cfg.NumKVHeads
	qd, kd := nH*hd, nKV*hd
	if err := c.RMSNorm(x, h, L.attnNorm.All(), T, d, dm.eps); err != nil {
		return err
	}
	for _, p := range []struct {
		out  Span
		w    weightBuf
		bias *Buffer
		n    int
	}{{q, L.q, L.qBias, qd}, {k, L.k, L.kBias, kd}, {v, L.v, L.vBias, kd}} {
		if err := c.GEMM(p.out, x, p.w.span(), T, p.n, d, p.w.wt, false); err != nil {
			return err
		}
		if p.bias != nil { // out += ones[T×1]·bias[n×1]ᵀ: exactly the bias added to each row
			if err := c.GEMM(p.out, ones, p.bias.All(), T, p.n, 1, F32, true); err != nil {
				return err
			}
		}
	}
	if L.qNorm != nil {
		if err := c.RMSNorm(q, q, L.qNorm.All(), T*nH, hd, dm.eps); err != nil {
			return err
		}
		if err := c.RMSNorm(k, k, L.kNorm.All(), T*nKV, hd, dm.eps); err != nil {
			return err
		}
	}
	if err := c.Rope(q, cos, sin, T, nH, hd); err != nil {
		return err
	}
	if err := c.Rope(k, cos, sin, T, nKV, hd); err != nil {
		return err
	}
	if err := c.Attention(att, q, k, v, a.offsets.U32(0, nSeq+1), T, nSeq, nH, nKV, hd); err != nil {
		return err
	}
	return c.GEMM(h, att, L.o.span(), T, d, qd, L.o.wt, true)
}
