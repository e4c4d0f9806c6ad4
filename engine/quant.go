package engine

import (
	"math"

	"github.com/tli-project/tli/quant"
)

// matMulQ4 is MatMulNT with a 4-bit weight: the bf16 product of
// quant.Tensor.MulTBF16, rounded to bf16 (Linear4bit's output dtype) and
// stored in or added to y.
func matMulQ4(y, x []float32, m int, q *quant.Tensor, acc bool) {
	n := m * q.Rows
	dst := y[:n]
	if acc {
		dst = make([]float32, n)
	}
	q.MulTBF16(dst, x, m, false)
	RoundTo(dst, BF16)
	if acc {
		Add(y[:n], dst)
	}
}

// RoundTo rounds every value of x to dtype d (nearest even; f16 with
// subnormals and overflow to ±Inf), in place: the float32 values then hold
// what a tensor of dtype d would. F32 leaves x alone.
func RoundTo(x []float32, d DType) {
	if d != BF16 && d != F16 {
		return
	}
	round := rounder(d)
	parallelChunks(len(x), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			x[i] = round(x[i])
		}
	})
}

// transposedOnce is Transposed without the cache: for a weight made for
// one call (a dequantised 4-bit weight).
func transposedOnce(w *Tensor) *Tensor {
	rows, cols := w.Shape[0], w.Shape[1]
	t := &Tensor{DType: w.DType, Shape: []int{cols, rows}, Half: make([]uint16, rows*cols)}
	transpose(t.Half, w.Half, rows, cols)
	return t
}

// RMSNormRounded is RMSNorm (rstd as there) as Hugging Face's LlamaRMSNorm computes it on
// activations of dtype dt: the normalised row x·r (in f32) is cast to dt,
// then multiplied by the weight (of dt) and rounded to dt again. With dt
// F32 it is RMSNorm.
func RMSNormRounded(out, x, w []float32, T, d int, eps float32, dt DType, rstd []float32) {
	if dt == F32 {
		RMSNorm(out, x, w, T, d, eps, rstd)
		return
	}
	round := rounder(dt)
	ParallelFor(T, func(t int) {
		row := x[t*d : (t+1)*d]
		var ss float64
		for _, v := range row {
			ss += float64(v) * float64(v)
		}
		r := float32(1 / math.Sqrt(float64(float32(ss/float64(d))+eps)))
		if rstd != nil {
			rstd[t] = r
		}
		o := out[t*d : (t+1)*d]
		for i, v := range row {
			o[i] = round(w[i] * round(v*r))
		}
	})
}

// ApplyRopeRounded is ApplyRope as q·cos + rotate_half(q)·sin computes it
// in dtype dt, with cos and sin already rounded to dt: each product and
// the sum rounded to dt.
func ApplyRopeRounded(x []float32, T, nHeads, headDim int, cos, sin []float32, dt DType) {
	if dt == F32 {
		ApplyRope(x, T, nHeads, headDim, cos, sin)
		return
	}
	round := rounder(dt)
	half := headDim / 2
	w := nHeads * headDim
	ParallelFor(T, func(t int) {
		c, s := cos[t*half:(t+1)*half], sin[t*half:(t+1)*half]
		for h := 0; h < nHeads; h++ {
			base := t*w + h*headDim
			x1, x2 := x[base:base+half], x[base+half:base+headDim]
			for i := 0; i < half; i++ {
				a, b := x1[i], x2[i]
				x1[i] = round(round(a*c[i]) - round(b*s[i]))
				x2[i] = round(round(b*c[i]) + round(a*s[i]))
			}
		}
	})
}

// GatedRounded is a gated activation (SiLUMul, GELUTanhMul) computed in
// dtype dt as PyTorch does it: act(gate) rounded to dt, times up, rounded.
func GatedRounded(out, gate, up []float32, act func(float32) float32, dt DType) {
	round := rounder(dt)
	parallelChunks(len(out), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			out[i] = round(round(act(gate[i])) * up[i])
		}
	})
}

// AddRounded computes dst[i] = round(dst[i] + x[i]) in dtype dt: a
// residual add of two dt tensors.
func AddRounded(dst, x []float32, dt DType) {
	round := rounder(dt)
	parallelChunks(len(dst), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			dst[i] = round(dst[i] + x[i])
		}
	})
}

// rounder returns the function rounding a float32 to dt (the identity for
// F32): the value a tensor of dt would hold, as float32.
func rounder(dt DType) func(float32) float32 {
	switch dt {
	case BF16:
		return roundBF16
	case F16:
		return roundF16
	}
	return func(v float32) float32 { return v }
}

// roundBF16 is BF16ToF32(F32ToBF16(v)) without the round trip through bits.
func roundBF16(v float32) float32 {
	u := math.Float32bits(v)
	if u&0x7fffffff > 0x7f800000 { // NaN: quiet, as F32ToBF16
		return math.Float32frombits((u | 0x00400000) & 0xffff0000)
	}
	u += 0x7fff + (u>>16)&1
	return math.Float32frombits(u & 0xffff0000)
}

// roundF16 is F16ToF32(F32ToF16(v)) in a few operations: normal f16
// values round the float32 mantissa at bit 13 (nearest even), subnormal
// ones to a multiple of 2⁻²⁴, and from 65520 up (halfway to 2¹⁶) the value
// overflows to ±Inf.
func roundF16(v float32) float32 {
	u := math.Float32bits(v)
	a := u & 0x7fffffff
	switch {
	case a >= 0x7f800000: // Inf, NaN
		if a > 0x7f800000 {
			return math.Float32frombits(u | 0x00400000) // quiet NaN
		}
		return v
	case a >= 0x477ff000: // |v| >= 65520
		return math.Float32frombits(u&0x80000000 | 0x7f800000)
	case a >= 0x38800000: // |v| >= 2⁻¹⁴: a normal f16
		u += 0xfff + (u>>13)&1
		return math.Float32frombits(u & 0xffffe000)
	}
	// Subnormal f16: nearest multiple of 2⁻²⁴ (exact in float32 here).
	return float32(math.RoundToEven(float64(v)*(1<<24))) / (1 << 24)
}
