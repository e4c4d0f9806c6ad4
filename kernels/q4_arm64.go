//go:build !purego

package kernels

import "unsafe"

// The NEON set: TBL on byte planes of the 16 values of a block.
var q4N = &q4Set{
	toBF16:   q4BF16N,
	toF32:    q4F32N,
	dot1:     q4Dot1N,
	smallMax: 4,
}

// q4Kernels returns the 4-bit kernels of the current path.
func q4Kernels() *q4Set {
	if cur == neon {
		return q4N
	}
	return q4Generic
}

// q4Sets lists the 4-bit kernel sets this CPU runs, for the tests.
func q4Sets() map[string]*q4Set {
	return map[string]*q4Set{"generic": q4Generic, "neon": q4N}
}

//go:noescape
func q4BF16N(dst *uint16, packed *byte, absmax, code *float32, e0, n, rows, ldw, pfd, shift, mid int)

//go:noescape
func q4F32N(dst *float32, packed *byte, absmax, code *float32, e0, n, rows, ldw, pfd, shift, mid int)

//go:noescape
func q4Dot1N(a unsafe.Pointer, lda int, packed *byte, absmax, code *float32, e0, k, shift, mid int, out *float32)
