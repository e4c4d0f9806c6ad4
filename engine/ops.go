package engine

import (
	"math"

	"github.com/tli-project/tli/kernels"
)

// This file holds the forward ops of a Llama decoder layer, each written for
// a packed batch: T tokens of several sequences laid one after another in a
// [T×d] row-major matrix, with offsets[s]..offsets[s+1] the rows of sequence
// s. Backward functions live next to their forwards.

// Embed gathers rows ids[t] of table [vocab×d] into out [len(ids)×d],
// widening bf16/f16 tables to f32.
func Embed(out []float32, table *Tensor, ids []int) {
	d := table.Cols()
	for t, id := range ids {
		table.Row(id, out[t*d:(t+1)*d])
	}
}

// RMSNorm computes out[t] = x[t] / sqrt(mean(x[t]²) + eps) · w for each of the
// T rows of x [T×d], in f32 as Hugging Face's LlamaRMSNorm does (the mean of
// squares is accumulated in float64 and rounded once). out may alias x. When
// rstd is not nil it receives the T reciprocal RMS values that the backward
// needs.
func RMSNorm(out, x, w []float32, T, d int, eps float32, rstd []float32) {
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
			o[i] = w[i] * (v * r)
		}
	})
}

// RMSNormBackward computes dx (dx += when acc) for out = RMSNorm(x, w): with
// r the saved reciprocal RMS of a row, dx[j] = r·(w[j]·dy[j] − x[j]·r²·
// Σᵢ w[i]·dy[i]·x[i] / d). The inner sum is accumulated in float64. Rows are
// independent, so the result does not depend on the thread count.
func RMSNormBackward(dx, dy, x, w, rstd []float32, T, d int, acc bool) {
	ParallelFor(T, func(t int) {
		xr, gr, o := x[t*d:(t+1)*d], dy[t*d:(t+1)*d], dx[t*d:(t+1)*d]
		r := rstd[t]
		var s float64
		for i, v := range xr {
			s += float64(w[i]) * float64(gr[i]) * float64(v)
		}
		c := float32(s/float64(d)) * r * r
		for i, v := range xr {
			g := r * (w[i]*gr[i] - v*c)
			if acc {
				o[i] += g
			} else {
				o[i] = g
			}
		}
	})
}

// Add computes dst[i] += x[i].
func Add(dst, x []float32) {
	kernels.Axpy(1, x, dst)
}

// SiLU is x·sigmoid(x).
func SiLU(x float32) float32 { return x / (1 + float32(math.Exp(float64(-x)))) }

// SiLUMul computes out[i] = silu(gate[i]) · up[i], the SwiGLU of Llama's MLP.
// out may alias gate or up. The vectorised kernels.SiLUMul does the work
// (within about 4 ulp; see there), split into chunks across the pool.
func SiLUMul(out, gate, up []float32) {
	parallelChunks(len(out), func(lo, hi int) {
		kernels.SiLUMul(out[lo:hi], gate[lo:hi], up[lo:hi])
	})
}

// SiLUMulBackward computes the gradients of out = silu(gate)·up:
// dgate = dy·up·silu'(gate) with silu'(g) = σ(g)·(1 + g·(1 − σ(g))), and
// dup = dy·silu(gate). dgate and dup are overwritten (kernels.SiLUMulBackward).
func SiLUMulBackward(dgate, dup, dy, gate, up []float32) {
	parallelChunks(len(gate), func(lo, hi int) {
		kernels.SiLUMulBackward(dgate[lo:hi], dup[lo:hi], dy[lo:hi], gate[lo:hi], up[lo:hi])
	})
}

// parallelChunks runs fn over [0, n) in contiguous chunks on the pool; an
// element-wise op gives the same bits however it is split.
func parallelChunks(n int, fn func(lo, hi int)) {
	const chunk = 1 << 14
	if n <= chunk {
		fn(0, n)
		return
	}
	ParallelFor((n+chunk-1)/chunk, func(c int) {
		fn(c*chunk, min(c*chunk+chunk, n))
	})
}

// Attention computes causal grouped-query attention for a packed batch.
// q is [T × nHeads·headDim], k and v are [T × nKV·headDim] (already rotated),
// out is [T × nHeads·headDim]; query head h reads key/value head
// h/(nHeads/nKV). Tokens attend only to earlier tokens of their own sequence
// (offsets delimit sequences). The softmax is computed in f32 with the scale
// 1/sqrt(headDim), as Hugging Face's eager attention does. It is
// AttentionWith with the zero AttentionOptions.
//
// When probs is not nil it receives the attention probabilities for the
// backward, laid out sequence by sequence, head by head, as L×L row-major
// blocks (rows: queries, columns: keys; entries above the diagonal are 0);
// its length must be AttentionProbsLen(offsets, nHeads).
func Attention(out, q, k, v []float32, offsets []int, nHeads, nKV, headDim int, probs []float32) {
	AttentionWith(out, q, k, v, offsets, nHeads, nKV, headDim, probs, AttentionOptions{})
}

// AttentionWith is Attention with the variants of opt: another scale, a
// sliding window, ALiBi slopes, soft-capped scores. Probabilities of keys
// outside the window are 0 in probs, as those above the diagonal.
func AttentionWith(out, q, k, v []float32, offsets []int, nHeads, nKV, headDim int, probs []float32, opt AttentionOptions) {
	group := nHeads / nKV
	qd, kd := nHeads*headDim, nKV*headDim
	par := opt.params(nHeads, headDim)
	nSeq := len(offsets) - 1
	pstart := probStarts(offsets, nHeads)
	ParallelFor(nSeq*nHeads, func(job int) {
		s, h := job/nHeads, job%nHeads
		t0, L := offsets[s], offsets[s+1]-offsets[s]
		kh := h / group
		slope := par.slope(h)
		var p []float32
		if probs != nil {
			p = probs[pstart[s]+h*L*L : pstart[s]+(h+1)*L*L]
		} else {
			var rp *[]float32
			rp, p = getScores(L) // each row is written before it is read
			defer scorePool.Put(rp)
		}
		for i := 0; i < L; i++ {
			row := p[:L]
			if probs != nil {
				row = p[i*L : (i+1)*L]
			}
			lo := par.first(i)
			qi := q[(t0+i)*qd+h*headDim : (t0+i)*qd+(h+1)*headDim]
			for j := lo; j <= i; j++ {
				row[j] = kernels.Dot(qi, k[(t0+j)*kd+kh*headDim:(t0+j)*kd+(kh+1)*headDim])
			}
			mx := par.scores(row[lo:i+1], lo, slope)
			sum := kernels.ExpSum(row[lo:i+1], mx)
			inv := 1 / sum
			o := out[(t0+i)*qd+h*headDim : (t0+i)*qd+(h+1)*headDim]
			clear(o)
			for j := lo; j <= i; j++ {
				row[j] *= inv
				kernels.Axpy(row[j], v[(t0+j)*kd+kh*headDim:(t0+j)*kd+(kh+1)*headDim], o)
			}
			clear(row[:lo])
			clear(row[i+1:])
		}
	})
}

// AttentionBackward computes dq, dk and dv (all overwritten) of Attention
// from dout, the inputs q, k, v and the probabilities Attention saved in
// probs. With P a head's probabilities and s = 1/sqrt(headDim):
// dV = Pᵀ·dO, dP = dO·Vᵀ, dS = P ∘ (dP − rowsum(P ∘ dP)), dQ = s·dS·K,
// dK = s·dSᵀ·Q. Work is split by (sequence, key/value head), and the query
// heads sharing a key/value head are summed in a fixed order, so the result
// does not depend on the thread count.
func AttentionBackward(dq, dk, dv, dout, q, k, v, probs []float32, offsets []int, nHeads, nKV, headDim int) {
	AttentionBackwardWith(dq, dk, dv, dout, q, k, v, probs, offsets, nHeads, nKV, headDim, AttentionOptions{})
}

// AttentionBackwardWith is AttentionBackward for AttentionWith with the
// same opt. The scale is opt's; keys outside the window get nothing; the
// ALiBi term is a constant and drops out. With a soft cap, dS is chained
// through the cap: each entry is multiplied by 1 − tanh²(a/c) for a the
// scaled score before capping, recomputed from q and k (one more dot
// product per query–key pair).
func AttentionBackwardWith(dq, dk, dv, dout, q, k, v, probs []float32, offsets []int, nHeads, nKV, headDim int, opt AttentionOptions) {
	group := nHeads / nKV
	qd, kd := nHeads*headDim, nKV*headDim
	par := opt.params(nHeads, headDim)
	scale := par.scale
	nSeq := len(offsets) - 1
	pstart := probStarts(offsets, nHeads)
	ParallelFor(nSeq*nKV, func(job int) {
		s, kh := job/nKV, job%nKV
		t0, L := offsets[s], offsets[s+1]-offsets[s]
		for j := 0; j < L; j++ {
			clear(dk[(t0+j)*kd+kh*headDim : (t0+j)*kd+(kh+1)*headDim])
			clear(dv[(t0+j)*kd+kh*headDim : (t0+j)*kd+(kh+1)*headDim])
		}
		ds := make([]float32, L)
		for h := kh * group; h < (kh+1)*group; h++ {
			p := probs[pstart[s]+h*L*L : pstart[s]+(h+1)*L*L]
			for i := 0; i < L; i++ {
				row := p[i*L : (i+1)*L]
				lo := par.first(i)
				do := dout[(t0+i)*qd+h*headDim : (t0+i)*qd+(h+1)*headDim]
				qi := q[(t0+i)*qd+h*headDim : (t0+i)*qd+(h+1)*headDim]
				var sum float32
				for j := lo; j <= i; j++ {
					ds[j] = kernels.Dot(do, v[(t0+j)*kd+kh*headDim:(t0+j)*kd+(kh+1)*headDim])
					sum += row[j] * ds[j]
				}
				dqi := dq[(t0+i)*qd+h*headDim : (t0+i)*qd+(h+1)*headDim]
				clear(dqi)
				for j := lo; j <= i; j++ {
					off := (t0+j)*kd + kh*headDim
					kj := k[off : off+headDim]
					g := row[j] * (ds[j] - sum)
					if par.cap > 0 {
						g *= softCapGrad(kernels.Dot(qi, kj)*scale, par.cap)
					}
					g *= scale
					kernels.Axpy(g, kj, dqi)
					kernels.Axpy(g, qi, dk[off:off+headDim])
					kernels.Axpy(row[j], do, dv[off:off+headDim])
				}
			}
		}
	})
}

// AttentionProbsLen is the length of the probs buffer Attention fills.
func AttentionProbsLen(offsets []int, nHeads int) int {
	ps := probStarts(offsets, nHeads)
	return ps[len(ps)-1]
}

// probStarts returns where each sequence's block of attention probabilities
// starts in probs (nHeads L×L blocks per sequence), and their total last.
func probStarts(offsets []int, nHeads int) []int {
	nSeq := len(offsets) - 1
	ps := make([]int, nSeq+1)
	for s := 0; s < nSeq; s++ {
		L := offsets[s+1] - offsets[s]
		ps[s+1] = ps[s] + nHeads*L*L
	}
	return ps
}

// Positions returns the position of every token of a packed batch: 0, 1, ...
// restarting at each sequence.
func Positions(offsets []int) []int {
	pos := make([]int, offsets[len(offsets)-1])
	for s := 0; s+1 < len(offsets); s++ {
		for t := offsets[s]; t < offsets[s+1]; t++ {
			pos[t] = t - offsets[s]
		}
	}
	return pos
}
