package autograd

import (
	"fmt"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/kernels"
)

// This file holds the ops of a Llama decoder layer on the tape. Each op runs
// the engine's forward; when an input is tracked it records a backward that
// keeps only what that backward needs. Matrices are packed batches as in
// engine: T rows (tokens of several sequences), offsets delimiting sequences.

// LoRA is a low-rank adapter on one frozen Linear layer W [out×in], as PEFT
// applies it: y = x·Wᵀ + (dropout(x)·Aᵀ·Bᵀ)·Scale.
type LoRA struct {
	A       *Param  // lora_A.weight [r × in]
	B       *Param  // lora_B.weight [out × r]
	Scale   float32 // lora_alpha / r
	Dropout float32 // dropout probability on the adapter's input (training only)
}

// Rank is r.
func (l *LoRA) Rank() int { return l.A.Rows }

// Params returns A and B.
func (l *LoRA) Params() []*Param { return []*Param{l.A, l.B} }

// Linear computes y = x·Wᵀ for a frozen weight W [out×in] (f32, bf16 or f16;
// fast selects PyTorch's bf16 activation rounding, see engine.MatMulNT), plus
// the LoRA branch when lora is not nil. The backward passes dx = dy·W through
// the frozen weight without forming a weight gradient, and adds
// dB = (s·dy)ᵀ·(x_d·Aᵀ) and dA = ((s·dy)·B)ᵀ·x_d to the adapter, x_d being the
// dropped-out input.
func Linear(t *Tape, x *Var, w *engine.Tensor, lora *LoRA, fast bool) *Var {
	out, in := w.Shape[0], w.Shape[1]
	if x.Cols != in {
		panic(fmt.Sprintf("autograd.Linear: input has %d columns, weight is %v", x.Cols, w.Shape))
	}
	T := x.Rows
	y := &Var{Data: t.alloc(T * out), Rows: T, Cols: out}
	engine.MatMulNT(y.Data, x.Data, T, w, false, fast)
	engine.RoundTo(y.Data, t.Round)
	xn := x.node
	if lora == nil {
		if xn == nil {
			return y
		}
		return t.record(y, func(dy []float32) {
			engine.MatMulNN(xn.buf(), dy, T, w, true, fast)
		})
	}
	A, B, r := lora.A, lora.B, lora.A.Rows
	if A.Cols != in || B.Rows != out || B.Cols != r {
		panic(fmt.Sprintf("autograd.Linear: LoRA A %d×%d and B %d×%d do not fit weight %v", A.Rows, A.Cols, B.Rows, B.Cols, w.Shape))
	}
	// Dropout on the adapter's input, as torch.nn.Dropout: keep with
	// probability 1−p and scale kept values by 1/(1−p).
	xd, mask := x.Data, []float32(nil)
	if t.drop != nil && lora.Dropout > 0 {
		mask = t.alloc(len(x.Data))
		xd = t.alloc(len(x.Data))
		t.drop.Mask(mask, lora.Dropout)
		for i, v := range x.Data {
			if mask[i] != 0 {
				xd[i] = v * mask[i]
			}
		}
	}
	mid := t.alloc(T * r) // x_d·Aᵀ
	kernels.GemmNT(T, r, in, xd, in, A.Data, in, mid, r, false)
	u := t.alloc(T * out) // mid·Bᵀ
	kernels.GemmNT(T, out, r, mid, r, B.Data, r, u, out, false)
	// PEFT adds the branch to the frozen layer's output; in a rounded dtype
	// a 4-bit layer's branch is cast to it first (bnb Linear4bit), another
	// layer's sum is cast once (lora.Linear).
	q4 := w.DType == engine.Q4
	for i, v := range u {
		u[i] = v * lora.Scale
	}
	if q4 {
		engine.RoundTo(u, t.Round)
	}
	engine.AddRounded(y.Data, u, t.Round)
	return t.record(y, func(dy []float32) {
		if xn != nil {
			engine.MatMulNN(xn.buf(), dy, T, w, true, fast)
		}
		du := t.alloc(len(dy))
		for i, v := range dy {
			du[i] = v * lora.Scale
		}

		kernels.GemmTN(out, r, T, du, out, mid, r, B.grad(), r, true)
		dmid := t.alloc(T * r)
		kernels.GemmNN(T, r, out, du, out, B.Data, r, dmid, r, false)
		kernels.GemmTN(r, in, T, dmid, r, xd, in, A.grad(), in, true)
		if xn != nil {
			dxd := t.alloc(T * in)
			kernels.GemmNN(T, in, r, dmid, r, A.Data, in, dxd, in, false)
			dx := xn.buf()
			for i, v := range dxd {
				if mask != nil {
					v *= mask[i]
				}
				dx[i] += v
			}
		}
	})
}

// RMSNorm normalises each row of x and multiplies by the frozen weight w
// (engine.RMSNorm); the backward keeps x and the reciprocal RMS values.
func RMSNorm(t *Tape, x *Var, w []float32, eps float32) *Var {
	T, d := x.Rows, x.Cols
	y := &Var{Data: t.alloc(T * d), Rows: T, Cols: d}
	xn, xd := x.node, x.Data
	if xn == nil {
		engine.RMSNormRounded(y.Data, xd, w, T, d, eps, t.Round, nil)
		return y
	}
	rstd := t.alloc(T)
	engine.RMSNormRounded(y.Data, xd, w, T, d, eps, t.Round, rstd)
	return t.record(y, func(dy []float32) {
		engine.RMSNormBackward(xn.buf(), dy, xd, w, rstd, T, d, true)
	})
}

// LayerNorm normalises each row of x (mean and variance) and applies the
// frozen weight w and bias b (engine.LayerNorm); the backward keeps x and
// the rows' mean and reciprocal standard deviation.
func LayerNorm(t *Tape, x *Var, w, b []float32, eps float32) *Var {
	T, d := x.Rows, x.Cols
	y := &Var{Data: t.alloc(T * d), Rows: T, Cols: d}
	xn, xd := x.node, x.Data
	if xn == nil {
		engine.LayerNorm(y.Data, xd, w, b, T, d, eps, nil, nil)
		engine.RoundTo(y.Data, t.Round)
		return y
	}
	mean, rstd := t.alloc(T), t.alloc(T)
	engine.LayerNorm(y.Data, xd, w, b, T, d, eps, mean, rstd)
	engine.RoundTo(y.Data, t.Round)
	return t.record(y, func(dy []float32) {
		engine.LayerNormBackward(xn.buf(), dy, xd, w, mean, rstd, T, d, true)
	})
}

// GELU is tanh-approximated GELU, element by element (BLOOM's MLP).
func GELU(t *Tape, x *Var) *Var {
	y := &Var{Data: append([]float32(nil), x.Data...), Rows: x.Rows, Cols: x.Cols}
	engine.GELUTanhInPlace(y.Data)
	engine.RoundTo(y.Data, t.Round)
	xn, xd := x.node, x.Data
	if xn == nil {
		return y
	}
	return t.record(y, func(dy []float32) {
		dx := t.alloc(len(dy))
		engine.GELUTanhBackward(dx, dy, xd)
		engine.Add(xn.buf(), dx)
	})
}

// HeadPart takes part `part` of `parts` from every head of x [T ×
// nHeads·parts·headDim], whose rows hold per head its parts one after
// another (BLOOM's fused query_key_value: parts 3, q k v), giving
// [T × nHeads·headDim].
func HeadPart(t *Tape, x *Var, nHeads, parts, part, headDim int) *Var {
	T := x.Rows
	y := &Var{Data: t.alloc(T * nHeads * headDim), Rows: T, Cols: nHeads * headDim}
	engine.HeadPart(y.Data, x.Data, T, nHeads, parts, part, headDim, false)
	xn := x.node
	if xn == nil {
		return y
	}
	return t.record(y, func(dy []float32) {
		engine.HeadPart(dy, xn.buf(), T, nHeads, parts, part, headDim, true)
	})
}

// Rope applies rotary embeddings (engine.ApplyRope) to a copy of x
// [T × nHeads·headDim] with the tables of engine.Rope.Tables.
func Rope(t *Tape, x *Var, nHeads, headDim int, cos, sin []float32) *Var {
	y := &Var{Data: append([]float32(nil), x.Data...), Rows: x.Rows, Cols: x.Cols}
	engine.ApplyRopeRounded(y.Data, x.Rows, nHeads, headDim, cos, sin, t.Round)
	xn, T := x.node, x.Rows
	if xn == nil {
		return y
	}
	return t.record(y, func(dy []float32) {
		d := append([]float32(nil), dy...)
		engine.ApplyRopeBackward(d, T, nHeads, headDim, cos, sin)
		engine.Add(xn.buf(), d)
	})
}

// Attention is causal grouped-query attention over a packed batch
// (engine.Attention); the backward keeps q, k, v and the probabilities.
func Attention(t *Tape, q, k, v *Var, offsets []int, nHeads, nKV, headDim int) *Var {
	return AttentionWith(t, q, k, v, offsets, nHeads, nKV, headDim, engine.AttentionOptions{})
}

// AttentionWith is Attention with the variants of opt (a sliding window,
// ALiBi slopes, a scale, soft-capping: engine.AttentionWith).
func AttentionWith(t *Tape, q, k, v *Var, offsets []int, nHeads, nKV, headDim int, opt engine.AttentionOptions) *Var {
	T := q.Rows
	y := &Var{Data: t.alloc(T * nHeads * headDim), Rows: T, Cols: nHeads * headDim}
	qd, kd, vd := q.Data, k.Data, v.Data
	qn, kn, vn := q.node, k.node, v.node
	if qn == nil && kn == nil && vn == nil {
		engine.AttentionWith(y.Data, qd, kd, vd, offsets, nHeads, nKV, headDim, nil, opt)
		engine.RoundTo(y.Data, t.Round)
		return y
	}
	probs := t.alloc(engine.AttentionProbsLen(offsets, nHeads))
	engine.AttentionWith(y.Data, qd, kd, vd, offsets, nHeads, nKV, headDim, probs, opt)
	engine.RoundTo(y.Data, t.Round)
	return t.record(y, func(dy []float32) {
		dq := t.alloc(len(qd))
		dk := t.alloc(len(kd))
		dv := t.alloc(len(vd))
		engine.AttentionBackwardWith(dq, dk, dv, dy, qd, kd, vd, probs, offsets, nHeads, nKV, headDim, opt)
		for _, p := range []struct {
			n *slot
			g []float32
		}{{qn, dq}, {kn, dk}, {vn, dv}} {
			if p.n != nil {
				engine.Add(p.n.buf(), p.g)
			}
		}
	})
}

// SiLUMul is silu(gate)·up, element by element (Llama's SwiGLU).
func SiLUMul(t *Tape, gate, up *Var) *Var {
	return gatedAct(t, gate, up, engine.SiLUMul, engine.SiLU, engine.SiLUMulBackward)
}

// GELUMul is gelu_tanh(gate)·up, element by element (Gemma's GeGLU).
func GELUMul(t *Tape, gate, up *Var) *Var {
	return gatedAct(t, gate, up, engine.GELUTanhMul, engine.GELUTanh, engine.GELUTanhMulBackward)
}

// gatedAct is act(gate)·up with the engine's forward and backward of act
// (engine.GatedRounded when the tape rounds).
func gatedAct(t *Tape, gate, up *Var, fwd func(out, gate, up []float32), act func(float32) float32, bwd func(dgate, dup, dy, gate, up []float32)) *Var {
	y := &Var{Data: t.alloc(len(gate.Data)), Rows: gate.Rows, Cols: gate.Cols}
	if t.Round != engine.F32 {
		engine.GatedRounded(y.Data, gate.Data, up.Data, act, t.Round)
	} else {
		fwd(y.Data, gate.Data, up.Data)
	}
	gd, ud, gn, un := gate.Data, up.Data, gate.node, up.node
	if gn == nil && un == nil {
		return y
	}
	return t.record(y, func(dy []float32) {
		dg := t.alloc(len(dy))
		du := t.alloc(len(dy))
		bwd(dg, du, dy, gd, ud)
		if gn != nil {
			engine.Add(gn.buf(), dg)
		}
		if un != nil {
			engine.Add(un.buf(), du)
		}
	})
}

// AddBias is x + b with b [x.Cols] added to every row (a frozen bias: the
// gradient goes to x unchanged).
func AddBias(t *Tape, x *Var, b []float32) *Var {
	y := &Var{Data: append([]float32(nil), x.Data...), Rows: x.Rows, Cols: x.Cols}
	engine.AddBias(y.Data, b, x.Rows, x.Cols)
	engine.RoundTo(y.Data, t.Round)
	xn := x.node
	if xn == nil {
		return y
	}
	return t.record(y, func(dy []float32) {
		engine.Add(xn.buf(), dy)
	})
}

// Add is x + y (the residual connection).
func Add(t *Tape, x, y *Var) *Var {
	z := &Var{Data: append([]float32(nil), x.Data...), Rows: x.Rows, Cols: x.Cols}
	engine.AddRounded(z.Data, y.Data, t.Round)
	xn, yn := x.node, y.node
	if xn == nil && yn == nil {
		return z
	}
	return t.record(z, func(dz []float32) {
		if xn != nil {
			engine.Add(xn.buf(), dz)
		}
		if yn != nil {
			engine.Add(yn.buf(), dz)
		}
	})
}

// SliceRows is rows [r0, r1) of x.
func SliceRows(t *Tape, x *Var, r0, r1 int) *Var {
	c := x.Cols
	y := &Var{Data: append([]float32(nil), x.Data[r0*c:r1*c]...), Rows: r1 - r0, Cols: c}
	xn := x.node
	if xn == nil {
		return y
	}
	return t.record(y, func(dy []float32) {
		engine.Add(xn.buf()[r0*c:r1*c], dy)
	})
}

// Reshape views x as a rows×cols Var with the same elements (the data is
// shared, not copied).
func Reshape(t *Tape, x *Var, rows, cols int) *Var {
	if rows*cols != len(x.Data) {
		panic(fmt.Sprintf("autograd.Reshape: %d×%d to %d×%d", x.Rows, x.Cols, rows, cols))
	}
	y := &Var{Data: x.Data, Rows: rows, Cols: cols}
	xn := x.node
	if xn == nil {
		return y
	}
	return t.record(y, func(dy []float32) {
		engine.Add(xn.buf(), dy)
	})
}
