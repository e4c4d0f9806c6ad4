package kernels

// GEMM with bitsandbytes-style 4-bit weights (NF4/FP4), see GemmNTQ4.
//
// Two drivers:
//
//   - q4Swapped, every shape: the swapped driver of gemm_blocked.go (Aᵀ
//     packed once, as bf16 pairs where the path has VDPBF16PS, else as f32
//     rounded to bf16), with the weight dequantised six rows by one k block
//     at a time into an L1-sized buffer right before the micro-kernels read
//     it. The weight is dequantised once per product.
//   - q4Small, few rows of A (decoding) and k a multiple of 32: one pass over
//     the packed weight with the dequantisation in registers (a 16-entry
//     table per block, looked up per nibble), against A rounded to bf16 once
//     and stored per 32 elements as the 16 even then the 16 odd ones (the
//     high and the low nibbles of 16 bytes). On CPUs with AVX512_BF16, A is
//     kept as bf16 and the weight looked up as bf16 words for VDPBF16PS,
//     which, as in GemmNTBF16Fast, treats bf16 subnormals as zero.

import (
	"fmt"
	"math/bits"
	"sync"
	"unsafe"
)

// q4Set is one path's 4-bit kernels; nil entries use the Go versions.
type q4Set struct {
	// toBF16 and toF32 dequantise rows runs of n elements, ldw apart,
	// from e0 on (e0, n and ldw multiples of 32) into dst (n apart), as
	// bf16 bits or as their float32 value; packed, absmax and code point
	// at element 0. The same runs pfd elements on (pfd even, 0 for none:
	// the next rows to dequantise) are prefetched, with their scales.
	toBF16 func(dst *uint16, packed *byte, absmax, code *float32, e0, n, rows, ldw, pfd, shift, mid int)
	toF32  func(dst *float32, packed *byte, absmax, code *float32, e0, n, rows, ldw, pfd, shift, mid int)
	// dot1 and dot4 (nil: dot1 row by row) write out[i] = Σ_p A[i][p]·W[p]
	// for 1 or 4 rows of A (stride lda bytes) against the k weights e0 …
	// e0+k-1 (e0 and k multiples of 32). A is rounded to bf16 and held as
	// float32 in groups of 32 elements, the 16 even then the 16 odd ones
	// (the high and the low nibbles of 16 bytes), or with bf16A as bf16
	// bits in natural order.
	dot1, dot4 func(a unsafe.Pointer, lda int, packed *byte, absmax, code *float32, e0, k, shift, mid int, out *float32)
	bf16A      bool
	// smallMax is the most rows of A for which q4Small beats q4Swapped.
	smallMax int
}

// q4Generic is the pure-Go set.
var q4Generic = &q4Set{smallMax: 1}

func checkQ4(w *Q4, n, k int) {
	bs := w.Blocksize
	if bs < 32 || bs > 4096 || bs&(bs-1) != 0 {
		panic(fmt.Sprintf("kernels: Q4 blocksize %d is not a power of two from 32 to 4096", bs))
	}
	if w.Code == nil {
		panic("kernels: Q4 without a code table")
	}
	if w.Mid < Q4MidF32 || w.Mid > Q4MidF16 {
		panic(fmt.Sprintf("kernels: Q4 Mid %d unknown", w.Mid))
	}
	if len(w.Packed) < (n*k+1)/2 || len(w.Absmax) < (n*k+bs-1)/bs {
		panic(fmt.Sprintf("kernels: Q4 of %d×%d holds %d bytes and %d scales, want %d and %d",
			n, k, len(w.Packed), len(w.Absmax), (n*k+1)/2, (n*k+bs-1)/bs))
	}
}

// log2 is the exponent of a power of two.
func log2(x int) int { return bits.TrailingZeros(uint(x)) }

// q4Round is a dequantised value's bf16 bits: v rounded to the stored dtype
// (mid), then to bf16.
func q4Round(v float32, mid int) uint16 {
	switch mid {
	case Q4MidBF16:
		v = BF16ToF32(F32ToBF16(v))
	case Q4MidF16:
		v = F16ToF32(F32ToF16(v))
	}
	return F32ToBF16(v)
}

// q4Table fills t with block b's 16 dequantised values.
func q4Table(w *Q4, b int, t *[16]uint16) {
	s := w.Absmax[b]
	for i, c := range w.Code {
		t[i] = q4Round(c*s, w.Mid)
	}
}

// q4Nib is the code of element e.
func q4Nib(p []byte, e int) byte {
	if e&1 == 0 {
		return p[e>>1] >> 4
	}
	return p[e>>1] & 15
}

// q4DequantGo writes elements e0 … e0+n-1 of w into d16 (bf16 bits) or d32
// (their values), for any e0 and n.
func q4DequantGo(w *Q4, e0, n int, d16 []uint16, d32 []float32) {
	bs := w.Blocksize
	var t [16]uint16
	for i := 0; i < n; {
		e := e0 + i
		b := e / bs
		cnt := min((b+1)*bs-e, n-i)
		q4Table(w, b, &t)
		j := 0
		if e&1 == 1 {
			j = q4Put(d16, d32, i, t[w.Packed[e>>1]&15])
		}
		for p := (e + j) >> 1; j+1 < cnt; p, j = p+1, j+2 {
			by := w.Packed[p]
			q4Put(d16, d32, i+j, t[by>>4])
			q4Put(d16, d32, i+j+1, t[by&15])
		}
		if j < cnt {
			q4Put(d16, d32, i+j, t[w.Packed[(e+j)>>1]>>4])
		}
		i += cnt
	}
}

func q4Put(d16 []uint16, d32 []float32, i int, v uint16) int {
	if d16 != nil {
		d16[i] = v
	} else {
		d32[i] = BF16ToF32(v)
	}
	return 1
}

// q4Dequant is q4DequantGo with the path's kernels for the 32-aligned
// middle.
func q4Dequant(ks *q4Set, w *Q4, e0, n int, d16 []uint16, d32 []float32) {
	fn := ks.toBF16 != nil
	if d32 != nil {
		fn = ks.toF32 != nil
	}
	if !fn || n < 64 {
		q4DequantGo(w, e0, n, d16, d32)
		return
	}
	head := min((32-e0%32)%32, n)
	if head > 0 {
		q4DequantGo(w, e0, head, d16, d32)
	}
	mid := (n - head) &^ 31
	if mid > 0 {
		e, shift := e0+head, log2(w.Blocksize)
		if d16 != nil {
			ks.toBF16(&d16[head], &w.Packed[0], &w.Absmax[0], &w.Code[0], e, mid, 1, 0, 0, shift, w.Mid)
		} else {
			ks.toF32(&d32[head], &w.Packed[0], &w.Absmax[0], &w.Code[0], e, mid, 1, 0, 0, shift, w.Mid)
		}
	}
	if tail := n - head - mid; tail > 0 {
		q4DequantGo(w, e0+head+mid, tail, d16[min(head+mid, len(d16)):], d32[min(head+mid, len(d32)):])
	}
}

// q4DequantRows dequantises rows runs of n elements, ldw apart, from e0 on
// into d16 or d32 (n apart), prefetching the same runs pfd elements on
// (when they exist).
func q4DequantRows(ks *q4Set, w *Q4, e0, n, rows, ldw, pfd int, d16 []uint16, d32 []float32) {
	fn := ks.toBF16 != nil
	if d32 != nil {
		fn = ks.toF32 != nil
	}
	if !fn || e0%32 != 0 || n%32 != 0 || ldw%32 != 0 || n == 0 || rows == 0 {
		for q := 0; q < rows; q++ {
			if d16 != nil {
				q4Dequant(ks, w, e0+q*ldw, n, d16[q*n:(q+1)*n], nil)
			} else {
				q4Dequant(ks, w, e0+q*ldw, n, nil, d32[q*n:(q+1)*n])
			}
		}
		return
	}
	last := e0 + (rows-1)*ldw + n // one past the last element
	if pfd < 0 || pfd%2 != 0 || last+pfd > 2*len(w.Packed) {
		pfd = 0
	}
	_ = w.Packed[(last-1)>>1]
	if d16 != nil {
		_ = d16[rows*n-1]
		ks.toBF16(&d16[0], &w.Packed[0], &w.Absmax[0], &w.Code[0], e0, n, rows, ldw, pfd, log2(w.Blocksize), w.Mid)
	} else {
		_ = d32[rows*n-1]
		ks.toF32(&d32[0], &w.Packed[0], &w.Absmax[0], &w.Code[0], e0, n, rows, ldw, pfd, log2(w.Blocksize), w.Mid)
	}
}

func dequantQ4BF16(w *Q4, k, r0, r1 int, dst []uint16) {
	if r1 <= r0 || k == 0 {
		return
	}
	checkQ4(w, r1, k)
	n := (r1 - r0) * k
	q4Dequant(q4Kernels(), w, r0*k, n, dst[:n:n], nil)
}

func gemmNTQ4(m, n, k int, a []float32, lda int, w *Q4, c []float32, ldc int, acc bool) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		zeroOrKeep(m, n, c, ldc, acc)
		return
	}
	checkQ4(w, n, k)
	ks := q4Kernels()
	if m <= ks.smallMax && k%32 == 0 {
		q4Small(ks, m, n, k, a, lda, w, c, ldc, acc)
		return
	}
	q4Swapped(ks, m, n, k, a, lda, w, c, ldc, acc)
}

// ---- small m: dequantised in registers ----

type q4SmJob struct {
	ks      *q4Set
	m, n, k int
	ap      []float32
	w       *Q4
	c       []float32
	ldc     int
	acc     bool
	tasks   int
	fn      func(int)
}

var q4SmJobs = sync.Pool{New: func() any {
	j := new(q4SmJob)
	j.fn = j.run
	return j
}}

func q4Small(ks *q4Set, m, n, k int, a []float32, lda int, w *Q4, c []float32, ldc int, acc bool) {
	// A rounded to bf16 once: bf16 bits (bf16A) or float32 in the
	// even/odd order of the kernels, in a buffer of m·k words either way.
	buf := getF32(m * k)
	ap := *buf
	if ks.bf16A {
		ah := unsafe.Slice((*uint16)(unsafe.Pointer(&ap[0])), m*k)
		for i := 0; i < m; i++ {
			src, dst := a[i*lda:i*lda+k], ah[i*k:(i+1)*k]
			p := 0
			if cur.roundBF16 != nil {
				p = k &^ 15
				cur.roundBF16(&dst[0], &src[0], p)
			}
			for ; p < k; p++ {
				dst[p] = F32ToBF16(src[p])
			}
		}
	} else {
		for i := 0; i < m; i++ {
			src, dst := a[i*lda:i*lda+k], ap[i*k:(i+1)*k]
			for g := 0; g < k; g += 32 {
				for q := 0; q < 16; q++ {
					dst[g+q] = BF16ToF32(F32ToBF16(src[g+2*q]))
					dst[g+16+q] = BF16ToF32(F32ToBF16(src[g+2*q+1]))
				}
			}
		}
	}
	j := q4SmJobs.Get().(*q4SmJob)
	j.ks, j.m, j.n, j.k, j.ap, j.w, j.c, j.ldc, j.acc = ks, m, n, k, ap, w, c, ldc, acc
	// Bound by reading the weight (n·k/2 bytes) and by the lookups.
	j.tasks = split(n*k*max(m, 2)/2, (n+7)/8)
	if j.tasks == 1 {
		j.run(0)
	} else {
		parallel(j.tasks, j.fn)
	}
	j.ap, j.w, j.c = nil, nil, nil
	q4SmJobs.Put(j)
	putF32(buf)
}

func (j *q4SmJob) run(t int) {
	oct := (j.n + 7) / 8
	r0 := oct * t / j.tasks * 8
	r1 := min(oct*(t+1)/j.tasks*8, j.n)
	if r0 >= r1 {
		return
	}
	w, k, m := j.w, j.k, j.m
	elem := 4 // bytes per element of A
	if j.ks.bf16A {
		elem = 2
	}
	shift := log2(w.Blocksize)
	// k is cut into spans of kseg; sums holds the partial dot products.
	// (Spans whose rows of A' stay in L1 made k = 14336 slower: the
	// weight no longer streams in order.)
	kseg := k
	// out (the kernels' result) is pooled too: a local array would escape
	// through the function values.
	sumBuf := getF32((r1-r0)*m + 4)
	sums, out := (*sumBuf)[:(r1-r0)*m], (*sumBuf)[(r1-r0)*m:]
	clear(sums)
	for k0 := 0; k0 < k; k0 += kseg {
		kl := min(kseg, k-k0)
		for r := r0; r < r1; r++ {
			e0 := r*k + k0
			sr := sums[(r-r0)*m : (r-r0+1)*m]
			for i := 0; i < m; {
				nr := 1
				if m-i >= 4 && (j.ks.dot1 == nil || j.ks.dot4 != nil) {
					nr = 4
				}
				if j.ks.dot1 == nil {
					q4DotGo(j.ap[i*k+k0:], nr, k, kl, w, e0, out[:nr])
				} else {
					f := j.ks.dot1
					if nr == 4 {
						f = j.ks.dot4
					}
					var ap unsafe.Pointer
					if j.ks.bf16A {
						ap = unsafe.Add(unsafe.Pointer(&j.ap[0]), 2*(i*k+k0))
					} else {
						ap = unsafe.Pointer(&j.ap[i*k+k0])
					}
					f(ap, k*elem, &w.Packed[e0>>1], &w.Absmax[0], &w.Code[0], e0, kl, shift, w.Mid, &out[0])
				}
				for q := 0; q < nr; q++ {
					sr[i+q] += out[q]
				}
				i += nr
			}
		}
	}
	for r := r0; r < r1; r++ {
		for i, v := range sums[(r-r0)*m : (r-r0+1)*m] {
			if p := &j.c[i*j.ldc+r]; j.acc {
				*p += v
			} else {
				*p = v
			}
		}
	}
	putF32(sumBuf)
}

// q4DotGo is dot1/dot4 in Go: out[i] = A'[i]·W over kl elements from e0,
// the rows of A' k apart.
func q4DotGo(ap []float32, nr, k, kl int, w *Q4, e0 int, out []float32) {
	var t [16]uint16
	var tf [16]float32
	var wv [32]float32
	var s [4][4]float32
	bs := w.Blocksize
	blk := -1
	for g := 0; g < kl; g += 32 {
		if b := (e0 + g) / bs; b != blk {
			blk = b
			q4Table(w, b, &t)
			for i, v := range t {
				tf[i] = BF16ToF32(v)
			}
		}
		p := w.Packed[(e0+g)>>1 : (e0+g)>>1+16]
		for q, by := range p {
			wv[q] = tf[by>>4]
			wv[16+q] = tf[by&15]
		}
		for i := 0; i < nr; i++ {
			x := ap[i*k+g : i*k+g+32]
			for q := 0; q < 32; q += 4 {
				s[i][0] += x[q] * wv[q]
				s[i][1] += x[q+1] * wv[q+1]
				s[i][2] += x[q+2] * wv[q+2]
				s[i][3] += x[q+3] * wv[q+3]
			}
		}
	}
	for i := 0; i < nr; i++ {
		out[i] = (s[i][0] + s[i][1]) + (s[i][2] + s[i][3])
	}
}

// ---- every shape: the swapped driver on dequantised blocks ----

type q4Job struct {
	nt     *ntJob
	ks     *q4Set
	w      *Q4
	k      int // elements (nt.k counts pairs in the bf16 pair mode)
	tasksN int
	tasksM int
	fn     func(int)
}

var q4Jobs = sync.Pool{New: func() any {
	j := new(q4Job)
	j.fn = j.run
	return j
}}

func q4Swapped(ks *q4Set, m, n, k int, a []float32, lda int, w *Q4, c []float32, ldc int, acc bool) {
	s := cur
	pairs := s.bf16 != nil && k >= 2
	kk := k
	if pairs {
		kk = k / 2
	}
	nj := ntJobs.Get().(*ntJob)
	nj.operands = operands{m, n, kk, a, lda, nil, nil, halfBF16, 0, c, ldc, acc}
	nj.pairs, nj.roundA = pairs, !pairs
	nj.stream = streamC(m, n, k, 1, c, ldc, acc)
	nj.streamAt = outgrowsL3(m, n, k, 1)
	nj.mpad = roundUp(m, s.lanes)
	nj.kc = swappedKC(min(nj.mpad, swapMC))
	buf := getU32(nj.mpad * kk)
	nj.at = *buf
	work := m * n * kk
	if blocks := (nj.mpad + packRB - 1) / packRB; work < minWork {
		for t := 0; t < blocks; t++ {
			nj.pack(t)
		}
	} else {
		parallel(blocks, nj.packFn)
	}
	j := q4Jobs.Get().(*q4Job)
	j.nt, j.ks, j.w, j.k = nj, ks, w, k
	// Tasks as ntJob.runAll cuts them.
	panelsM := nj.panels()
	j.tasksN = split(work, (n+15)/16)
	j.tasksM = min((nj.mpad+swapMC-1)/swapMC, panelsM)
	if j.tasksN < 4 && panelsM > 1 {
		j.tasksM = max(j.tasksM, min(split(work, panelsM)/j.tasksN, panelsM))
	}
	j.tasksN = max(1, min(j.tasksN, 64/j.tasksM))
	if j.tasksN*j.tasksM == 1 {
		j.run(0)
	} else {
		parallel(j.tasksN*j.tasksM, j.fn)
	}
	putU32(buf)
	if pairs && k%2 == 1 {
		// The last, unpaired column of k: C += round(a)·w, in f32.
		p := k - 1
		var wv [1]uint16
		for jj := 0; jj < n; jj++ {
			q4DequantGo(w, jj*k+p, 1, wv[:], nil)
			wf := BF16ToF32(wv[0])
			for i := 0; i < m; i++ {
				c[i*ldc+jj] += BF16ToF32(F32ToBF16(a[i*lda+p])) * wf
			}
		}
	}
	j.nt, j.w = nil, nil
	q4Jobs.Put(j)
	nj.operands, nj.at = operands{}, nil
	ntJobs.Put(nj)
}

// run is ntJob.run with the rows of B dequantised into a buffer.
func (q *q4Job) run(t int) {
	s, j := cur, q.nt
	tn, tm := t%q.tasksN, t/q.tasksN
	strips := (j.n + 15) / 16
	j0 := strips * tn / q.tasksN * 16
	j1 := min(strips*(tn+1)/q.tasksN*16, j.n)
	panels := j.panels()
	p0 := panels * tm / q.tasksM
	p1 := panels * (tm + 1) / q.tasksM
	if j0 >= j1 || p0 >= p1 {
		return
	}
	i0, _ := j.panel(p0)
	i1, w1 := j.panel(p1 - 1)
	i1 += w1
	mw := i1 - i0
	nvec, vq0 := j.mpad/s.lanes, i0/s.lanes
	nc := max(blockL2/4/(mw*4)/48*48, 48)
	nc = min(nc, j1-j0)
	ctBuf := getF32(nc * mw)
	ct := *ctBuf
	// 6 rows of one k block: f32, or bf16 pairs (one uint32 each).
	wbBuf := getU32(6 * j.kc)
	wb := *wbBuf
	kern := &s.f32
	if j.pairs {
		kern = s.bf16
	}
	for jb := j0; jb < j1; jb += nc {
		jn := min(nc, j1-jb)
		for k0 := 0; k0 < j.k; k0 += j.kc {
			kl := min(j.kc, j.k-k0)
			accFlag := 0
			if k0 > 0 {
				accFlag = 1
			}
			for jg := 0; jg < jn; jg += 6 {
				r := min(6, jn-jg)
				row := jb + jg
				// The same span 6 rows on is prefetched.
				if j.pairs {
					d := unsafe.Slice((*uint16)(unsafe.Pointer(&wb[0])), r*2*kl)
					q4DequantRows(q.ks, q.w, row*q.k+2*k0, 2*kl, r, q.k, 6*q.k, d, nil)
				} else {
					d := unsafe.Slice((*float32)(unsafe.Pointer(&wb[0])), r*kl)
					q4DequantRows(q.ks, q.w, row*q.k+k0, kl, r, q.k, 6*q.k, nil, d)
				}
				bc := unsafe.Pointer(&wb[0])
				rs, ps := uintptr(kl*4), uintptr(4)
				v0 := vq0
				for qq := p0; qq < p1; qq++ {
					v1 := nvec * (qq + 1) / panels
					pi := v0 * s.lanes
					panel := unsafe.Pointer(&j.at[k0*j.mpad+pi*kl])
					kern[v1-v0][r](kl, bc, rs, ps, panel, unsafe.Pointer(&ct[jg*mw+pi-i0]), uintptr(mw*4), accFlag)
					v0 = v1
				}
			}
		}
		iend := min(i1, j.m)
		accFlag := 0
		if j.acc {
			accFlag = 1
		} else if j.stream {
			accFlag = 2
		}
		for q0 := 0; q0 < jn; q0 += 16 {
			q1 := min(q0+16, jn)
			if q1-q0 == 16 && s.ctStore != nil && iend > i0 {
				s.ctStore(unsafe.Pointer(&j.c[i0*j.ldc+jb+q0]), uintptr(j.ldc*4), unsafe.Pointer(&ct[q0*mw]), mw, iend-i0, accFlag)
				continue
			}
			for i := i0; i < iend; i++ {
				cr := j.c[i*j.ldc+jb+q0 : i*j.ldc+jb+q1]
				col := ct[q0*mw+i-i0:]
				if j.acc {
					for qq := range cr {
						cr[qq] += col[qq*mw]
					}
				} else {
					for qq := range cr {
						cr[qq] = col[qq*mw]
					}
				}
			}
		}
	}
	if j.stream {
		s.fence()
	}
	putF32(ctBuf)
	putU32(wbBuf)
}
