package kernels

import "unsafe"

// The generic path: the blocked drivers of gemm_blocked.go with a
// micro-kernel written in Go. Tiles are 4 columns wide (V vectors of 4
// "lanes") and computed two rows at a time, so the 8 accumulators, 2
// broadcasts and 4 panel values fit the 16 registers of amd64.
var goSimd = &simd{
	name:      "generic",
	lanes:     4,
	vmax:      2,
	f32:       goKernels(),
	widenBF16: func(dst *float32, src, _ *uint16, n int) { widenGo(dst, src, n, BF16ToF32) },
	widenF16:  func(dst *float32, src, _ *uint16, n int) { widenGo(dst, src, n, F16ToF32) },
	dot:       dotGeneric,
	axpy:      axpyGeneric,
	scale:     scaleGeneric,
	sumSq:     sumSqGeneric,
}

func widenGo(dst *float32, src *uint16, n int, f func(uint16) float32) {
	d := unsafe.Slice(dst, n)
	for i, h := range unsafe.Slice(src, n) {
		d[i] = f(h)
	}
}

func goKernels() (t [5][7]kernFn) {
	for v := 1; v <= 2; v++ {
		for r := 1; r <= 6; r++ {
			t[v][r] = func(kc int, bc unsafe.Pointer, rs, ps uintptr, panel, c unsafe.Pointer, ldc uintptr, acc int) {
				goTile(r, v, kc, bc, rs, ps, panel, c, ldc, acc)
			}
		}
	}
	return t
}

// goTile is the micro-kernel contract of internal/asmgen in Go.
func goTile(r, v, kc int, bc unsafe.Pointer, rs, ps uintptr, panel, c unsafe.Pointer, ldc uintptr, acc int) {
	w := uintptr(v * 16) // panel row, bytes
	for q := 0; q < v; q++ {
		for i := 0; i < r; i += 2 {
			two := i+1 < r
			pa0 := unsafe.Add(bc, uintptr(i)*rs)
			pa1 := pa0
			if two {
				pa1 = unsafe.Add(pa0, rs)
			}
			pb := unsafe.Add(panel, q*16)
			var c00, c01, c02, c03, c10, c11, c12, c13 float32
			for p := 0; p < kc; p++ {
				a0, a1 := *(*float32)(pa0), *(*float32)(pa1)
				b := (*[4]float32)(pb)
				c00 += a0 * b[0]
				c01 += a0 * b[1]
				c02 += a0 * b[2]
				c03 += a0 * b[3]
				c10 += a1 * b[0]
				c11 += a1 * b[1]
				c12 += a1 * b[2]
				c13 += a1 * b[3]
				pa0, pa1, pb = unsafe.Add(pa0, ps), unsafe.Add(pa1, ps), unsafe.Add(pb, w)
			}
			goStore(unsafe.Add(c, uintptr(i)*ldc+uintptr(q*16)), acc, c00, c01, c02, c03)
			if two {
				goStore(unsafe.Add(c, uintptr(i+1)*ldc+uintptr(q*16)), acc, c10, c11, c12, c13)
			}
		}
	}
}

func goStore(c unsafe.Pointer, acc int, x0, x1, x2, x3 float32) {
	d := (*[4]float32)(c)
	if acc != 0 {
		d[0] += x0
		d[1] += x1
		d[2] += x2
		d[3] += x3
		return
	}
	d[0], d[1], d[2], d[3] = x0, x1, x2, x3
}
