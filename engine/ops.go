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

// Add computes dst[i] += x[i].
func Add(dst, x []float32) {
	kernels.Axpy(1, x, dst)
}

// SiLU is x·sigmoid(x).
func SiLU(x float32) float32 { return x / (1 + float32(math.Exp(float64(-x)))) }

// SiLUMul computes out[i] = silu(gate[i]) · up[i], the SwiGLU of Llama's MLP.
// out may alias gate or up.
func SiLUMul(out, gate, up []float32) {
	for i := range out {
		out[i] = SiLU(gate[i]) * up[i]
	}
}

// Attention computes causal grouped-query attention for a packed batch.
// q is [T × nHeads·headDim], k and v are [T × nKV·headDim] (already rotated),
// out is [T × nHeads·headDim]; query head h reads key/value head
// h/(nHeads/nKV). Tokens attend only to earlier tokens of their own sequence
// (offsets delimit sequences). The softmax is computed in f32 with the scale
// 1/sqrt(headDim), as Hugging Face's eager attention does.
//
// When probs is not nil it receives the attention probabilities for the
// backward, laid out sequence by sequence, head by head, as L×L row-major
// blocks (rows: queries, columns: keys; entries above the diagonal are 0);
// its length must be AttentionProbsLen(offsets, nHeads).
func Attention(out, q, k, v []float32, offsets []int, nHeads, nKV, headDim int, probs []float32) {
	group := nHeads / nKV
	qd, kd := nHeads*headDim, nKV*headDim
	scale := float32(1 / math.Sqrt(float64(headDim)))
	nSeq := len(offsets) - 1
	// Start of each sequence's block in probs.
	pstart := make([]int, nSeq+1)
	for s := 0; s < nSeq; s++ {
		L := offsets[s+1] - offsets[s]
		pstart[s+1] = pstart[s] + nHeads*L*L
	}
	ParallelFor(nSeq*nHeads, func(job int) {
		s, h := job/nHeads, job%nHeads
		t0, L := offsets[s], offsets[s+1]-offsets[s]
		kh := h / group
		var p []float32
		if probs != nil {
			p = probs[pstart[s]+h*L*L : pstart[s]+(h+1)*L*L]
		} else {
			p = make([]float32, L)
		}
		for i := 0; i < L; i++ {
			row := p[:L]
			if probs != nil {
				row = p[i*L : (i+1)*L]
			}
			qi := q[(t0+i)*qd+h*headDim : (t0+i)*qd+(h+1)*headDim]
			mx := float32(math.Inf(-1))
			for j := 0; j <= i; j++ {
				kj := k[(t0+j)*kd+kh*headDim : (t0+j)*kd+(kh+1)*headDim]
				sc := kernels.Dot(qi, kj) * scale
				row[j] = sc
				if sc > mx {
					mx = sc
				}
			}
			var sum float32
			for j := 0; j <= i; j++ {
				e := float32(math.Exp(float64(row[j] - mx)))
				row[j] = e
				sum += e
			}
			inv := 1 / sum
			o := out[(t0+i)*qd+h*headDim : (t0+i)*qd+(h+1)*headDim]
			clear(o)
			for j := 0; j <= i; j++ {
				row[j] *= inv
				kernels.Axpy(row[j], v[(t0+j)*kd+kh*headDim:(t0+j)*kd+(kh+1)*headDim], o)
			}
			for j := i + 1; j < L; j++ {
				row[j] = 0
			}
		}
	})
}

// AttentionProbsLen is the length of the probs buffer Attention fills.
func AttentionProbsLen(offsets []int, nHeads int) int {
	n := 0
	for s := 0; s+1 < len(offsets); s++ {
		L := offsets[s+1] - offsets[s]
		n += nHeads * L * L
	}
	return n
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
