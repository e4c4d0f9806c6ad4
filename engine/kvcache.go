package engine

import (
	"math"

	"github.com/tli-project/tli/kernels"
)

// KVCache holds, for one sequence being generated, the rotated keys and the
// values of every layer at the positions seen so far, so that each new
// token attends to them without recomputing the prefix.
type KVCache struct {
	NumKV, HeadDim int
	// Len is the number of positions stored (the next token's position).
	Len int
	// K and V hold one [capacity × NumKV·HeadDim] buffer per layer; rows
	// 0..Len-1 are valid.
	K, V [][]float32
}

// NewKVCache returns an empty cache for layers layers with room for
// capacity positions (it grows when needed).
func NewKVCache(layers, nKV, headDim, capacity int) *KVCache {
	c := &KVCache{NumKV: nKV, HeadDim: headDim, K: make([][]float32, layers), V: make([][]float32, layers)}
	w := nKV * headDim
	for i := range c.K {
		c.K[i] = make([]float32, capacity*w)
		c.V[i] = make([]float32, capacity*w)
	}
	return c
}

// Store writes n new rows of keys k and values v [n × NumKV·HeadDim] for
// layer at positions Len..Len+n-1. Call Advance(n) once every layer has
// stored its rows.
func (c *KVCache) Store(layer int, k, v []float32, n int) {
	w := c.NumKV * c.HeadDim
	need := (c.Len + n) * w
	if need > len(c.K[layer]) {
		c.K[layer] = append(c.K[layer], make([]float32, need-len(c.K[layer]))...)
		c.V[layer] = append(c.V[layer], make([]float32, need-len(c.V[layer]))...)
	}
	copy(c.K[layer][c.Len*w:need], k[:n*w])
	copy(c.V[layer][c.Len*w:need], v[:n*w])
}

// Advance marks n more positions as stored.
func (c *KVCache) Advance(n int) { c.Len += n }

// AttentionCached is Attention for n new queries q [n × nHeads·headDim]
// at positions past..past+n-1 of one sequence whose keys and values for
// positions 0..past+n-1 are rows of k and v [· × nKV·headDim]: query i
// attends to positions 0..past+i. The result goes to out [n × nHeads·headDim].
func AttentionCached(out, q []float32, n, past int, k, v []float32, nHeads, nKV, headDim int) {
	group := nHeads / nKV
	qd, kd := nHeads*headDim, nKV*headDim
	scale := float32(1 / math.Sqrt(float64(headDim)))
	ParallelFor(n*nHeads, func(job int) {
		i, h := job/nHeads, job%nHeads
		kh := h / group
		L := past + i + 1
		row := make([]float32, L)
		qi := q[i*qd+h*headDim : i*qd+(h+1)*headDim]
		mx := float32(math.Inf(-1))
		for j := 0; j < L; j++ {
			sc := kernels.Dot(qi, k[j*kd+kh*headDim:j*kd+(kh+1)*headDim]) * scale
			row[j] = sc
			if sc > mx {
				mx = sc
			}
		}
		var sum float32
		for j := range row {
			e := float32(math.Exp(float64(row[j] - mx)))
			row[j] = e
			sum += e
		}
		inv := 1 / sum
		o := out[i*qd+h*headDim : i*qd+(h+1)*headDim]
		clear(o)
		for j := range row {
			kernels.Axpy(row[j]*inv, v[j*kd+kh*headDim:j*kd+(kh+1)*headDim], o)
		}
	})
}
