//go:build vulkan && (amd64 || arm64) && (linux || darwin || windows)

package vulkan

import (
	"fmt"
	"math"
)

// The kernels a training step needs beyond the forward: the GEMMs of the
// backward and of LoRA, the backwards of RMSNorm, SiLU·mul, Rope and
// Attention, mean pooling and L2 normalisation with their backwards, and
// the LoRA branch. They follow the conventions of kernels.go: spans and
// shapes are checked before anything is recorded, arithmetic is f32.

// GEMMNN computes out[m×n] = a[m×k]·w[k×n], or out += a·w when accumulate,
// with w row-major in f32, bf16 or f16 and a, out f32. With w a Linear
// layer's weight [out×in] (k = out, n = in) and a the gradient dY of the
// layer's output, this is dX = dY·W, the backward of GEMM's out = a·wᵀ with
// respect to a. Any m, n, k: edge tiles are masked. Operands larger than one
// binding may be are split: a and out into blocks of rows, w into blocks of
// its k rows (each block after the first adding to out), one dispatch per
// block.
func (c *Context) GEMMNN(out, a, w Span, m, n, k int, wt WeightType, accumulate bool) error {
	return c.gemmKN("GEMMNN", out, a, w, m, n, k, wt, false, 1, accumulate)
}

// GEMMTN computes out[m×n] = a[k×m]ᵀ·b[k×n], or out += aᵀ·b when
// accumulate, all f32 and row-major: the weight gradient dW = dYᵀ·X of a
// Linear layer y = x·Wᵀ (a = dY [tokens×out], b = X [tokens×in], m = out,
// n = in, k = tokens), the backward of GEMM with respect to w, as for
// LoRA's A and B. Large operands are split into blocks of out's rows and of
// the k rows of a and b, like GEMMNN.
func (c *Context) GEMMTN(out, a, b Span, m, n, k int, accumulate bool) error {
	return c.gemmKN("GEMMTN", out, a, b, m, n, k, F32, true, 1, accumulate)
}

// gemmKN records out (+)= alpha·op(a)·b with b [k×n] of type bt; op(a) is a
// [m×k], or aᵀ with a [k×m] when ta.
func (c *Context) gemmKN(kernel string, out, a, b Span, m, n, k int, bt WeightType, ta bool, alpha float32, accumulate bool) error {
	if err := dims(kernel, [][]int{{m, k}, {k, n}, {m, n}}, "m", m, "n", n, "k", k); err != nil {
		return err
	}
	es, err := bt.size()
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.in == nil {
		return ErrClosed
	}
	M, N, K := uint64(m), uint64(n), uint64(k)
	for _, op := range []struct {
		s    Span
		need uint64
		name string
	}{{out, 4 * M * N, "out"}, {a, 4 * M * K, "a"}, {b, es * K * N, "b"}} {
		if err := c.check(op.s, op.need, "vulkan: "+kernel+": "+op.name); err != nil {
			return err
		}
	}
	// Blocks of mc rows of out (and of a when not transposed) and of kc
	// rows of b (and of a when transposed).
	rowBytes, kBytes, lda, taSpec := 4*max(K, N), es*N, K, uint32(0)
	if ta {
		rowBytes, kBytes, lda, taSpec = 4*N, 4*max(M, N), M, 1
	}
	mc, kc, err := c.blocks(M, K, rowBytes, kBytes, kernel)
	if err != nil {
		return err
	}
	for i0 := uint64(0); i0 < M; i0 += mc {
		mm := min(mc, M-i0)
		t := c.gemmTiles(int(mm))
		p, err := c.pipeline("gemm_kn", t[0], t[1], t[2], t[3], t[4], uint32(bt), taSpec, (t[0]/t[3])*(t[1]/t[4]))
		if err != nil {
			return err
		}
		cb, cBase, err := c.sub(out, 4*i0*N, 4*mm*N, 4, "vulkan: "+kernel+": out")
		if err != nil {
			return err
		}
		var ab binding
		var aRows uint32
		if !ta {
			if ab, aRows, err = c.sub(a, 4*i0*K, 4*mm*K, 4, "vulkan: "+kernel+": a"); err != nil {
				return err
			}
		}
		for k0 := uint64(0); k0 < K; k0 += kc {
			kk := min(kc, K-k0)
			bb, bBase, err := c.sub(b, es*k0*N, es*kk*N, es, "vulkan: "+kernel+": b")
			if err != nil {
				return err
			}
			var aBase uint32
			if ta {
				if ab, aBase, err = c.sub(a, 4*k0*M, 4*kk*M, 4, "vulkan: "+kernel+": a"); err != nil {
					return err
				}
				aBase += uint32(i0)
			} else {
				aBase = aRows + uint32(k0)
			}
			acc := uint32(0)
			if accumulate || k0 > 0 {
				acc = 1
			}
			gx := (N + uint64(t[1]) - 1) / uint64(t[1])
			gy := (mm + uint64(t[0]) - 1) / uint64(t[0])
			push := []uint32{uint32(mm), uint32(N), uint32(kk), acc, uint32(lda), uint32(N), uint32(N), aBase, bBase, cBase, math.Float32bits(alpha)}
			if err := c.dispatch(p, []binding{cb, ab, bb}, push, uint32(gx), uint32(gy), 1); err != nil {
				return err
			}
		}
	}
	return nil
}

// RMSNormBackward computes dx [rows×n] for out = RMSNorm(x, w) from dy, the
// gradient of out, x and rrms [rows], the reciprocal RMS RMSNormSave saved:
// with r = rrms[row], dx[i] = r·(w[i]·dy[i] − x[i]·r²·Σ_j w[j]·dy[j]·x[j]/n),
// written, or added to dx when accumulate (the residual stream's gradient).
// dx may be dy when not accumulating. The gradient of w is not computed.
func (c *Context) RMSNormBackward(dx, dy, x, w, rrms Span, rows, n int, accumulate bool) error {
	if err := dims("RMSNormBackward", [][]int{{rows, n}}, "rows", rows, "n", n); err != nil {
		return err
	}
	acc := uint32(0)
	if accumulate {
		acc = 1
	}
	gx, gy := c.grid(uint64(rows))
	sz := 4 * uint64(rows) * uint64(n)
	return c.record("rmsnorm_back", []uint32{c.rowWG()}, []Span{dx, dy, x, w, rrms}, []uint64{sz, sz, sz, 4 * uint64(n), 4 * uint64(rows)},
		[]uint32{uint32(rows), uint32(n), acc}, gx, gy)
}

// SiLUMulBackward computes the gradients of SiLUMul's out = silu(gate)·up
// over n elements from dy, the gradient of out: with s = σ(gate),
// dup = dy·gate·s and dgate = dy·up·s·(1 + gate·(1 − s)). dgate may be gate
// and dup may be up (element by element, inputs are read before writing).
func (c *Context) SiLUMulBackward(dgate, dup, dy, gate, up Span, n int) error {
	if err := dims("SiLUMulBackward", [][]int{{n}}, "n", n); err != nil {
		return err
	}
	gx, gy := c.grid((uint64(n) + elementwiseWG - 1) / elementwiseWG)
	sz := 4 * uint64(n)
	return c.record("silu_mul_back", []uint32{elementwiseWG}, []Span{dgate, dup, dy, gate, up}, []uint64{sz, sz, sz, sz, sz}, []uint32{uint32(n), 0}, gx, gy)
}

// AttentionBackward computes the gradients of Attention (same q, k, v,
// offsets and shapes; scale 1/sqrt(headDim)) from dout [tokens × nHead ×
// headDim], the gradient of its output: dq [tokens × nHead × headDim], dk
// and dv [tokens × nKV × headDim], written (not added). The probabilities
// are recomputed, not saved: a first dispatch, one workgroup per (token,
// head), computes the log-sum-exp of the scores and D = Σ_j P_j·dP_j
// (dP_j = dout·v_j), into stats [2·tokens·nHead] f32 (scratch), and dq =
// scale·Σ_j P_j·(dP_j − D)·k_j (the softmax's Jacobian); a second, one
// workgroup per (token, KV head), sums over the queries that attend to the
// token and the heads of its group dv = Σ P·dout and dk = scale·Σ P·(dP −
// D)·q. Offsets must be nondecreasing, as for Attention. No output may
// alias an input.
func (c *Context) AttentionBackward(dq, dk, dv, stats, dout, q, k, v, offsets Span, tokens, nSeq, nHead, nKV, headDim int) error {
	if err := dims("AttentionBackward", [][]int{{tokens, nHead, headDim}, {tokens, nKV, headDim}, {2, tokens, nHead}}, "tokens", tokens, "nSeq", nSeq, "nHead", nHead, "nKV", nKV, "headDim", headDim); err != nil {
		return err
	}
	if nHead%nKV != 0 {
		return fmt.Errorf("vulkan: AttentionBackward: nHead = %d is not a multiple of nKV = %d", nHead, nKV)
	}
	dpt := uint32((headDim + attentionWG - 1) / attentionWG)
	if dpt > 8 {
		return fmt.Errorf("vulkan: AttentionBackward: headDim = %d, at most %d", headDim, 8*attentionWG)
	}
	qs := 4 * uint64(tokens) * uint64(nHead) * uint64(headDim)
	kvs := 4 * uint64(tokens) * uint64(nKV) * uint64(headDim)
	ss := 8 * uint64(tokens) * uint64(nHead)
	offs := 4 * uint64(nSeq+1)
	push := []uint32{uint32(tokens), uint32(nHead), uint32(nKV), uint32(headDim), uint32(nSeq), math.Float32bits(float32(1 / math.Sqrt(float64(headDim))))}
	gx, gy := c.grid(uint64(tokens) * uint64(nHead))
	if err := c.record("attention_back_q", []uint32{attentionWG, dpt}, []Span{dq, stats, dout, q, k, v, offsets},
		[]uint64{qs, ss, qs, qs, kvs, kvs, offs}, push, gx, gy); err != nil {
		return err
	}
	gx, gy = c.grid(uint64(tokens) * uint64(nKV))
	return c.record("attention_back_kv", []uint32{attentionWG, dpt}, []Span{dk, dv, stats, dout, q, k, v, offsets},
		[]uint64{kvs, kvs, ss, qs, qs, kvs, kvs, offs}, push, gx, gy)
}

// MeanPool pools packed sequences: out[s] [nSeq×dim] is the mean of the rows
// of x [tokens×dim] of sequence s (tokens [offsets[s], offsets[s+1]),
// offsets [nSeq+1] uint32 as for Attention) whose mask[t] (uint32 [tokens])
// is not 0, or zeros when the sequence has none (sentence embeddings:
// padding and, say, instruction tokens left out).
func (c *Context) MeanPool(out, x, mask, offsets Span, tokens, nSeq, dim int) error {
	if err := dims("MeanPool", [][]int{{tokens, dim}, {nSeq, dim}}, "tokens", tokens, "nSeq", nSeq, "dim", dim); err != nil {
		return err
	}
	gx, gy := c.grid((uint64(nSeq)*uint64(dim) + elementwiseWG - 1) / elementwiseWG)
	return c.record("mean_pool", []uint32{elementwiseWG}, []Span{out, x, mask, offsets},
		[]uint64{4 * uint64(nSeq) * uint64(dim), 4 * uint64(tokens) * uint64(dim), 4 * uint64(tokens), 4 * uint64(nSeq+1)},
		[]uint32{uint32(tokens), uint32(dim), uint32(nSeq), 0}, gx, gy)
}

// MeanPoolBackward is the backward of MeanPool: dx [tokens×dim] gets
// dout[s]/count_s in the rows of sequence s whose mask is not 0 (count_s
// of them) and zeros elsewhere (masked tokens, tokens outside every
// sequence). dx is written, not added.
func (c *Context) MeanPoolBackward(dx, dout, mask, offsets Span, tokens, nSeq, dim int) error {
	if err := dims("MeanPoolBackward", [][]int{{tokens, dim}, {nSeq, dim}}, "tokens", tokens, "nSeq", nSeq, "dim", dim); err != nil {
		return err
	}
	gx, gy := c.grid(uint64(tokens))
	return c.record("mean_pool_back", []uint32{c.rowWG()}, []Span{dx, dout, mask, offsets},
		[]uint64{4 * uint64(tokens) * uint64(dim), 4 * uint64(nSeq) * uint64(dim), 4 * uint64(tokens), 4 * uint64(nSeq+1)},
		[]uint32{uint32(tokens), uint32(dim), uint32(nSeq), 0}, gx, gy)
}

// L2Norm normalises rows of x [rows×n] to unit Euclidean length:
// out = x / max(‖x‖₂, eps), as PyTorch's F.normalize (eps 1e-12 there).
// out may be x.
func (c *Context) L2Norm(out, x Span, rows, n int, eps float32) error {
	if err := dims("L2Norm", [][]int{{rows, n}}, "rows", rows, "n", n); err != nil {
		return err
	}
	gx, gy := c.grid(uint64(rows))
	sz := 4 * uint64(rows) * uint64(n)
	return c.record("l2norm", []uint32{c.rowWG()}, []Span{out, x}, []uint64{sz, sz}, []uint32{uint32(rows), uint32(n), math.Float32bits(eps)}, gx, gy)
}

// L2NormBackward is the backward of L2Norm from dy, the gradient of its
// output, and x, its input: with ν = ‖x‖₂ of the row and y = x/ν,
// dx = (dy − y·(y·dy))/ν, or dy/eps for a row with ν ≤ eps. dx may be dy.
func (c *Context) L2NormBackward(dx, dy, x Span, rows, n int, eps float32) error {
	if err := dims("L2NormBackward", [][]int{{rows, n}}, "rows", rows, "n", n); err != nil {
		return err
	}
	gx, gy := c.grid(uint64(rows))
	sz := 4 * uint64(rows) * uint64(n)
	return c.record("l2norm_back", []uint32{c.rowWG()}, []Span{dx, dy, x}, []uint64{sz, sz, sz}, []uint32{uint32(rows), uint32(n), math.Float32bits(eps)}, gx, gy)
}

// LoRA computes the low-rank branch of a Linear layer, f32 throughout: with
// x [tokens×in], a [rank×in] and b [out×rank], h = x·aᵀ [tokens×rank]
// (written: LoRABackward needs it) and y (+)= scale·h·bᵀ [tokens×out], two
// GEMMs. With accumulate, y is the base layer's output, which the branch
// adds to.
func (c *Context) LoRA(y, h, x, a, b Span, tokens, in, out, rank int, scale float32, accumulate bool) error {
	if err := c.gemmNT(h, x, a, tokens, rank, in, F32, 1, false); err != nil {
		return err
	}
	return c.gemmNT(y, h, b, tokens, out, rank, F32, scale, accumulate)
}

// LoRABackward is the backward of LoRA from dy [tokens×out], the gradient
// of y, with x, a, b and the h LoRA wrote: dh = scale·dy·b [tokens×rank]
// (written; scratch), db = scale·dyᵀ·h [out×rank], da = dhᵀ·x [rank×in]
// (both added to when accumulateGrads, to sum over micro-batches) and
// dx = dh·a [tokens×in] (added to when accumulateDX, to the base layer's
// dY·W). Four GEMMs (GEMMNN and GEMMTN). No output may alias an input.
func (c *Context) LoRABackward(dx, da, db, dh, dy, x, a, b, h Span, tokens, in, out, rank int, scale float32, accumulateGrads, accumulateDX bool) error {
	if err := c.gemmKN("LoRABackward", dh, dy, b, tokens, rank, out, F32, false, scale, false); err != nil {
		return err
	}
	if err := c.gemmKN("LoRABackward", db, dy, h, out, rank, tokens, F32, true, scale, accumulateGrads); err != nil {
		return err
	}
	if err := c.gemmKN("LoRABackward", da, dh, x, rank, in, tokens, F32, true, 1, accumulateGrads); err != nil {
		return err
	}
	return c.gemmKN("LoRABackward", dx, dh, a, tokens, in, rank, F32, false, 1, accumulateDX)
}
