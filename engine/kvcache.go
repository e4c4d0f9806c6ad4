package engine

import (
	"sync"

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

// AttentionCached is causal attention for n queries q [n × nHeads·headDim]
// at positions past..past+n-1 of one sequence whose rotated keys and values
// for positions 0..past+n-1 are the rows of k and v [· × nKV·headDim]:
// query i attends to positions 0..past+i, query head h reads key/value head
// h/(nHeads/nKV), and the result goes to out [n × nHeads·headDim]. With
// past = 0 it is Attention for a single sequence. The softmax is computed
// in f32 with the scale 1/sqrt(headDim), as Hugging Face's eager attention.
// It is AttentionCachedWith with the zero AttentionOptions.
//
// Short contexts are computed row by row; longer ones by blocks of query
// rows with two matrix products per block (scores = Q·Kᵀ, out = P·V), which
// is several times faster for prompts of hundreds of tokens.
func AttentionCached(out, q []float32, n, past int, k, v []float32, nHeads, nKV, headDim int) {
	AttentionCachedWith(out, q, n, past, k, v, nHeads, nKV, headDim, AttentionOptions{})
}

// AttentionCachedWith is AttentionCached with the variants of opt (see
// AttentionOptions). Positions are absolute: query row r is at position
// past+r, so the window ends there and ALiBi adds slope·j for the key at
// position j, as BLOOM does with its cache. Only the keys a block of
// queries can see enter its matrix products, so a sliding window also
// bounds the work of long prompts.
func AttentionCachedWith(out, q []float32, n, past int, k, v []float32, nHeads, nKV, headDim int, opt AttentionOptions) {
	if n <= 0 {
		return
	}
	par := opt.params(nHeads, headDim)
	if past+n < attnGemmMin {
		attentionRows(out, q, n, past, k, v, nHeads, nKV, headDim, &par)
		return
	}
	group := nHeads / nKV
	qd, kd := nHeads*headDim, nKV*headDim
	blocks := (n + attnBlock - 1) / attnBlock
	ParallelFor(nHeads*blocks, func(job int) {
		h, blk := job%nHeads, job/nHeads
		kh := h / group
		slope := par.slope(h)
		r0, r1 := blk*attnBlock, min((blk+1)*attnBlock, n)
		c0 := par.first(past + r0)      // the first key the block's first row sees
		rows, cols := r1-r0, past+r1-c0 // keys c0..past+r1-1
		sp, s := getScores(rows * cols) // GemmNT below overwrites all of s
		defer scorePool.Put(sp)
		// s = Q_h[r0:r1] · K_hᵀ[c0:c0+cols]
		kernels.GemmNT(rows, cols, headDim, q[r0*qd+h*headDim:], qd, k[c0*kd+kh*headDim:], kd, s, cols, false)
		for i := 0; i < rows; i++ {
			row := s[i*cols : (i+1)*cols]
			pos := past + r0 + i // the query's position, the last key it sees
			lo, last := par.first(pos)-c0, pos-c0
			mx := par.scores(row[lo:last+1], c0+lo, slope)
			inv := 1 / kernels.ExpSum(row[lo:last+1], mx)
			for j := lo; j <= last; j++ {
				row[j] *= inv
			}
			clear(row[:lo])
			clear(row[last+1:])
		}
		// out_h[r0:r1] = P · V_h[c0:c0+cols]
		kernels.GemmNN(rows, headDim, cols, s, cols, v[c0*kd+kh*headDim:], kd, out[r0*qd+h*headDim:], qd, false)
	})
}

// scorePool holds the per-job score buffers of AttentionCached and
// attentionRows, so that a forward pass does not allocate (and clear) a
// rows×cols block for every head and block.
var scorePool = sync.Pool{New: func() any { return new([]float32) }}

// getScores returns a pooled buffer (give it back with scorePool.Put) and
// its first n elements, whose contents are left over from earlier use.
func getScores(n int) (*[]float32, []float32) {
	sp := scorePool.Get().(*[]float32)
	if cap(*sp) < n {
		*sp = make([]float32, n)
	}
	return sp, (*sp)[:n]
}

// attnGemmMin is the context length from which AttentionCached uses matrix
// products; attnBlock is its number of query rows per block.
const (
	attnGemmMin = 32
	attnBlock   = 128
)

// attentionRows is AttentionCachedWith computed one query row and head at
// a time (best for short contexts and single-token decoding).
func attentionRows(out, q []float32, n, past int, k, v []float32, nHeads, nKV, headDim int, par *attnParams) {
	group := nHeads / nKV
	qd, kd := nHeads*headDim, nKV*headDim
	ParallelFor(n*nHeads, func(job int) {
		i, h := job/nHeads, job%nHeads
		kh := h / group
		pos := past + i
		lo := par.first(pos)
		rp, row := getScores(pos + 1 - lo) // every entry is written below
		defer scorePool.Put(rp)
		qi := q[i*qd+h*headDim : i*qd+(h+1)*headDim]
		for j := range row {
			row[j] = kernels.Dot(qi, k[(lo+j)*kd+kh*headDim:(lo+j)*kd+(kh+1)*headDim])
		}
		mx := par.scores(row, lo, par.slope(h))
		inv := 1 / kernels.ExpSum(row, mx)
		o := out[i*qd+h*headDim : i*qd+(h+1)*headDim]
		clear(o)
		for j := range row {
			kernels.Axpy(row[j]*inv, v[(lo+j)*kd+kh*headDim:(lo+j)*kd+(kh+1)*headDim], o)
		}
	})
}
