package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// vecLens covers empty, sub-vector, one-vector and unrolled lengths with
// every remainder.
var vecLens = func() []int {
	var l []int
	for n := 0; n <= 80; n++ {
		l = append(l, n)
	}
	return append(l, 127, 128, 129, 1000, 4099)
}()

// guarded returns n random values at a random offset inside a buffer of
// guard values, and the buffer.
func guarded(rng *rand.Rand, n int) (x, buf []float32, off int) {
	off = rng.IntN(4)
	buf = make([]float32, off+n+17)
	for i := range buf {
		buf[i] = guardOut
	}
	for i := 0; i < n; i++ {
		buf[off+i] = float32(rng.Float64()*2 - 1)
	}
	return buf[off : off+n : off+n], buf, off
}

func checkGuards(t *testing.T, what string, buf []float32, off, n int) {
	t.Helper()
	for i, v := range buf {
		if (i < off || i >= off+n) && v != guardOut {
			t.Fatalf("%s n=%d: wrote outside its slice at %d", what, n, i-off)
		}
	}
}

func TestVectorOps(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(5, 0))
		eps := math.Pow(2, -23)
		for _, n := range vecLens {
			x, xb, xo := guarded(rng, n)
			y, yb, yo := guarded(rng, n)
			x0 := append([]float32(nil), xb...)
			y0 := append([]float32(nil), y...)
			var want, mag, ss, ssmag float64
			for i := range x {
				want += float64(x[i]) * float64(y[i])
				mag += math.Abs(float64(x[i]) * float64(y[i]))
				ss += float64(x[i]) * float64(x[i])
			}
			ssmag = ss
			if got := float64(Dot(x, y)); math.Abs(got-want) > tolF32*mag+1e-30 {
				t.Errorf("Dot n=%d = %v, want %v", n, got, want)
			}
			if got := float64(SumSq(x)); math.Abs(got-ss) > tolF32*ssmag+1e-30 {
				t.Errorf("SumSq n=%d = %v, want %v", n, got, ss)
			}
			if !sameBits(x0, xb) {
				t.Fatalf("Dot/SumSq n=%d modified x", n)
			}
			alpha := float32(rng.Float64()*4 - 2)
			Axpy(alpha, x, y)
			for i := range y {
				exact := float64(y0[i]) + float64(alpha)*float64(x[i])
				if math.Abs(float64(y[i])-exact) > 2*eps*(math.Abs(float64(y0[i]))+math.Abs(float64(alpha)*float64(x[i]))) {
					t.Fatalf("Axpy n=%d: y[%d] = %v, want %v", n, i, y[i], exact)
				}
			}
			checkGuards(t, "Axpy", yb, yo, n)
			if !sameBits(x0, xb) {
				t.Fatalf("Axpy n=%d modified x", n)
			}
			Scale(alpha, x)
			for i := range x {
				if want := alpha * x0[xo+i]; x[i] != want {
					t.Fatalf("Scale n=%d: x[%d] = %v, want %v", n, i, x[i], want)
				}
			}
			checkGuards(t, "Scale", xb, xo, n)
		}
		// NaN and Inf propagate.
		x := []float32{1, 2, float32(math.NaN()), 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17}
		if v := Dot(x, x); !math.IsNaN(float64(v)) {
			t.Errorf("Dot with NaN = %v", v)
		}
		x[2] = float32(math.Inf(1))
		if v := SumSq(x); !math.IsInf(float64(v), 1) {
			t.Errorf("SumSq with +Inf = %v", v)
		}
	})
}
