package kernels

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// ulpOf is the spacing of float32 values at |want| (2^-149 in the denormal
// range).
func ulpOf(want float64) float64 {
	_, e := math.Frexp(math.Abs(want)) // |want| = f·2^e, f ∈ [0.5, 1)
	return math.Ldexp(1, max(e-1, -126)-23)
}

// ulpErr is |got − want| in float32 ulps of want; special values must match
// exactly (after rounding want to float32) or the error is +Inf.
func ulpErr(got float32, want float64) float64 {
	w32 := float32(want)
	switch {
	case math.IsNaN(want):
		if got != got {
			return 0
		}
		return math.Inf(1)
	case math.IsInf(float64(w32), 0) || math.IsInf(float64(got), 0):
		if got == w32 {
			return 0
		}
		return math.Inf(1)
	}
	return math.Abs(float64(got)-want) / ulpOf(want)
}

// ordered maps float32 bits to integers in the order of the values, so that
// the difference of two is their distance in ulps.
func ordered(x float32) int64 {
	b := int64(math.Float32bits(x))
	if b&(1<<31) != 0 {
		return -(b &^ (1 << 31))
	}
	return b
}

func ulpDist(a, b float32) int64 {
	if a != a || b != b {
		if a != a && b != b {
			return 0
		}
		return math.MaxInt64
	}
	d := ordered(a) - ordered(b)
	if d < 0 {
		d = -d
	}
	return d
}

// expInputs is a dense sweep of float32s over [−104, 89] (every 61st bit
// pattern on each side of zero, and 200001 evenly spaced points) plus the
// special values and boundaries.
func expInputs() []float32 {
	xs := []float32{0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)),
		float32(math.NaN()), math.Float32frombits(0x7fc0beef), math.Float32frombits(0xffc00001),
		1, -1, 0.5, -0.5, 1e-30, -1e-30, math.SmallestNonzeroFloat32, -math.SmallestNonzeroFloat32,
		-87.3, -87.33654, -87.34, 87.3, 88.72, 88.722839, 88.72284, 88.7229, 88.73, 89, 89.5, 100, 1e30, math.MaxFloat32,
		-88, -100, -103, -103.27893, -103.279, -103.97, -103.972, -104, -104.5, -150, -1e30, -math.MaxFloat32,
		float32(math.Ln2 / 2), -float32(math.Ln2 / 2), float32(math.Ln2), -float32(math.Ln2)}
	for b := uint32(0); b < 0x42b20000; b += 61 { // [0, 89)
		xs = append(xs, math.Float32frombits(b))
	}
	for b := uint32(0x80000000); b < 0xc2d00000; b += 61 { // (−104, −0]
		xs = append(xs, math.Float32frombits(b))
	}
	for i := 0; i <= 200000; i++ {
		xs = append(xs, float32(-104+193*float64(i)/200000))
	}
	return xs
}

// TestExp checks exp (through ExpSum with shift 0, which subtracts exactly)
// against math.Exp on every path: at most 2 ulp, specials exact.
func TestExp(t *testing.T) {
	in := expInputs()
	forEachPath(t, func(t *testing.T) {
		x := append([]float32(nil), in...)
		ExpSum(x, 0)
		worst, at := 0.0, float32(0)
		for i, v := range in {
			want := math.Exp(float64(v))
			if e := ulpErr(x[i], want); e > worst {
				worst, at = e, v
			}
		}
		t.Logf("%d inputs, max error %.3f ulp at x=%v", len(in), worst, at)
		if worst > 2 {
			t.Errorf("exp(%v) = %v, want %v: %.3f ulp", at, expOne(at), math.Exp(float64(at)), worst)
		}
		for _, c := range []struct{ x, want float32 }{
			{float32(math.Inf(1)), float32(math.Inf(1))}, {float32(math.Inf(-1)), 0}, {89, float32(math.Inf(1))},
			{88.73, float32(math.Inf(1))}, {-104, 0}, {-1e30, 0}, {0, 1}, {float32(math.Copysign(0, -1)), 1},
		} {
			if got := expOne(c.x); math.Float32bits(got) != math.Float32bits(c.want) {
				t.Errorf("exp(%v) = %v, want %v", c.x, got, c.want)
			}
		}
		if got := expOne(float32(math.NaN())); got == got {
			t.Errorf("exp(NaN) = %v", got)
		}
		// The smallest denormal: exp(−103.28) ≈ 1.4e-45 = 2^−149.
		if got := expOne(-103.28); got != math.SmallestNonzeroFloat32 {
			t.Errorf("exp(-103.28) = %v, want 2^-149", got)
		}
	})
}

// expOne is exp(x) through the current path (padded to a full vector).
func expOne(x float32) float32 {
	v := []float32{x}
	ExpSum(v, 0)
	return v[0]
}

// TestExpSumShift checks the in-place shift, the returned sum and that no
// element outside the slice changes, for every length and alignment.
func TestExpSumShift(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(11, 0))
		for _, n := range actLens {
			for _, off := range []int{0, 1, 3} {
				buf := guardBuf(off + n + 17)
				x := buf[off : off+n : off+n]
				for i := range x {
					x[i] = float32(rng.NormFloat64() * 10)
				}
				shift := float32(rng.NormFloat64() * 10)
				x0 := append([]float32(nil), x...)
				s := ExpSum(x, shift)
				var want, mag float64
				for i, v := range x0 {
					e := math.Exp(float64(v - shift))
					if err := ulpErr(x[i], e); err > 2 {
						t.Fatalf("n=%d off=%d: exp(%v-%v) = %v, want %v (%.2f ulp)", n, off, v, shift, x[i], e, err)
					}
					want += e
					mag += e
				}
				if math.Abs(float64(s)-want) > 1e-6*mag*math.Max(1, math.Sqrt(float64(n))) {
					t.Fatalf("n=%d off=%d: sum %v, want %v", n, off, s, want)
				}
				checkSentinels(t, "ExpSum", buf, off, n)
			}
		}
	})
}

// actLens: every length 0..70 (all tails of 4, 8 and 16 lanes) and some
// large ones.
var actLens = func() []int {
	var l []int
	for n := 0; n <= 70; n++ {
		l = append(l, n)
	}
	return append(l, 127, 1000, 4099, 100003)
}()

// sentinel is the NaN payload written around every output.
var sentinel = math.Float32frombits(0x7fc0beef)

func guardBuf(n int) []float32 {
	b := make([]float32, n)
	for i := range b {
		b[i] = sentinel
	}
	return b
}

func checkSentinels(t *testing.T, what string, buf []float32, off, n int) {
	t.Helper()
	for i, v := range buf {
		if (i < off || i >= off+n) && math.Float32bits(v) != 0x7fc0beef {
			t.Fatalf("%s n=%d off=%d: wrote outside the output at %d", what, n, off, i-off)
		}
	}
}

// gateValue draws a gate value: mostly moderate, sometimes huge, tiny or
// special.
func gateValue(rng *rand.Rand) float32 {
	switch rng.IntN(40) {
	case 0:
		return float32(math.Inf(1))
	case 1:
		return float32(math.Inf(-1))
	case 2:
		return float32(math.NaN())
	case 3:
		return float32(math.Copysign(0, -1))
	case 4:
		return float32(rng.NormFloat64() * 100)
	case 5:
		return float32(rng.NormFloat64() * 1e30)
	case 6:
		return float32(rng.NormFloat64() * 1e-30)
	case 7:
		return -88 - float32(rng.Float64()*30) // σ and silu underflow here
	}
	return float32(rng.NormFloat64() * 4)
}

// sigmoid64 returns σ(g) and 1 − σ(g) in float64 without cancellation.
func sigmoid64(g float64) (s, sc float64) {
	t := math.Exp(-math.Abs(g))
	if g < 0 {
		return t / (1 + t), 1 / (1 + t)
	}
	return 1 / (1 + t), t / (1 + t)
}

// siluRef is silu(g) in float64, with the limit silu(−Inf) = 0.
func siluRef(g float64) float64 {
	if math.IsInf(g, -1) {
		return 0
	}
	s, _ := sigmoid64(g)
	return g * s
}

// siluGradRef is σ(g)·(1 + g·(1 − σ(g))) in float64 and the size of its
// terms, with the limits 1 and 0 at ±Inf.
func siluGradRef(g float64) (d, size float64) {
	switch {
	case math.IsInf(g, 1):
		return 1, 1
	case math.IsInf(g, -1):
		return 0, 0
	}
	s, sc := sigmoid64(g)
	return s * (1 + g*sc), s * (1 + math.Abs(g*sc))
}

// Tolerances of SiLUMul and SiLUMulBackward: tol ulps of the result (for
// dgate, of the size of its terms: dgate is a product of five rounded
// factors, one of which cancels near g ≈ −1.28, hence 6) plus siluAbs
// absolute, which covers g < −87.3, where exp(−|g|) and so σ(g) are
// denormals with few bits and the result's error is about |g·up|·2^−149.
const (
	siluTol  = 4
	dgateTol = 6
	siluAbs  = 1e-38
)

func within(got float32, want, size, tol float64) bool {
	if math.IsNaN(want) || math.IsInf(want, 0) || math.IsInf(float64(float32(want)), 0) {
		return ulpErr(got, want) == 0
	}
	return math.Abs(float64(got)-want) <= tol*ulpOf(size)+siluAbs
}

func TestSiLUMul(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(12, 0))
		worst := 0.0
		for _, n := range actLens {
			for _, off := range []int{0, 1, 3} {
				for _, alias := range []string{"", "gate", "up"} {
					gb, ub, ob := guardBuf(off+n+17), guardBuf(off+n+17), guardBuf(off+n+17)
					g, u, o := gb[off:off+n:off+n], ub[off:off+n:off+n], ob[off:off+n:off+n]
					for i := range g {
						g[i], u[i] = gateValue(rng), float32(rng.NormFloat64()*2)
					}
					g0, u0 := append([]float32(nil), gb...), append([]float32(nil), ub...)
					switch alias {
					case "gate":
						o, ob = g, gb
					case "up":
						o, ob = u, ub
					}
					SiLUMul(o, g, u)
					for i := 0; i < n; i++ {
						gv, uv := float64(g0[off+i]), float64(u0[off+i])
						want := siluRef(gv) * uv
						if !within(o[i], want, want, siluTol) {
							t.Fatalf("n=%d off=%d alias=%q: silu(%v)·%v = %v, want %v", n, off, alias, gv, uv, o[i], want)
						}
						if e := ulpErr(o[i], want); gv > -87.3 && e > worst {
							worst = e
						}
					}
					checkSentinels(t, "SiLUMul", ob, off, n)
					if alias != "gate" && !sameBits(gb, g0) || alias != "up" && !sameBits(ub, u0) {
						t.Fatalf("n=%d off=%d alias=%q: SiLUMul modified an input", n, off, alias)
					}
				}
			}
		}
		t.Logf("max error %.3f ulp (g > -87.3)", worst)
	})
}

func TestSiLUMulLimits(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		inf := float32(math.Inf(1))
		for _, c := range []struct{ g, want float32 }{
			{100, 100}, {inf, inf}, {-inf, 0}, {-200, 0}, {0, 0}, {1e30, 1e30}, {-1e30, 0},
		} {
			out := []float32{0}
			SiLUMul(out, []float32{c.g}, []float32{1})
			if out[0] != c.want || c.want == 0 && !math.Signbit(float64(out[0])) && c.g < 0 {
				t.Errorf("silu(%v) = %v, want %v", c.g, out[0], c.want)
			}
		}
		// silu(−100) = −100·e^−100 ≈ −3.7e-42, a denormal.
		out := []float32{0}
		SiLUMul(out, []float32{-100}, []float32{1})
		if want := -100 * math.Exp(-100); math.Abs(float64(out[0])-want) > 100*math.SmallestNonzeroFloat32 || out[0] >= 0 {
			t.Errorf("silu(-100) = %v, want %v", out[0], want)
		}
	})
}

func TestSiLUMulBackward(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(13, 0))
		worstUp, worstG := 0.0, 0.0
		defer func() { t.Logf("max error dup %.3f ulp, dgate %.3f ulp of its terms (g > -87.3)", worstUp, worstG) }()
		for _, n := range actLens {
			for _, off := range []int{0, 1, 3} {
				bufs := make([][]float32, 5)
				sl := make([][]float32, 5)
				for j := range bufs {
					bufs[j] = guardBuf(off + n + 17)
					sl[j] = bufs[j][off : off+n : off+n]
				}
				dg, du, dy, g, u := sl[0], sl[1], sl[2], sl[3], sl[4]
				for i := range g {
					g[i], u[i], dy[i] = gateValue(rng), float32(rng.NormFloat64()*2), float32(rng.NormFloat64())
				}
				in0 := [][]float32{append([]float32(nil), bufs[2]...), append([]float32(nil), bufs[3]...), append([]float32(nil), bufs[4]...)}
				SiLUMulBackward(dg, du, dy, g, u)
				for i := 0; i < n; i++ {
					gv, uv, dv := float64(g[i]), float64(u[i]), float64(dy[i])
					wantUp := dv * siluRef(gv)
					d, size := siluGradRef(gv)
					wantG := dv * uv * d
					if e := ulpErr(du[i], wantUp); gv > -87.3 && e > worstUp {
						worstUp = e
					}
					if e := math.Abs(float64(dg[i])-wantG) / ulpOf(dv*uv*size); gv > -87.3 && e > worstG {
						worstG = e
					}
					if !within(du[i], wantUp, wantUp, siluTol) {
						t.Fatalf("n=%d off=%d g=%v dy=%v: dup = %v, want %v", n, off, gv, dv, du[i], wantUp)
					}
					if !within(dg[i], wantG, dv*uv*size, dgateTol) {
						t.Fatalf("n=%d off=%d g=%v up=%v dy=%v: dgate = %v, want %v", n, off, gv, uv, dv, dg[i], wantG)
					}
				}
				checkSentinels(t, "SiLUMulBackward dgate", bufs[0], off, n)
				checkSentinels(t, "SiLUMulBackward dup", bufs[1], off, n)
				for j, b := range in0 {
					if !sameBits(b, bufs[j+2]) {
						t.Fatalf("n=%d off=%d: SiLUMulBackward modified input %d", n, off, j)
					}
				}
			}
		}
	})
}

// TestActPathsAgree compares every assembly path with the generic one: the
// same algorithm, so at most a couple of ulps apart (fused or not).
func TestActPathsAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 0))
	const n = 5003
	g, u, dy := make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range g {
		g[i], u[i], dy[i] = gateValue(rng), float32(rng.NormFloat64()), float32(rng.NormFloat64())
	}
	x := expInputs()[:400000]
	ref := func() [][]float32 {
		o, dg, du := make([]float32, n), make([]float32, n), make([]float32, n)
		siluMulGeneric(o, g, u)
		siluMulBackwardGeneric(dg, du, dy, g, u)
		e := append([]float32(nil), x...)
		expSumGeneric(e, 0)
		return [][]float32{o, dg, du, e}
	}()
	forEachPath(t, func(t *testing.T) {
		o, dg, du := make([]float32, n), make([]float32, n), make([]float32, n)
		SiLUMul(o, g, u)
		SiLUMulBackward(dg, du, dy, g, u)
		e := append([]float32(nil), x...)
		ExpSum(e, 0)
		for k, got := range [][]float32{o, dg, du, e} {
			var worst int64
			for i, v := range got {
				if math.Abs(float64(v)) < 1e-37 && math.Abs(float64(ref[k][i])) < 1e-37 {
					continue // underflowed σ: bounded absolutely above
				}
				d := ulpDist(v, ref[k][i])
				if k == 1 && d != 0 && d != math.MaxInt64 {
					// dgate: 1 + g·(1 − σ) cancels near g ≈ −1.28, where a
					// fused multiply-add changes many ulps of the result
					// but not of the terms.
					_, size := siluGradRef(float64(g[i]))
					d = int64(math.Ceil(math.Abs(float64(v)-float64(ref[k][i])) / ulpOf(float64(dy[i])*float64(u[i])*size)))
				}
				worst = max(worst, d)
			}
			if worst > 4 {
				t.Errorf("output %d differs from generic by %d ulp", k, worst)
			}
		}
	})
}

func TestActLengthPanics(t *testing.T) {
	for _, f := range []func(){
		func() { SiLUMul(make([]float32, 3), make([]float32, 2), make([]float32, 3)) },
		func() { SiLUMul(make([]float32, 3), make([]float32, 3), make([]float32, 4)) },
		func() {
			SiLUMulBackward(make([]float32, 3), make([]float32, 3), make([]float32, 2), make([]float32, 3), make([]float32, 3))
		},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("no panic for different lengths")
				}
			}()
			f()
		}()
	}
}

// FuzzExpSum compares the dispatched ExpSum with the generic one.
func FuzzExpSum(f *testing.F) {
	f.Add([]byte{0, 0, 0x80, 0x3f, 0, 0, 0x80, 0xff}, float32(0))
	f.Add(make([]byte, 4*37), float32(-3))
	f.Fuzz(func(t *testing.T, data []byte, shift float32) {
		x := make([]float32, len(data)/4)
		for i := range x {
			x[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
		}
		y := append([]float32(nil), x...)
		s := ExpSum(x, shift)
		sg := expSumGeneric(y, shift)
		var mag float64
		for i := range x {
			if d := ulpDist(x[i], y[i]); d > 2 {
				t.Fatalf("exp(%v): %v, generic %v", math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))-shift, x[i], y[i])
			}
			mag += math.Abs(float64(y[i]))
		}
		if math.IsNaN(float64(sg)) || math.IsInf(float64(sg), 0) {
			if math.IsNaN(float64(s)) != math.IsNaN(float64(sg)) || math.IsInf(float64(s), 0) && s != sg {
				t.Fatalf("sum %v, generic %v", s, sg)
			}
			return
		}
		if math.Abs(float64(s)-float64(sg)) > 1e-6*mag*float64(len(x)+1) {
			t.Fatalf("sum %v, generic %v", s, sg)
		}
	})
}

const benchN = 7340032

func BenchmarkSiLUMul(b *testing.B) {
	n := benchN
	g, u, o := make([]float32, n), make([]float32, n), make([]float32, n)
	rng := rand.New(rand.NewPCG(1, 0))
	for i := range g {
		g[i], u[i] = float32(rng.NormFloat64()*3), float32(rng.NormFloat64())
	}
	run := func(name string, f func()) {
		b.Run(fmt.Sprintf("%s/n=%d", name, n), func(b *testing.B) {
			b.SetBytes(int64(12 * n))
			for b.Loop() {
				f()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/elem")
		})
	}
	run("math64", func() {
		for i := range o {
			gv := g[i]
			o[i] = gv / (1 + float32(math.Exp(float64(-gv)))) * u[i]
		}
	})
	defer restorePath(b)
	for _, p := range Paths() {
		if err := Use(p); err != nil {
			b.Fatal(err)
		}
		run(p, func() { SiLUMul(o, g, u) })
	}
}

func BenchmarkExpSum(b *testing.B) {
	const n = 512
	x0, x := make([]float32, n), make([]float32, n)
	rng := rand.New(rand.NewPCG(2, 0))
	for i := range x0 {
		x0[i] = float32(rng.NormFloat64() * 3)
	}
	var sink float32
	run := func(name string, f func()) {
		b.Run(fmt.Sprintf("%s/n=%d", name, n), func(b *testing.B) {
			b.SetBytes(4 * n)
			for b.Loop() {
				copy(x, x0)
				f()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/elem")
		})
	}
	run("math64", func() {
		var s float32
		for i, v := range x {
			e := float32(math.Exp(float64(v - 1)))
			x[i] = e
			s += e
		}
		sink += s
	})
	defer restorePath(b)
	for _, p := range Paths() {
		if err := Use(p); err != nil {
			b.Fatal(err)
		}
		run(p, func() { sink += ExpSum(x, 1) })
	}
	_ = sink
}

// TestActNoAllocs: the padded tails stay on the stack.
func TestActNoAllocs(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		x, g, u, o, dy := make([]float32, 517), make([]float32, 37), make([]float32, 37), make([]float32, 37), make([]float32, 37)
		d1, d2 := make([]float32, 37), make([]float32, 37)
		if a := testing.AllocsPerRun(20, func() {
			ExpSum(x, 1)
			SiLUMul(o, g, u)
			SiLUMulBackward(d1, d2, dy, g, u)
		}); a != 0 {
			t.Errorf("%v allocations per call", a)
		}
	})
}
