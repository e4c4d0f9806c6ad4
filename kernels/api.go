package kernels

import "sync/atomic"

// Runner runs fn(i) for every i in [0, n), possibly in parallel, and returns
// when all calls have finished.
type Runner func(n int, fn func(i int))

var runner atomic.Pointer[Runner]

// SetRunner installs the function used to split large products across
// workers. The engine installs its worker pool here; without one, kernels run
// on the calling goroutine.
func SetRunner(r Runner) {
	if r == nil {
		runner.Store(nil)
		return
	}
	runner.Store(&r)
}

// parallel runs fn over [0, n) with the installed runner, or serially.
func parallel(n int, fn func(i int)) {
	if p := runner.Load(); p != nil && n > 1 {
		(*p)(n, fn)
		return
	}
	for i := 0; i < n; i++ {
		fn(i)
	}
}

// GemmNT computes C = A·Bᵀ (or C += A·Bᵀ when acc): A is m×k with stride lda,
// B is n×k with stride ldb (a Hugging Face Linear weight [out×in]), C is m×n
// with stride ldc.
func GemmNT(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, acc bool) {
	gemmNT(m, n, k, a, lda, b, ldb, c, ldc, acc)
}

// GemmNN computes C = A·B (or C += A·B): A is m×k, B is k×n, C is m×n.
// With B a Linear weight [out×in] this is the backward dX = dY·W.
func GemmNN(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, acc bool) {
	gemmNN(m, n, k, a, lda, b, ldb, c, ldc, acc)
}

// GemmTN computes C = Aᵀ·B (or C += Aᵀ·B): A is k×m, B is k×n, C is m×n.
// This is the weight-gradient shape dW = dYᵀ·X.
func GemmTN(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, acc bool) {
	gemmTN(m, n, k, a, lda, b, ldb, c, ldc, acc)
}

// GemmNTBF16 is GemmNT with B stored as bf16 bits. Weights are widened to f32
// exactly and multiplied with f32 FMA, so the result is exact with respect to
// the stored weights (up to f32 summation order).
func GemmNTBF16(m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int, acc bool) {
	gemmNTBF16(m, n, k, a, lda, b, ldb, c, ldc, acc)
}

// GemmNNBF16 is GemmNN with B (k×n) stored as bf16 bits, widened exactly.
func GemmNNBF16(m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int, acc bool) {
	gemmNNBF16(m, n, k, a, lda, b, ldb, c, ldc, acc)
}

// GemmNTBF16Fast is GemmNT with B stored as bf16 and A rounded to bf16
// (round to nearest even) before the product, with f32 accumulation; on CPUs
// with AVX512_BF16 it uses VDPBF16PS. This is what PyTorch's bf16 matmul
// computes; expect relative errors near 1e-2.
func GemmNTBF16Fast(m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int, acc bool) {
	gemmNTBF16Fast(m, n, k, a, lda, b, ldb, c, ldc, acc)
}

// GemmNTF16 is GemmNT with B stored as IEEE f16 bits, widened exactly.
func GemmNTF16(m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int, acc bool) {
	gemmNTF16(m, n, k, a, lda, b, ldb, c, ldc, acc)
}

// GemmNNF16 is GemmNN with B (k×n) stored as IEEE f16 bits, widened exactly.
func GemmNNF16(m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int, acc bool) {
	gemmNNF16(m, n, k, a, lda, b, ldb, c, ldc, acc)
}

// Dot returns Σ x[i]·y[i] over len(x) elements (len(y) >= len(x)).
func Dot(x, y []float32) float32 { return dot(x, y) }

// Axpy computes y[i] += alpha·x[i] over len(x) elements.
func Axpy(alpha float32, x, y []float32) { axpy(alpha, x, y) }

// Scale computes x[i] *= alpha.
func Scale(alpha float32, x []float32) { scale(alpha, x) }

// SumSq returns Σ x[i]², accumulated in float32 lanes.
func SumSq(x []float32) float32 { return sumSq(x) }

// Path names the kernel path in use: "generic", "avx2", "avx512" or "neon".
func Path() string { return path }

// CacheSizes returns the cache sizes the blocking uses: the per-core L2 and
// the last-level cache (0 when unknown), in bytes.
func CacheSizes() (l2, l3 int) { return blockL2, blockL3 }

// Mid values of Q4: the dtype a 4-bit weight was stored in before
// quantisation, which each dequantised value is rounded to before bf16.
const (
	Q4MidF32  = 0 // no rounding
	Q4MidBF16 = 1 // bf16, round to nearest even
	Q4MidF16  = 2 // IEEE f16, round to nearest even (with subnormals)
)

// Q4 describes a 4-bit weight for GemmNTQ4: an n×k matrix quantised flat
// over its row-major order in blocks of Blocksize elements (a power of two
// from 32 to 4096) as bitsandbytes does. Packed holds two codes per byte,
// high nibble first (element e has code Packed[e/2]>>4 when e is even,
// Packed[e/2]&15 when odd), Absmax[e/Blocksize] is the block's scale and
// Code the 16 values of the codes (NF4 or FP4). Element e dequantises to
//
//	bf16(mid(Code[code(e)] · Absmax[e/Blocksize]))
//
// with one float32 multiplication, mid the rounding to the dtype named by
// Mid (Q4MidF32, Q4MidBF16 or Q4MidF16) and bf16 the rounding to bfloat16,
// both to nearest even.
type Q4 struct {
	Packed    []byte
	Absmax    []float32
	Blocksize int
	Code      *[16]float32
	Mid       int // Q4MidF32, Q4MidBF16 or Q4MidF16
}

// GemmNTQ4 computes C = A·Wᵀ (or C += A·Wᵀ when acc): A is m×k with stride
// lda, W the n×k 4-bit weight w (a Linear weight [out×in]) dequantised to
// bf16 as Q4 describes, C is m×n with stride ldc. As in GemmNTBF16Fast, A
// is rounded to bf16 (nearest even) and the products are accumulated in
// float32: the result is GemmNTBF16Fast's on the dequantised weight, up to
// the order of the float32 sums. The weight is dequantised in registers
// (few rows of A) or in cache-sized blocks, never as a whole.
func GemmNTQ4(m, n, k int, a []float32, lda int, w *Q4, c []float32, ldc int, acc bool) {
	gemmNTQ4(m, n, k, a, lda, w, c, ldc, acc)
}

// DequantQ4BF16 writes rows r0 … r1-1 of the 4-bit weight w (k elements a
// row) into dst as bf16 bits, row-major with stride k.
func DequantQ4BF16(w *Q4, k, r0, r1 int, dst []uint16) {
	dequantQ4BF16(w, k, r0, r1, dst)
}
