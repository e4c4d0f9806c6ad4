package quant

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

const guard = float32(-12345.678)

func normalW(seed uint64, n int, scale float64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 7))
	w := make([]float32, n)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * scale)
	}
	return w
}

// TestSemantics pins the corner cases of bitsandbytes' CUDA trees without
// the Python peer: ties go to the lower code, FP4 marks tiny negatives with
// the sign bit, a zero block gives code 0, the high nibble comes first.
func TestSemantics(t *testing.T) {
	for _, c := range []struct {
		kind Kind
		x    float32
		code byte
	}{
		{NF4, 1, 15}, {NF4, -1, 0}, {NF4, 0, 7}, {NF4, float32(math.Copysign(0, -1)), 7},
		{NF4, 0.8614784181118011, 14}, {NF4, math.Nextafter32(0.8614784181118011, 2), 15},
		{NF4, -0.045525018125772476, 6}, {NF4, float32(math.NaN()), 0},
		{FP4, 1, 3}, {FP4, -1, 11}, {FP4, 0, 0}, {FP4, -1e-6, 8}, {FP4, 1e-6, 0},
		{FP4, fp4P7, 0}, {FP4, math.Nextafter32(fp4P7, 1), 1},
		{FP4, float32(7.0 / 12), 2}, // the true 0.5/0.667 midpoint lies above the literal 0.583333
		{FP4, 0.583333, 5}, {FP4, -0.583333, 13}, {FP4, 0.29166667, 7}, {FP4, float32(math.NaN()), 0},
	} {
		if got := code(c.kind, c.x); got != c.code {
			t.Errorf("%s code of %g = %d, want %d", c.kind, c.x, got, c.code)
		}
	}
	p, a := Quantize(NF4, []float32{1, -1, 0.5, 0, 0.25}, 64)
	if len(p) != 3 || p[0] != 0xf0 || p[2] != 0xa7 || a[0] != 1 {
		t.Errorf("packing: % x absmax %v, want f0 .. a7 and 1", p, a)
	}
	p, a = Quantize(NF4, make([]float32, 64+3), 64)
	for i, b := range p {
		if b != 0 {
			t.Errorf("zero blocks: byte %d = %02x, want 00 (NaN scale gives code 0)", i, b)
		}
	}
	if a[0] != 0 || a[1] != 0 {
		t.Errorf("zero blocks: absmax %v", a)
	}
	d := make([]float32, 67)
	Dequantize(NF4, p, a, 67, 64, d)
	for i, v := range d {
		if v != 0 {
			t.Errorf("zero block dequantised %d = %g", i, v)
		}
	}
	for _, bs := range []int{16, 48, 8192, 0, -64} {
		if ValidBlocksize(bs) {
			t.Errorf("blocksize %d accepted", bs)
		}
	}
	for _, bs := range []int{32, 64, 128, 256, 512, 1024, 2048, 4096} {
		if !ValidBlocksize(bs) {
			t.Errorf("blocksize %d refused", bs)
		}
	}
	func() {
		defer func() {
			if r := recover(); r == nil || !strings.Contains(r.(string), "blocksize 48") {
				t.Errorf("Quantize with blocksize 48: panic %v", r)
			}
		}()
		Quantize(NF4, make([]float32, 10), 48)
	}()
}

// TestRounding checks the bf16 and fp16 rounding against known values.
func TestRounding(t *testing.T) {
	for _, c := range []struct {
		dt   DType
		x    float32
		want float32
	}{
		{BF16, 1 + 1.0/256, 1},           // tie to even
		{BF16, 1 + 3.0/256, 1 + 4.0/256}, // tie to even, upwards
		{BF16, 1 + 1.0/256 + 1.0/65536, 1 + 1.0/128},
		{F16, 1 + 1.0/2048, 1}, // tie to even
		{F16, 1 + 3.0/2048, 1 + 4.0/2048},
		{F16, 65504, 65504},
		{F16, 65519.99, 65504},
		{F16, 65520, float32(math.Inf(1))},
		{F16, -70000, float32(math.Inf(-1))},
		{F16, 1e-8, 0},                                  // below half the least subnormal
		{F16, 6e-8, 5.9604645e-08},                      // least subnormal 2^-24
		{F16, 3 * 5.9604645e-08 / 2, 2 * 5.9604645e-08}, // subnormal tie to even
		{F32, 0.1, 0.1},
	} {
		if got := c.dt.Round(c.x); got != c.want {
			t.Errorf("%s round %g = %g, want %g", c.dt, c.x, got, c.want)
		}
	}
	if got := F16.Round(float32(math.Copysign(1e-9, -1))); !math.Signbit(float64(got)) || got != 0 {
		t.Errorf("fp16 of -1e-9 = %g, want -0", got)
	}
}

// nearestGap is the distance from s to the nearest code of kind.
func nearestGap(kind Kind, s float32) float64 {
	cb := Codebook(kind)
	best := math.Inf(1)
	for _, c := range cb {
		best = math.Min(best, math.Abs(float64(s)-float64(c)))
	}
	return best
}

// TestRoundTripError checks Dequantize(Quantize(w)): each value's code is
// the nearest code of its scaled value to within 1e-6 (the trees' pivots
// are float32 literals), so the error is at most half the widest gap of
// the code times absmax; absmax is the block's largest magnitude, kept
// exactly; and dst beyond n is untouched.
func TestRoundTripError(t *testing.T) {
	for _, kind := range []Kind{NF4, FP4} {
		for _, bs := range []int{32, 64, 256} {
			n := 64*37 + 5
			w := normalW(uint64(bs), n, 0.03)
			p, a := Quantize(kind, w, bs)
			d := make([]float32, n+3)
			d[n], d[n+1], d[n+2] = guard, guard, guard
			Dequantize(kind, p, a, n, bs, d)
			if d[n] != guard || d[n+1] != guard || d[n+2] != guard {
				t.Fatalf("%s: Dequantize wrote past n", kind)
			}
			cb := Codebook(kind)
			halfGap := 0.0
			sorted := append([]float32(nil), cb[:]...)
			for i := range sorted {
				for j := range sorted {
					if sorted[j] > sorted[i] {
						gap := float64(sorted[j] - sorted[i])
						inner := false
						for _, c := range sorted {
							if c > sorted[i] && c < sorted[j] {
								inner = true
							}
						}
						if !inner {
							halfGap = math.Max(halfGap, gap/2)
						}
					}
				}
			}
			var worst float64
			for i := range w {
				am := a[i/bs]
				var m float32
				for _, v := range w[i/bs*bs : min(i/bs*bs+bs, n)] {
					m = max(m, float32(math.Abs(float64(v))))
				}
				if am != m {
					t.Fatalf("%s bs %d: absmax of block %d = %g, want %g", kind, bs, i/bs, am, m)
				}
				s := w[i] * (1 / am)
				got := math.Abs(float64(s) - float64(d[i]/am))
				if got > nearestGap(kind, s)+1e-6 {
					t.Fatalf("%s bs %d: value %d (scaled %g) decoded %g, a nearer code exists", kind, bs, i, s, d[i]/am)
				}
				e := math.Abs(float64(w[i]-d[i])) / float64(am)
				worst = math.Max(worst, e)
			}
			if worst > halfGap+1e-6 {
				t.Errorf("%s bs %d: worst error %g·absmax exceeds half the widest gap %g", kind, bs, worst, halfGap)
			}
		}
	}
}

// TestMulT checks y = x·Wᵀ against the dequantised weight multiplied in
// float64, for shapes whose rows straddle blocks, both the serial and the
// parallel paths, every DType; and that y beyond m×Rows is untouched.
func TestMulT(t *testing.T) {
	for _, c := range []struct {
		m, rows, cols, bs int
		kind              Kind
		dt                DType
		double            bool
	}{
		{1, 3, 5, 32, NF4, F32, false},
		{3, 7, 100, 64, FP4, BF16, false},
		{5, 96, 320, 64, NF4, BF16, true}, // parallel
		{4, 130, 257, 128, FP4, F16, false},
		{80, 64, 64, 64, NF4, BF16, false},
	} {
		w := normalW(uint64(c.rows*c.cols), c.rows*c.cols, 0.05)
		tt, err := NewTensor(c.kind, w, c.rows, c.cols, c.bs, c.dt, c.double)
		if err != nil {
			t.Fatal(err)
		}
		x := normalW(uint64(c.m), c.m*c.cols, 1)
		y := make([]float32, c.m*c.rows+4)
		for i := c.m * c.rows; i < len(y); i++ {
			y[i] = guard
		}
		tt.MulT(y, x, c.m)
		deq := make([]float32, c.rows*c.cols)
		tt.Dequantize(deq)
		for i := range c.m {
			for r := range c.rows {
				var s, mag float64
				for k := range c.cols {
					p := float64(x[i*c.cols+k]) * float64(deq[r*c.cols+k])
					s += p
					mag += math.Abs(p)
				}
				if got := float64(y[i*c.rows+r]); math.Abs(got-s) > 1e-5*mag+1e-30 {
					t.Fatalf("%+v: y[%d][%d] = %g, float64 %g", c, i, r, got, s)
				}
			}
		}
		for i := c.m * c.rows; i < len(y); i++ {
			if y[i] != guard {
				t.Fatalf("%+v: MulT wrote y[%d] past m×Rows", c, i)
			}
		}
		row := make([]float32, c.cols+2)
		row[c.cols], row[c.cols+1] = guard, guard
		tt.DequantizeRow(c.rows-1, row)
		for k := range c.cols {
			if row[k] != deq[(c.rows-1)*c.cols+k] {
				t.Fatalf("%+v: DequantizeRow differs at %d", c, k)
			}
		}
		if row[c.cols] != guard || row[c.cols+1] != guard {
			t.Fatalf("%+v: DequantizeRow wrote past Cols", c)
		}
		if c.dt != F32 {
			for i, v := range deq {
				if c.dt.Round(v) != v {
					t.Fatalf("%+v: dequantised %d = %g not a %s value", c, i, v, c.dt)
				}
			}
		}
	}
}

// BenchmarkMulT compares the 4-bit product with dequantising the whole
// weight first and multiplying in float32, at the TLI batch (M = 80) and
// for generation (M = 1), on a 1024×1024 NF4 weight.
func BenchmarkMulT(b *testing.B) {
	const rows, cols = 1024, 1024
	w := normalW(1, rows*cols, 0.02)
	tt, err := NewTensor(NF4, w, rows, cols, 64, BF16, false)
	if err != nil {
		b.Fatal(err)
	}
	for _, m := range []int{1, 80} {
		x := normalW(2, m*cols, 1)
		y := make([]float32, m*rows)
		b.Run("4bit/M="+itoa(m), func(b *testing.B) {
			b.SetBytes(int64(len(tt.Packed)))
			for b.Loop() {
				tt.MulT(y, x, m)
			}
		})
		b.Run("dequant+f32/M="+itoa(m), func(b *testing.B) {
			deq := make([]float32, rows*cols)
			b.SetBytes(int64(len(tt.Packed)))
			for b.Loop() {
				tt.Dequantize(deq)
				for i := range m {
					for r := range rows {
						y[i*rows+r] = dot(x[i*cols:(i+1)*cols], deq[r*cols:(r+1)*cols])
					}
				}
			}
		})
	}
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}
