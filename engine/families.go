package engine

import (
	"math"

	"github.com/tli-project/tli/kernels"
)

// This file holds the element-wise and per-row ops that Mistral, Qwen2/3,
// Gemma and BLOOM need beside Llama's: LayerNorm with bias (BLOOM), the tanh
// approximation of GELU (BLOOM's MLP, Gemma's gated MLP), bias rows (Qwen2's
// q/k/v projections, BLOOM's linears) and the ALiBi slopes of BLOOM.

// LayerNorm computes out[t] = (x[t] − μ)·r·w + b for each of the T rows of
// x [T×d], with μ the row's mean and r = 1/sqrt(σ² + eps) for its biased
// variance σ², as torch.nn.LayerNorm over the last dimension does in f32.
// The mean and the variance are accumulated in float64 and rounded once
// (the variance from the float64 mean, so it does not cancel). b may be nil
// (no bias). out may alias x. When mean and rstd are not nil they receive
// the T means and reciprocal standard deviations that the backward needs.
func LayerNorm(out, x, w, b []float32, T, d int, eps float32, mean, rstd []float32) {
	ParallelFor(T, func(t int) {
		row := x[t*d : (t+1)*d]
		var s float64
		for _, v := range row {
			s += float64(v)
		}
		mu := s / float64(d)
		var ss float64
		for _, v := range row {
			c := float64(v) - mu
			ss += c * c
		}
		m := float32(mu)
		r := float32(1 / math.Sqrt(float64(float32(ss/float64(d))+eps)))
		if mean != nil {
			mean[t] = m
		}
		if rstd != nil {
			rstd[t] = r
		}
		o := out[t*d : (t+1)*d]
		if b == nil {
			for i, v := range row {
				o[i] = (v - m) * r * w[i]
			}
			return
		}
		for i, v := range row {
			o[i] = (v-m)*r*w[i] + b[i]
		}
	})
}

// LayerNormBackward computes dx (dx += when acc) for out = LayerNorm(x, w, b)
// from the mean and rstd it saved; w and b are frozen, so they get no
// gradient. With x̂ = (x − μ)·r and g = w·dy, dx = r·(g − mean(g) −
// x̂·mean(g·x̂)); both means are accumulated in float64. Rows are
// independent, so the result does not depend on the thread count.
func LayerNormBackward(dx, dy, x, w, mean, rstd []float32, T, d int, acc bool) {
	ParallelFor(T, func(t int) {
		xr, gr, o := x[t*d:(t+1)*d], dy[t*d:(t+1)*d], dx[t*d:(t+1)*d]
		m, r := mean[t], rstd[t]
		var sg, sgx float64
		for i, v := range xr {
			g := float64(w[i]) * float64(gr[i])
			sg += g
			sgx += g * float64((v-m)*r)
		}
		mg, mgx := float32(sg/float64(d)), float32(sgx/float64(d))
		for i, v := range xr {
			g := r * (w[i]*gr[i] - mg - (v-m)*r*mgx)
			if acc {
				o[i] += g
			} else {
				o[i] = g
			}
		}
	})
}

// AddBias adds the bias row b [d] to each of the T rows of x [T×d].
func AddBias(x, b []float32, T, d int) {
	ParallelFor(T, func(t int) {
		kernels.Axpy(1, b, x[t*d:(t+1)*d])
	})
}

// geluC is sqrt(2/π) and geluK the cubic coefficient of the tanh
// approximation of GELU.
const (
	geluC = 0.7978845608028654 // math.Sqrt(2 / math.Pi)
	geluK = 0.044715
)

// geluTanh returns, in float64, gelu(x) = 0.5·x·(1 + tanh(u)) with
// u = sqrt(2/π)·(x + 0.044715·x³), and its derivative. 1 + tanh(u) is
// computed as 2σ(2u) with σ(a) = 1/(1+e^−a) evaluated on e^−|a| ≤ 1 (so
// nothing overflows and the left tail, where 1 + tanh(u) cancels, keeps
// its relative precision), and the derivative is
// σ(2u) + x·2σ(2u)·σ(−2u)·u'.
func geluTanh(x float32) (y, dy float64) {
	xf := float64(x)
	a := 2 * geluC * (xf + geluK*xf*xf*xf)
	e := math.Exp(-math.Abs(a))
	s, sm := 1/(1+e), e/(1+e) // σ(|a|), σ(−|a|)
	if a < 0 {
		s, sm = sm, s
	}
	du := 2 * geluC * (1 + 3*geluK*xf*xf)
	return xf * s, s + xf*s*sm*du
}

// GELUTanh is GELU with the tanh approximation, 0.5·x·(1 +
// tanh(sqrt(2/π)·(x + 0.044715·x³))): PyTorch's gelu(approximate="tanh"),
// which is Hugging Face's gelu_pytorch_tanh (Gemma) and, up to its
// constant 0.79788456 for sqrt(2/π) (the same float32), BLOOM's
// bloom_gelu_forward. It is computed in float64 and rounded once, so it is
// within half an ulp of the exact value.
func GELUTanh(x float32) float32 {
	y, _ := geluTanh(x)
	return float32(y)
}

// GELUTanhInPlace replaces x[i] by GELUTanh(x[i]) (BLOOM's MLP activation),
// split into chunks across the pool.
func GELUTanhInPlace(x []float32) {
	parallelChunks(len(x), func(lo, hi int) {
		for i, v := range x[lo:hi] {
			x[lo+i] = GELUTanh(v)
		}
	})
}

// GELUTanhBackward computes dx[i] = dy[i]·gelu'(x[i]) (overwritten) for
// y = GELUTanh(x), with the derivative computed in float64. dx may alias
// dy.
func GELUTanhBackward(dx, dy, x []float32) {
	parallelChunks(len(x), func(lo, hi int) {
		for i, v := range x[lo:hi] {
			_, d := geluTanh(v)
			dx[lo+i] = dy[lo+i] * float32(d)
		}
	})
}

// GELUTanhMul computes out[i] = GELUTanh(gate[i]) · up[i], the gated MLP of
// Gemma (act_fn(gate_proj(x)) · up_proj(x)); like PyTorch, the activation
// is rounded to float32 before the product. out may alias gate or up.
func GELUTanhMul(out, gate, up []float32) {
	parallelChunks(len(out), func(lo, hi int) {
		for i, g := range gate[lo:hi] {
			out[lo+i] = GELUTanh(g) * up[lo+i]
		}
	})
}

// GELUTanhMulBackward computes the gradients of out = gelu(gate)·up:
// dgate = dy·up·gelu'(gate) and dup = dy·gelu(gate). dgate and dup are
// overwritten; they may alias the inputs element for element.
func GELUTanhMulBackward(dgate, dup, dy, gate, up []float32) {
	parallelChunks(len(gate), func(lo, hi int) {
		for i, g := range gate[lo:hi] {
			y, d := geluTanh(g)
			gy, u := dy[lo+i], up[lo+i]
			dgate[lo+i] = gy * u * float32(d)
			dup[lo+i] = gy * float32(y)
		}
	})
}

// ALiBiSlopes returns the ALiBi slope of each of nHeads attention heads as
// transformers' build_alibi_tensor (modeling_bloom.py) computes them in
// float32: with n the largest power of two ≤ nHeads and base
// 2^(−8/n) rounded to float32, head h < n gets base^(h+1); when nHeads is
// not a power of two, the remaining heads get the odd powers 1, 3, 5, ...
// of the float32 base 2^(−4/n) (the slopes of 2n heads that fall between
// the first n). Each power of the rounded base is computed in float64 and
// rounded once.
func ALiBiSlopes(nHeads int) []float32 {
	if nHeads <= 0 {
		return nil
	}
	n := 1
	for n*2 <= nHeads {
		n *= 2
	}
	slopes := make([]float32, 0, nHeads)
	base := float64(float32(math.Pow(2, -8/float64(n))))
	for p := 1; p <= n; p++ {
		slopes = append(slopes, float32(math.Pow(base, float64(p))))
	}
	extra := float64(float32(math.Pow(2, -4/float64(n))))
	for p := 1; len(slopes) < nHeads; p += 2 {
		slopes = append(slopes, float32(math.Pow(extra, float64(p))))
	}
	return slopes
}

// HeadPart copies part `part` of `parts` from every head of src [rows ×
// nHeads·parts·headDim], whose rows hold per head its parts one after
// another (BLOOM's fused query_key_value: 3 parts, q k v), into dst [rows ×
// nHeads·headDim]; with acc it adds dst's rows back into src's places
// instead (the backward).
func HeadPart(dst, src []float32, rows, nHeads, parts, part, headDim int, acc bool) {
	ParallelFor(rows, func(t int) {
		for h := 0; h < nHeads; h++ {
			r := t*nHeads + h
			s := src[(r*parts+part)*headDim : (r*parts+part+1)*headDim]
			d := dst[r*headDim : (r+1)*headDim]
			if acc {
				Add(s, d)
			} else {
				copy(d, s)
			}
		}
	})
}
