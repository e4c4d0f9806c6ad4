package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"unsafe"
)

// Tolerances, relative to Σ_p |a·b| (plus |c| when accumulating):
//   - f32 and widened bf16/f16: 2e-6, a few f32 ulps of a blocked sum;
//   - fast bf16 against a reference that rounds A to bf16 first: 2e-6 as well
//     (every bf16 product is exact in f32, so only the summation differs);
//   - fast bf16 against the unrounded f32 product: 1e-2.
const (
	tolF32  = 2e-6
	tolFast = 1e-2
)

// The sizes every axis is tested on.
var sizes = []int{1, 2, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 129, 255, 257}

type layout int

const (
	nt layout = iota // C = A·Bᵀ, A m×k, B n×k
	nn               // C = A·B,  A m×k, B k×n
	tn               // C = Aᵀ·B, A k×m, B k×n
)

type btype int

const (
	bF32 btype = iota
	bBF16
	bF16
)

// op is one exported product under test.
type op struct {
	name string
	lay  layout
	bt   btype
	fast bool
	f32  func(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, acc bool)
	half func(m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int, acc bool)
	// The simple reference implementations of gemm_generic.go.
	refF32  func(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, acc bool)
	refHalf func(m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int, acc bool)
}

var ops = []op{
	{name: "NT", lay: nt, f32: GemmNT, refF32: gemmNTGeneric},
	{name: "NN", lay: nn, f32: GemmNN, refF32: gemmNNGeneric},
	{name: "TN", lay: tn, f32: GemmTN, refF32: gemmTNGeneric},
	{name: "NTBF16", lay: nt, bt: bBF16, half: GemmNTBF16, refHalf: gemmNTBF16Generic},
	{name: "NNBF16", lay: nn, bt: bBF16, half: GemmNNBF16, refHalf: gemmNNBF16Generic},
	{name: "NTBF16Fast", lay: nt, bt: bBF16, fast: true, half: GemmNTBF16Fast, refHalf: gemmNTBF16FastGeneric},
	{name: "NTF16", lay: nt, bt: bF16, half: GemmNTF16, refHalf: gemmNTF16Generic},
	{name: "NNF16", lay: nn, bt: bF16, half: GemmNNF16, refHalf: gemmNNF16Generic},
}

// Guard values: inputs are surrounded by NaN so that a kernel reading
// outside its operands poisons its result; the output is surrounded by a
// finite sentinel that must survive bit for bit.
var (
	guardIn   = float32(math.NaN())
	guardOut  = float32(-1234.5)
	guardBF16 = uint16(0x7fc1)
	guardF16  = uint16(0x7e01)
)

// mat is a rows×cols matrix at offset off with stride ld inside buf.
type mat struct {
	rows, cols, ld, off int
	buf                 []float32
	half                []uint16
}

// view is the slice handed to a kernel: exactly the elements it may touch.
func (x *mat) span() (int, int) {
	if x.rows == 0 || x.cols == 0 {
		return x.off, x.off
	}
	return x.off, x.off + (x.rows-1)*x.ld + x.cols
}

func (x *mat) f() []float32 { lo, hi := x.span(); return x.buf[lo:hi:hi] }
func (x *mat) h() []uint16  { lo, hi := x.span(); return x.half[lo:hi:hi] }

func (x *mat) at(i, j int) float64 { return float64(x.buf[x.off+i*x.ld+j]) }

// newMat makes a matrix with random values in [-1, 1), a random extra
// stride and offset, and guards everywhere else.
func newMat(rng *rand.Rand, rows, cols int, bt btype, guard float32) *mat {
	x := &mat{rows: rows, cols: cols, ld: cols + rng.IntN(4), off: rng.IntN(4)}
	if x.ld == 0 {
		x.ld = 1
	}
	n := x.off + rows*x.ld + 8
	x.buf = make([]float32, n)
	for i := range x.buf {
		x.buf[i] = guard
	}
	if bt != bF32 {
		x.half = make([]uint16, n)
		g := guardBF16
		if bt == bF16 {
			g = guardF16
		}
		for i := range x.half {
			x.half[i] = g
		}
	}
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			v := float32(rng.Float64()*2 - 1)
			p := x.off + i*x.ld + j
			switch bt {
			case bBF16:
				x.half[p] = F32ToBF16(v)
				v = BF16ToF32(x.half[p])
			case bF16:
				x.half[p] = F32ToF16(v)
				v = F16ToF32(x.half[p])
			}
			x.buf[p] = v
		}
	}
	return x
}

func (x *mat) clone() *mat {
	y := *x
	y.buf = append([]float32(nil), x.buf...)
	y.half = append([]uint16(nil), x.half...)
	return &y
}

// sameBits reports whether two buffers are bit-identical.
func sameBits(a, b []float32) bool {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func sameHalf(a, b []uint16) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// problem holds the operands of one test product.
type problem struct {
	o       op
	m, n, k int
	a, b, c *mat
	acc     bool
	ref     bool // run the reference implementation instead
}

func newProblem(rng *rand.Rand, o op, m, n, k int, acc bool) *problem {
	pr := &problem{o: o, m: m, n: n, k: k, acc: acc}
	switch o.lay {
	case nt:
		pr.a = newMat(rng, m, k, bF32, guardIn)
		pr.b = newMat(rng, n, k, o.bt, guardIn)
	case nn:
		pr.a = newMat(rng, m, k, bF32, guardIn)
		pr.b = newMat(rng, k, n, o.bt, guardIn)
	case tn:
		pr.a = newMat(rng, k, m, bF32, guardIn)
		pr.b = newMat(rng, k, n, o.bt, guardIn)
	}
	pr.c = newMat(rng, m, n, bF32, guardOut)
	return pr
}

func (pr *problem) run() {
	if pr.ref {
		if pr.o.refHalf != nil {
			pr.o.refHalf(pr.m, pr.n, pr.k, pr.a.f(), pr.a.ld, pr.b.h(), pr.b.ld, pr.c.f(), pr.c.ld, pr.acc)
		} else {
			pr.o.refF32(pr.m, pr.n, pr.k, pr.a.f(), pr.a.ld, pr.b.f(), pr.b.ld, pr.c.f(), pr.c.ld, pr.acc)
		}
		return
	}
	if pr.o.half != nil {
		pr.o.half(pr.m, pr.n, pr.k, pr.a.f(), pr.a.ld, pr.b.h(), pr.b.ld, pr.c.f(), pr.c.ld, pr.acc)
	} else {
		pr.o.f32(pr.m, pr.n, pr.k, pr.a.f(), pr.a.ld, pr.b.f(), pr.b.ld, pr.c.f(), pr.c.ld, pr.acc)
	}
}

// aval and bval read op(A)[i][p] and op(B)[p][j] (B already widened).
func (pr *problem) aval(i, p int) float64 {
	if pr.o.lay == tn {
		return pr.a.at(p, i)
	}
	return pr.a.at(i, p)
}

func (pr *problem) bval(p, j int) float64 {
	if pr.o.lay == nt {
		return pr.b.at(j, p)
	}
	return pr.b.at(p, j)
}

// check runs the product and compares it with a float64 reference; c0 is
// the output before the call.
func (pr *problem) check(t *testing.T) {
	t.Helper()
	c0 := pr.c.clone()
	a0, b0 := pr.a.clone(), pr.b.clone()
	pr.run()
	if !sameBits(a0.buf, pr.a.buf) || !sameBits(b0.buf, pr.b.buf) || !sameHalf(b0.half, pr.b.half) {
		t.Fatalf("%s %dx%dx%d: a read-only input was modified", pr.o.name, pr.m, pr.n, pr.k)
	}
	inside := make([]bool, len(pr.c.buf))
	bad := 0
	for i := 0; i < pr.m; i++ {
		for j := 0; j < pr.n; j++ {
			inside[pr.c.off+i*pr.c.ld+j] = true
			var want, wantRounded, mag float64
			for p := 0; p < pr.k; p++ {
				av, bv := pr.aval(i, p), pr.bval(p, j)
				want += av * bv
				wantRounded += float64(BF16ToF32(F32ToBF16(float32(av)))) * bv
				mag += math.Abs(av * bv)
			}
			if pr.acc {
				want += c0.at(i, j)
				wantRounded += c0.at(i, j)
				mag += math.Abs(c0.at(i, j))
			}
			got := pr.c.at(i, j)
			ok := math.Abs(got-want) <= tolF32*mag+1e-30
			if pr.o.fast {
				ok = math.Abs(got-wantRounded) <= tolF32*mag+1e-30 && math.Abs(got-want) <= tolFast*mag+1e-30
			}
			if !ok && bad < 5 {
				bad++
				t.Errorf("%s %dx%dx%d acc=%v: C[%d][%d] = %v, want %v (bf16-rounded A: %v, Σ|ab| = %v)",
					pr.o.name, pr.m, pr.n, pr.k, pr.acc, i, j, got, want, wantRounded, mag)
			}
		}
	}
	for q, v := range pr.c.buf {
		if !inside[q] && math.Float32bits(v) != math.Float32bits(c0.buf[q]) {
			t.Fatalf("%s %dx%dx%d: wrote outside C at buffer index %d (%v)", pr.o.name, pr.m, pr.n, pr.k, q, v)
		}
	}
}

// forEachPath runs fn once per kernel path this CPU supports.
func forEachPath(t *testing.T, fn func(t *testing.T)) {
	defer restorePath(t)
	for _, name := range Paths() {
		if err := Use(name); err != nil {
			t.Fatal(err)
		}
		t.Run(name, fn)
	}
}

func restorePath(t testing.TB) {
	if err := Use(Paths()[0]); err != nil {
		t.Fatal(err)
	}
}

// goRunner is a minimal Runner over goroutines, standing in for the
// engine's pool (which sits above this package).
func goRunner(workers int) Runner {
	return func(n int, fn func(i int)) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		next := 0
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					mu.Lock()
					i := next
					next++
					mu.Unlock()
					if i >= n {
						return
					}
					fn(i)
				}
			}()
		}
		wg.Wait()
	}
}

// shapes samples the cross product of sizes so that every size appears on
// every axis, keeping each product small enough for a float64 reference.
func shapes(rng *rand.Rand) [][3]int {
	var out [][3]int
	for axis := 0; axis < 3; axis++ {
		for _, v := range sizes {
			for {
				s := [3]int{sizes[rng.IntN(len(sizes))], sizes[rng.IntN(len(sizes))], sizes[rng.IntN(len(sizes))]}
				s[axis] = v
				if s[0]*s[1]*s[2] <= 1<<19 {
					out = append(out, s)
					break
				}
			}
		}
	}
	return out
}

func TestGemm(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		for _, par := range []bool{false, true} {
			if par {
				SetRunner(goRunner(3))
				old := setMinWork(1 << 10)
				defer func() { setMinWork(old); SetRunner(nil) }()
			}
			for _, o := range ops {
				t.Run(fmt.Sprintf("%s/parallel=%v", o.name, par), func(t *testing.T) {
					rng := rand.New(rand.NewPCG(1, uint64(o.lay)*7+uint64(o.bt)))
					for q, s := range shapes(rng) {
						newProblem(rng, o, s[0], s[1], s[2], q%2 == 1).check(t)
					}
				})
			}
		}
	})
}

// TestGemmLarge covers the k blocking (several k chunks) and tiles of every
// width on a few bigger shapes.
func TestGemmLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("large shapes")
	}
	forEachPath(t, func(t *testing.T) {
		SetRunner(goRunner(2))
		defer SetRunner(nil)
		for _, o := range ops {
			rng := rand.New(rand.NewPCG(2, 0))
			for _, s := range [][3]int{{80, 70, 600}, {13, 200, 520}, {130, 97, 300}} {
				newProblem(rng, o, s[0], s[1], s[2], false).check(t)
				newProblem(rng, o, s[0], s[1], s[2], true).check(t)
			}
		}
	})
}

// TestGemmStreamed covers the swapped driver's streaming stores of C
// (streamC): the last-level cache is made to look tiny, and C gets rows
// aligned to 64 bytes, still surrounded by guards.
func TestGemmStreamed(t *testing.T) {
	defer func(old int) { blockL3 = old }(blockL3)
	blockL3 = 1
	forEachPath(t, func(t *testing.T) {
		SetRunner(goRunner(2))
		old := setMinWork(1 << 10)
		defer func() { setMinWork(old); SetRunner(nil) }()
		for _, o := range ops {
			if o.lay != nt {
				continue
			}
			rng := rand.New(rand.NewPCG(3, 0))
			for _, s := range [][3]int{{16, 16, 16}, {40, 100, 70}, {17, 48, 33}, {130, 97, 300}, {64, 200, 520}} {
				for _, acc := range []bool{false, true} {
					pr := newProblem(rng, o, s[0], s[1], s[2], acc)
					pr.c = alignedMat(rng, pr.m, pr.n, guardOut)
					if want := cur.fence != nil && !acc; streamC(pr.m, pr.n, pr.k, 2, pr.c.f(), pr.c.ld, acc) != want {
						t.Fatalf("%s %v: streamC = %v, want %v", o.name, s, !want, want)
					}
					pr.check(t)
				}
			}
		}
	})
}

// alignedMat is newMat with rows that start on 64-byte boundaries (a
// stride that is a multiple of 16, with guards between the rows).
func alignedMat(rng *rand.Rand, rows, cols int, guard float32) *mat {
	x := &mat{rows: rows, cols: cols, ld: (cols + 31) &^ 15}
	x.buf = make([]float32, 32+rows*x.ld+16)
	for x.off = 16; uintptr(unsafe.Pointer(&x.buf[x.off]))%64 != 0; x.off++ {
	}
	for i := range x.buf {
		x.buf[i] = guard
	}
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			x.buf[x.off+i*x.ld+j] = float32(rng.Float64()*2 - 1)
		}
	}
	return x
}

func TestGemmZeroSizes(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(3, 0))
		for _, o := range ops {
			for _, s := range [][3]int{{0, 5, 7}, {5, 0, 7}, {5, 7, 0}, {0, 0, 0}, {1, 1, 0}} {
				for _, acc := range []bool{false, true} {
					newProblem(rng, o, s[0], s[1], s[2], acc).check(t)
				}
			}
		}
	})
}

// TestGemmNaNInf puts one NaN in A and one +Inf in B, with A positive
// elsewhere: row i of C must be all NaN and column j all +Inf (except where
// they cross).
func TestGemmNaNInf(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(4, 0))
		for _, o := range ops {
			for _, s := range [][3]int{{5, 9, 13}, {3, 21, 77}, {1, 9, 40}, {20, 40, 33}, {67, 35, 300}} {
				m, n, k := s[0], s[1], s[2]
				pr := newProblem(rng, o, m, n, k, false)
				for i := 0; i < m; i++ {
					for p := 0; p < k; p++ {
						idx := pr.a.off + i*pr.a.ld + p
						if o.lay == tn {
							idx = pr.a.off + p*pr.a.ld + i
						}
						pr.a.buf[idx] = 0.25 + float32(rng.Float64())
					}
				}
				ni, nj, np := rng.IntN(m), rng.IntN(n), rng.IntN(k)
				ai := pr.a.off + ni*pr.a.ld + np
				if o.lay == tn {
					ai = pr.a.off + np*pr.a.ld + ni
				}
				pr.a.buf[ai] = float32(math.NaN())
				bi := pr.b.off + nj*pr.b.ld + np
				if o.lay != nt {
					bi = pr.b.off + np*pr.b.ld + nj
				}
				switch o.bt {
				case bF32:
					pr.b.buf[bi] = float32(math.Inf(1))
				case bBF16:
					pr.b.half[bi] = 0x7f80
				case bF16:
					pr.b.half[bi] = 0x7c00
				}
				pr.run()
				for i := 0; i < m; i++ {
					for j := 0; j < n; j++ {
						got := pr.c.at(i, j)
						switch {
						case i == ni && !math.IsNaN(got):
							t.Fatalf("%s %v: C[%d][%d] = %v, want NaN", o.name, s, i, j, got)
						case i != ni && j == nj && !math.IsInf(got, 1):
							t.Fatalf("%s %v: C[%d][%d] = %v, want +Inf", o.name, s, i, j, got)
						case i != ni && j != nj && (math.IsNaN(got) || math.IsInf(got, 0)):
							t.Fatalf("%s %v: C[%d][%d] = %v, want finite", o.name, s, i, j, got)
						}
					}
				}
			}
		}
	})
}

func TestUse(t *testing.T) {
	defer restorePath(t)
	if err := Use("nonsense"); err == nil {
		t.Fatal("Use(nonsense) succeeded")
	}
	for _, name := range Paths() {
		if err := Use(name); err != nil || Path() != name {
			t.Fatalf("Use(%s) = %v, Path() = %s", name, err, Path())
		}
	}
	if got := Paths()[len(Paths())-1]; got != "generic" {
		t.Fatalf("last path %q, want generic", got)
	}
}

// FuzzGemm compares the dispatched kernels with the simple reference
// implementations of gemm_generic.go on random shapes and data.
func FuzzGemm(f *testing.F) {
	f.Add(uint8(0), uint16(17), uint16(33), uint16(65), false, uint64(1))
	f.Add(uint8(5), uint16(80), uint16(7), uint16(129), true, uint64(2))
	f.Fuzz(func(t *testing.T, opi uint8, m, n, k uint16, acc bool, seed uint64) {
		o := ops[int(opi)%len(ops)]
		mm, nn, kk := int(m%90), int(n%90), int(k%300)
		rng := rand.New(rand.NewPCG(seed, 0))
		pr := newProblem(rng, o, mm, nn, kk, acc)
		ref := *pr
		ref.c = pr.c.clone()
		ref.ref = true
		pr.run()
		ref.run()
		old := Path()
		tol := tolF32 * 4
		for q := range pr.c.buf {
			g, w := float64(pr.c.buf[q]), float64(ref.c.buf[q])
			if math.Abs(g-w) > tol*float64(kk+1)*(1+math.Abs(w)) && !(math.IsNaN(g) && math.IsNaN(w)) {
				t.Fatalf("%s %dx%dx%d: index %d: %s %v, generic %v", o.name, mm, nn, kk, q, old, g, w)
			}
		}
	})
}

// TestGemmNoAllocs checks that steady-state calls reuse their scratch.
func TestGemmNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	forEachPath(t, func(t *testing.T) {
		m, n, k := 37, 70, 300
		a, b, c := randF32(m*k), randF32(n*k), make([]float32, m*n)
		h := randBF16(n * k)
		for _, f := range []func(){
			func() { GemmNT(m, n, k, a, k, b, k, c, n, false) },
			func() { GemmNN(m, n, k, a, k, b, n, c, n, true) },
			func() { GemmTN(m, n, k, a, m, b, n, c, n, false) },
			func() { GemmNTBF16(m, n, k, a, k, h, k, c, n, false) },
			func() { GemmNTBF16Fast(m, n, k, a, k, h, k, c, n, false) },
		} {
			if allocs := testing.AllocsPerRun(50, f); allocs >= 1 {
				t.Errorf("%v allocations per call", allocs)
			}
		}
	})
}
