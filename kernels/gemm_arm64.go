//go:build !purego

package kernels

// The NEON path: 4 lanes, tiles up to 6×16, bf16 widened by shifting and f16
// by FCVTL. ASIMD is part of every arm64 CPU, so it is always available.
var neon = &simd{
	name:      "neon",
	lanes:     4,
	vmax:      4,
	f32:       kernF32N,
	widenBF16: widenBF16N,
	widenF16:  widenF16N,
	act:       vecAct(actN, 4),
	dot:       dotGeneric,
	axpy:      axpyGeneric,
	scale:     scaleGeneric,
	sumSq:     sumSqGeneric,
}

func impls() []impl {
	return []impl{
		{"neon", true, func() { install(neon) }},
		genericImpl,
	}
}

// l2Size is the L2 size the blocks are sized for: a conservative 512 KiB
// (cpuid does not report arm64 caches).
func l2Size() int { return 512 << 10 }

// l3Size is unknown here (only the AVX-512 path streams C).
func l3Size() int { return 0 }
