//go:build vulkan && (amd64 || arm64) && (linux || darwin || windows)

package vulkan

import (
	"fmt"
	"math"
)

// The kernels record a dispatch into the Context's command buffer and
// return; Sync (or a Download) runs them. Each one checks its spans
// (buffer of this Context, not freed, offset aligned, large enough for the
// shapes) and its shapes before recording anything. All arithmetic is f32.

// WeightType is the element type of a weight or table buffer.
type WeightType int

const (
	F32  WeightType = iota // float32
	BF16                   // bfloat16 bits (uint16), widened to f32 in the shader
	F16                    // IEEE half bits (uint16), widened to f32 in the shader
)

func (w WeightType) String() string {
	switch w {
	case F32:
		return "f32"
	case BF16:
		return "bf16"
	case F16:
		return "f16"
	}
	return fmt.Sprintf("WeightType(%d)", int(w))
}

// size is the bytes of one element.
func (w WeightType) size() (uint64, error) {
	switch w {
	case F32:
		return 4, nil
	case BF16, F16:
		return 2, nil
	}
	return 0, fmt.Errorf("vulkan: unknown weight type %d", int(w))
}

// elementwiseWG is the workgroup size of the element-wise kernels.
const elementwiseWG = 256

// dims checks that every shape is positive and that products the shaders
// index with 32-bit integers stay below 2³².
func dims(kernel string, products [][]int, named ...any) error {
	for i := 0; i+1 < len(named); i += 2 {
		if v := named[i+1].(int); v <= 0 {
			return fmt.Errorf("vulkan: %s: %s = %d, must be positive", kernel, named[i], v)
		}
	}
	for _, p := range products {
		t := uint64(1)
		for _, v := range p {
			t *= uint64(v)
			if t >= 1<<32 {
				return fmt.Errorf("vulkan: %s: shape %v has 2³² elements or more", kernel, p)
			}
		}
	}
	return nil
}

// grid lays groups workgroups over x and y of a dispatch (x at most the
// device's limit; the shaders recover the index as y·numX + x and skip the
// excess).
func (c *Context) grid(groups uint64) (uint32, uint32) {
	maxX := uint64(c.Info.MaxComputeWorkGroupCount[0])
	if maxX == 0 {
		maxX = 65535
	}
	x := min(groups, maxX)
	return uint32(x), uint32((groups + x - 1) / x)
}

// record binds spans, builds or reuses the pipeline and records the dispatch.
func (c *Context) record(shader string, spec []uint32, spans []Span, need []uint64, push []uint32, x, y uint32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.in == nil {
		return ErrClosed
	}
	binds := make([]binding, len(spans))
	for i, s := range spans {
		b, err := c.bind(s, need[i], fmt.Sprintf("vulkan: %s: operand %d", shader, i))
		if err != nil {
			return err
		}
		binds[i] = b
	}
	p, err := c.pipeline(shader, spec...)
	if err != nil {
		return err
	}
	return c.dispatch(p, binds, push, x, y, 1)
}

// gemmTiles picks the tile of the GEMM for m rows: BM, BN, BK, TM, TN.
// Up to 128 rows (decoding, small batches, short prompts) one tile row
// covers m rounded up to 16 (TM = ⌈m/16⌉ rows per invocation), so that
// little of the work is padding: for m = 80 this is 3.6× faster on
// lavapipe than 64-row tiles. Larger m uses 64×64 tiles.
func (c *Context) gemmTiles(m int) [5]uint32 {
	t := [5]uint32{64, 64, 16, 4, 4}
	if m <= 128 {
		t[3] = uint32((m + 15) / 16)
		t[0] = 16 * t[3]
	}
	for (t[0]/t[3])*(t[1]/t[4]) > c.Info.MaxComputeWorkGroupInvocs && t[4] < t[1] {
		t[4] *= 2
	}
	return t
}

// GEMM computes out[m×n] = a[m×k]·wᵀ, or out += a·wᵀ when accumulate, with
// w a Linear layer's weight [n×k] (row j is output feature j) in f32, bf16
// or f16; a and out are f32 and row-major. Any m, n, k: the edge tiles are
// masked. Tiles of a and w go through shared memory; accumulation is f32.
// Operands larger than one binding may be (maxStorageBufferRange: 128 MiB
// on lavapipe, 1 GiB on some Intel GPUs) are split into blocks of rows of
// a and w, one dispatch per block.
func (c *Context) GEMM(out, a, w Span, m, n, k int, wt WeightType, accumulate bool) error {
	return c.gemmNT(out, a, w, m, n, k, wt, 1, accumulate)
}

// gemmNT is GEMM with out (+)= alpha·a·wᵀ.
func (c *Context) gemmNT(out, a, w Span, m, n, k int, wt WeightType, alpha float32, accumulate bool) error {
	if err := dims("GEMM", [][]int{{m, k}, {n, k}, {m, n}}, "m", m, "n", n, "k", k); err != nil {
		return err
	}
	es, err := wt.size()
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
	}{{out, 4 * M * N, "out"}, {a, 4 * M * K, "a"}, {w, es * N * K, "w"}} {
		if err := c.check(op.s, op.need, "vulkan: GEMM: "+op.name); err != nil {
			return err
		}
	}
	acc := uint32(0)
	if accumulate {
		acc = 1
	}
	mc, nc, err := c.blocks(M, N, 4*max(K, N), es*K, "GEMM")
	if err != nil {
		return err
	}
	for i0 := uint64(0); i0 < M; i0 += mc {
		mm := min(mc, M-i0)
		t := c.gemmTiles(int(mm))
		p, err := c.pipeline("gemm", t[0], t[1], t[2], t[3], t[4], uint32(wt), (t[0]/t[3])*(t[1]/t[4]))
		if err != nil {
			return err
		}
		ab, aBase, err := c.sub(a, 4*i0*K, 4*mm*K, 4, "vulkan: GEMM: a")
		if err != nil {
			return err
		}
		cb, cBase, err := c.sub(out, 4*i0*N, 4*mm*N, 4, "vulkan: GEMM: out")
		if err != nil {
			return err
		}
		for j0 := uint64(0); j0 < N; j0 += nc {
			nn := min(nc, N-j0)
			wb, wBase, err := c.sub(w, es*j0*K, es*nn*K, es, "vulkan: GEMM: w")
			if err != nil {
				return err
			}
			gx := (nn + uint64(t[1]) - 1) / uint64(t[1])
			gy := (mm + uint64(t[0]) - 1) / uint64(t[0])
			push := []uint32{uint32(mm), uint32(nn), uint32(K), acc, uint32(N), aBase, wBase, cBase + uint32(j0), math.Float32bits(alpha)}
			if err := c.dispatch(p, []binding{cb, ab, wb}, push, uint32(gx), uint32(gy), 1); err != nil {
				return err
			}
		}
	}
	return nil
}

// blocks splits rows × cols (rows of rowBytes bytes in one operand, cols of
// colBytes in another) into blocks whose bindings fit in rangeLimit,
// multiples of 64 when split.
func (c *Context) blocks(rows, cols, rowBytes, colBytes uint64, kernel string) (uint64, uint64, error) {
	budget := c.rangeLimit - min(c.rangeLimit, c.mem.minAlign+8) // room for aligning a piece down
	rc, cc := min(rows, budget/rowBytes), min(cols, budget/colBytes)
	if rc == 0 || cc == 0 {
		return 0, 0, fmt.Errorf("vulkan: %s: one row of an operand is larger than the device's maxStorageBufferRange (%s)", kernel, byteSize(c.rangeLimit))
	}
	if rc < rows && rc > 64 {
		rc &^= 63
	}
	if cc < cols && cc > 64 {
		cc &^= 63
	}
	return rc, cc, nil
}

// RMSNorm normalises rows of x [rows×n]: out = x / sqrt(mean(x²) + eps) · w
// with w [n] (Llama's RMSNorm). out may be x.
func (c *Context) RMSNorm(out, x, w Span, rows, n int, eps float32) error {
	return c.rmsNorm(out, x, w, Span{}, rows, n, eps)
}

// RMSNormSave is RMSNorm that also writes the reciprocal RMS of every row,
// 1/sqrt(mean(x²) + eps), to rrms [rows] (f32): the saved value
// RMSNormBackward takes.
func (c *Context) RMSNormSave(out, rrms, x, w Span, rows, n int, eps float32) error {
	if rrms.B == nil {
		return fmt.Errorf("vulkan: RMSNormSave: rrms: no buffer")
	}
	return c.rmsNorm(out, x, w, rrms, rows, n, eps)
}

// rmsNorm records RMSNorm, saving the reciprocal RMS when rrms has a buffer.
func (c *Context) rmsNorm(out, x, w, rrms Span, rows, n int, eps float32) error {
	if err := dims("RMSNorm", [][]int{{rows, n}}, "rows", rows, "n", n); err != nil {
		return err
	}
	gx, gy := c.grid(uint64(rows))
	sz := 4 * uint64(rows) * uint64(n)
	save, rsz := uint32(1), 4*uint64(rows)
	if rrms.B == nil { // the shader does not touch binding 3: bind x there
		save, rrms, rsz = 0, x, sz
	}
	return c.record("rmsnorm", []uint32{c.rowWG(), save}, []Span{out, x, w, rrms}, []uint64{sz, sz, 4 * uint64(n), rsz},
		[]uint32{uint32(rows), uint32(n), math.Float32bits(eps)}, gx, gy)
}

// rowWG is the workgroup size of the kernels that reduce a row in shared
// memory: 256, or less on a device that does not allow as many.
func (c *Context) rowWG() uint32 {
	wg := uint32(256)
	for wg > c.Info.MaxComputeWorkGroupInvocs {
		wg /= 2
	}
	return wg
}

// elementwise records one of the element-wise kernels over n elements.
func (c *Context) elementwise(shader string, out, a, b Span, n int) error {
	if err := dims(shader, [][]int{{n}}, "n", n); err != nil {
		return err
	}
	gx, gy := c.grid((uint64(n) + elementwiseWG - 1) / elementwiseWG)
	sz := 4 * uint64(n)
	return c.record(shader, []uint32{elementwiseWG}, []Span{out, a, b}, []uint64{sz, sz, sz}, []uint32{uint32(n), 0}, gx, gy)
}

// SiLUMul computes out = silu(gate) · up over n elements (the SwiGLU
// product of a Llama MLP). out may be gate or up.
func (c *Context) SiLUMul(out, gate, up Span, n int) error {
	return c.elementwise("silu_mul", out, gate, up, n)
}

// Add computes out = a + b over n elements (the residual connection). out
// may be a or b.
func (c *Context) Add(out, a, b Span, n int) error {
	return c.elementwise("add", out, a, b, n)
}

// Mul computes out = a · b over n elements (a dropout mask applied). out
// may be a or b.
func (c *Context) Mul(out, a, b Span, n int) error {
	return c.elementwise("mul", out, a, b, n)
}

// Rope applies the rotary embedding in place to x [tokens × heads ×
// headDim], rotate-half convention as Hugging Face Llama: for every head
// and i < headDim/2, (x[i], x[i+headDim/2]) is rotated by the angle whose
// cosine and sine are cos[t][i] and sin[t][i], tables [tokens × headDim/2]
// (the first half of HF's duplicated cos/sin rows). headDim must be even.
func (c *Context) Rope(x, cos, sin Span, tokens, heads, headDim int) error {
	return c.rope("Rope", x, cos, sin, tokens, heads, headDim, 0)
}

// RopeBackward is the backward of Rope, in place on the gradient dx [tokens
// × heads × headDim]: the rotation is orthogonal, so its gradient is the
// gradient rotated by the opposite angle (sin negated), with the same
// tables.
func (c *Context) RopeBackward(dx, cos, sin Span, tokens, heads, headDim int) error {
	return c.rope("RopeBackward", dx, cos, sin, tokens, heads, headDim, 1)
}

// rope records the rotation, by the opposite angle when inverse is 1.
func (c *Context) rope(kernel string, x, cos, sin Span, tokens, heads, headDim int, inverse uint32) error {
	if err := dims(kernel, [][]int{{tokens, heads, headDim}}, "tokens", tokens, "heads", heads, "headDim", headDim); err != nil {
		return err
	}
	if headDim%2 != 0 {
		return fmt.Errorf("vulkan: %s: headDim = %d, must be even", kernel, headDim)
	}
	pairs := uint64(tokens) * uint64(heads) * uint64(headDim/2)
	gx, gy := c.grid((pairs + elementwiseWG - 1) / elementwiseWG)
	tab := 4 * uint64(tokens) * uint64(headDim/2)
	return c.record("rope", []uint32{elementwiseWG}, []Span{x, cos, sin}, []uint64{8 * pairs, tab, tab},
		[]uint32{uint32(tokens), uint32(heads), uint32(headDim), inverse}, gx, gy)
}

// Embed gathers rows of table [vocab × dim] (f32, bf16 or f16) by ids
// [tokens] (uint32) into out [tokens × dim] (f32). An id ≥ vocab gives a row
// of zeros: the shader cannot fail, so check ids before when it matters. A
// table larger than one binding may be is gathered from in pieces of rows,
// one dispatch each.
func (c *Context) Embed(out, table, ids Span, tokens, dim, vocab int, wt WeightType) error {
	if err := dims("Embed", [][]int{{tokens, dim}, {vocab, dim}}, "tokens", tokens, "dim", dim, "vocab", vocab); err != nil {
		return err
	}
	es, err := wt.size()
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.in == nil {
		return ErrClosed
	}
	T, D, V := uint64(tokens), uint64(dim), uint64(vocab)
	ob, err := c.bind(out, 4*T*D, "vulkan: Embed: out")
	if err != nil {
		return err
	}
	ib, err := c.bind(ids, 4*T, "vulkan: Embed: ids")
	if err != nil {
		return err
	}
	if err := c.check(table, es*V*D, "vulkan: Embed: table"); err != nil {
		return err
	}
	vc, _, err := c.blocks(V, 1, es*D, 1, "Embed")
	if err != nil {
		return err
	}
	p, err := c.pipeline("embed", elementwiseWG, uint32(wt))
	if err != nil {
		return err
	}
	gx, gy := c.grid((T*D + elementwiseWG - 1) / elementwiseWG)
	for v0 := uint64(0); v0 < V; v0 += vc {
		vn := min(vc, V-v0)
		tb, tBase, err := c.sub(table, es*v0*D, es*vn*D, es, "vulkan: Embed: table")
		if err != nil {
			return err
		}
		push := []uint32{uint32(T), uint32(D), uint32(V), uint32(v0), uint32(vn), tBase}
		if err := c.dispatch(p, []binding{ob, tb, ib}, push, gx, gy, 1); err != nil {
			return err
		}
	}
	return nil
}

// attentionWG is the workgroup size of Attention: keys scored at a time.
const attentionWG = 64

// Attention computes causal self-attention over packed sequences: q and out
// [tokens × nHead × headDim], k and v [tokens × nKV × headDim] (grouped
// query attention: nHead a multiple of nKV, head h reading KV head
// h/(nHead/nKV)), offsets [nSeq+1] uint32 token offsets (sequence s is
// tokens [offsets[s], offsets[s+1]), offsets[0] = 0, offsets[nSeq] =
// tokens). Token t attends to the tokens of its sequence up to itself with
// scores q·k/sqrt(headDim) and a softmax in f32; a token outside every
// sequence attends to itself only.
func (c *Context) Attention(out, q, k, v, offsets Span, tokens, nSeq, nHead, nKV, headDim int) error {
	if err := dims("Attention", [][]int{{tokens, nHead, headDim}, {tokens, nKV, headDim}}, "tokens", tokens, "nSeq", nSeq, "nHead", nHead, "nKV", nKV, "headDim", headDim); err != nil {
		return err
	}
	if nHead%nKV != 0 {
		return fmt.Errorf("vulkan: Attention: nHead = %d is not a multiple of nKV = %d", nHead, nKV)
	}
	dpt := uint32((headDim + attentionWG - 1) / attentionWG)
	if dpt > 8 {
		return fmt.Errorf("vulkan: Attention: headDim = %d, at most %d", headDim, 8*attentionWG)
	}
	gx, gy := c.grid(uint64(tokens) * uint64(nHead))
	qs := 4 * uint64(tokens) * uint64(nHead) * uint64(headDim)
	kvs := 4 * uint64(tokens) * uint64(nKV) * uint64(headDim)
	scale := float32(1 / math.Sqrt(float64(headDim)))
	return c.record("attention", []uint32{attentionWG, dpt}, []Span{out, q, k, v, offsets},
		[]uint64{qs, qs, kvs, kvs, 4 * uint64(nSeq+1)},
		[]uint32{uint32(tokens), uint32(nHead), uint32(nKV), uint32(headDim), uint32(nSeq), math.Float32bits(scale)}, gx, gy)
}
