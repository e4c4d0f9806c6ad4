//go:build vulkan && (amd64 || arm64) && (linux || darwin || windows)

package vulkan

// One decoder layer's forward, recorded once for the inference forward
// (Forward: in place on the residual stream, nothing kept, the MLP in
// chunks of rows) and for a training step (PoolForward: every activation
// kept for the backward, LoRA branches on any projection).

// layerBufs are the spans a decoder layer's forward reads and writes, for
// T tokens. Zero Spans are what a pass does not keep.
type layerBufs struct {
	// hIn is the layer's input, hMid the residual stream after the
	// attention block, hOut the output; the inference forward passes one
	// buffer for all three (in place).
	hIn, hMid, hOut Span
	x1, x2          Span // input_layernorm's and post_attention_layernorm's outputs [T×d]
	r1, r2          Span // their reciprocal RMS [T], kept for a backward; zero: not kept
	// qRaw and kRaw receive q and k before Qwen3's q_norm and k_norm, and
	// rq, rk the norms' reciprocal RMS, when kept; zero: normalised in
	// place.
	qRaw, kRaw, rq, rk Span
	q, k, v, att       Span // q and k end rotated
	o                  Span // [T×d] scratch: o_proj's, then down_proj's output
	// gate, up and act hold mlpRows rows of the MLP [mlpRows×ffn] (the
	// MLP runs in chunks of mlpRows rows when T is larger); act may be
	// gate (silu(gate)·up in place).
	gate, up, act Span
	mlpRows       int
	mods          [7]*loraAct // the adapters on loraModules, nil where none
}

// sub is n float32 of s from element i.
func (s Span) sub(i, n int) Span { return Span{s.B, s.Off + 4*i, 4 * n} }

// proj records out = x·Wᵀ (+ the adapter's branch) (+ bias) for n rows,
// rows r0.. of the adapter's buffers, as autograd.Linear and then the
// bias.
func (dm *Model) proj(out, x Span, w weightBuf, bias *Buffer, la *loraAct, r0, n, nOut, k int, ones Span) error {
	c := dm.c
	if err := c.GEMM(out, x, w.span(), n, nOut, k, w.wt, false); err != nil {
		return err
	}
	if la != nil {
		r := la.l.Rank()
		xin := x
		if la.mask != nil {
			xin = la.xd.F32(r0*la.in, n*la.in)
			if err := c.Mul(xin, x, la.mask.F32(r0*la.in, n*la.in), n*la.in); err != nil {
				return err
			}
		}
		if err := c.LoRA(out, la.h.F32(r0*r, n*r), xin, la.a.All(), la.b.All(), n, la.in, la.out, r, la.l.Scale, true); err != nil {
			return err
		}
	}
	if bias != nil { // out += ones[n×1]·bias[nOut×1]ᵀ: exactly the bias added to each row
		return c.GEMM(out, ones.sub(0, n), bias.All(), n, nOut, 1, F32, true)
	}
	return nil
}

// rmsNorm records RMSNorm, keeping the reciprocal RMS in rr unless it is
// a zero Span.
func (dm *Model) rmsNorm(out, rr, x Span, w *Buffer, rows, n int) error {
	if rr.B != nil {
		return dm.c.RMSNormSave(out, rr, x, w.All(), rows, n, dm.eps)
	}
	return dm.c.RMSNorm(out, x, w.All(), rows, n, dm.eps)
}

// layerForward records decoder layer W's forward for T tokens of nSeq
// packed sequences (offsets, rope tables cos and sin, ones for biases):
// h_mid = h_in + o_proj(attention(rope(q_proj(x1)), rope(k_proj(x1)),
// v_proj(x1))) with x1 = input_layernorm(h_in), then h_out = h_mid +
// down_proj(silu(gate_proj(x2))·up_proj(x2)) with x2 =
// post_attention_layernorm(h_mid).
func (dm *Model) layerForward(W *deviceLayer, b *layerBufs, T, nSeq int, offsets, cos, sin, ones Span) error {
	c, cfg := dm.c, dm.cfg
	d, hd, nH, nKV, ffn := cfg.HiddenSize, cfg.HeadDim, cfg.NumHeads, cfg.NumKVHeads, cfg.IntermediateSize
	qd, kd := nH*hd, nKV*hd
	if err := dm.rmsNorm(b.x1, b.r1, b.hIn, W.attnNorm, T, d); err != nil {
		return err
	}
	q, k := b.q, b.k
	if W.qNorm != nil && b.qRaw.B != nil {
		q, k = b.qRaw, b.kRaw
	}
	if err := dm.proj(q, b.x1, W.q, W.qBias, b.mods[0], 0, T, qd, d, ones); err != nil {
		return err
	}
	if err := dm.proj(k, b.x1, W.k, W.kBias, b.mods[1], 0, T, kd, d, ones); err != nil {
		return err
	}
	if err := dm.proj(b.v, b.x1, W.v, W.vBias, b.mods[2], 0, T, kd, d, ones); err != nil {
		return err
	}
	if W.qNorm != nil {
		if err := dm.rmsNorm(b.q, b.rq, q, W.qNorm, T*nH, hd); err != nil {
			return err
		}
		if err := dm.rmsNorm(b.k, b.rk, k, W.kNorm, T*nKV, hd); err != nil {
			return err
		}
	}
	if err := c.Rope(b.q, cos, sin, T, nH, hd); err != nil {
		return err
	}
	if err := c.Rope(b.k, cos, sin, T, nKV, hd); err != nil {
		return err
	}
	if err := c.Attention(b.att, b.q, b.k, b.v, offsets, T, nSeq, nH, nKV, hd); err != nil {
		return err
	}
	if err := dm.proj(b.o, b.att, W.o, nil, b.mods[3], 0, T, d, qd, ones); err != nil {
		return err
	}
	if err := c.Add(b.hMid, b.hIn, b.o, T*d); err != nil {
		return err
	}
	if err := dm.rmsNorm(b.x2, b.r2, b.hMid, W.mlpNorm, T, d); err != nil {
		return err
	}
	for r0 := 0; r0 < T; r0 += b.mlpRows {
		n := min(b.mlpRows, T-r0)
		x2 := b.x2.sub(r0*d, n*d)
		gate, up, act := b.gate.sub(0, n*ffn), b.up.sub(0, n*ffn), b.act.sub(0, n*ffn)
		if err := dm.proj(gate, x2, W.gate, nil, b.mods[4], r0, n, ffn, d, ones); err != nil {
			return err
		}
		if err := dm.proj(up, x2, W.up, nil, b.mods[5], r0, n, ffn, d, ones); err != nil {
			return err
		}
		if err := c.SiLUMul(act, gate, up, n*ffn); err != nil {
			return err
		}
		if err := dm.proj(b.o.sub(r0*d, n*d), act, W.down, nil, b.mods[6], r0, n, d, ffn, ones); err != nil {
			return err
		}
	}
	return c.Add(b.hOut, b.hMid, b.o, T*d)
}
