package engine

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/tli-project/tli/kernels"
)

// MatMulNN in fast bf16 mode (transposed weight, bf16 dot products) agrees
// with the exact widened product to bf16 precision, and with acc adds.
func TestMatMulNNFastBF16(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	m, out, in := 5, 37, 29
	w := NewF32(out, in)
	for i := range w.F32 {
		w.F32[i] = float32(r.NormFloat64())
	}
	wb := w.Convert(BF16)
	dy := make([]float32, m*out)
	for i := range dy {
		dy[i] = float32(r.NormFloat64())
	}
	exact := make([]float32, m*in)
	MatMulNN(exact, dy, m, wb, false, false)
	fast := make([]float32, m*in)
	for i := range fast {
		fast[i] = 1
	}
	MatMulNN(fast, dy, m, wb, true, true)
	for i := 0; i < m; i++ {
		for j := 0; j < in; j++ {
			var ref, mag float64
			for o := 0; o < out; o++ {
				a := float64(kernels.BF16ToF32(kernels.F32ToBF16(dy[i*out+o])))
				b := float64(kernels.BF16ToF32(wb.Half[o*in+j]))
				ref += a * b
				mag += math.Abs(a * b)
			}
			if d := math.Abs(float64(fast[i*in+j]) - 1 - ref); d > 1e-5*mag+1e-6 {
				t.Fatalf("fast[%d,%d] = %v, want 1 + %v", i, j, fast[i*in+j], ref)
			}
			if d := math.Abs(float64(exact[i*in+j]) - ref); d > 1e-2*mag {
				t.Fatalf("exact[%d,%d] = %v, fast-mode reference %v", i, j, exact[i*in+j], ref)
			}
		}
	}
	tr := Transposed(wb)
	if tr != Transposed(wb) {
		t.Error("Transposed is not cached")
	}
	for o := 0; o < out; o++ {
		for j := 0; j < in; j++ {
			if tr.Half[j*out+o] != wb.Half[o*in+j] {
				t.Fatalf("Transposed[%d,%d] wrong", j, o)
			}
		}
	}
	// Past TransposeCacheBytes a transpose is made for its use and dropped:
	// right, but not kept.
	defer func(b int64) { TransposeCacheBytes = b }(TransposeCacheBytes)
	TransposeCacheBytes = transposedBytes.Load()
	w2 := &Tensor{DType: BF16, Shape: []int{out, in}, Half: append([]uint16(nil), wb.Half...)}
	t1, t2 := Transposed(w2), Transposed(w2)
	if t1 == t2 || !slices.Equal(t1.Half, tr.Half) || !slices.Equal(t2.Half, tr.Half) {
		t.Errorf("over the bound: cached %v, right %v", t1 == t2, slices.Equal(t1.Half, tr.Half))
	}
	if transposedBytes.Load() != TransposeCacheBytes {
		t.Errorf("cache holds %d bytes, bound %d", transposedBytes.Load(), TransposeCacheBytes)
	}
}
