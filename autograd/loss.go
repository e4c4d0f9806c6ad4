package autograd

import (
	"fmt"
	"math"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/kernels"
)

// This file holds the ops after the last layer: pooling a packed batch into
// one embedding per sequence, L2 normalisation, the cosine-similarity matrix
// and the triplet margin loss with the hardest in-batch negative.

// MeanPool averages the rows of each sequence of x [T×d] (offsets delimit
// sequences) into one row of the result [nSeq×d]. When mask is not nil only
// tokens t with mask[t] are averaged (e.g. content tokens without BOS); every
// sequence must keep at least one. Sums run token by token in f32 and are
// divided by the count, as (h·m).sum(1) / m.sum(1) does in PyTorch.
func MeanPool(t *Tape, x *Var, offsets []int, mask []bool) (*Var, error) {
	d, nSeq := x.Cols, len(offsets)-1
	if offsets[nSeq] != x.Rows {
		return nil, fmt.Errorf("autograd.MeanPool: offsets cover %d tokens, input has %d rows", offsets[nSeq], x.Rows)
	}
	if mask != nil && len(mask) != x.Rows {
		return nil, fmt.Errorf("autograd.MeanPool: mask has %d entries for %d tokens", len(mask), x.Rows)
	}
	y := &Var{Data: t.alloc(nSeq * d), Rows: nSeq, Cols: d}
	counts := t.alloc(nSeq)
	for s := 0; s < nSeq; s++ {
		o := y.Data[s*d : (s+1)*d]
		n := 0
		for tok := offsets[s]; tok < offsets[s+1]; tok++ {
			if mask == nil || mask[tok] {
				engine.Add(o, x.Data[tok*d:(tok+1)*d])
				n++
			}
		}
		if n == 0 {
			return nil, fmt.Errorf("autograd.MeanPool: sequence %d has no token to pool", s)
		}
		counts[s] = float32(n)
		for i := range o {
			o[i] /= counts[s]
		}
	}
	xn := x.node
	if xn == nil {
		return y, nil
	}
	return t.record(y, func(dy []float32) {
		dx := xn.buf()
		for s := 0; s < nSeq; s++ {
			g := dy[s*d : (s+1)*d]
			for tok := offsets[s]; tok < offsets[s+1]; tok++ {
				if mask == nil || mask[tok] {
					row := dx[tok*d : (tok+1)*d]
					for i, v := range g {
						row[i] += v / counts[s]
					}
				}
			}
		}
	}), nil
}

// L2Normalize divides each row of x by max(‖row‖₂, eps), as
// torch.nn.functional.normalize(x, dim=1, eps=eps) does (eps is 1e-12 there).
// The norm is accumulated in float64 and rounded once.
func L2Normalize(t *Tape, x *Var, eps float32) *Var {
	n, d := x.Rows, x.Cols
	y := &Var{Data: t.alloc(n * d), Rows: n, Cols: d}
	norms := t.alloc(n)
	for r := 0; r < n; r++ {
		row := x.Data[r*d : (r+1)*d]
		var ss float64
		for _, v := range row {
			ss += float64(v) * float64(v)
		}
		norms[r] = float32(math.Sqrt(ss))
		den := norms[r]
		if den < eps {
			den = eps
		}
		for i, v := range row {
			y.Data[r*d+i] = v / den
		}
	}
	xn, yd := x.node, y.Data
	if xn == nil {
		return y
	}
	return t.record(y, func(dy []float32) {
		dx := xn.buf()
		for r := 0; r < n; r++ {
			g, yr := dy[r*d:(r+1)*d], yd[r*d:(r+1)*d]
			if norms[r] < eps { // clamp_min passes no gradient to the norm
				for i, v := range g {
					dx[r*d+i] += v / eps
				}
				continue
			}
			var dot float64
			for i, v := range g {
				dot += float64(v) * float64(yr[i])
			}
			c := float32(dot)
			for i, v := range g {
				dx[r*d+i] += (v - yr[i]*c) / norms[r]
			}
		}
	})
}

// MatMulNT is a·bᵀ for a [n×d] and b [m×d]: with L2-normalised rows, the
// cosine-similarity matrix [n×m].
func MatMulNT(t *Tape, a, b *Var) *Var {
	if a.Cols != b.Cols {
		panic(fmt.Sprintf("autograd.MatMulNT: %d×%d times (%d×%d)ᵀ", a.Rows, a.Cols, b.Rows, b.Cols))
	}
	n, m, d := a.Rows, b.Rows, a.Cols
	c := &Var{Data: t.alloc(n * m), Rows: n, Cols: m}
	kernels.GemmNT(n, m, d, a.Data, d, b.Data, d, c.Data, m, false)
	ad, bd, an, bn := a.Data, b.Data, a.node, b.node
	if an == nil && bn == nil {
		return c
	}
	return t.record(c, func(dc []float32) {
		if an != nil {
			kernels.GemmNN(n, d, m, dc, m, bd, d, an.buf(), d, true)
		}
		if bn != nil {
			kernels.GemmTN(m, d, n, dc, m, ad, d, bn.buf(), d, true)
		}
	})
}

// TripletMargin is the TLI loss on a square similarity matrix sim [n×n]
// whose diagonal holds the positive pairs: for each row i, the hardest
// negative is the largest sim[i][j] with j ≠ i (the first one on ties, as
// torch.max(dim=1) returns it), l_i = relu((margin + sim[i][neg]) − sim[i][i]),
// and the loss is the mean of l_i. The subgradient is taken as PyTorch
// takes it: relu'(0) = 0 and the max routes its gradient to the returned
// index. It returns the 1×1 loss.
func TripletMargin(t *Tape, sim *Var, margin float32) *Var {
	n := sim.Rows
	if sim.Cols != n || n < 2 {
		panic(fmt.Sprintf("autograd.TripletMargin: similarity matrix is %d×%d, want square with n >= 2", sim.Rows, sim.Cols))
	}
	neg := make([]int, n)
	active := make([]bool, n)
	var sum float32
	for i := 0; i < n; i++ {
		row := sim.Data[i*n : (i+1)*n]
		best := -1
		for j, v := range row {
			if j != i && (best < 0 || v > row[best]) {
				best = j
			}
		}
		neg[i] = best
		l := (margin + row[best]) - row[i]
		if l > 0 {
			active[i] = true
			sum += l
		}
	}
	loss := &Var{Data: []float32{sum / float32(n)}, Rows: 1, Cols: 1}
	sn := sim.node
	if sn == nil {
		return loss
	}
	return t.record(loss, func(dl []float32) {
		g := dl[0] / float32(n)
		ds := sn.buf()
		for i := 0; i < n; i++ {
			if active[i] {
				ds[i*n+neg[i]] += g
				ds[i*n+i] -= g
			}
		}
	})
}
