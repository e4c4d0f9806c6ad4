//go:build !purego

package kernels

//go:generate go run ./internal/asmgen

import (
	"unsafe"

	"github.com/klauspost/cpuid/v2"
	"golang.org/x/sys/cpu"
)

// The AVX-512 path: 16 lanes, tiles up to 6×64, bf16 pairs with VDPBF16PS
// where AVX512_BF16 is present (Zen 4, Cooper Lake, Sapphire Rapids).
var avx512 = &simd{
	name:      "avx512",
	lanes:     16,
	vmax:      4,
	f32:       kernF32Z,
	bf16:      bf16Kernels(),
	roundBF16: roundBF16Kernel(),
	widenBF16: widenBF16Z,
	widenF16:  widenF16Z,
	packRow:   packRowZ,
	ctStore:   ctStoreZ,
	fence:     sfence,
	act:       vecAct(actZ, 16),
	rows4:     [3]func(a0, a1, a2, a3 *float32, b0, b1, b2, b3 unsafe.Pointer, k int, out *float32){rows4F32Z, rows4BF16Z, rows4F16Z},
	// 1.2-1.3× the swapped driver at M = 5-8 for f32, 1.4-2.6× at 5-24
	// for bf16 and f16 (K = N = 4096, two threads).
	smallMax: [3]int{8, 24, 24},
	dot:      func(x, y []float32) float32 { return dotVec(dotZ, 16, x, y) },
	axpy:     func(alpha float32, x, y []float32) { axpyVec(axpyZ, 16, alpha, x, y) },
	scale:    func(alpha float32, x []float32) { scaleVec(scaleZ, 16, alpha, x) },
	sumSq:    func(x []float32) float32 { return dotVec(dotZ, 16, x, x) },
}

// The AVX2 path: 8 lanes, tiles up to 6×16, f16 through F16C.
var avx2 = &simd{
	name:      "avx2",
	lanes:     8,
	vmax:      2,
	f32:       kernF32Y,
	widenBF16: widenBF16Y,
	widenF16:  widenF16Y,
	packRow:   packRowY,
	ctStore:   ctStoreY,
	fence:     sfence,
	roundF32:  roundF32Y,
	act:       vecAct(actY, 8),
	rows4:     [3]func(a0, a1, a2, a3 *float32, b0, b1, b2, b3 unsafe.Pointer, k int, out *float32){rows4Y(rows2x4F32Y), rows4Y(rows2x4BF16Y), rows4Y(rows2x4F16Y)},
	// 1.2-1.7× the swapped driver at M = 5-12 for bf16 and 5-16 for f16;
	// no gain for f32 beyond 4 rows.
	smallMax: [3]int{4, 12, 16},
	dot:      func(x, y []float32) float32 { return dotVec(dotY, 8, x, y) },
	axpy:     func(alpha float32, x, y []float32) { axpyVec(axpyY, 8, alpha, x, y) },
	scale:    func(alpha float32, x []float32) { scaleVec(scaleY, 8, alpha, x) },
	sumSq:    func(x []float32) float32 { return dotVec(dotY, 8, x, x) },
}

// rows4Y makes a rows4 kernel from two passes of an AVX2 two-row kernel,
// the second only when A has more than two distinct rows (the small-m
// driver repeats the last row of A to fill four).
func rows4Y(k2 func(a0, a1 *float32, b0, b1, b2, b3 unsafe.Pointer, k int, out *float32)) func(a0, a1, a2, a3 *float32, b0, b1, b2, b3 unsafe.Pointer, k int, out *float32) {
	return func(a0, a1, a2, a3 *float32, b0, b1, b2, b3 unsafe.Pointer, k int, out *float32) {
		k2(a0, a1, b0, b1, b2, b3, k, out)
		if a2 != a1 {
			k2(a2, a3, b0, b1, b2, b3, k, (*float32)(unsafe.Add(unsafe.Pointer(out), 8)))
		}
	}
}

// dotVec, axpyVec and scaleVec run the assembly on the largest multiple of
// lanes elements and finish the tail in Go.
func dotVec(f func(x, y *float32, n int) float32, lanes int, x, y []float32) float32 {
	y = y[:len(x)]
	n := len(x) / lanes * lanes
	var s float32
	if n > 0 {
		s = f(&x[0], &y[0], n)
	}
	for i := n; i < len(x); i++ {
		s += x[i] * y[i]
	}
	return s
}

func axpyVec(f func(alpha float32, x, y *float32, n int), lanes int, alpha float32, x, y []float32) {
	y = y[:len(x)]
	n := len(x) / lanes * lanes
	if n > 0 {
		f(alpha, &x[0], &y[0], n)
	}
	for i := n; i < len(x); i++ {
		y[i] += alpha * x[i]
	}
}

func scaleVec(f func(alpha float32, x *float32, n int), lanes int, alpha float32, x []float32) {
	n := len(x) / lanes * lanes
	if n > 0 {
		f(alpha, &x[0], n)
	}
	for i := n; i < len(x); i++ {
		x[i] *= alpha
	}
}

// bf16Kernels returns the VDPBF16PS micro-kernels if the CPU has them.
func bf16Kernels() *[5][7]kernFn {
	if cpu.X86.HasAVX512BF16 {
		return &kernBF16Z
	}
	return nil
}

// roundBF16Kernel returns the VCVTNEPS2BF16 rounding loop if the CPU has it.
func roundBF16Kernel() func(dst *uint16, src *float32, n int) {
	if cpu.X86.HasAVX512BF16 {
		return roundBF16Z
	}
	return nil
}

// l2Size is the per-core L2 size that sizes the blocks, from cpuid where it
// knows it.
func l2Size() int {
	if l2 := cpuid.CPU.Cache.L2; l2 >= 256<<10 {
		return l2
	}
	return 512 << 10
}

// l3Size is the last-level cache size (shared by all cores), 0 if cpuid
// does not say.
func l3Size() int { return max(cpuid.CPU.Cache.L3, 0) }

func impls() []impl {
	x := cpu.X86
	return []impl{
		{"avx512", x.HasAVX512F && x.HasAVX512BW && x.HasAVX512VL && x.HasFMA && x.HasF16C, func() { install(avx512) }},
		{"avx2", x.HasAVX2 && x.HasFMA && x.HasF16C, func() { install(avx2) }},
		genericImpl,
	}
}
