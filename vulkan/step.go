//go:build vulkan && (amd64 || arm64) && (linux || darwin || windows)

package vulkan

import (
	"errors"
	"fmt"
	"slices"

	"github.com/tli-project/tli/autograd"
	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/llama"
)

// The model's part of a TLI training step on the device (tli.StepModel):
// PoolForward runs a batch to the target layer with LoRA adapters on any of
// q/k/v/o/gate/up/down_proj, keeping every activation the backward needs
// on the device, and returns only the masked mean of each sequence's rows;
// PoolBackward takes the pooled vectors' gradient (the loss between the two
// is the host's: a few n×d values) back through the layers to the lowest
// adapted one and downloads only the adapters' gradients. It computes what
// llama.Model.ForwardTrain with autograd.MeanPool and the tape's backward
// compute, in f32: the same dropout masks (drawn from the same
// autograd.Dropout in the same order), the LoRA branch added to the frozen
// product before a Qwen2 bias, as PEFT and the CPU do.

// loraModules are the LoRA targets of a Llama-family layer, in the order
// ForwardTrain applies them (and draws their dropout masks).
var loraModules = [7]string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}

// loraAct is one adapter of a step: its parameters on the device, the
// dropped-out input when dropout is on, h = x_d·Aᵀ, and its gradients.
type loraAct struct {
	l        *autograd.LoRA
	in, out  int
	a, b, h  *Buffer
	mask, xd *Buffer // nil without dropout
	da, db   *Buffer
}

// layerAct is what the forward of one decoder layer keeps for its
// backward.
type layerAct struct {
	hIn          *Buffer // the layer's input (hidden_states[i])
	x1, r1       *Buffer // input_layernorm's output and reciprocal RMS
	qRaw, kRaw   *Buffer // q and k before q_norm/k_norm (Qwen3), else nil
	rq, rk       *Buffer // q_norm's and k_norm's reciprocal RMS
	q, k, v, att *Buffer // q and k after rope; the attention's output
	hMid         *Buffer // h after the attention block
	x2, r2       *Buffer // post_attention_layernorm's output and reciprocal RMS
	gate, up     *Buffer // the MLP's projections (overwritten by their gradients)
	act          *Buffer // silu(gate)·up, down_proj's input
	mods         [7]*loraAct
}

// stepState is what PoolForward keeps for PoolBackward.
type stepState struct {
	T, nSeq, layer int
	bufs           []*Buffer // every buffer of the step, freed when it ends
	err            error     // the first failed alloc
	offsets, mask  *Buffer
	cos, sin, ones *Buffer
	hTop           *Buffer // hidden_states[layer]
	pooled         *Buffer
	layers         []*layerAct
}

// alloc allocates a buffer of n float32s that lives until the step ends.
// The first failure is kept in s.err, and later calls return nil: a run of
// allocations is checked once, after it.
func (s *stepState) alloc(c *Context, n int) *Buffer {
	if s.err != nil {
		return nil
	}
	b, err := c.Alloc(4 * max(n, 1))
	if err != nil {
		s.err = err
		return nil
	}
	s.bufs = append(s.bufs, b)
	return b
}

// endStep frees the step's buffers (after the kernels that use them).
func (dm *Model) endStep() {
	if dm.step == nil {
		return
	}
	for _, b := range dm.step.bufs {
		b.Free()
	}
	dm.step = nil
}

// adapterAt is the adapter of module at layer l, or nil.
func adapterAt(a llama.Adapters, l int, module string) *autograd.LoRA {
	if l >= len(a) || a[l] == nil {
		return nil
	}
	return a[l][module]
}

// PoolForward implements tli.StepModel on the device: it runs b to
// hidden_states[layer] with the adapters (the dropout masks drawn from drop
// in ForwardTrain's order; nil: no dropout) and returns the mean of each
// sequence's rows whose mask is true (nil: every row), [S×d]. What the
// backward needs stays on the device until PoolBackward (or the next
// PoolForward, or Close).
func (dm *Model) PoolForward(b llama.Batch, mask []bool, layer int, adapters llama.Adapters, drop *autograd.Dropout) ([]float32, error) {
	cfg := dm.cfg
	if layer < 0 || layer > cfg.NumLayers {
		return nil, fmt.Errorf("vulkan: PoolForward: target layer %d is outside 0..%d", layer, cfg.NumLayers)
	}
	if err := adapters.Check(cfg); err != nil {
		return nil, fmt.Errorf("vulkan: PoolForward: %w", err)
	}
	for l, mods := range adapters {
		for name, ad := range mods {
			if ad != nil && l < layer && !knownModule(name) {
				return nil, fmt.Errorf("vulkan: PoolForward: layer %d: LoRA on %s is not implemented on the device", l, name)
			}
		}
	}
	if err := checkBatch(cfg, b); err != nil {
		return nil, err
	}
	T, nSeq := len(b.Tokens), b.NumSeqs()
	if T == 0 {
		return nil, errors.New("vulkan: PoolForward: an empty batch")
	}
	if mask != nil && len(mask) != T {
		return nil, fmt.Errorf("vulkan: PoolForward: the mask has %d entries for %d tokens", len(mask), T)
	}
	for s := 0; s < nSeq; s++ {
		n := 0
		for t := b.Offsets[s]; t < b.Offsets[s+1]; t++ {
			if mask == nil || mask[t] {
				n++
			}
		}
		if n == 0 {
			return nil, fmt.Errorf("vulkan: PoolForward: sequence %d has no token to pool", s)
		}
	}
	dm.mu.Lock()
	defer dm.mu.Unlock()
	if dm.closed {
		return nil, fmt.Errorf("vulkan: PoolForward on a closed Model: %w", ErrClosed)
	}
	if dm.embed.b == nil && dm.hostEmbed == nil {
		return nil, errors.New("vulkan: the embedding was not loaded")
	}
	for i := 0; i < layer; i++ {
		if !dm.loaded[i] {
			return nil, fmt.Errorf("vulkan: PoolForward: target layer %d needs decoder layer %d, which was not loaded", layer, i)
		}
	}
	dm.endStep()
	if err := dm.c.Sync(); err != nil { // the frees of an unfinished step
		return nil, err
	}
	masks := dropoutMasks(dm.cfg, adapters, layer, T, drop)
	s := &stepState{T: T, nSeq: nSeq, layer: layer}
	dm.step = s
	pooled, err := dm.poolForward(s, b, mask, adapters, masks)
	if errors.Is(err, ErrOutOfMemory) && dm.act != nil {
		// The inference forward's activations (a streamed model keeps
		// room for them) make way for the step's.
		dm.endStep()
		dm.act.free()
		dm.act = nil
		if err := dm.c.Sync(); err != nil {
			return nil, err
		}
		s = &stepState{T: T, nSeq: nSeq, layer: layer}
		dm.step = s
		pooled, err = dm.poolForward(s, b, mask, adapters, masks)
	}
	if err != nil {
		dm.endStep()
		if errors.Is(err, ErrOutOfMemory) {
			return nil, fmt.Errorf("vulkan: the activations of a training step of %d tokens to layer %d do not fit the device memory beside the weights: %w", T, layer, err)
		}
		return nil, fmt.Errorf("vulkan: PoolForward: %w", err)
	}
	return pooled, nil
}

func knownModule(name string) bool { return slices.Contains(loraModules[:], name) }

// moduleDims are the input and output sizes of loraModules' projections.
func moduleDims(cfg llama.Config) (in, out [7]int) {
	d, qd, kd, ffn := cfg.HiddenSize, cfg.NumHeads*cfg.HeadDim, cfg.NumKVHeads*cfg.HeadDim, cfg.IntermediateSize
	return [7]int{d, d, d, qd, d, d, ffn}, [7]int{qd, kd, kd, d, ffn, ffn, d}
}

// dropoutMasks draws the dropout masks of a step's adapters from drop, in
// ForwardTrain's order (layer by layer, loraModules' order), T×in each;
// nil where an adapter has no dropout, all nil when drop is nil.
func dropoutMasks(cfg llama.Config, adapters llama.Adapters, layer, T int, drop *autograd.Dropout) [][7][]float32 {
	masks := make([][7][]float32, layer)
	if drop == nil {
		return masks
	}
	in, _ := moduleDims(cfg)
	for l := 0; l < layer; l++ {
		for j, name := range loraModules {
			if ad := adapterAt(adapters, l, name); ad != nil && ad.Dropout > 0 {
				masks[l][j] = make([]float32, T*in[j])
				drop.Mask(masks[l][j], ad.Dropout)
			}
		}
	}
	return masks
}

func (dm *Model) poolForward(s *stepState, b llama.Batch, mask []bool, adapters llama.Adapters, masks [][7][]float32) ([]float32, error) {
	c, cfg := dm.c, dm.cfg
	T, nSeq := s.T, s.nSeq
	d, hd, nH, nKV, ffn := cfg.HiddenSize, cfg.HeadDim, cfg.NumHeads, cfg.NumKVHeads, cfg.IntermediateSize
	qd, kd := nH*hd, nKV*hd
	if w := max(d, qd, ffn); 4*uint64(T)*uint64(w) > c.rangeLimit {
		return nil, fmt.Errorf("a batch of %d tokens needs activations of %s in one binding, more than the device's maxStorageBufferRange (%s): split the batch",
			T, byteSize(4*uint64(T)*uint64(w)), byteSize(c.rangeLimit))
	}
	alloc := func(n int) *Buffer { return s.alloc(c, n) }
	// The batch: ids, offsets, rope tables, the pooling mask, ones for biases.
	ids, offs := batchU32(b)
	m32 := make([]uint32, T)
	for i := range m32 {
		if mask == nil || mask[i] {
			m32[i] = 1
		}
	}
	cos, sin := dm.rope.Tables(engine.Positions(b.Offsets), b.MaxLen())
	idsBuf := alloc(T)
	s.offsets, s.mask = alloc(nSeq+1), alloc(T)
	s.cos, s.sin = alloc(T*hd/2), alloc(T*hd/2)
	if dm.biases {
		s.ones = alloc(T)
	}
	if s.err != nil {
		return nil, s.err
	}
	ups := []func() error{
		func() error { return idsBuf.UploadU32(0, ids) },
		func() error { return s.offsets.UploadU32(0, offs) },
		func() error { return s.mask.UploadU32(0, m32) },
		func() error { return s.cos.UploadF32(0, cos) },
		func() error { return s.sin.UploadF32(0, sin) },
	}
	if s.ones != nil {
		ones := make([]float32, T)
		for i := range ones {
			ones[i] = 1
		}
		ups = append(ups, func() error { return s.ones.UploadF32(0, ones) })
	}
	for _, up := range ups {
		if err := up(); err != nil {
			return nil, err
		}
	}

	// Every layer's activations and adapters, allocated and filled (the
	// adapters' parameters and dropout masks, drawn in ForwardTrain's
	// order) before any kernel is recorded: an upload runs the recorded
	// kernels first.
	inDims, outDims := moduleDims(cfg)
	s.layers = make([]*layerAct, s.layer)
	for l := 0; l < s.layer; l++ {
		L := &layerAct{}
		s.layers[l] = L
		L.hIn = alloc(T * d)
		L.x1, L.r1 = alloc(T*d), alloc(T)
		L.q, L.k, L.v, L.att = alloc(T*qd), alloc(T*kd), alloc(T*kd), alloc(T*qd)
		if dm.hasQKNorm(l) {
			L.qRaw, L.kRaw = alloc(T*qd), alloc(T*kd)
			L.rq, L.rk = alloc(T*nH), alloc(T*nKV)
		}
		L.hMid, L.x2, L.r2 = alloc(T*d), alloc(T*d), alloc(T)
		L.gate, L.up, L.act = alloc(T*ffn), alloc(T*ffn), alloc(T*ffn)
		for j, name := range loraModules {
			ad := adapterAt(adapters, l, name)
			if ad == nil {
				continue
			}
			r := ad.Rank()
			la := &loraAct{l: ad, in: inDims[j], out: outDims[j]}
			la.a, la.b, la.h = alloc(r*la.in), alloc(la.out*r), alloc(T*r)
			la.da, la.db = alloc(r*la.in), alloc(la.out*r)
			if masks[l][j] != nil {
				la.mask, la.xd = alloc(T*la.in), alloc(T*la.in)
			}
			if s.err != nil {
				return nil, s.err
			}
			if err := la.a.UploadF32(0, ad.A.Data); err != nil {
				return nil, err
			}
			if err := la.b.UploadF32(0, ad.B.Data); err != nil {
				return nil, err
			}
			if la.mask != nil {
				if err := la.mask.UploadF32(0, masks[l][j]); err != nil {
					return nil, err
				}
			}
			L.mods[j] = la
		}
	}
	s.hTop = alloc(T * d)
	s.pooled = alloc(nSeq * d)
	if s.err != nil {
		return nil, s.err
	}

	// hidden_states[0]: the embedding.
	h0 := s.hTop
	if s.layer > 0 {
		h0 = s.layers[0].hIn
	}
	if dm.hostEmbed != nil {
		host := make([]float32, T*d)
		engine.Embed(host, dm.hostEmbed, b.Tokens)
		if err := h0.UploadF32(0, host); err != nil {
			return nil, err
		}
	} else if err := c.Embed(h0.All(), dm.embed.span(), idsBuf.U32(0, T), T, d, cfg.VocabSize, dm.embed.wt); err != nil {
		return nil, err
	}
	for l := 0; l < s.layer; l++ {
		out := s.hTop
		if l+1 < s.layer {
			out = s.layers[l+1].hIn
		}
		W := dm.layers[l]
		if W == nil {
			var err error
			if W, err = dm.stream(l); err != nil {
				return nil, fmt.Errorf("streaming layer %d: %w", l, err)
			}
		}
		if err := dm.trainLayer(s, W, s.layers[l], out); err != nil {
			return nil, fmt.Errorf("layer %d: %w", l, err)
		}
	}
	if err := c.MeanPool(s.pooled.All(), s.hTop.All(), s.mask.All(), s.offsets.All(), T, nSeq, d); err != nil {
		return nil, err
	}
	pooled := make([]float32, nSeq*d)
	if err := s.pooled.DownloadF32(0, pooled); err != nil {
		return nil, err
	}
	return pooled, nil
}

// hasQKNorm reports whether layer l has Qwen3's q_norm and k_norm.
func (dm *Model) hasQKNorm(l int) bool {
	if W := dm.layers[l]; W != nil {
		return W.qNorm != nil
	}
	L := dm.src.Layers[l]
	return L != nil && L.QNorm != nil
}

// trainLayer records decoder layer W's forward from L.hIn into out,
// keeping its activations in L (out is o_proj's and down_proj's scratch
// before it takes the output).
func (dm *Model) trainLayer(s *stepState, W *deviceLayer, L *layerAct, out *Buffer) error {
	b := &layerBufs{hIn: L.hIn.All(), hMid: L.hMid.All(), hOut: out.All(), x1: L.x1.All(), x2: L.x2.All(), r1: L.r1.All(), r2: L.r2.All(),
		q: L.q.All(), k: L.k.All(), v: L.v.All(), att: L.att.All(), o: out.All(),
		gate: L.gate.All(), up: L.up.All(), act: L.act.All(), mlpRows: s.T, mods: L.mods}
	if L.qRaw != nil {
		b.qRaw, b.kRaw, b.rq, b.rk = L.qRaw.All(), L.kRaw.All(), L.rq.All(), L.rk.All()
	}
	var ones Span
	if s.ones != nil {
		ones = s.ones.All()
	}
	return dm.layerForward(W, b, s.T, s.nSeq, s.offsets.All(), s.cos.All(), s.sin.All(), ones)
}

// PoolBackward implements tli.StepModel on the device: from dpooled
// [S×d], the gradient of the last PoolForward's result, it runs the
// backward through the layers down to the lowest one with an adapter and
// adds the adapters' gradients to their parameters' Grad (allocated when
// nil). The step's device memory is released.
func (dm *Model) PoolBackward(dpooled []float32) error {
	dm.mu.Lock()
	defer dm.mu.Unlock()
	s := dm.step
	if s == nil {
		return errors.New("vulkan: PoolBackward without a PoolForward")
	}
	defer dm.endStep()
	d := dm.cfg.HiddenSize
	if len(dpooled) != s.nSeq*d {
		return fmt.Errorf("vulkan: PoolBackward: %d values for the gradient of %d pooled vectors of %d", len(dpooled), s.nSeq, d)
	}
	lowest := -1
	for l := s.layer - 1; l >= 0; l-- {
		for _, la := range s.layers[l].mods {
			if la != nil {
				lowest = l
			}
		}
	}
	if lowest < 0 {
		return errors.New("vulkan: PoolBackward: the loss does not depend on any trainable parameter")
	}
	if err := dm.poolBackward(s, dpooled, lowest); err != nil {
		if errors.Is(err, ErrOutOfMemory) {
			return fmt.Errorf("vulkan: the gradients of a training step of %d tokens do not fit the device memory: %w", s.T, err)
		}
		return fmt.Errorf("vulkan: PoolBackward: %w", err)
	}
	return nil
}

// backScratch are the gradient buffers of the backward, shared by the
// layers.
type backScratch struct {
	dh, dx                 *Buffer // [T×d]: the residual stream's gradient; an input's
	dwide                  *Buffer // [T×max(ffn, qd)]: down_proj's or o_proj's input gradient
	dq, dk, dv, stats, tmp *Buffer
	dlh                    *Buffer // [T×max rank]
}

func (dm *Model) poolBackward(s *stepState, dpooled []float32, lowest int) error {
	c, cfg := dm.c, dm.cfg
	T, nSeq := s.T, s.nSeq
	d, hd, nH, nKV, ffn := cfg.HiddenSize, cfg.HeadDim, cfg.NumHeads, cfg.NumKVHeads, cfg.IntermediateSize
	qd, kd := nH*hd, nKV*hd
	rank := 1
	for _, L := range s.layers {
		for _, la := range L.mods {
			if la != nil {
				rank = max(rank, la.l.Rank())
			}
		}
	}
	alloc := func(n int) *Buffer { return s.alloc(c, n) }
	g := backScratch{dh: alloc(T * d), dx: alloc(T * d), dwide: alloc(T * max(ffn, qd)),
		dq: alloc(T * qd), dk: alloc(T * kd), dv: alloc(T * kd), stats: alloc(2 * T * nH),
		tmp: alloc(T * max(d, qd, ffn)), dlh: alloc(T * rank)}
	dp := alloc(nSeq * d)
	if s.err != nil {
		return s.err
	}
	if err := dp.UploadF32(0, dpooled); err != nil {
		return err
	}
	if err := c.MeanPoolBackward(g.dh.All(), dp.All(), s.mask.All(), s.offsets.All(), T, nSeq, d); err != nil {
		return err
	}
	for l := s.layer - 1; l >= lowest; l-- {
		W := dm.layers[l]
		if W == nil {
			var err error
			if W, err = dm.stream(l); err != nil {
				return fmt.Errorf("streaming layer %d: %w", l, err)
			}
		}
		if err := dm.backLayer(s, W, s.layers[l], &g, l > lowest); err != nil {
			return fmt.Errorf("layer %d: %w", l, err)
		}
	}
	if err := c.Sync(); err != nil {
		return err
	}
	for l := lowest; l < s.layer; l++ {
		for _, la := range s.layers[l].mods {
			if la == nil {
				continue
			}
			for _, pg := range []struct {
				p *autograd.Param
				b *Buffer
			}{{la.l.A, la.da}, {la.l.B, la.db}} {
				grad := make([]float32, len(pg.p.Data))
				if err := pg.b.DownloadF32(0, grad); err != nil {
					return err
				}
				if pg.p.Grad == nil {
					pg.p.Grad = grad
				} else {
					engine.Add(pg.p.Grad, grad)
				}
			}
		}
	}
	return nil
}

// loraBack records the backward of an adapter from dy, the gradient of its
// layer's output: its parameters' gradients (written), and the gradient of
// its input added to dx (through the dropout mask).
func (dm *Model) loraBack(s *stepState, g *backScratch, la *loraAct, dy, x, dx Span) error {
	if la == nil {
		return nil
	}
	c, T, r := dm.c, s.T, la.l.Rank()
	xin := x
	if la.mask != nil {
		xin = la.xd.All()
	}
	dlh := g.dlh.F32(0, T*r)
	if la.mask == nil {
		return c.LoRABackward(dx, la.da.All(), la.db.All(), dlh, dy, xin, la.a.All(), la.b.All(), la.h.All(), T, la.in, la.out, r, la.l.Scale, false, true)
	}
	tmp := g.tmp.F32(0, T*la.in)
	if err := c.LoRABackward(tmp, la.da.All(), la.db.All(), dlh, dy, xin, la.a.All(), la.b.All(), la.h.All(), T, la.in, la.out, r, la.l.Scale, false, false); err != nil {
		return err
	}
	if err := c.Mul(tmp, tmp, la.mask.All(), T*la.in); err != nil {
		return err
	}
	return c.Add(dx, dx, tmp, T*la.in)
}

// backLayer records the backward of decoder layer W from g.dh, the
// gradient of its output: the adapters' gradients and, when needIn, the
// gradient of its input in g.dh (the residual stream carries on down).
func (dm *Model) backLayer(s *stepState, W *deviceLayer, L *layerAct, g *backScratch, needIn bool) error {
	c, cfg := dm.c, dm.cfg
	T, nSeq := s.T, s.nSeq
	d, hd, nH, nKV, ffn := cfg.HiddenSize, cfg.HeadDim, cfg.NumHeads, cfg.NumKVHeads, cfg.IntermediateSize
	qd, kd := nH*hd, nKV*hd
	dh := g.dh.All()

	// MLP: out = h_mid + down(silu(gate)·up).
	dact := g.dwide.F32(0, T*ffn)
	if err := c.GEMMNN(dact, dh, W.down.span(), T, ffn, d, W.down.wt, false); err != nil {
		return err
	}
	if err := dm.loraBack(s, g, L.mods[6], dh, L.act.All(), dact); err != nil {
		return err
	}
	dgate, dup := L.gate.All(), L.up.All() // the projections are no longer needed
	if err := c.SiLUMulBackward(dgate, dup, dact, L.gate.All(), L.up.All(), T*ffn); err != nil {
		return err
	}
	dx := g.dx.All()
	if err := c.GEMMNN(dx, dgate, W.gate.span(), T, d, ffn, W.gate.wt, false); err != nil {
		return err
	}
	if err := c.GEMMNN(dx, dup, W.up.span(), T, d, ffn, W.up.wt, true); err != nil {
		return err
	}
	if err := dm.loraBack(s, g, L.mods[4], dgate, L.x2.All(), dx); err != nil {
		return err
	}
	if err := dm.loraBack(s, g, L.mods[5], dup, L.x2.All(), dx); err != nil {
		return err
	}
	if err := c.RMSNormBackward(dh, dx, L.hMid.All(), W.mlpNorm.All(), L.r2.All(), T, d, true); err != nil {
		return err
	}

	// Attention: h_mid = h + o_proj(attention(...)).
	datt := g.dwide.F32(0, T*qd)
	if err := c.GEMMNN(datt, dh, W.o.span(), T, qd, d, W.o.wt, false); err != nil {
		return err
	}
	if err := dm.loraBack(s, g, L.mods[3], dh, L.att.All(), datt); err != nil {
		return err
	}
	dq, dk, dv := g.dq.All(), g.dk.All(), g.dv.All()
	if err := c.AttentionBackward(dq, dk, dv, g.stats.All(), datt, L.q.All(), L.k.All(), L.v.All(), s.offsets.All(), T, nSeq, nH, nKV, hd); err != nil {
		return err
	}
	if err := c.RopeBackward(dq, s.cos.All(), s.sin.All(), T, nH, hd); err != nil {
		return err
	}
	if err := c.RopeBackward(dk, s.cos.All(), s.sin.All(), T, nKV, hd); err != nil {
		return err
	}
	if L.qRaw != nil {
		if err := c.RMSNormBackward(dq, dq, L.qRaw.All(), W.qNorm.All(), L.rq.All(), T*nH, hd, false); err != nil {
			return err
		}
		if err := c.RMSNormBackward(dk, dk, L.kRaw.All(), W.kNorm.All(), L.rk.All(), T*nKV, hd, false); err != nil {
			return err
		}
	}
	if needIn {
		if err := c.GEMMNN(dx, dq, W.q.span(), T, d, qd, W.q.wt, false); err != nil {
			return err
		}
		if err := c.GEMMNN(dx, dk, W.k.span(), T, d, kd, W.k.wt, true); err != nil {
			return err
		}
		if err := c.GEMMNN(dx, dv, W.v.span(), T, d, kd, W.v.wt, true); err != nil {
			return err
		}
	}
	x1 := L.x1.All()
	for j, dy := range []Span{dq, dk, dv} {
		if err := dm.loraBack(s, g, L.mods[j], dy, x1, dx); err != nil {
			return err
		}
	}
	if !needIn {
		return nil
	}
	return c.RMSNormBackward(dh, dx, L.hIn.All(), W.attnNorm.All(), L.r1.All(), T, d, true)
}
