package engine

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/tli-project/tli/kernels"
	"github.com/tli-project/tli/quant"
)

// DType is the element type of a tensor.
type DType uint8

const (
	F32 DType = iota
	BF16
	F16
	// Q4 is a bitsandbytes 4-bit weight (NF4 or FP4), held in Tensor.Q.
	Q4
)

func (d DType) String() string {
	switch d {
	case F32:
		return "f32"
	case BF16:
		return "bf16"
	case F16:
		return "f16"
	case Q4:
		return "q4"
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// Size is the number of bytes of one element (0 for Q4: half a byte plus
// the block scales).
func (d DType) Size() int {
	switch d {
	case F32:
		return 4
	case Q4:
		return 0
	}
	return 2
}

// ParseDType reads "f32", "bf16" or "f16" (and the safetensors spellings
// F32, BF16, F16).
func ParseDType(s string) (DType, error) {
	switch s {
	case "f32", "F32", "float32":
		return F32, nil
	case "bf16", "BF16", "bfloat16":
		return BF16, nil
	case "f16", "F16", "float16":
		return F16, nil
	}
	return 0, fmt.Errorf("unknown dtype %q (want f32, bf16 or f16)", s)
}

// Tensor is a dense row-major tensor. Exactly one of F32 (for DType F32),
// Half (raw bf16/f16 bits) or Q (a 2-D 4-bit weight, DType Q4) holds the
// data. The slices may point into a memory-mapped file; such tensors are
// read-only.
type Tensor struct {
	DType DType
	Shape []int
	F32   []float32
	Half  []uint16
	Q     *quant.Tensor
}

// FromQuant wraps a 4-bit weight as a [Rows×Cols] tensor of DType Q4.
func FromQuant(q *quant.Tensor) *Tensor {
	return &Tensor{DType: Q4, Shape: []int{q.Rows, q.Cols}, Q: q}
}

// Numel is the number of elements of shape.
func Numel(shape []int) int {
	n := 1
	for _, s := range shape {
		n *= s
	}
	return n
}

// NewF32 returns a zeroed f32 tensor of the given shape.
func NewF32(shape ...int) *Tensor {
	return &Tensor{DType: F32, Shape: append([]int(nil), shape...), F32: make([]float32, Numel(shape))}
}

// FromF32 wraps data (not copied) as an f32 tensor of the given shape.
func FromF32(data []float32, shape ...int) *Tensor {
	if len(data) != Numel(shape) {
		panic(fmt.Sprintf("engine.FromF32: %d values for shape %v", len(data), shape))
	}
	return &Tensor{DType: F32, Shape: append([]int(nil), shape...), F32: data}
}

// Numel is the number of elements.
func (t *Tensor) Numel() int { return Numel(t.Shape) }

// Rows and Cols give the shape of a 2-D tensor.
func (t *Tensor) Rows() int { return t.Shape[0] }
func (t *Tensor) Cols() int { return t.Shape[len(t.Shape)-1] }

// At returns element i (flat index) widened to float32.
func (t *Tensor) At(i int) float32 {
	switch t.DType {
	case BF16:
		return kernels.BF16ToF32(t.Half[i])
	case F16:
		return kernels.F16ToF32(t.Half[i])
	case Q4:
		return t.Q.At(i)
	}
	return t.F32[i]
}

// Row copies row r of a 2-D tensor into dst as float32 (dst must hold Cols()).
func (t *Tensor) Row(r int, dst []float32) {
	c := t.Cols()
	switch t.DType {
	case F32:
		copy(dst[:c], t.F32[r*c:(r+1)*c])
	case BF16:
		for i, h := range t.Half[r*c : (r+1)*c] {
			dst[i] = kernels.BF16ToF32(h)
		}
	case F16:
		for i, h := range t.Half[r*c : (r+1)*c] {
			dst[i] = kernels.F16ToF32(h)
		}
	case Q4:
		t.Q.DequantizeRow(r, dst)
	}
}

// ToF32 returns the tensor's values as a new (or, for F32, the same) slice.
func (t *Tensor) ToF32() []float32 {
	if t.DType == F32 {
		return t.F32
	}
	out := make([]float32, t.Numel())
	if t.DType == Q4 {
		t.Q.Dequantize(out)
		return out
	}
	for i := range out {
		out[i] = t.At(i)
	}
	return out
}

// Convert returns the tensor held as dtype d (f32 <-> bf16/f16, rounding to
// nearest even when narrowing; a Q4 tensor dequantised). It returns t
// itself when already of dtype d; d may not be Q4 (see quant.NewTensor).
func (t *Tensor) Convert(d DType) *Tensor {
	if t.DType == d {
		return t
	}
	if d == Q4 {
		panic("engine: Convert to Q4: quantise with quant.NewTensor")
	}
	if t.DType == Q4 { // dequantise once, then narrow
		t = FromF32(t.ToF32(), t.Shape...)
		if d == F32 {
			return t
		}
	}
	out := &Tensor{DType: d, Shape: append([]int(nil), t.Shape...)}
	n := t.Numel()
	if d == F32 {
		out.F32 = t.ToF32()
		return out
	}
	out.Half = make([]uint16, n)
	for i := 0; i < n; i++ {
		v := t.At(i)
		if d == BF16 {
			out.Half[i] = kernels.F32ToBF16(v)
		} else {
			out.Half[i] = kernels.F32ToF16(v)
		}
	}
	return out
}

// MatMulNT computes y[m×out] (+)= x[m×in] · Wᵀ where W is a Linear weight
// [out×in] of any dtype. With fast=true and bf16 weights, activations are
// rounded to bf16 (PyTorch bf16 semantics). A Q4 weight computes as
// bitsandbytes' Linear4bit with compute dtype bf16, whatever fast says: x
// rounded to bf16, the dequantised weight rounded to bf16, f32 sums, and
// the product rounded to bf16 before it is added to y.
func MatMulNT(y []float32, x []float32, m int, w *Tensor, acc, fast bool) {
	out, in := w.Shape[0], w.Shape[1]
	switch w.DType {
	case Q4:
		matMulQ4(y, x, m, w.Q, acc)
	case F32:
		kernels.GemmNT(m, out, in, x, in, w.F32, in, y, out, acc)
	case BF16:
		if fast {
			kernels.GemmNTBF16Fast(m, out, in, x, in, w.Half, in, y, out, acc)
		} else {
			kernels.GemmNTBF16(m, out, in, x, in, w.Half, in, y, out, acc)
		}
	case F16:
		kernels.GemmNTF16(m, out, in, x, in, w.Half, in, y, out, acc)
	}
}

// MatMulNN computes dx[m×in] (+)= dy[m×out] · W for a Linear weight
// W [out×in]: the backward of MatMulNT with respect to x. With fast=true and
// bf16 weights it matches PyTorch's bf16 backward: dy is rounded to bf16 and
// the product runs on bf16 dot products, against a transposed copy of W made
// on first use and kept (see Transposed). A Q4 weight is dequantised to
// bf16 for the call and used the same way (bitsandbytes' MatMul4Bit
// backward: dy in the compute dtype times the dequantised weight).
func MatMulNN(dx []float32, dy []float32, m int, w *Tensor, acc, fast bool) {
	out, in := w.Shape[0], w.Shape[1]
	switch w.DType {
	case Q4:
		d := &Tensor{DType: BF16, Shape: []int{out, in}, Half: make([]uint16, out*in)}
		w.Q.DequantizeBF16(0, out, d.Half)
		kernels.GemmNTBF16Fast(m, in, out, dy, out, transposedOnce(d).Half, out, dx, in, acc)
	case F32:
		kernels.GemmNN(m, in, out, dy, out, w.F32, in, dx, in, acc)
	case BF16:
		if fast {
			kernels.GemmNTBF16Fast(m, in, out, dy, out, Transposed(w).Half, out, dx, in, acc)
			return
		}
		kernels.GemmNNBF16(m, in, out, dy, out, w.Half, in, dx, in, acc)
	case F16:
		kernels.GemmNNF16(m, in, out, dy, out, w.Half, in, dx, in, acc)
	}
}

// transposes caches Transposed copies by tensor, up to TransposeCacheBytes
// in all (transposedBytes counts them).
var (
	transposes      sync.Map // *Tensor -> *Tensor
	transposedBytes atomic.Int64
)

// TransposeCacheBytes bounds the memory Transposed keeps: 4 GiB by default.
// The backward pass of training in the fast bf16 mode reads every frozen
// weight below the target layer transposed; kept for all 31 layers of an
// 8B model that is another 14 GB beside the weights (and an out-of-memory
// kill on a 23 GB machine). Past the bound, transposes are computed for
// each use and dropped: a few percent of a deep step's time.
var TransposeCacheBytes int64 = 4 << 30

// Transposed returns Wᵀ [in×out] of a 2-D weight W [out×in], computed on
// first use and cached for the life of the process while the cache holds
// less than TransposeCacheBytes (frozen weights never change; a merged
// weight is a new tensor). Training backward passes use it to run
// dX = dY·W as a product of contiguous rows.
func Transposed(w *Tensor) *Tensor {
	if t, ok := transposes.Load(w); ok {
		return t.(*Tensor)
	}
	rows, cols := w.Shape[0], w.Shape[1]
	t := &Tensor{DType: w.DType, Shape: []int{cols, rows}}
	var size int64
	if w.DType == F32 {
		t.F32 = make([]float32, rows*cols)
		transpose(t.F32, w.F32, rows, cols)
		size = 4 * int64(rows*cols)
	} else {
		t.Half = make([]uint16, rows*cols)
		transpose(t.Half, w.Half, rows, cols)
		size = 2 * int64(rows*cols)
	}
	if transposedBytes.Add(size) > TransposeCacheBytes {
		transposedBytes.Add(-size)
		return t // over the bound: this use only
	}
	actual, loaded := transposes.LoadOrStore(w, t)
	if loaded {
		transposedBytes.Add(-size)
	}
	return actual.(*Tensor)
}

// transpose writes the transpose of src [rows×cols] into dst [cols×rows],
// in 64×64 tiles so that both sides stay in cache.
func transpose[E float32 | uint16](dst, src []E, rows, cols int) {
	const blk = 64
	ParallelFor((cols+blk-1)/blk, func(b int) {
		c0, c1 := b*blk, min(b*blk+blk, cols)
		for r0 := 0; r0 < rows; r0 += blk {
			r1 := min(r0+blk, rows)
			for c := c0; c < c1; c++ {
				d := dst[c*rows+r0 : c*rows+r1]
				for i := range d {
					d[i] = src[(r0+i)*cols+c]
				}
			}
		}
	})
}
