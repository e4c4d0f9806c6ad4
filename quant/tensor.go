package quant

import (
	"fmt"
	"runtime"
	"sync"
)

// Tensor is a 4-bit weight of Rows×Cols (out×in, row-major as a Linear
// stores it), quantised flat in blocks of Blocksize. Absmax always holds the
// float32 scales the codes are multiplied by; Double, when not nil, is their
// 8-bit form as a double-quantised checkpoint stores them (Absmax is then
// Double.Dequantize()). DType is the dtype dequantised weights are rounded
// to: that of the weight before quantisation.
type Tensor struct {
	Kind       Kind
	Blocksize  int
	Rows, Cols int
	DType      DType
	Packed     []byte    // PackedLen(Rows·Cols) bytes, high nibble first
	Absmax     []float32 // Blocks(Rows·Cols, Blocksize) scales
	Double     *Double   // nil unless double-quantised
}

// NewTensor quantises w (rows×cols, row-major, values already in the
// storage dtype dt) to kind. With double set, absmax is double-quantised as
// well and the codes are scaled by the dequantised absmax, as bitsandbytes
// does with compress_statistics=True (the 4-bit codes themselves are
// computed from the exact absmax).
func NewTensor(kind Kind, w []float32, rows, cols, blocksize int, dt DType, double bool) (*Tensor, error) {
	if kind != NF4 && kind != FP4 {
		return nil, fmt.Errorf("quant: unknown kind %d", int(kind))
	}
	if !ValidBlocksize(blocksize) {
		return nil, fmt.Errorf("quant: blocksize %d not allowed (a power of two from 32 to 4096)", blocksize)
	}
	if rows <= 0 || cols <= 0 || len(w) != rows*cols {
		return nil, fmt.Errorf("quant: %d values for a %d×%d weight", len(w), rows, cols)
	}
	t := &Tensor{Kind: kind, Blocksize: blocksize, Rows: rows, Cols: cols, DType: dt}
	t.Packed, t.Absmax = Quantize(kind, w, blocksize)
	if double {
		t.Double = QuantizeAbsmax(t.Absmax)
		a, err := t.Double.Dequantize()
		if err != nil {
			return nil, err
		}
		t.Absmax = a
	}
	return t, nil
}

// Len returns Rows·Cols.
func (t *Tensor) Len() int { return t.Rows * t.Cols }

// Dequantize writes the weight, rounded to t.DType, into dst[:Rows·Cols].
func (t *Tensor) Dequantize(dst []float32) {
	DequantizeTo(t.Kind, t.Packed, t.Absmax, t.Len(), t.Blocksize, t.DType, dst)
}

// DequantizeRow writes row r of the weight, rounded to t.DType, into
// dst[:Cols].
func (t *Tensor) DequantizeRow(r int, dst []float32) {
	dequantRange(t.Kind, t.Packed, t.Absmax, r*t.Cols, t.Len(), t.Blocksize, t.DType, dst[:t.Cols])
}

// parallelMin is the least number of multiply-adds worth a goroutine.
const parallelMin = 1 << 16

// MulT computes y = x·Wᵀ for x of m×Cols (row-major) into y of m×Rows:
// y[i][r] = Σ_k x[i][k]·W[r][k], with W dequantised (rounded to t.DType)
// one row at a time into a small buffer and the sums accumulated in
// float32. Output rows of W are shared among up to GOMAXPROCS goroutines.
// It panics when x or y is too short; y elements beyond m×Rows are left
// alone.
func (t *Tensor) MulT(y, x []float32, m int) {
	if m < 0 || len(x) < m*t.Cols || len(y) < m*t.Rows {
		panic(fmt.Sprintf("quant: MulT of %d×%d by %d×%d weight into %d values", m, t.Cols, t.Rows, t.Cols, len(y)))
	}
	if m == 0 {
		return
	}
	workers := min(runtime.GOMAXPROCS(0), t.Rows, max(1, m*t.Rows*t.Cols/parallelMin))
	if workers <= 1 {
		t.mulRows(y, x, m, 0, t.Rows, make([]float32, t.Cols))
		return
	}
	var wg sync.WaitGroup
	chunk := (t.Rows + workers - 1) / workers
	for lo := 0; lo < t.Rows; lo += chunk {
		hi := min(lo+chunk, t.Rows)
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.mulRows(y, x, m, lo, hi, make([]float32, t.Cols))
		}()
	}
	wg.Wait()
}

func (t *Tensor) mulRows(y, x []float32, m, lo, hi int, buf []float32) {
	k := t.Cols
	for r := lo; r < hi; r++ {
		t.DequantizeRow(r, buf)
		for i := range m {
			y[i*t.Rows+r] = dot(x[i*k:(i+1)*k], buf)
		}
	}
}

// dot is Σ a[i]·b[i] in float32 with four partial sums.
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// At returns element i (flat, row-major) of the weight, rounded to t.DType:
// the value bitsandbytes' dequantize_4bit gives it.
func (t *Tensor) At(i int) float32 {
	var v [1]float32
	dequantRange(t.Kind, t.Packed, t.Absmax, i, t.Len(), t.Blocksize, t.DType, v[:])
	return v[0]
}

// MulTBF16 computes y (+)= x·Wᵀ as bitsandbytes' Linear4bit does with
// compute dtype bfloat16, before its output is rounded: x rounded to bf16,
// W dequantised (rounded to t.DType, then to bf16), products accumulated in
// float32. x is m×Cols, y m×Rows, both row-major.
func (t *Tensor) MulTBF16(y, x []float32, m int, acc bool) {
	if m < 0 || len(x) < m*t.Cols || len(y) < m*t.Rows {
		panic(fmt.Sprintf("quant: MulTBF16 of %d×%d by %d×%d weight into %d values", m, t.Cols, t.Rows, t.Cols, len(y)))
	}
	if m == 0 {
		return
	}
	t.mulTBF16(y, x, m, acc)
}

// DequantizeBF16 writes rows [r0, r1) of the weight as the bf16 bits the
// products use (rounded to t.DType, then to bf16) into dst.
func (t *Tensor) DequantizeBF16(r0, r1 int, dst []uint16) {
	t.dequantBF16(r0, r1, dst)
}
