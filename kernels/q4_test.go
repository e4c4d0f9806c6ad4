package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
	"unsafe"
)

// The code tables of bitsandbytes (copies: package quant holds the real ones
// and sits above this package).
var (
	testNF4 = [16]float32{-1, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
		-0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0,
		0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
		0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1}
	testFP4 = func() (c [16]float32) {
		mag := [8]float32{0, 0.0052083333, 0.6666667, 1, 0.33333333, 0.5, 0.16666667, 0.25}
		for i, v := range mag {
			c[i], c[i+8] = v, -v
		}
		return c
	}()
)

const guardByte = 0xa5

// q4Problem is a 4-bit weight inside guarded buffers.
type q4Problem struct {
	n, k       int
	w          Q4
	pbuf       []byte    // packed with 8 guard bytes each side
	abuf       []float32 // absmax with 4 NaN guards each side
	pbuf0      []byte
	abuf0      []float32
	extremeAbs bool
}

func newQ4(rng *rand.Rand, n, k, bs int, code *[16]float32, mid int, extreme bool) *q4Problem {
	pr := &q4Problem{n: n, k: k}
	np, nb := (n*k+1)/2, (n*k+bs-1)/bs
	pr.pbuf = make([]byte, np+16)
	for i := range pr.pbuf {
		pr.pbuf[i] = guardByte
	}
	for i := 0; i < np; i++ {
		pr.pbuf[8+i] = byte(rng.Uint32())
	}
	pr.abuf = make([]float32, nb+8)
	for i := range pr.abuf {
		pr.abuf[i] = guardIn
	}
	for i := 0; i < nb; i++ {
		v := float32(0.01 + rng.Float64()*2)
		switch rng.IntN(8) {
		case 0: // f16 subnormal products
			v = float32(rng.Float64() * 1e-5)
		case 1: // near f16's largest value
			v = float32(30000 + rng.Float64()*30000)
			if extreme {
				v *= 4 // f16 overflow
			}
		case 2:
			if extreme {
				v = 0
			}
		case 3:
			if extreme {
				v = float32(rng.Float64() * 1e-39) // f32 subnormal
			}
		}
		pr.abuf[4+i] = v
	}
	pr.w = Q4{Packed: pr.pbuf[8 : 8+np : 8+np], Absmax: pr.abuf[4 : 4+nb : 4+nb], Blocksize: bs, Code: code, Mid: mid}
	pr.pbuf0 = append([]byte(nil), pr.pbuf...)
	pr.abuf0 = append([]float32(nil), pr.abuf...)
	return pr
}

// ref is element (r, c) of the dequantised weight, by the formula.
func (pr *q4Problem) ref(r, c int) uint16 {
	e := r*pr.k + c
	by := pr.w.Packed[e/2]
	nib := by >> 4
	if e%2 == 1 {
		nib = by & 15
	}
	v := pr.w.Code[nib] * pr.w.Absmax[e/pr.w.Blocksize]
	switch pr.w.Mid {
	case Q4MidBF16:
		v = BF16ToF32(F32ToBF16(v))
	case Q4MidF16:
		v = F16ToF32(F32ToF16(v))
	}
	return F32ToBF16(v)
}

func (pr *q4Problem) checkInputs(t *testing.T) {
	t.Helper()
	for i := range pr.pbuf {
		if pr.pbuf[i] != pr.pbuf0[i] {
			t.Fatalf("packed modified at %d", i)
		}
	}
	if !sameBits(pr.abuf, pr.abuf0) {
		t.Fatal("absmax modified")
	}
}

func TestDequantQ4BF16(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(11, 0))
		for q := 0; q < 300; q++ {
			n := 1 + rng.IntN(9)
			k := []int{1, 2, 3, 31, 32, 33, 63, 64, 65, 96, 100, 127, 128, 255, 256, 320, 511, 1024, 1056}[rng.IntN(19)]
			bs := []int{32, 64, 128, 256, 4096}[rng.IntN(5)]
			code := &testNF4
			if q%2 == 1 {
				code = &testFP4
			}
			pr := newQ4(rng, n, k, bs, code, q%3, true)
			r0 := rng.IntN(n)
			r1 := r0 + rng.IntN(n-r0+1)
			cnt := (r1 - r0) * k
			buf := make([]uint16, cnt+8)
			for i := range buf {
				buf[i] = guardBF16
			}
			DequantQ4BF16(&pr.w, k, r0, r1, buf[4:4+cnt:4+cnt])
			pr.checkInputs(t)
			for i := range buf {
				if i < 4 || i >= 4+cnt {
					if buf[i] != guardBF16 {
						t.Fatalf("n=%d k=%d bs=%d rows %d-%d: wrote outside dst at %d", n, k, bs, r0, r1, i)
					}
					continue
				}
				e := i - 4
				r, c := r0+e/k, e%k
				if want := pr.ref(r, c); buf[i] != want {
					t.Fatalf("n=%d k=%d bs=%d mid=%d rows %d-%d: W[%d][%d] = %#04x, want %#04x (absmax %g)",
						n, k, bs, pr.w.Mid, r0, r1, r, c, buf[i], want, pr.w.Absmax[(r*k+c)/bs])
				}
			}
		}
	})
}

// TestQ4Kernels checks every kernel set of this CPU directly (the paths do
// not reach all of them: the AVX-512 path dequantises to bf16 where the CPU
// has VDPBF16PS), including ranges that start and end anywhere and long
// rows.
func TestQ4Kernels(t *testing.T) {
	for name, ks := range q4Sets() {
		t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(16, 0))
			for q := 0; q < 200; q++ {
				k := []int{32, 64, 96, 160, 1024, 4096, 14336}[rng.IntN(7)]
				n := 1 + rng.IntN(4)
				bs := []int{32, 64, 128, 256, 4096}[rng.IntN(5)]
				code := &testNF4
				if q%2 == 1 {
					code = &testFP4
				}
				pr := newQ4(rng, n, k, bs, code, q%3, true)
				e0 := rng.IntN(n * k)
				cnt := rng.IntN(n*k - e0 + 1)
				d16 := make([]uint16, cnt)
				d32 := make([]float32, cnt)
				if q%3 == 0 {
					// Whole rows: runs of cnt from e0 in every row
					// that has them.
					e0 = e0 % k
					cnt = min(cnt, k-e0)
					if q%2 == 0 {
						e0, cnt = e0&^31, cnt&^31
					}
					rows := n
					d16, d32 = make([]uint16, rows*cnt), make([]float32, rows*cnt)
					q4DequantRows(ks, &pr.w, e0, cnt, rows, k, 2*k*rng.IntN(3), d16, nil)
					q4DequantRows(ks, &pr.w, e0, cnt, rows, k, 2*k*rng.IntN(3), nil, d32)
					for i := range d16 {
						want := pr.ref(i/max(cnt, 1), e0+i%cnt)
						if d16[i] != want || math.Float32bits(d32[i]) != uint32(want)<<16 {
							t.Fatalf("rows: k=%d bs=%d mid=%d e0=%d n=%d: element %d of row %d = %#04x / %#08x, want %#04x",
								k, bs, pr.w.Mid, e0, cnt, e0+i%cnt, i/cnt, d16[i], math.Float32bits(d32[i]), want)
						}
					}
					pr.checkInputs(t)
					continue
				}
				q4Dequant(ks, &pr.w, e0, cnt, d16, nil)
				q4Dequant(ks, &pr.w, e0, cnt, nil, d32)
				for i := 0; i < cnt; i++ {
					want := pr.ref((e0+i)/k, (e0+i)%k)
					if d16[i] != want || math.Float32bits(d32[i]) != uint32(want)<<16 {
						t.Fatalf("k=%d bs=%d mid=%d e0=%d n=%d: element %d = %#04x / %#08x, want %#04x",
							k, bs, pr.w.Mid, e0, cnt, e0+i, d16[i], math.Float32bits(d32[i]), want)
					}
				}
				pr.checkInputs(t)
				// The dot kernels, against the float64 sum, on row r: A
				// (4 rows, rounded to bf16) in the layout of the set.
				r := rng.IntN(n)
				an := make([]float32, 4*k)
				for i := range an {
					an[i] = BF16ToF32(F32ToBF16(float32(rng.Float64()*2 - 1)))
				}
				ap := make([]float32, 4*k)
				ah := make([]uint16, 4*k)
				for i := range an {
					ah[i] = F32ToBF16(an[i])
					g, q := i&^31, i&31
					ap[g+q%2*16+q/2] = an[i]
				}
				for _, nr := range []int{1, 4} {
					var out [4]float32
					f := ks.dot1
					if nr == 4 {
						f = ks.dot4
						if f == nil && ks.dot1 != nil {
							continue
						}
					}
					switch {
					case f == nil:
						q4DotGo(ap, nr, k, k, &pr.w, r*k, out[:nr])
					case ks.bf16A:
						f(unsafe.Pointer(&ah[0]), k*2, &pr.w.Packed[r*k/2], &pr.w.Absmax[0], &pr.w.Code[0], r*k, k, log2(bs), pr.w.Mid, &out[0])
					default:
						f(unsafe.Pointer(&ap[0]), k*4, &pr.w.Packed[r*k/2], &pr.w.Absmax[0], &pr.w.Code[0], r*k, k, log2(bs), pr.w.Mid, &out[0])
					}
					for i := 0; i < nr; i++ {
						var want, mag float64
						for p := 0; p < k; p++ {
							wv := float64(BF16ToF32(pr.ref(r, p)))
							want += float64(an[i*k+p]) * wv
							mag += math.Abs(float64(an[i*k+p]) * wv)
						}
						got := float64(out[i])
						if d := math.Abs(got - want); d > 4*tolF32*mag+1e-30 && !math.IsInf(want, 0) || math.IsNaN(got) != math.IsNaN(want) {
							t.Fatalf("dot%d k=%d bs=%d mid=%d row %d: A[%d]·W = %v, want %v", nr, k, bs, pr.w.Mid, r, i, out[i], want)
						}
					}
				}
			}
		})
	}
}

// checkQ4Gemm runs GemmNTQ4 on one problem and compares with a float64
// reference.
func checkQ4Gemm(t *testing.T, rng *rand.Rand, m, n, k, bs int, code *[16]float32, mid int, acc bool) {
	t.Helper()
	pr := newQ4(rng, n, k, bs, code, mid, false)
	a := newMat(rng, m, k, bF32, guardIn)
	c := newMat(rng, m, n, bF32, guardOut)
	a0, c0 := a.clone(), c.clone()
	GemmNTQ4(m, n, k, a.f(), a.ld, &pr.w, c.f(), c.ld, acc)
	pr.checkInputs(t)
	if !sameBits(a0.buf, a.buf) {
		t.Fatal("A modified")
	}
	wf := make([]float64, n*k)
	for r := 0; r < n; r++ {
		for p := 0; p < k; p++ {
			wf[r*k+p] = float64(BF16ToF32(pr.ref(r, p)))
		}
	}
	inside := make([]bool, len(c.buf))
	bad := 0
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			inside[c.off+i*c.ld+j] = true
			var want, mag float64
			for p := 0; p < k; p++ {
				av := float64(BF16ToF32(F32ToBF16(float32(a.at(i, p)))))
				want += av * wf[j*k+p]
				mag += math.Abs(av * wf[j*k+p])
			}
			if acc {
				want += c0.at(i, j)
				mag += math.Abs(c0.at(i, j))
			}
			got := c.at(i, j)
			if math.Abs(got-want) > 4*tolF32*mag+1e-30 && bad < 5 {
				bad++
				t.Errorf("%dx%dx%d bs=%d mid=%d acc=%v: C[%d][%d] = %v, want %v (Σ|aw| = %v)", m, n, k, bs, mid, acc, i, j, got, want, mag)
			}
		}
	}
	for q, v := range c.buf {
		if !inside[q] && math.Float32bits(v) != math.Float32bits(c0.buf[q]) {
			t.Fatalf("%dx%dx%d bs=%d: wrote outside C at %d", m, n, k, bs, q)
		}
	}
}

func TestGemmNTQ4(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		for _, par := range []bool{false, true} {
			if par {
				SetRunner(goRunner(3))
				old := setMinWork(1 << 10)
				defer func() { setMinWork(old); SetRunner(nil) }()
			}
			t.Run(fmt.Sprintf("parallel=%v", par), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(12, 0))
				q := 0
				for _, m := range []int{1, 2, 3, 4, 5, 17, 80} {
					for _, k := range []int{1, 2, 31, 32, 33, 64, 65, 96, 100, 160, 256, 257, 512} {
						bs := []int{32, 64, 128, 256}[rng.IntN(4)]
						n := 1 + rng.IntN(40)
						if m*n*k > 1<<19 {
							n = max(1, (1<<19)/(m*k))
						}
						code := &testNF4
						if q%2 == 1 {
							code = &testFP4
						}
						checkQ4Gemm(t, rng, m, n, k, bs, code, q%3, q%4 >= 2)
						q++
					}
				}
			})
		}
	})
}

// TestGemmNTQ4Large covers several k blocks and tiles of every width.
func TestGemmNTQ4Large(t *testing.T) {
	if testing.Short() {
		t.Skip("large shapes")
	}
	forEachPath(t, func(t *testing.T) {
		SetRunner(goRunner(2))
		defer SetRunner(nil)
		rng := rand.New(rand.NewPCG(13, 0))
		for q, s := range [][3]int{{80, 70, 1100}, {80, 33, 1088}, {13, 100, 520}, {1, 300, 1024}, {3, 90, 2048}, {130, 40, 300}} {
			code := &testNF4
			if q%2 == 1 {
				code = &testFP4
			}
			checkQ4Gemm(t, rng, s[0], s[1], s[2], []int{64, 128, 32}[q%3], code, q%3, q%2 == 0)
		}
	})
}

func TestGemmNTQ4ZeroSizes(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 0))
	for _, s := range [][3]int{{0, 5, 7}, {5, 0, 7}, {5, 7, 0}, {0, 0, 0}} {
		for _, acc := range []bool{false, true} {
			checkQ4Gemm(t, rng, s[0], s[1], s[2], 64, &testNF4, 1, acc)
		}
	}
}

// BenchmarkGemmNTQ4 measures GemmNTQ4 on the shapes of an 8B Llama (NF4,
// blocksize 64, bf16 storage) on two workers, and in the same run
// GemmNTBF16Fast on the dequantised weight, alternating: x-bf16fast is the
// ratio of the total times, x-bf16fast-best that of the fastest calls.
func BenchmarkGemmNTQ4(b *testing.B) {
	SetRunner(goRunner(2))
	defer SetRunner(nil)
	for _, m := range []int{1, 80} {
		for _, kn := range [][2]int{{4096, 4096}, {4096, 14336}, {14336, 4096}} {
			k, n := kn[0], kn[1]
			b.Run(fmt.Sprintf("%dx%dx%d", m, k, n), func(b *testing.B) {
				rng := rand.New(rand.NewPCG(15, 0))
				pk := make([]byte, n*k/2)
				for i := range pk {
					pk[i] = byte(rng.Uint32())
				}
				am := make([]float32, n*k/64)
				for i := range am {
					am[i] = float32(0.01 + rng.Float64()*0.1)
				}
				w := &Q4{Packed: pk, Absmax: am, Blocksize: 64, Code: &testNF4, Mid: Q4MidBF16}
				wh := make([]uint16, n*k)
				DequantQ4BF16(w, k, 0, n, wh)
				a, c := randF32(m*k), make([]float32, m*n)
				GemmNTQ4(m, n, k, a, k, w, c, n, false)
				GemmNTBF16Fast(m, n, k, a, k, wh, k, c, n, false)
				runtime.GC()
				b.ResetTimer()
				// The two products alternate, so that both see the same
				// machine (other processes, clock changes).
				var tq, tb time.Duration
				mq, mb := time.Duration(1<<62), time.Duration(1<<62)
				for i := 0; i < b.N; i++ {
					t0 := time.Now()
					GemmNTQ4(m, n, k, a, k, w, c, n, false)
					t1 := time.Now()
					GemmNTBF16Fast(m, n, k, a, k, wh, k, c, n, false)
					t2 := time.Now()
					tq, tb = tq+t1.Sub(t0), tb+t2.Sub(t1)
					mq, mb = min(mq, t1.Sub(t0)), min(mb, t2.Sub(t1))
				}
				flop := 2 * float64(m) * float64(n) * float64(k) * float64(b.N)
				b.ReportMetric(flop/tq.Seconds()/1e9, "GFLOP/s")
				b.ReportMetric(flop/tb.Seconds()/1e9, "bf16fast-GFLOP/s")
				b.ReportMetric(mb.Seconds()/mq.Seconds(), "x-bf16fast-best")
				b.ReportMetric(tb.Seconds()/tq.Seconds(), "x-bf16fast")
			})
		}
	}
}

// TestGemmNTQ4Streamed covers the streaming stores of C (streamC): the
// last-level cache is made to look tiny, and C gets rows aligned to 64
// bytes, still surrounded by guards.
func TestGemmNTQ4Streamed(t *testing.T) {
	defer func(old int) { blockL3 = old }(blockL3)
	blockL3 = 1
	forEachPath(t, func(t *testing.T) {
		SetRunner(goRunner(2))
		old := setMinWork(1 << 10)
		defer func() { setMinWork(old); SetRunner(nil) }()
		rng := rand.New(rand.NewPCG(17, 0))
		for _, s := range [][3]int{{16, 16, 64}, {40, 100, 70}, {80, 48, 320}} {
			m, n, k := s[0], s[1], s[2]
			pr := newQ4(rng, n, k, 64, &testNF4, Q4MidBF16, false)
			a := newMat(rng, m, k, bF32, guardIn)
			c := alignedMat(rng, m, n, guardOut)
			c0 := c.clone()
			GemmNTQ4(m, n, k, a.f(), a.ld, &pr.w, c.f(), c.ld, false)
			for i := 0; i < m; i++ {
				for j := 0; j < n; j++ {
					var want, mag float64
					for p := 0; p < k; p++ {
						av := float64(BF16ToF32(F32ToBF16(float32(a.at(i, p)))))
						wv := float64(BF16ToF32(pr.ref(j, p)))
						want += av * wv
						mag += math.Abs(av * wv)
					}
					if got := c.at(i, j); math.Abs(got-want) > 4*tolF32*mag+1e-30 {
						t.Fatalf("%v: C[%d][%d] = %v, want %v", s, i, j, got, want)
					}
					c0.buf[c.off+i*c.ld+j] = c.buf[c.off+i*c.ld+j]
				}
			}
			if !sameBits(c.buf, c0.buf) {
				t.Fatalf("%v: wrote outside C", s)
			}
		}
	})
}

// TestGemmNTQ4NoAllocs checks that steady-state calls reuse their scratch.
func TestGemmNTQ4NoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	forEachPath(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(18, 0))
		for _, m := range []int{1, 37} {
			n, k := 70, 320
			pr := newQ4(rng, n, k, 64, &testFP4, Q4MidF16, false)
			a, c := randF32(m*k), make([]float32, m*n)
			f := func() { GemmNTQ4(m, n, k, a, k, &pr.w, c, n, false) }
			if allocs := testing.AllocsPerRun(50, f); allocs >= 1 {
				t.Errorf("m=%d: %v allocations per call", m, allocs)
			}
		}
	})
}
