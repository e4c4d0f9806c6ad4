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
// head_dim. A model larger than the device memory is streamed (see Upload).

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

	model  *llama.Model // the host model (its OnLayer reports a pass's progress)
	mu     sync.Mutex
	closed bool
	owned  []*Buffer // every weight buffer, for Close
	act    *activations
	host   []float32  // a downloaded hidden state
	step   *stepState // a training step between PoolForward and PoolBackward

	// Streaming (see Upload): loaded says which layers the host model had
	// loaded; a loaded layer with no deviceLayer is uploaded from src into
	// the slot's buffers (slotW: Linear weights, slotV: vectors, in
	// deviceLayer's order) when a Forward reaches it; hostEmbed, when not
	// nil, is the embedding gathered on the host.
	loaded       []bool
	src          *llama.Model
	slot         *slot
	slotW, slotV [7]*Buffer
	slotLayer    int // the layer in the slot, -1 when none
	hostEmbed    *engine.Tensor
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
	h, x, q, k, v, att, o *Buffer
	gate, up              *Buffer // [mlpRows × ffn]
	ids, offsets          *Buffer // uint32 [tokens], [seqs+1]
	cos, sin              *Buffer // [tokens × headDim/2]
	ones                  *Buffer // [tokens] of 1, when the model has biases
}

func (a *activations) free() {
	for _, b := range []*Buffer{a.h, a.x, a.q, a.k, a.v, a.att, a.o, a.gate, a.up, a.ids, a.offsets, a.cos, a.sin, a.ones} {
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
// f32, FastBF16) is refused with an error naming it. Weights read from
// memory-mapped shards are checked for NaN/Inf first (llama.Model.Verify).
//
// When the weights and the activations of StreamReserveTokens tokens do
// not fit the device memory together (the heap, or Options.MemoryLimit),
// Upload streams: the embedding stays on the host (Forward gathers its
// rows there and uploads them), room is kept for those activations, as
// many decoder layers as fit stay on the device and the others are
// uploaded into one layer's worth of buffers each time a Forward reaches
// them (Streamed says how many); m must then stay open while the Model is
// used. When not even that fits, the error wraps ErrOutOfMemory and says
// so; nothing stays allocated then.
func Upload(c *Context, m *llama.Model) (*Model, error) {
	if c == nil || m == nil {
		return nil, errors.New("vulkan: Upload: nil context or model")
	}
	if f := unsupported(m); f != "" {
		return nil, fmt.Errorf("vulkan: the device forward does not implement %s; run this model on the CPU", f)
	}
	cfg := m.Config
	if cfg.HiddenSize <= 0 || cfg.NumHeads <= 0 || cfg.NumKVHeads <= 0 || cfg.HeadDim <= 0 || cfg.NumHeads%cfg.NumKVHeads != 0 || len(m.Layers) != cfg.NumLayers {
		return nil, fmt.Errorf("vulkan: Upload: invalid shape (hidden %d, %d heads, %d KV heads, head_dim %d, %d of %d layers)", cfg.HiddenSize, cfg.NumHeads, cfg.NumKVHeads, cfg.HeadDim, len(m.Layers), cfg.NumLayers)
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
	avail := limit - min(limit, allocated) + free

	dm := &Model{c: c, model: m, cfg: cfg, rope: m.Rope, eps: float32(cfg.RMSNormEps), layers: make([]*deviceLayer, len(m.Layers)), loaded: make([]bool, len(m.Layers)), slotLayer: -1}
	for i, L := range m.Layers {
		dm.loaded[i] = L != nil
		dm.biases = dm.biases || (L != nil && (L.QBias != nil || L.KBias != nil || L.VBias != nil))
	}
	if need+dm.actBytes(min(StreamReserveTokens, cfg.MaxContext())) <= avail {
		err := dm.uploadAll(m)
		if err == nil {
			return dm, nil
		}
		dm.release()
		if !errors.Is(err, ErrOutOfMemory) {
			return nil, fmt.Errorf("vulkan: Upload: %w", err)
		}
		// Fragmentation: fall back to streaming, once the frees are done.
		if err := c.Sync(); err != nil {
			return nil, fmt.Errorf("vulkan: Upload: %w", err)
		}
	}
	if err := dm.uploadStreaming(m); err != nil {
		dm.release()
		if errors.Is(err, ErrOutOfMemory) {
			return nil, fmt.Errorf("vulkan: Upload: the model's weights (%s) do not fit the device memory (%s available of %s), nor does one layer streamed at a time beside the final norm and the activations of %d tokens: %w",
				byteSize(need), byteSize(avail), byteSize(limit), StreamReserveTokens, err)
		}
		return nil, fmt.Errorf("vulkan: Upload: %w", err)
	}
	return dm, nil
}

// StreamReserveTokens is the batch size whose activations a streaming
// Upload keeps room for before it makes layers resident.
var StreamReserveTokens = 512

// Streamed is the number of loaded decoder layers that do not stay on the
// device (uploaded by every Forward that reaches them); 0 when the whole
// model fits.
func (dm *Model) Streamed() int {
	dm.mu.Lock()
	defer dm.mu.Unlock()
	return dm.streamedLocked()
}

// uploadAll makes every loaded weight resident.
func (dm *Model) uploadAll(m *llama.Model) error {
	var err error
	if m.Embed != nil {
		var own []*Buffer
		dm.embed, err = dm.tensor(m.Embed, &own)
		dm.owned = append(dm.owned, own...)
		if err != nil {
			return err
		}
	}
	if dm.norm, err = dm.vector(m.Norm); err != nil {
		return err
	}
	for i, L := range m.Layers {
		if L != nil {
			if dm.layers[i], err = dm.uploadLayer(i, L); err != nil {
				return err
			}
		}
	}
	return dm.c.Sync()
}

// uploadStreaming keeps the embedding on the host, allocates the final
// norm, one streaming slot and the activations of StreamReserveTokens
// tokens, then makes layers resident in order while they fit.
func (dm *Model) uploadStreaming(m *llama.Model) error {
	if m.Embed == nil {
		return errors.New("the embedding is not loaded")
	}
	dm.hostEmbed = m.Embed
	dm.src = m
	var err error
	if dm.norm, err = dm.vector(m.Norm); err != nil {
		return err
	}
	if dm.slot, err = dm.allocSlot(m); err != nil {
		return err
	}
	T := min(StreamReserveTokens, dm.cfg.MaxContext())
	if _, err := dm.ensure(T, 1); err != nil {
		return err
	}
	for i, L := range m.Layers {
		if L == nil {
			continue
		}
		if dm.layers[i], err = dm.uploadLayer(i, L); err != nil {
			if errors.Is(err, ErrOutOfMemory) {
				break // the rest is streamed
			}
			return err
		}
	}
	if dm.slot != nil && dm.streamedLocked() == 0 { // everything fitted after all
		for _, b := range dm.slot.bufs {
			b.Free()
		}
		dm.slot, dm.slotW, dm.slotV = nil, [7]*Buffer{}, [7]*Buffer{}
	}
	return dm.c.Sync()
}

func (dm *Model) streamedLocked() int {
	n := 0
	for i, ok := range dm.loaded {
		if ok && dm.layers[i] == nil {
			n++
		}
	}
	return n
}

// vector allocates and uploads an f32 vector (nil for nil).
func (dm *Model) vector(v []float32) (*Buffer, error) {
	if v == nil {
		return nil, nil
	}
	b, err := dm.c.Alloc(4 * len(v))
	if err != nil {
		return nil, err
	}
	dm.owned = append(dm.owned, b)
	return b, b.UploadF32(0, v)
}

// tensor allocates a buffer for t, appends it to own and uploads t.
func (dm *Model) tensor(t *engine.Tensor, own *[]*Buffer) (weightBuf, error) {
	wt, err := weightType(t)
	if err != nil {
		return weightBuf{}, err
	}
	b, err := dm.c.Alloc(int(tensorBytes(t)))
	if err != nil {
		return weightBuf{}, err
	}
	*own = append(*own, b)
	w := weightBuf{b, wt}
	return w, fill(w.b, t)
}

// fill uploads t into b.
func fill(b *Buffer, t *engine.Tensor) error {
	if t.DType == engine.F32 {
		return b.UploadF32(0, t.F32[:t.Numel()])
	}
	return b.UploadU16(0, t.Half[:t.Numel()])
}

// layerTensors are a layer's Linear weights, in deviceLayer's order.
func layerTensors(L *llama.Layer) []*engine.Tensor {
	return []*engine.Tensor{L.Q, L.K, L.V, L.O, L.Gate, L.Up, L.Down}
}

func (dl *deviceLayer) weights() []*weightBuf {
	return []*weightBuf{&dl.q, &dl.k, &dl.v, &dl.o, &dl.gate, &dl.up, &dl.down}
}

func layerVectors(L *llama.Layer) [][]float32 {
	return [][]float32{L.AttnNorm, L.MLPNorm, L.QBias, L.KBias, L.VBias, L.QNorm, L.KNorm}
}

func (dl *deviceLayer) vectors() []**Buffer {
	return []**Buffer{&dl.attnNorm, &dl.mlpNorm, &dl.qBias, &dl.kBias, &dl.vBias, &dl.qNorm, &dl.kNorm}
}

// checkLayer checks the weights a layer must have.
func checkLayer(i int, L *llama.Layer) error {
	if L.AttnNorm == nil || L.MLPNorm == nil {
		return fmt.Errorf("layer %d has no input_layernorm or post_attention_layernorm weight", i)
	}
	if (L.QNorm == nil) != (L.KNorm == nil) {
		return fmt.Errorf("layer %d has only one of q_norm and k_norm", i)
	}
	return nil
}

// uploadLayer makes layer i resident; on failure nothing of it stays
// allocated.
func (dm *Model) uploadLayer(i int, L *llama.Layer) (*deviceLayer, error) {
	if err := checkLayer(i, L); err != nil {
		return nil, err
	}
	dl := &deviceLayer{}
	var own []*Buffer
	err := func() error {
		for j, t := range layerTensors(L) {
			w, err := dm.tensor(t, &own)
			if err != nil {
				return err
			}
			*dl.weights()[j] = w
		}
		for j, v := range layerVectors(L) {
			if v == nil {
				continue
			}
			b, err := dm.c.Alloc(4 * len(v))
			if err != nil {
				return err
			}
			own = append(own, b)
			*dl.vectors()[j] = b
			if err := b.UploadF32(0, v); err != nil {
				return err
			}
		}
		return nil
	}()
	if err != nil {
		for _, b := range own {
			b.Free()
		}
		return nil, err
	}
	dm.owned = append(dm.owned, own...)
	return dl, nil
}

// slot is one layer's worth of device buffers that streamed layers are
// uploaded into, each sized for the largest of its tensor over the layers.
type slot struct {
	dl   deviceLayer
	bufs []*Buffer
}

// allocSlot allocates the streaming slot for m's loaded layers (nil when
// none is loaded).
func (dm *Model) allocSlot(m *llama.Model) (*slot, error) {
	var wbytes [7]uint64
	var vlen [7]int
	some := false
	for i, L := range m.Layers {
		if L == nil {
			continue
		}
		if err := checkLayer(i, L); err != nil {
			return nil, err
		}
		some = true
		for j, t := range layerTensors(L) {
			wbytes[j] = max(wbytes[j], tensorBytes(t))
		}
		for j, v := range layerVectors(L) {
			vlen[j] = max(vlen[j], len(v))
		}
	}
	if !some {
		return nil, nil
	}
	s := &slot{}
	alloc := func(n int) (*Buffer, error) {
		b, err := dm.c.Alloc(n)
		if err == nil {
			s.bufs = append(s.bufs, b)
			dm.owned = append(dm.owned, b)
		}
		return b, err
	}
	for j, n := range wbytes {
		b, err := alloc(int(n))
		if err != nil {
			return nil, err
		}
		dm.slotW[j] = b
	}
	for j, n := range vlen {
		if n == 0 {
			continue
		}
		b, err := alloc(4 * n)
		if err != nil {
			return nil, err
		}
		dm.slotV[j] = b
	}
	return s, nil
}

// stream uploads layer i of the host model into the slot (Upload first
// waits for the recorded kernels, which may read the slot's previous
// layer) and returns it.
func (dm *Model) stream(i int) (*deviceLayer, error) {
	if dm.slotLayer == i { // still there from the last pass
		return &dm.slot.dl, nil
	}
	dm.slotLayer = -1
	L := dm.src.Layers[i]
	if L == nil {
		return nil, fmt.Errorf("layer %d is no longer loaded in the host model", i)
	}
	s := &dm.slot.dl
	*s = deviceLayer{}
	for j, t := range layerTensors(L) {
		wt, err := weightType(t)
		if err != nil {
			return nil, err
		}
		b := dm.slotW[j]
		if tensorBytes(t) > uint64(b.Size()) {
			return nil, fmt.Errorf("layer %d changed shape since Upload", i)
		}
		if err := fill(b, t); err != nil {
			return nil, err
		}
		*s.weights()[j] = weightBuf{b, wt}
	}
	for j, v := range layerVectors(L) {
		if v == nil {
			continue
		}
		b := dm.slotV[j]
		if b == nil || 4*len(v) > b.Size() {
			return nil, fmt.Errorf("layer %d changed shape since Upload", i)
		}
		if err := b.UploadF32(0, v); err != nil {
			return nil, err
		}
		*s.vectors()[j] = b
	}
	dm.slotLayer = i
	return s, nil
}

// release frees every buffer of the model (not marking it closed).
func (dm *Model) release() {
	dm.endStep()
	if dm.act != nil {
		dm.act.free()
		dm.act = nil
	}
	for _, b := range dm.owned {
		b.Free()
	}
	dm.owned, dm.norm, dm.embed, dm.host, dm.slot, dm.src, dm.hostEmbed = nil, nil, weightBuf{}, nil, nil, nil, nil
	dm.model = nil
	dm.slotW, dm.slotV, dm.slotLayer = [7]*Buffer{}, [7]*Buffer{}, -1
	clear(dm.layers)
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
	dm.release()
	return nil
}

// actBytes is about what ensure allocates for T tokens (T sequences at
// most), alignment aside.
func (dm *Model) actBytes(T int) uint64 {
	cfg := dm.cfg
	t := uint64(T)
	qd, kd := uint64(cfg.NumHeads*cfg.HeadDim), uint64(cfg.NumKVHeads*cfg.HeadDim)
	n := 3*t*uint64(cfg.HiddenSize) + 2*t*qd + 2*t*kd + 2*uint64(min(T, maxMLPRows))*uint64(cfg.IntermediateSize) + 2*t + 1 + t*uint64(cfg.HeadDim)
	if dm.biases {
		n += t
	}
	return 4 * n
}

// maxMLPRows bounds the rows of one MLP chunk (its gate and up buffers).
const maxMLPRows = 2048

// ensure returns activation buffers for T tokens and nSeq sequences,
// reusing the current ones when large enough.
func (dm *Model) ensure(T, nSeq int) (*activations, error) {
	if a := dm.act; a != nil && a.tokens >= T && a.seqs >= nSeq {
		return a, nil
	}
	c, cfg := dm.c, dm.cfg
	if dm.act != nil {
		dm.act.free()
		dm.act = nil
		if err := c.Sync(); err != nil { // the frees wait for recorded kernels
			return nil, err
		}
	}
	nSeq = max(nSeq, T) // room for as many sequences as tokens: offsets are small
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
	alloc(&a.o, T*d)
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
			return nil, fmt.Errorf("vulkan: the activations of a batch of %d tokens do not fit the device memory beside the weights: %w", T, err)
		}
		return nil, fmt.Errorf("vulkan: Forward: %w", err)
	}
	dm.act = a
	return a, nil
}

// batchU32 is b's token ids and offsets as the kernels take them.
func batchU32(b llama.Batch) (ids, offsets []uint32) {
	ids = make([]uint32, len(b.Tokens))
	for i, id := range b.Tokens {
		ids[i] = uint32(id)
	}
	offsets = make([]uint32, len(b.Offsets))
	for i, o := range b.Offsets {
		offsets[i] = uint32(o)
	}
	return ids, offsets
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
// Model are serialised. The host model's OnLayer, when set, is called as
// llama.Model.Forward calls it, each layer reported once it has run.
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
	if dm.embed.b == nil && dm.hostEmbed == nil {
		return fmt.Errorf("vulkan: the embedding was not loaded")
	}
	for i := 0; i < top; i++ {
		if !dm.loaded[i] {
			return fmt.Errorf("vulkan: hidden state %d needs layer %d, which was not loaded (see llama.LoadOptions.MaxLayer)", top, i)
		}
	}
	if top == cfg.NumLayers && dm.norm == nil {
		return fmt.Errorf("vulkan: hidden state %d needs the final norm, which was not loaded", top)
	}

	c := dm.c
	T, nSeq := len(b.Tokens), b.NumSeqs()
	d, hd, nH, nKV := cfg.HiddenSize, cfg.HeadDim, cfg.NumHeads, cfg.NumKVHeads
	qd, kd := nH*hd, nKV*hd
	a, err := dm.ensure(T, nSeq)
	if err != nil {
		return err
	}
	ids, offs := batchU32(b)
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

	h := a.h.F32(0, T*d)
	x := a.x.F32(0, T*d)
	var ones Span
	if a.ones != nil {
		ones = a.ones.F32(0, T)
	}
	// In place on h; x holds both norms' outputs; nothing is kept.
	bufs := &layerBufs{hIn: h, hMid: h, hOut: h, x1: x, x2: x,
		q: a.q.F32(0, T*qd), k: a.k.F32(0, T*kd), v: a.v.F32(0, T*kd), att: a.att.F32(0, T*qd), o: a.o.F32(0, T*d),
		gate: a.gate.All(), up: a.up.All(), act: a.gate.All(), mlpRows: a.mlpRows}
	if dm.hostEmbed != nil { // streaming: the embedding stays on the host
		engine.Embed(host, dm.hostEmbed, b.Tokens)
		if err := a.h.UploadF32(0, host); err != nil {
			return fmt.Errorf("vulkan: Forward: %w", err)
		}
	} else if err := c.Embed(h, dm.embed.span(), a.ids.U32(0, T), T, d, cfg.VocabSize, dm.embed.wt); err != nil {
		return err
	}
	if want[0] {
		if err := emit(0, a.h); err != nil {
			return err
		}
	}
	var onLayer func(done, total, tokens int)
	if dm.model != nil {
		onLayer = dm.model.OnLayer
	}
	if onLayer != nil {
		onLayer(0, top, T)
	}
	for i := 0; i < top; i++ {
		L := dm.layers[i]
		if L == nil {
			if L, err = dm.stream(i); err != nil {
				return fmt.Errorf("vulkan: streaming layer %d: %w", i, err)
			}
		}
		if err := dm.layerForward(L, bufs, T, nSeq, a.offsets.U32(0, nSeq+1), a.cos.F32(0, T*hd/2), a.sin.F32(0, T*hd/2), ones); err != nil {
			return fmt.Errorf("vulkan: layer %d: %w", i, err)
		}
		if onLayer != nil { // the layer has run when it is reported
			if err := c.Sync(); err != nil {
				return err
			}
			onLayer(i+1, top, T)
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

// Name is the device as --device names it and its name ("vulkan:0
// llvmpipe (LLVM 15.0.6, 256 bits)"), for provenance.
func (dm *Model) Name() string { return fmt.Sprintf("vulkan:%d %s", dm.c.Info.Index, dm.c.Info.Name) }

// Refresh uploads again the Linear weights and vectors of the given
// decoder layers from m, the model the Model was uploaded from, after
// they changed in place on the host (an adapter merged into them for an
// evaluation, or the original weights put back): shapes and dtypes must be
// those of Upload. A streamed layer is read from m whenever a pass reaches
// it, so only its cached copy is dropped.
func (dm *Model) Refresh(m *llama.Model, layers []int) error {
	dm.mu.Lock()
	defer dm.mu.Unlock()
	if dm.closed {
		return fmt.Errorf("vulkan: Refresh on a closed Model: %w", ErrClosed)
	}
	dm.endStep()
	dm.slotLayer = -1
	for _, i := range layers {
		if i < 0 || i >= len(dm.layers) || i >= len(m.Layers) {
			return fmt.Errorf("vulkan: Refresh: layer %d does not exist", i)
		}
		dl, L := dm.layers[i], m.Layers[i]
		if dl == nil {
			continue // streamed (or not loaded)
		}
		if L == nil {
			return fmt.Errorf("vulkan: Refresh: layer %d is no longer loaded in the host model", i)
		}
		for j, t := range layerTensors(L) {
			w := dl.weights()[j]
			wt, err := weightType(t)
			if err != nil || wt != w.wt || tensorBytes(t) != uint64(w.b.Size()) {
				return fmt.Errorf("vulkan: Refresh: layer %d changed shape or dtype since Upload", i)
			}
			if err := fill(w.b, t); err != nil {
				return fmt.Errorf("vulkan: Refresh: %w", err)
			}
		}
		for j, v := range layerVectors(L) {
			b := *dl.vectors()[j]
			if (b == nil) != (v == nil) || (b != nil && 4*len(v) != b.Size()) {
				return fmt.Errorf("vulkan: Refresh: layer %d changed shape since Upload", i)
			}
			if b != nil {
				if err := b.UploadF32(0, v); err != nil {
					return fmt.Errorf("vulkan: Refresh: %w", err)
				}
			}
		}
	}
	return nil
}

// Decoder returns a llama.Decoder for m.GenerateWith that runs on the
// device: every step runs the whole sequence so far through the layers
// and the final norm (there is no KV cache on the device: a short probe's
// few dozen tokens cost little) and computes the last token's logits with
// m's LM head on the host (llama.Model.Logits). m is the model the Model
// was uploaded from, with its final norm and LM head loaded.
func (dm *Model) Decoder(m *llama.Model) llama.Decoder {
	return &deviceDecoder{dm: dm, m: m}
}

type deviceDecoder struct {
	dm  *Model
	m   *llama.Model
	seq []int
}

func (d *deviceDecoder) Next(tokens []int) ([]float32, error) {
	d.seq = append(d.seq, tokens...)
	n, dim := len(d.seq), d.dm.cfg.HiddenSize
	last := make([]float32, dim)
	top := d.dm.cfg.NumLayers
	err := d.dm.Forward(llama.NewBatch([][]int{d.seq}), []int{top}, func(_ int, h []float32) error {
		copy(last, h[(n-1)*dim:])
		return nil
	})
	if err != nil {
		return nil, err
	}
	return d.m.Logits(last, 1)
}
