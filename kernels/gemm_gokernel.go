package kernels

import "unsafe"

// The generic path: the blocked drivers of gemm_blocked.go with a
// micro-kernel written in Go. Tiles are V "vectors" of 4 columns, computed
// one row and 4 columns at a time.
var goSimd = &simd{
	name:      "generic",
	lanes:     4,
	vmax:      2,
	f32:       goKernels(),
	widenBF16: func(dst *float32, src, _ *uint16, n int) { widenGo(dst, src, n, BF16ToF32) },
	widenF16:  func(dst *float32, src, _ *uint16, n int) { widenGo(dst, src, n, F16ToF32) },
	packRow:   packRowGo,
	act:       genericAct,
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

// packRowGo is packRow without the prefetch: 8-float runs (the generic
// panel width) element by element rather than through a call to memmove
// for every 32 bytes (no wider moves: the runs are only 4-byte aligned).
func packRowGo(dst, src, _ *float32, npan, w int, pstride uintptr) {
	d, s := unsafe.Pointer(dst), unsafe.Pointer(src)
	if w == 8 {
		for i := 0; i < npan; i++ {
			t := (*[8]float32)(unsafe.Add(d, uintptr(i)*pstride))
			f := (*[8]float32)(unsafe.Add(s, i*32))
			t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7] = f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]
		}
		return
	}
	for i := 0; i < npan; i++ {
		copy(unsafe.Slice((*float32)(unsafe.Add(d, uintptr(i)*pstride)), w), unsafe.Slice((*float32)(unsafe.Add(s, i*w*4)), w))
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

// goTile is the micro-kernel contract of internal/asmgen in Go: one row by
// four columns at a time, four k per iteration summed pairwise before they
// reach the accumulators (four chains alone would wait on the add latency).
// Each product costs three instructions (load, multiply, add); SSE has no
// three-operand multiply and Go on amd64 v1 does not fuse FMA. On Zen 4 at
// 3.5 GHz this runs at 11.3 GFLOP/s per core on L1-resident operands
// (BenchmarkGoTile): about 57 instructions per 32 flops at close to the
// 6-wide dispatch limit, against a scalar ceiling of 4 flops per cycle.
// Wider tiles (1×8, 2×4) measured slower: the compiler schedules every
// multiply of an iteration before its adds and then spills.
// The panel is v·4 floats wide, v ≤ 2 (goSimd.vmax).
func goTile(r, v, kc int, bc unsafe.Pointer, rs, ps uintptr, panel, c unsafe.Pointer, ldc uintptr, acc int) {
	for i := 0; i < r; i++ {
		pa := unsafe.Add(bc, uintptr(i)*rs)
		pc := unsafe.Add(c, uintptr(i)*ldc)
		if v == 1 {
			goRow4W4(kc, pa, ps, panel, pc, acc)
			continue
		}
		for q := 0; q < v; q++ {
			goRow4W8(kc, pa, ps, unsafe.Add(panel, q*16), unsafe.Add(pc, q*16), acc)
		}
	}
}

// goRow4W4 is goTile for one row and four columns of a panel 4 wide.
func goRow4W4(kc int, pa unsafe.Pointer, ps uintptr, pb, pc unsafe.Pointer, acc int) {
	const w = 4 * 4 // panel row stride in bytes
	var c0, c1, c2, c3 float32
	// Offsets from fixed bases rather than moving pointers, so that no
	// pointer ever points past an operand.
	oa, ob := uintptr(0), uintptr(0)
	n := kc
	for ; n >= 4; n -= 4 {
		a0 := *(*float32)(unsafe.Add(pa, oa))
		a1 := *(*float32)(unsafe.Add(pa, oa+ps))
		a2 := *(*float32)(unsafe.Add(pa, oa+2*ps))
		a3 := *(*float32)(unsafe.Add(pa, oa+3*ps))
		b := (*[4]float32)(unsafe.Add(pb, ob))
		e := (*[4]float32)(unsafe.Add(pb, ob+w))
		f := (*[4]float32)(unsafe.Add(pb, ob+2*w))
		g := (*[4]float32)(unsafe.Add(pb, ob+3*w))
		c0 += (a0*b[0] + a1*e[0]) + (a2*f[0] + a3*g[0])
		c1 += (a0*b[1] + a1*e[1]) + (a2*f[1] + a3*g[1])
		c2 += (a0*b[2] + a1*e[2]) + (a2*f[2] + a3*g[2])
		c3 += (a0*b[3] + a1*e[3]) + (a2*f[3] + a3*g[3])
		oa += 4 * ps
		ob += 4 * w
	}
	for ; n > 0; n-- {
		a := *(*float32)(unsafe.Add(pa, oa))
		b := (*[4]float32)(unsafe.Add(pb, ob))
		c0 += a * b[0]
		c1 += a * b[1]
		c2 += a * b[2]
		c3 += a * b[3]
		oa += ps
		ob += w
	}
	goStore(pc, acc, c0, c1, c2, c3)
}

// goRow4W8 is goTile for one row and four columns of a panel 8 wide: a
// copy of goRow4W4 but for the constant stride w. One function taking w as
// a parameter measured 5-7% slower in BenchmarkGoTile (the strides then
// take registers and the addressing folds less).
func goRow4W8(kc int, pa unsafe.Pointer, ps uintptr, pb, pc unsafe.Pointer, acc int) {
	const w = 8 * 4 // panel row stride in bytes
	var c0, c1, c2, c3 float32
	// Offsets from fixed bases rather than moving pointers, so that no
	// pointer ever points past an operand.
	oa, ob := uintptr(0), uintptr(0)
	n := kc
	for ; n >= 4; n -= 4 {
		a0 := *(*float32)(unsafe.Add(pa, oa))
		a1 := *(*float32)(unsafe.Add(pa, oa+ps))
		a2 := *(*float32)(unsafe.Add(pa, oa+2*ps))
		a3 := *(*float32)(unsafe.Add(pa, oa+3*ps))
		b := (*[4]float32)(unsafe.Add(pb, ob))
		e := (*[4]float32)(unsafe.Add(pb, ob+w))
		f := (*[4]float32)(unsafe.Add(pb, ob+2*w))
		g := (*[4]float32)(unsafe.Add(pb, ob+3*w))
		c0 += (a0*b[0] + a1*e[0]) + (a2*f[0] + a3*g[0])
		c1 += (a0*b[1] + a1*e[1]) + (a2*f[1] + a3*g[1])
		c2 += (a0*b[2] + a1*e[2]) + (a2*f[2] + a3*g[2])
		c3 += (a0*b[3] + a1*e[3]) + (a2*f[3] + a3*g[3])
		oa += 4 * ps
		ob += 4 * w
	}
	for ; n > 0; n-- {
		a := *(*float32)(unsafe.Add(pa, oa))
		b := (*[4]float32)(unsafe.Add(pb, ob))
		c0 += a * b[0]
		c1 += a * b[1]
		c2 += a * b[2]
		c3 += a * b[3]
		oa += ps
		ob += w
	}
	goStore(pc, acc, c0, c1, c2, c3)
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
