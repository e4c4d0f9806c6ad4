package kernels

// Blocked GEMM drivers shared by every path (the generic one with a Go
// micro-kernel). They pack operands into cache-sized blocks and call a
// register-blocked micro-kernel (see internal/asmgen for its contract):
//
//	c[r·ldc + l] (+)= Σ_{p<kc} bc[r·rs + p·ps] · panel[p·W + l]
//
// for r < R (at most 6 broadcast rows) and l < W = V·lanes (V vectors).
//
// Two drivers cover every layout:
//
//   - classic (GemmNN, GemmTN and their half-precision forms): the broadcast
//     operand is A, packed in groups of R rows as [p][R]; the vector operand is
//     a panel of B packed as [p][W] (widened to f32 while packing when B is
//     bf16 or f16); tiles are written straight into C.
//   - swapped (GemmNT forms): the product is computed as Cᵀ = B·Aᵀ, so the
//     broadcast operand is B read in place, row by row (a weight [out×in] is
//     never transposed or copied; bf16 and f16 rows are widened six at a
//     time), and the vector operand is Aᵀ, packed once per call. Tiles of Cᵀ
//     go to a per-task scratch block that is transposed into C at the end.
//     For the fast bf16 mode Aᵀ is packed as bf16 pairs and the micro-kernel
//     uses VDPBF16PS on pairs of k.
//
// GemmNT forms with at most 4 rows of A (decoding) go to a third driver,
// smallM, where the path has dot-product kernels along k (AVX-512, AVX2): it
// streams B once at memory speed instead of broadcasting it.

import (
	"runtime"
	"sync"
	"unsafe"
)

// kernFn is a micro-kernel; see the package comment of internal/asmgen.
type kernFn func(kc int, bc unsafe.Pointer, rs, ps uintptr, panel, c unsafe.Pointer, ldc uintptr, acc int)

// simd describes one kernel path.
type simd struct {
	name  string
	lanes int           // float32 lanes per vector register
	vmax  int           // widest tile, in vectors
	f32   [5][7]kernFn  // f32 micro-kernels by [V][R]
	bf16  *[5][7]kernFn // bf16-pair dot-product micro-kernels, nil if absent
	// roundBF16 rounds n float32s (n a multiple of 16) to bf16 bits, as
	// F32ToBF16 does except that denormals become zero (which VDPBF16PS
	// does to its inputs anyway); used with bf16.
	roundBF16 func(dst *uint16, src *float32, n int)
	// roundF32 rounds n float32s (n a multiple of 16) to bf16, kept as
	// float32 bits, exactly as F32ToBF16 (NaNs made quiet, denormals kept);
	// nil means Go does it.
	roundF32 func(dst *uint32, src *float32, n int)
	// widenBF16 and widenF16 convert n 16-bit values (n a multiple of 16)
	// and prefetch as many at pf.
	widenBF16 func(dst *float32, src, pf *uint16, n int)
	widenF16  func(dst *float32, src, pf *uint16, n int)
	// packRow copies npan runs of w floats (w a multiple of lanes) from
	// src+i·w to dst+i·pstride bytes and prefetches the same span at pf;
	// nil means use copy.
	packRow func(dst, src, pf *float32, npan, w int, pstride uintptr)
	// rows4 are the small-m kernels by half kind (see internal/asmgen);
	// nil entries fall back to the swapped driver. smallMax is the most
	// rows of A, by half kind, for which the small-m driver (four rows of A
	// at a time against four rows of B held in cache) beats the swapped
	// one: measured per path, it is larger for bf16 and f16 weights, which
	// rows4 widens in registers where the swapped driver widens them into
	// memory first.
	rows4    [3]func(a0, a1, a2, a3 *float32, b0, b1, b2, b3 unsafe.Pointer, k int, out *float32)
	smallMax [3]int
	// ctStore writes 16-column strips of the Cᵀ scratch into C (see
	// internal/asmgen): acc 0 stores, 1 adds, 2 stores with non-temporal
	// writes (dst and ldc 64-byte aligned); nil means Go does it.
	ctStore func(dst unsafe.Pointer, ldc uintptr, src unsafe.Pointer, mw, rows, acc int)
	// fence orders ctStore's streaming stores (acc = 2) before later
	// stores; nil when ctStore has no streaming mode.
	fence func()
	// Activation kernels (act.go).
	act actSet
	// Vector helpers.
	dot   func(x, y []float32) float32
	axpy  func(alpha float32, x, y []float32)
	scale func(alpha float32, x []float32)
	sumSq func(x []float32) float32
}

// cur is the installed path; set by install before any kernel runs.
var cur *simd

// Blocking parameters: blockK is the largest depth of one packed block (f32
// elements or bf16 pairs); blockL2 is the per-core L2 size (from cpuid on
// amd64) that bounds the blocks of Aᵀ, of packed B and of the Cᵀ scratch;
// blockL3, the last-level cache, decides when C is streamed (streamC).
var (
	blockK  = 256
	blockL2 = l2Size()
	blockL3 = l3Size() // 0 when unknown
)

// minWork is the number of multiply-adds below which a product runs on the
// calling goroutine: splitting smaller products costs more than it saves.
// Tests lower it to exercise the parallel split on small shapes.
var minWork = 1 << 21

// setMinWork sets minWork and returns its old value.
func setMinWork(n int) int { old := minWork; minWork = n; return old }

// pfDist is how many rows ahead of the packing of B the prefetches run.
const pfDist = 16

// half kinds of the B operand.
const (
	halfNone = iota
	halfBF16
	halfF16
)

// install makes s the current path.
func install(s *simd) {
	cur = s
	path = s.name
	gemmNT = func(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, acc bool) {
		swapped(m, n, k, a, lda, b, nil, halfNone, ldb, c, ldc, acc, false)
	}
	gemmNTBF16 = func(m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int, acc bool) {
		swapped(m, n, k, a, lda, nil, b, halfBF16, ldb, c, ldc, acc, false)
	}
	gemmNTF16 = func(m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int, acc bool) {
		swapped(m, n, k, a, lda, nil, b, halfF16, ldb, c, ldc, acc, false)
	}
	gemmNN = func(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, acc bool) {
		classic(m, n, k, a, lda, false, b, nil, halfNone, ldb, c, ldc, acc)
	}
	gemmTN = func(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, acc bool) {
		classic(m, n, k, a, lda, true, b, nil, halfNone, ldb, c, ldc, acc)
	}
	gemmNNBF16 = func(m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int, acc bool) {
		classic(m, n, k, a, lda, false, nil, b, halfBF16, ldb, c, ldc, acc)
	}
	gemmNNF16 = func(m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int, acc bool) {
		classic(m, n, k, a, lda, false, nil, b, halfF16, ldb, c, ldc, acc)
	}
	if s.bf16 != nil {
		gemmNTBF16Fast = swappedBF16Pairs
	} else {
		gemmNTBF16Fast = fastViaWiden
	}
	dot, axpy, scale, sumSq = s.dot, s.axpy, s.scale, s.sumSq
	siluMul, siluMulBackward, expSum = s.act.siluMul, s.act.siluMulBackward, s.act.expSum
}

// ---- scratch buffers ----

var f32Pool, u32Pool sync.Pool

// getBuf returns a buffer of n elements from pool, reusing a pooled one when
// it is large enough; give it back with pool.Put.
func getBuf[E any](pool *sync.Pool, n int) *[]E {
	if p, _ := pool.Get().(*[]E); p != nil && cap(*p) >= n {
		*p = (*p)[:n]
		return p
	}
	s := make([]E, n, n+n/4)
	return &s
}

func getF32(n int) *[]float32 { return getBuf[float32](&f32Pool, n) }
func putF32(p *[]float32)     { f32Pool.Put(p) }
func getU32(n int) *[]uint32  { return getBuf[uint32](&u32Pool, n) }
func putU32(p *[]uint32)      { u32Pool.Put(p) }

// ---- helpers ----

func roundUp(x, m int) int { return (x + m - 1) / m * m }

// split chooses how many tasks to cut a product of work multiply-adds into
// along an axis with the given number of units.
func split(work, units int) int {
	t := work / minWork
	if t > units {
		t = units
	}
	if t > 64 {
		t = 64
	}
	if t < 1 {
		t = 1
	}
	return t
}

// widenRow converts src to float32 into dst (same length) with the path's
// assembly for the bulk and Go for the tail; pf (nil or as long as src) is
// prefetched on the way, for rows that will be widened next.
func (s *simd) widenRow(dst []float32, src, pf []uint16, kind int) {
	n := len(src) &^ 15 // every widening loop handles multiples of 16
	if n > 0 {
		pp := &src[0]
		if len(pf) >= n {
			pp = &pf[0]
		}
		if kind == halfBF16 {
			s.widenBF16(&dst[0], &src[0], pp, n)
		} else {
			s.widenF16(&dst[0], &src[0], pp, n)
		}
	}
	for i := n; i < len(src); i++ {
		if kind == halfBF16 {
			dst[i] = BF16ToF32(src[i])
		} else {
			dst[i] = F16ToF32(src[i])
		}
	}
}

// operands are the arguments every driver's job carries: C (+)= A·op(B)
// with A [m×k] (lda), B as f32 (bf) or 16-bit (bh, of kind half) with ldb,
// and C [m×n] (ldc).
type operands struct {
	m, n, k int
	a       []float32
	lda     int
	bf      []float32
	bh      []uint16
	half    int
	ldb     int
	c       []float32
	ldc     int
	acc     bool
}

// ---- swapped driver: Cᵀ = B·Aᵀ ----

// ntJob carries one swapped product; fn is bound once so that handing it to
// the runner does not allocate.
type ntJob struct {
	operands
	pairs      bool // fast bf16: at holds bf16 pairs, k counts pairs
	stream     bool // C is written with ctStore's streaming stores
	streamAt   bool // so is the packed Aᵀ (see streamC)
	roundA     bool // A is rounded to bf16 while packed (f32 bits)
	mpad, kc   int
	at         []uint32 // packed Aᵀ: f32 bits, or bf16 pairs
	tasksN     int
	tasksM     int
	fn, packFn func(int)
}

var ntJobs = sync.Pool{New: func() any {
	j := new(ntJob)
	j.fn = j.run
	j.packFn = j.pack
	return j
}}

// swapped runs a GemmNT form; with roundA, A's values are rounded to bf16
// while Aᵀ is packed (the fast bf16 mode on paths without VDPBF16PS).
func swapped(m, n, k int, a []float32, lda int, bf []float32, bh []uint16, half, ldb int, c []float32, ldc int, acc, roundA bool) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		zeroOrKeep(m, n, c, ldc, acc)
		return
	}
	s := cur
	if useSmallM(m, k, half) {
		smallM(m, n, k, a, lda, bf, bh, half, ldb, c, ldc, acc)
		return
	}
	j := ntJobs.Get().(*ntJob)
	j.operands = operands{m, n, k, a, lda, bf, bh, half, ldb, c, ldc, acc}
	j.pairs, j.roundA = false, roundA
	j.stream = streamC(m, n, k, 4, c, ldc, acc)
	j.streamAt = outgrowsL3(m, n, k, 4)
	j.mpad = roundUp(m, s.lanes)
	j.kc = swappedKC(min(j.mpad, swapMC))
	buf := getU32(j.mpad * k)
	j.at = *buf
	j.runAll(m * n * k)
	putU32(buf)
	j.operands, j.at = operands{}, nil
	ntJobs.Put(j)
}

// swappedBF16Pairs is GemmNTBF16Fast on paths with VDPBF16PS.
func swappedBF16Pairs(m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int, acc bool) {
	if m == 0 || n == 0 {
		return
	}
	if k < 2 || (m <= 4 && useSmallM(m, k, halfBF16)) {
		fastViaWiden(m, n, k, a, lda, b, ldb, c, ldc, acc)
		return
	}
	s := cur
	kp := k / 2
	j := ntJobs.Get().(*ntJob)
	j.operands = operands{m, n, kp, a, lda, nil, b, halfBF16, ldb, c, ldc, acc}
	j.pairs, j.roundA = true, false
	j.stream = streamC(m, n, k, 2, c, ldc, acc)
	j.streamAt = outgrowsL3(m, n, k, 2)
	j.mpad = roundUp(m, s.lanes)
	j.kc = swappedKC(min(j.mpad, swapMC))
	buf := getU32(j.mpad * kp)
	j.at = *buf
	j.runAll(m * n * k / 2)
	putU32(buf)
	if k%2 == 1 {
		// The last, unpaired column of k: C += round(a)·b, in f32.
		p := k - 1
		for i := 0; i < m; i++ {
			av := BF16ToF32(F32ToBF16(a[i*lda+p]))
			cr := c[i*ldc : i*ldc+n]
			for jj := range cr {
				cr[jj] += av * BF16ToF32(b[jj*ldb+p])
			}
		}
	}
	j.operands, j.at = operands{}, nil
	ntJobs.Put(j)
}

// fastViaWiden is GemmNTBF16Fast without bf16 dot-product instructions: A is
// rounded to bf16 and the widened product is exact in f32 for each term, so
// the result matches VDPBF16PS up to summation order. The swapped driver
// rounds A while packing it; the small-m driver, which reads A in place,
// gets a rounded copy.
func fastViaWiden(m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int, acc bool) {
	if m == 0 || n == 0 {
		return
	}
	if !useSmallM(m, k, halfBF16) {
		swapped(m, n, k, a, lda, nil, b, halfBF16, ldb, c, ldc, acc, true)
		return
	}
	buf := getF32(m * k)
	ar := *buf
	for i := 0; i < m; i++ {
		for p := 0; p < k; p++ {
			ar[i*k+p] = BF16ToF32(F32ToBF16(a[i*lda+p]))
		}
	}
	gemmNTBF16(m, n, k, ar, max(k, 1), b, ldb, c, ldc, acc)
	putF32(buf)
}

// useSmallM reports whether the small-m driver takes a GemmNT form with m
// rows of A, depth k and weights of the given half kind.
func useSmallM(m, k, half int) bool {
	return m <= cur.smallMax[half] && k >= 16 && cur.rows4[half] != nil
}

// streamC reports whether the swapped driver should write C with
// non-temporal stores: when the path has them, C is overwritten, its rows
// are 64-byte aligned (so every 16-column strip is whole cache lines), and
// the product's operands (A in f32, B with bsize bytes per element, and C)
// do not fit in the last-level cache together, so that the first lines of C
// would be evicted before the product ends anyway. Streaming stores do not
// read the lines of C before writing them, which halves C's memory traffic:
// 1-2% of a 2048³ bf16 product on two cores.
func streamC(m, n, k, bsize int, c []float32, ldc int, acc bool) bool {
	if acc || ldc%16 != 0 || uintptr(unsafe.Pointer(&c[0]))%64 != 0 {
		return false
	}
	return outgrowsL3(m, n, k, bsize)
}

// outgrowsL3 reports whether the path can stream stores and the operands of
// a product (A in f32, B with bsize bytes per element, C) do not fit in the
// last-level cache together. The packed Aᵀ is then streamed too: it is read
// back by many tasks, but the first of them finds it in memory either way,
// and the pack, which is bound by memory bandwidth, no longer reads every
// line it writes (0.4-0.8% of a 2048³ bf16 product, neutral at M = 80 and
// 512).
func outgrowsL3(m, n, k, bsize int) bool {
	return cur.fence != nil && blockL3 > 0 && 4*m*k+bsize*n*k+4*m*n > blockL3
}

// swapMC is the most rows of Aᵀ one task of the swapped driver sweeps.
const swapMC = 512

// swappedKC is the k depth of the swapped driver's blocks: blockK, or less
// when a block of Aᵀ (mpad × kc) would not fit half of L2, because every
// 6-row group of B sweeps the whole block.
func swappedKC(mpad int) int {
	kc := blockL2 / 2 / (mpad * 4) &^ 15
	return max(min(kc, blockK), 64)
}

func (j *ntJob) runAll(work int) {
	if blocks := (j.mpad + packRB - 1) / packRB; work < minWork {
		for t := 0; t < blocks; t++ {
			j.pack(t)
		}
	} else {
		parallel(blocks, j.packFn)
	}
	panelsM := j.panels()
	j.tasksN = split(work, (j.n+15)/16)
	// Cut m into blocks of at most swapMC rows so that a k block of Aᵀ
	// stays in L2, and into more blocks when n alone gives too few tasks.
	j.tasksM = min((j.mpad+swapMC-1)/swapMC, panelsM)
	if j.tasksN < 4 && panelsM > 1 {
		j.tasksM = max(j.tasksM, min(split(work, panelsM)/j.tasksN, panelsM))
	}
	j.tasksN = max(1, min(j.tasksN, 64/j.tasksM))
	if j.tasksN*j.tasksM == 1 {
		j.run(0)
		return
	}
	parallel(j.tasksN*j.tasksM, j.fn)
}

// panels is the number of Aᵀ panels: mpad is cut into as few panels of at
// most vmax vectors as possible, of balanced widths (80 rows on AVX-512 are
// 48+32 rather than 64+16, so no tile runs with a single vector).
func (j *ntJob) panels() int {
	nvec := j.mpad / cur.lanes
	return (nvec + cur.vmax - 1) / cur.vmax
}

// panel returns the first row and the width of panel q.
func (j *ntJob) panel(q int) (start, width int) {
	nvec, p := j.mpad/cur.lanes, j.panels()
	v0, v1 := nvec*q/p, nvec*(q+1)/p
	return v0 * cur.lanes, (v1 - v0) * cur.lanes
}

// packRB is the number of rows of A one pack task handles.
const packRB = 16

// pack writes rows t·16 … t·16+15 of Aᵀ into every k block: for the panel
// of W lanes starting at i0 that holds them, the [kl][W] block of k block
// k0 lies at offset k0·mpad + i0·kl; rows at or beyond m are zero. A task
// reads its rows of A whole (long contiguous runs, which the hardware
// prefetchers follow; cutting A by k blocks instead made 16 short streams
// per panel, and the pack cost twice as much), rounds them to bf16 pairs
// for the fast mode, and transposes 16×16 tiles with ctStore where the path
// has it.
func (j *ntJob) pack(t int) {
	r0 := t * packRB
	nr := max(0, min(packRB, j.m-r0)) // rows of A in the block
	// src holds the block's rows as 32-bit words, stride words apart: bf16
	// pairs rounded from A, A rounded to bf16 as f32 bits (roundA), or A's
	// own f32 bits.
	var src []uint32
	stride := j.lda
	if nr > 0 {
		if j.pairs || j.roundA {
			buf := getU32(packRB * j.k)
			defer putU32(buf)
			src, stride = *buf, j.k
			for ii := 0; ii < nr; ii++ {
				i, row := r0+ii, src[ii*j.k:(ii+1)*j.k]
				if j.pairs {
					j.roundPairs(row, j.a[i*j.lda:i*j.lda+2*j.k])
				} else {
					roundF32(row, j.a[i*j.lda:i*j.lda+j.k])
				}
			}
		} else {
			src = unsafe.Slice((*uint32)(unsafe.Pointer(&j.a[r0*j.lda])), (nr-1)*j.lda+j.k)
		}
	}
	fast := cur.ctStore != nil && nr == packRB
	streamed := false
	for k0 := 0; k0 < j.k; k0 += j.kc {
		kl := min(j.kc, j.k-k0)
		ps := 0
		if i0, w := j.rowPanel(r0); fast && r0+packRB <= i0+w {
			// ctStore only moves bits, so bf16 pairs pass unchanged.
			if ps = kl &^ 15; ps > 0 {
				base := k0*j.mpad + i0*kl + r0 - i0
				dst := unsafe.Pointer(&j.at[base])
				acc := 0
				if j.streamAt && uintptr(dst)%64 == 0 && w%16 == 0 {
					acc, streamed = 2, true
				}
				cur.ctStore(dst, uintptr(w*4), unsafe.Pointer(&src[k0]), stride, ps, acc)
			}
		}
		if ps < kl {
			j.packRows(r0, min(r0+packRB, j.mpad), k0, kl, ps, src, stride)
		}
	}
	if streamed {
		cur.fence()
	}
}

// rowPanel returns the start and width of the panel holding row i: panel q
// covers vectors ⌊nvec·q/p⌋ … ⌊nvec·(q+1)/p⌋-1, so q is ⌊v·p/nvec⌋ or one
// more.
func (j *ntJob) rowPanel(i int) (start, width int) {
	nvec, p := j.mpad/cur.lanes, j.panels()
	q := i / cur.lanes * p / nvec
	if s, w := j.panel(q); i < s+w {
		return s, w
	}
	return j.panel(q + 1)
}

// packRows is pack for rows ib…ie-1 (of Aᵀ's mpad) and the words ps…kl-1
// of the k block at k0, one element at a time; src holds the rows of A
// from row ib on, stride words apart.
func (j *ntJob) packRows(ib, ie, k0, kl, ps int, src []uint32, stride int) {
	for i := ib; i < ie; i++ {
		i0, w := j.rowPanel(i)
		dst := j.at[k0*j.mpad+i0*kl+i-i0:]
		if i >= j.m {
			for p := ps; p < kl; p++ {
				dst[p*w] = 0
			}
			continue
		}
		row := src[(i-ib)*stride+k0 : (i-ib)*stride+k0+kl]
		for p := ps; p < kl; p++ {
			dst[p*w] = row[p]
		}
	}
}

// roundPairs rounds src (2·len(dst) floats) to bf16 pairs: dst[p] holds
// src[2p] in its low and src[2p+1] in its high 16 bits.
func (j *ntJob) roundPairs(dst []uint32, src []float32) {
	n := 0
	if cur.roundBF16 != nil {
		n = len(src) &^ 15
		if n > 0 {
			cur.roundBF16((*uint16)(unsafe.Pointer(&dst[0])), &src[0], n)
		}
	}
	for p := n / 2; p < len(dst); p++ {
		dst[p] = uint32(F32ToBF16(src[2*p])) | uint32(F32ToBF16(src[2*p+1]))<<16
	}
}

// roundF32 writes src rounded to bf16 as float32 bits (low 16 bits zero)
// into dst, as F32ToBF16 then BF16ToF32 would.
func roundF32(dst []uint32, src []float32) {
	n := 0
	if cur.roundF32 != nil {
		n = len(src) &^ 15
		if n > 0 {
			cur.roundF32(&dst[0], &src[0], n)
		}
	}
	for p := n; p < len(src); p++ {
		dst[p] = uint32(F32ToBF16(src[p])) << 16
	}
}

// run computes task t: a range of B rows (output columns) and of Aᵀ panels.
func (j *ntJob) run(t int) {
	s := cur
	tn, tm := t%j.tasksN, t/j.tasksN
	// Rows of B for this task: whole strips of 16, so that every 16-column
	// strip of C that ctStore writes is one aligned cache line (when C's
	// rows are) rather than the ends of two: a strip split across two lines
	// makes each line be fetched and written twice (about 1% of a 2048³
	// bf16 product).
	strips := (j.n + 15) / 16
	j0 := strips * tn / j.tasksN * 16
	j1 := min(strips*(tn+1)/j.tasksN*16, j.n)
	panels := j.panels()
	p0 := panels * tm / j.tasksM
	p1 := panels * (tm + 1) / j.tasksM
	if j0 >= j1 || p0 >= p1 {
		return
	}
	i0, _ := j.panel(p0)
	i1, w1 := j.panel(p1 - 1)
	i1 += w1
	mw := i1 - i0 // scratch row width
	nvec, vq0 := j.mpad/s.lanes, i0/s.lanes
	// The Cᵀ block takes a quarter of L2, in whole groups of 6 rows of B
	// and whole strips of 16 (48).
	nc := max(blockL2/4/(mw*4)/48*48, 48)
	nc = min(nc, j1-j0)
	ctBuf := getF32(nc * mw)
	ct := *ctBuf
	var wbBuf *[]float32
	var wb []float32
	if j.half != halfNone && !j.pairs {
		wbBuf = getF32(6 * j.kc)
		wb = *wbBuf
	}
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
				var bc unsafe.Pointer
				var rs, ps uintptr
				switch {
				case j.pairs:
					bc = unsafe.Pointer(&j.bh[row*j.ldb+2*k0])
					rs, ps = uintptr(j.ldb*2), 4
				case j.half != halfNone:
					for q := 0; q < r; q++ {
						src := j.bh[(row+q)*j.ldb+k0 : (row+q)*j.ldb+k0+kl]
						var pf []uint16 // the same span 6 rows on
						if row+q+6 < j.n {
							pf = j.bh[(row+q+6)*j.ldb+k0 : (row+q+6)*j.ldb+k0+kl]
						}
						s.widenRow(wb[q*kl:(q+1)*kl], src, pf, j.half)
					}
					bc = unsafe.Pointer(&wb[0])
					rs, ps = uintptr(kl*4), 4
				default:
					bc = unsafe.Pointer(&j.bf[row*j.ldb+k0])
					rs, ps = uintptr(j.ldb*4), 4
				}
				// Panel q spans vectors ⌊nvec·q/panels⌋ … (see panel),
				// stepped here with one division per panel.
				v0 := vq0
				for q := p0; q < p1; q++ {
					v1 := nvec * (q + 1) / panels
					pi := v0 * s.lanes
					panel := unsafe.Pointer(&j.at[k0*j.mpad+pi*kl])
					kern[v1-v0][r](kl, bc, rs, ps, panel, unsafe.Pointer(&ct[jg*mw+pi-i0]), uintptr(mw*4), accFlag)
					v0 = v1
				}
			}
		}
		// Transpose the Cᵀ block into C, 16 columns at a time so that the
		// 16 rows of Cᵀ being read and the line of C being written stay in
		// L1.
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
					for q := range cr {
						cr[q] += col[q*mw]
					}
				} else {
					for q := range cr {
						cr[q] = col[q*mw]
					}
				}
			}
		}
	}
	if j.stream {
		s.fence()
	}
	putF32(ctBuf)
	if wbBuf != nil {
		putF32(wbBuf)
	}
}

// ---- small-m driver: dot products along k ----

// smJob is one product with few rows of A (at most the path's smallMax):
// every 4 rows of B are streamed once from memory against all of A, four
// rows of A per rows4 call, vectorised along k.
type smJob struct {
	operands
	tasks int
	fn    func(int)
}

var smJobs = sync.Pool{New: func() any {
	j := new(smJob)
	j.fn = j.run
	return j
}}

func smallM(m, n, k int, a []float32, lda int, bf []float32, bh []uint16, half, ldb int, c []float32, ldc int, acc bool) {
	j := smJobs.Get().(*smJob)
	j.operands = operands{m, n, k, a, lda, bf, bh, half, ldb, c, ldc, acc}
	// These products are bound by reading B: split by its size.
	j.tasks = split(n*k*2, (n+3)/4)
	if j.tasks == 1 {
		j.run(0)
	} else {
		parallel(j.tasks, j.fn)
	}
	j.operands = operands{}
	smJobs.Put(j)
}

func (j *smJob) run(t int) {
	s := cur
	quads := (j.n + 3) / 4
	j0 := quads * t / j.tasks * 4
	j1 := min(quads*(t+1)/j.tasks*4, j.n)
	kv := j.k &^ 15
	outBuf := getF32(16)
	out := *outBuf
	kern := s.rows4[j.half]
	for jr := j0; jr < j1; jr += 4 {
		var bp [4]unsafe.Pointer
		for r := range bp {
			row := min(jr+r, j1-1) * j.ldb
			if j.half == halfNone {
				bp[r] = unsafe.Pointer(&j.bf[row])
			} else {
				bp[r] = unsafe.Pointer(&j.bh[row])
			}
		}
		// Rows of A four at a time against the same four rows of B, which
		// stay in cache after the first group.
		for g := 0; g < j.m; g += 4 {
			var ap [4]*float32
			for i := range ap {
				ap[i] = &j.a[min(g+i, j.m-1)*j.lda]
			}
			kern(ap[0], ap[1], ap[2], ap[3], bp[0], bp[1], bp[2], bp[3], kv, &out[0])
			for r := 0; r < min(4, j1-jr); r++ {
				col := jr + r
				for i := g; i < min(g+4, j.m); i++ {
					v := out[4*r+i-g]
					ar := j.a[i*j.lda : i*j.lda+j.k]
					for p := kv; p < j.k; p++ { // the k tail
						var b float32
						switch j.half {
						case halfNone:
							b = j.bf[col*j.ldb+p]
						case halfBF16:
							b = BF16ToF32(j.bh[col*j.ldb+p])
						default:
							b = F16ToF32(j.bh[col*j.ldb+p])
						}
						v += ar[p] * b
					}
					if j.acc {
						j.c[i*j.ldc+col] += v
					} else {
						j.c[i*j.ldc+col] = v
					}
				}
			}
		}
	}
	putF32(outBuf)
}

// ---- classic driver: C = op(A)·B ----

type nnJob struct {
	operands
	trans    bool
	kc       int
	ap       []float32
	tasksN   int
	tasksM   int
	kchunks  int
	fn, pack func(int)
}

var nnJobs = sync.Pool{New: func() any {
	j := new(nnJob)
	j.fn = j.run
	j.pack = j.packA
	return j
}}

func classic(m, n, k int, a []float32, lda int, trans bool, bf []float32, bh []uint16, half, ldb int, c []float32, ldc int, acc bool) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		zeroOrKeep(m, n, c, ldc, acc)
		return
	}
	s := cur
	j := nnJobs.Get().(*nnJob)
	j.operands, j.trans = operands{m, n, k, a, lda, bf, bh, half, ldb, c, ldc, acc}, trans
	j.kc = blockK
	buf := getF32(m * k)
	j.ap = *buf
	j.kchunks = (k + j.kc - 1) / j.kc
	work := m * n * k
	if work < minWork {
		for t := 0; t < j.kchunks; t++ {
			j.packA(t)
		}
	} else {
		parallel(j.kchunks, j.pack)
	}
	wmax := s.vmax * s.lanes
	j.tasksN = split(work, (n+wmax-1)/wmax)
	// Tasks are at least one packed block of B (nc columns) wide while that
	// leaves four tasks per worker: every task reads its columns of B row
	// by row, and narrower strips (64 columns, 256 bytes) cost a TLB miss
	// and a new prefetch stream for every few hundred bytes. On two cores
	// this made dX = dY·W at M = 80 about 10% faster.
	j.tasksN = min(j.tasksN, max((n+j.nc()-1)/j.nc(), 4*runtime.GOMAXPROCS(0)))
	j.tasksM = 1
	if j.tasksN < 4 {
		j.tasksM = max(min(split(work, (m+5)/6)/j.tasksN, (m+5)/6), 1)
	}
	if j.tasksN*j.tasksM == 1 {
		j.run(0)
	} else {
		parallel(j.tasksN*j.tasksM, j.fn)
	}
	putF32(buf)
	j.operands, j.ap = operands{}, nil
	nnJobs.Put(j)
}

// nc is the width of a packed block of B: kc rows of it take half of L2.
func (j *nnJob) nc() int {
	wmax := cur.vmax * cur.lanes
	return max(blockL2/2/(j.kc*4)/wmax*wmax, wmax)
}

// packA writes chunk t of A: groups of up to 6 rows as [kl][r] blocks at
// offset k0·m + i0·kl.
func (j *nnJob) packA(t int) {
	k0 := t * j.kc
	kl := min(j.kc, j.k-k0)
	for i0 := 0; i0 < j.m; i0 += 6 {
		r := min(6, j.m-i0)
		dst := j.ap[k0*j.m+i0*kl : k0*j.m+i0*kl+kl*r]
		for q := 0; q < r; q++ {
			i := i0 + q
			if j.trans {
				for p := 0; p < kl; p++ {
					dst[p*r+q] = j.a[(k0+p)*j.lda+i]
				}
			} else {
				src := j.a[i*j.lda+k0 : i*j.lda+k0+kl]
				for p, v := range src {
					dst[p*r+q] = v
				}
			}
		}
	}
}

func (j *nnJob) run(t int) {
	s := cur
	tn, tm := t%j.tasksN, t/j.tasksN
	wmax := s.vmax * s.lanes
	panels := (j.n + wmax - 1) / wmax
	n0 := panels * tn / j.tasksN * wmax
	n1 := min(panels*(tn+1)/j.tasksN*wmax, j.n)
	groups := (j.m + 5) / 6
	m0 := groups * tm / j.tasksM * 6
	m1 := min(groups*(tm+1)/j.tasksM*6, j.m)
	if n0 >= n1 || m0 >= m1 {
		return
	}
	nc := min(j.nc(), roundUp(n1-n0, s.lanes))
	bpBuf := getF32(j.kc*nc + 6*wmax + nc)
	bp := *bpBuf
	tile := bp[j.kc*nc : j.kc*nc+6*wmax] // a 6×wmax tile for ragged edges
	rowbuf := bp[j.kc*nc+6*wmax:]        // one widened row of B
	for jb := n0; jb < n1; jb += nc {
		jn := min(nc, n1-jb)
		for k0 := 0; k0 < j.k; k0 += j.kc {
			kl := min(j.kc, j.k-k0)
			accFlag := 0
			if k0 > 0 || j.acc {
				accFlag = 1
			}
			// Pack B[k0:k0+kl, jb:jb+jn] as panels [kl][W], reading B
			// row by row so that the reads stream.
			for p := 0; p < kl; p++ {
				off := (k0+p)*j.ldb + jb
				src := rowbuf[:jn]
				if j.half == halfNone {
					src = j.bf[off : off+jn]
				} else {
					var pf []uint16
					if k0+p+pfDist < j.k {
						pf = j.bh[off+pfDist*j.ldb : off+pfDist*j.ldb+jn]
					}
					s.widenRow(src, j.bh[off:off+jn], pf, j.half)
				}
				pj := 0
				if full := jn / wmax; full > 0 && s.packRow != nil {
					pf := &src[0] // prefetch the row pfDist ahead, or this one
					if j.half == halfNone && k0+p+pfDist < j.k {
						pf = &j.bf[off+pfDist*j.ldb]
					}
					s.packRow(&bp[p*wmax], &src[0], pf, full, wmax, uintptr(kl*wmax*4))
					pj = full * wmax
				}
				for ; pj < jn; pj += wmax {
					w := min(wmax, jn-pj)
					wp := roundUp(w, s.lanes)
					dst := bp[pj*kl+p*wp : pj*kl+p*wp+wp]
					copy(dst, src[pj:pj+w])
					clear(dst[w:])
				}
			}
			for i0 := m0; i0 < m1; i0 += 6 {
				r := min(6, m1-i0)
				bc := unsafe.Pointer(&j.ap[k0*j.m+i0*kl])
				for pj := 0; pj < jn; pj += wmax {
					w := min(wmax, jn-pj)
					wp := roundUp(w, s.lanes)
					kern := s.f32[wp/s.lanes][r]
					panel := unsafe.Pointer(&bp[pj*kl])
					if w == wp {
						kern(kl, bc, 4, uintptr(r*4), panel, unsafe.Pointer(&j.c[i0*j.ldc+jb+pj]), uintptr(j.ldc*4), accFlag)
						continue
					}
					// Ragged right edge: go through a tile.
					for q := 0; q < r; q++ {
						cr := j.c[(i0+q)*j.ldc+jb+pj : (i0+q)*j.ldc+jb+pj+w]
						if accFlag == 1 {
							copy(tile[q*wp:], cr)
						}
					}
					kern(kl, bc, 4, uintptr(r*4), panel, unsafe.Pointer(&tile[0]), uintptr(wp*4), accFlag)
					for q := 0; q < r; q++ {
						copy(j.c[(i0+q)*j.ldc+jb+pj:(i0+q)*j.ldc+jb+pj+w], tile[q*wp:q*wp+w])
					}
				}
			}
		}
	}
	putF32(bpBuf)
}
