//go:build !purego

package kernels

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// The AVX-512 set: VPERMW and VPERMPS look up 32 and 16 nibbles at a time.
var q4Z = &q4Set{
	toBF16: q4BF16Z,
	toF32:  q4F32Z,
	dot1:   q4Dot1Z,
	dot4:   q4Dot4Z,
	// k = n = 4096 on two threads, against the blocked driver: 3.2× at
	// m = 2, 1.3× at 6, 0.9× at 8.
	smallMax: 6,
}

// The AVX-512 set with AVX512_BF16: the small-m kernels take A as bf16
// and multiply with VDPBF16PS (half of A's bytes, one instruction per 32
// products).
var q4ZB = &q4Set{
	toBF16: q4BF16Z,
	toF32:  q4F32Z,
	dot1:   q4DotB1Z,
	dot4:   q4DotB4Z,
	bf16A:  true,
	// Against the blocked driver (two threads, k = 4096 and 14336, n =
	// 4096): 4.7-5.5× at m = 1, 2.7-3.1× at 2-4, 1.4-1.6× at 6-8, 0.86-0.96×
	// at 12. With A as bf16 it is 1.0-1.2× the f32-A kernels at m = 1 and
	// 1.6-2.0× at m = 4.
	smallMax: 10,
}

// The AVX2 set: two VPERMPS and a blend per 8 nibbles.
var q4Y = &q4Set{
	toBF16: q4BF16Y,
	toF32:  q4F32Y,
	dot1:   q4Dot1Y,
	dot4:   q4Dot4Y,
	// 2.3-2.8× the blocked driver at m = 2-4, 1.1-1.3× at 6-12, 0.8× at
	// 16 (k = n = 4096, two threads).
	smallMax: 12,
}

// q4Kernels returns the 4-bit kernels of the current path.
func q4Kernels() *q4Set {
	switch {
	case cur == avx512 && cur.bf16 != nil:
		return q4ZB
	case cur == avx512 && cpu.X86.HasAVX512BW:
		return q4Z
	case cur == avx512 || cur == avx2:
		return q4Y
	}
	return q4Generic
}

// q4Sets lists the 4-bit kernel sets this CPU runs, for the tests.
func q4Sets() map[string]*q4Set {
	x := cpu.X86
	sets := map[string]*q4Set{"generic": q4Generic}
	if x.HasAVX2 && x.HasFMA && x.HasF16C {
		sets["avx2"] = q4Y
	}
	if x.HasAVX512F && x.HasAVX512BW && x.HasAVX512VL && x.HasFMA && x.HasF16C {
		sets["avx512"] = q4Z
		if x.HasAVX512BF16 {
			sets["avx512bf16"] = q4ZB
		}
	}
	return sets
}

//go:noescape
func q4BF16Z(dst *uint16, packed *byte, absmax, code *float32, e0, n, rows, ldw, pfd, shift, mid int)

//go:noescape
func q4F32Z(dst *float32, packed *byte, absmax, code *float32, e0, n, rows, ldw, pfd, shift, mid int)

//go:noescape
func q4Dot1Z(a unsafe.Pointer, lda int, packed *byte, absmax, code *float32, e0, k, shift, mid int, out *float32)

//go:noescape
func q4Dot4Z(a unsafe.Pointer, lda int, packed *byte, absmax, code *float32, e0, k, shift, mid int, out *float32)

//go:noescape
func q4BF16Y(dst *uint16, packed *byte, absmax, code *float32, e0, n, rows, ldw, pfd, shift, mid int)

//go:noescape
func q4DotB1Z(a unsafe.Pointer, lda int, packed *byte, absmax, code *float32, e0, k, shift, mid int, out *float32)

//go:noescape
func q4DotB4Z(a unsafe.Pointer, lda int, packed *byte, absmax, code *float32, e0, k, shift, mid int, out *float32)

//go:noescape
func q4F32Y(dst *float32, packed *byte, absmax, code *float32, e0, n, rows, ldw, pfd, shift, mid int)

//go:noescape
func q4Dot1Y(a unsafe.Pointer, lda int, packed *byte, absmax, code *float32, e0, k, shift, mid int, out *float32)

//go:noescape
func q4Dot4Y(a unsafe.Pointer, lda int, packed *byte, absmax, code *float32, e0, k, shift, mid int, out *float32)
