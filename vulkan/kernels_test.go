//go:build vulkan && (amd64 || arm64) && (linux || darwin || windows)

package vulkan

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// Every kernel runs on operands placed between guard regions: 256 bytes of
// a sentinel NaN pattern before and after the region the kernel may touch
// (256 bytes keeps the region's offset aligned on every device). After the
// kernel the guards must be intact, and outputs are compared with a plain
// Go float64 reference.

const (
	guardBytes = 256
	sentinel   = 0x7fc0beef // a quiet NaN no kernel produces
)

// guarded is a buffer holding an operand between two guard regions.
type guarded struct {
	b     *Buffer
	bytes int // the operand's bytes
}

// newGuarded allocates an operand of n bytes (rounded up to 4) between
// guards; the operand holds init (f32, u16 or u32 values), or sentinels.
func newGuarded(t *testing.T, c *Context, n int, init any) *guarded {
	t.Helper()
	n = (n + 3) &^ 3
	b, err := c.Alloc(n + 2*guardBytes)
	if err != nil {
		t.Fatal(err)
	}
	fill := make([]uint32, (n+2*guardBytes)/4)
	for i := range fill {
		fill[i] = sentinel
	}
	if err := b.UploadU32(0, fill); err != nil {
		t.Fatal(err)
	}
	switch v := init.(type) {
	case nil:
	case []float32:
		err = b.UploadF32(guardBytes/4, v)
	case []uint16:
		err = b.UploadU16(guardBytes/2, v)
	case []uint32:
		err = b.UploadU32(guardBytes/4, v)
	default:
		t.Fatalf("newGuarded: %T", init)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Free)
	return &guarded{b, n}
}

// span is the operand.
func (g *guarded) span() Span { return g.b.Bytes(guardBytes, g.bytes) }

// f32 downloads the operand after checking both guards.
func (g *guarded) f32(t *testing.T) []float32 {
	t.Helper()
	all := make([]uint32, (g.bytes+2*guardBytes)/4)
	if err := g.b.DownloadU32(0, all); err != nil {
		t.Fatal(err)
	}
	for i, v := range all {
		inside := i >= guardBytes/4 && i < (guardBytes+g.bytes)/4
		if !inside && v != sentinel {
			t.Fatalf("guard word %d (operand is words %d to %d) overwritten: 0x%08x", i, guardBytes/4, (guardBytes+g.bytes)/4-1, v)
		}
	}
	out := make([]float32, g.bytes/4)
	for i := range out {
		out[i] = math.Float32frombits(all[guardBytes/4+i])
	}
	return out
}

// compare checks got against ref with |got−ref| ≤ 1e-5·scale[i].
func compare(t *testing.T, what string, got []float32, ref, scale []float64) {
	t.Helper()
	bad := 0
	worst := 0.0
	for i := range ref {
		d := math.Abs(float64(got[i]) - ref[i])
		lim := 1e-5*scale[i] + 1e-30
		if !(d <= lim) { // NaN too
			if bad < 5 {
				t.Errorf("%s: element %d = %v, want %v (scale %g)", what, i, got[i], ref[i], scale[i])
			}
			bad++
		}
		if scale[i] > 0 {
			worst = max(worst, d/scale[i])
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d elements off", what, bad, len(ref))
	}
	t.Logf("%s: worst error %.2g of the scale", what, worst)
}

func randF32(rng *rand.Rand, n int, lo, hi float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = lo + (hi-lo)*rng.Float32()
	}
	return v
}

// randWeights returns n weights of type wt as stored (f32 bits or 16-bit
// bits) and as the f32 values the shader must widen them to.
func randWeights(rng *rand.Rand, n int, wt WeightType) (stored any, values []float32) {
	values = make([]float32, n)
	switch wt {
	case F32:
		v := randF32(rng, n, -1, 1)
		return v, v
	case BF16:
		h := make([]uint16, n)
		for i := range h {
			h[i] = uint16(math.Float32bits(2*rng.Float32()-1) >> 16)
			values[i] = math.Float32frombits(uint32(h[i]) << 16)
		}
		return h, values
	default:
		h := make([]uint16, n)
		for i := range h {
			switch rng.IntN(50) {
			case 0:
				h[i] = uint16(rng.IntN(0x400)) // subnormal
			case 1:
				h[i] = 0x8000 // -0
			default: // exponents 2⁻⁸ to 2¹
				h[i] = uint16(rng.IntN(2))<<15 | uint16(7+rng.IntN(10))<<10 | uint16(rng.IntN(0x400))
			}
			values[i] = halfToFloat(h[i])
		}
		return h, values
	}
}

// halfToFloat widens IEEE half bits.
func halfToFloat(h uint16) float32 {
	sign := float32(1)
	if h&0x8000 != 0 {
		sign = -1
	}
	e := int(h>>10) & 0x1f
	m := float64(h & 0x3ff)
	switch e {
	case 0:
		return sign * float32(math.Ldexp(m, -24))
	case 31:
		if m == 0 {
			return sign * float32(math.Inf(1))
		}
		return float32(math.NaN())
	}
	return sign * float32(math.Ldexp(1+m/1024, e-15))
}

// TestGEMM checks C (+)= A·Wᵀ for f32, bf16 and f16 weights on shapes that
// exercise every tile choice and every edge.
func TestGEMM(t *testing.T) {
	c := openContext(t, Options{})
	rng := rand.New(rand.NewPCG(5, 6))
	shapes := [][3]int{{1, 1, 1}, {1, 7, 3}, {3, 5, 7}, {16, 64, 16}, {17, 33, 65}, {32, 64, 32}, {33, 65, 17}, {64, 64, 64}, {80, 130, 257}, {128, 64, 20}, {130, 70, 40}}
	for _, wt := range []WeightType{F32, BF16, F16} {
		for _, s := range shapes {
			for _, accumulate := range []bool{false, true} {
				checkGEMM(t, c, rng, s[0], s[1], s[2], wt, accumulate)
			}
		}
	}
	t.Logf("pipelines built: %d", c.Live()["pipeline"])
}

// TestSplitBindings lowers the binding limit so that GEMM and Embed split
// their operands into pieces bound at unaligned element offsets (odd ones
// for 16-bit weights), and checks a too-large row is an error.
func TestSplitBindings(t *testing.T) {
	c := openContext(t, Options{})
	c.rangeLimit = 4096
	rng := rand.New(rand.NewPCG(19, 20))
	for _, wt := range []WeightType{F32, BF16, F16} {
		for _, f := range []func(){
			func() { checkGEMM(t, c, rng, 37, 150, 33, wt, true) },
			func() { checkGEMM(t, c, rng, 70, 9, 40, wt, false) },
			func() { checkEmbed(t, c, rng, 50, 101, wt) },
		} {
			before := c.dispatches
			f()
			if c.dispatches-before < 3 {
				t.Errorf("%s: %d dispatches, the operands were not split", wt, c.dispatches-before)
			}
		}
	}
	a, _ := c.Alloc(1 << 16)
	c.rangeLimit = 64
	if err := c.GEMM(a.All(), a.All(), a.All(), 1, 1, 100, F32, false); err == nil || !strings.Contains(err.Error(), "maxStorageBufferRange") {
		t.Errorf("a 400-byte row under a 64-byte limit: %v", err)
	} else {
		t.Log(err)
	}
}

// checkGEMM runs one GEMM between guards and compares it with float64.
func checkGEMM(t *testing.T, c *Context, rng *rand.Rand, m, n, k int, wt WeightType, accumulate bool) {
	t.Helper()
	name := fmt.Sprintf("%s/%dx%dx%d/acc=%v", wt, m, n, k, accumulate)
	a := randF32(rng, m*k, -1, 1)
	wStored, w := randWeights(rng, n*k, wt)
	var c0 []float32
	if accumulate {
		c0 = randF32(rng, m*n, -2, 2)
	}
	ga := newGuarded(t, c, 4*m*k, a)
	es, _ := wt.size()
	gw := newGuarded(t, c, int(es)*n*k, wStored)
	gc := newGuarded(t, c, 4*m*n, c0)
	if err := c.GEMM(gc.span(), ga.span(), gw.span(), m, n, k, wt, accumulate); err != nil {
		t.Fatal(err)
	}
	got := gc.f32(t)
	ref := make([]float64, m*n)
	scale := make([]float64, m*n)
	for i := range m {
		for j := range n {
			var sum, abs float64
			for kk := range k {
				p := float64(a[i*k+kk]) * float64(w[j*k+kk])
				sum += p
				abs += math.Abs(p)
			}
			if accumulate {
				sum += float64(c0[i*n+j])
				abs += math.Abs(float64(c0[i*n+j]))
			}
			ref[i*n+j], scale[i*n+j] = sum, abs
		}
	}
	compare(t, name, got, ref, scale)
}

// TestRMSNorm checks rows of several widths, out of place and in place.
func TestRMSNorm(t *testing.T) {
	c := openContext(t, Options{})
	rng := rand.New(rand.NewPCG(7, 8))
	const eps = 1e-5
	for _, n := range []int{1, 5, 256, 1000, 4099} {
		for _, inPlace := range []bool{false, true} {
			rows := 3
			x := randF32(rng, rows*n, -3, 3)
			w := randF32(rng, n, 0.5, 1.5)
			gx := newGuarded(t, c, 4*rows*n, x)
			gw := newGuarded(t, c, 4*n, w)
			gout := gx
			if !inPlace {
				gout = newGuarded(t, c, 4*rows*n, nil)
			}
			if err := c.RMSNorm(gout.span(), gx.span(), gw.span(), rows, n, eps); err != nil {
				t.Fatal(err)
			}
			got := gout.f32(t)
			ref := make([]float64, rows*n)
			scale := make([]float64, rows*n)
			for r := range rows {
				var ss float64
				for i := range n {
					ss += float64(x[r*n+i]) * float64(x[r*n+i])
				}
				inv := 1 / math.Sqrt(ss/float64(n)+eps)
				for i := range n {
					ref[r*n+i] = float64(x[r*n+i]) * inv * float64(w[i])
					scale[r*n+i] = math.Abs(ref[r*n+i])
				}
			}
			compare(t, fmt.Sprintf("n=%d in-place=%v", n, inPlace), got, ref, scale)
		}
	}
}

// TestElementwise checks SiLU·mul, the residual add and Mul, out of place and in
// place, on lengths around the workgroup size.
func TestElementwise(t *testing.T) {
	c := openContext(t, Options{})
	rng := rand.New(rand.NewPCG(9, 10))
	for _, n := range []int{1, 255, 256, 257, 100003} {
		for _, inPlace := range []bool{false, true} {
			g := randF32(rng, n, -8, 8)
			u := randF32(rng, n, -2, 2)
			gg := newGuarded(t, c, 4*n, g)
			gu := newGuarded(t, c, 4*n, u)
			out := gg
			if !inPlace {
				out = newGuarded(t, c, 4*n, nil)
			}
			if err := c.SiLUMul(out.span(), gg.span(), gu.span(), n); err != nil {
				t.Fatal(err)
			}
			ref := make([]float64, n)
			scale := make([]float64, n)
			for i := range n {
				x := float64(g[i])
				ref[i] = x / (1 + math.Exp(-x)) * float64(u[i])
				scale[i] = math.Abs(ref[i])
			}
			compare(t, fmt.Sprintf("silu·mul n=%d in-place=%v", n, inPlace), out.f32(t), ref, scale)

			a := randF32(rng, n, -2, 2)
			b := randF32(rng, n, -2, 2)
			ga := newGuarded(t, c, 4*n, a)
			gb := newGuarded(t, c, 4*n, b)
			out = gb
			if !inPlace {
				out = newGuarded(t, c, 4*n, nil)
			}
			if err := c.Add(out.span(), ga.span(), gb.span(), n); err != nil {
				t.Fatal(err)
			}
			for i := range n {
				ref[i] = float64(a[i]) + float64(b[i])
				scale[i] = math.Abs(float64(a[i])) + math.Abs(float64(b[i]))
			}
			compare(t, fmt.Sprintf("add n=%d in-place=%v", n, inPlace), out.f32(t), ref, scale)

			// Mul, as dropout uses it: a mask of 0 and 1/(1−p).
			mk := make([]float32, n)
			for i := range mk {
				if rng.Float32() >= 0.1 {
					mk[i] = 1 / 0.9
				}
			}
			ga = newGuarded(t, c, 4*n, a)
			gm := newGuarded(t, c, 4*n, mk)
			out = ga
			if !inPlace {
				out = newGuarded(t, c, 4*n, nil)
			}
			if err := c.Mul(out.span(), ga.span(), gm.span(), n); err != nil {
				t.Fatal(err)
			}
			for i := range n {
				ref[i] = float64(a[i]) * float64(mk[i])
				scale[i] = math.Abs(ref[i])
			}
			compare(t, fmt.Sprintf("mul n=%d in-place=%v", n, inPlace), out.f32(t), ref, scale)
		}
	}
}

// TestRope checks the rotate-half rotary embedding with Llama's angles.
func TestRope(t *testing.T) {
	c := openContext(t, Options{})
	rng := rand.New(rand.NewPCG(11, 12))
	for _, hd := range []int{2, 8, 64, 128} {
		tokens, heads := 5, 3
		half := hd / 2
		x := randF32(rng, tokens*heads*hd, -2, 2)
		cos := make([]float32, tokens*half)
		sin := make([]float32, tokens*half)
		for tk := range tokens {
			pos := 7 + 13*tk
			for i := range half {
				ang := float64(pos) * math.Pow(500000, -float64(2*i)/float64(hd))
				cos[tk*half+i], sin[tk*half+i] = float32(math.Cos(ang)), float32(math.Sin(ang))
			}
		}
		gx := newGuarded(t, c, 4*len(x), x)
		gc := newGuarded(t, c, 4*len(cos), cos)
		gs := newGuarded(t, c, 4*len(sin), sin)
		if err := c.Rope(gx.span(), gc.span(), gs.span(), tokens, heads, hd); err != nil {
			t.Fatal(err)
		}
		ref := make([]float64, len(x))
		scale := make([]float64, len(x))
		for tk := range tokens {
			for h := range heads {
				base := (tk*heads + h) * hd
				for i := range half {
					cs, sn := float64(cos[tk*half+i]), float64(sin[tk*half+i])
					x1, x2 := float64(x[base+i]), float64(x[base+i+half])
					ref[base+i] = x1*cs - x2*sn
					ref[base+i+half] = x2*cs + x1*sn
					s := math.Abs(x1*cs) + math.Abs(x2*sn) + math.Abs(x2*cs) + math.Abs(x1*sn)
					scale[base+i], scale[base+i+half] = s, s
				}
			}
		}
		compare(t, fmt.Sprintf("headDim=%d", hd), gx.f32(t), ref, scale)
	}
}

// TestEmbed gathers rows of f32, bf16 and f16 tables, with an odd width
// (rows starting mid-word) and ids out of range (rows of zeros).
func TestEmbed(t *testing.T) {
	c := openContext(t, Options{})
	rng := rand.New(rand.NewPCG(13, 14))
	for _, wt := range []WeightType{F32, BF16, F16} {
		for _, dim := range []int{1, 3, 64, 129} {
			checkEmbed(t, c, rng, 50, dim, wt)
		}
	}
}

// checkEmbed gathers rows of a random table between guards; the values
// must be the table's exactly.
func checkEmbed(t *testing.T, c *Context, rng *rand.Rand, vocab, dim int, wt WeightType) {
	t.Helper()
	stored, table := randWeights(rng, vocab*dim, wt)
	ids := []uint32{0, uint32(vocab - 1), 7, 7, uint32(vocab), 1 << 31, 13, 30, 45}
	es, _ := wt.size()
	gt := newGuarded(t, c, int(es)*vocab*dim, stored)
	gi := newGuarded(t, c, 4*len(ids), ids)
	out := newGuarded(t, c, 4*len(ids)*dim, nil)
	if err := c.Embed(out.span(), gt.span(), gi.span(), len(ids), dim, vocab, wt); err != nil {
		t.Fatal(err)
	}
	got := out.f32(t)
	for tk, id := range ids {
		for j := range dim {
			want := float32(0)
			if id < uint32(vocab) {
				want = table[int(id)*dim+j]
			}
			if g := got[tk*dim+j]; math.Float32bits(g) != math.Float32bits(want) {
				t.Fatalf("%s dim %d: token %d (id %d) element %d = %v, want %v", wt, dim, tk, id, j, g, want)
			}
		}
	}
}

// TestAttention checks causal attention over three packed sequences (one
// longer than a workgroup's chunk of keys) with grouped-query heads.
func TestAttention(t *testing.T) {
	c := openContext(t, Options{})
	rng := rand.New(rand.NewPCG(15, 16))
	for _, cfg := range []struct{ nHead, nKV, hd int }{{4, 2, 64}, {2, 2, 16}, {6, 1, 80}, {1, 1, 1}} {
		offsets := []uint32{0, 5, 6, 76}
		nSeq, tokens := len(offsets)-1, int(offsets[len(offsets)-1])
		q := randF32(rng, tokens*cfg.nHead*cfg.hd, -1, 1)
		k := randF32(rng, tokens*cfg.nKV*cfg.hd, -1, 1)
		v := randF32(rng, tokens*cfg.nKV*cfg.hd, -1, 1)
		gq := newGuarded(t, c, 4*len(q), q)
		gk := newGuarded(t, c, 4*len(k), k)
		gv := newGuarded(t, c, 4*len(v), v)
		goff := newGuarded(t, c, 4*len(offsets), offsets)
		out := newGuarded(t, c, 4*len(q), nil)
		if err := c.Attention(out.span(), gq.span(), gk.span(), gv.span(), goff.span(), tokens, nSeq, cfg.nHead, cfg.nKV, cfg.hd); err != nil {
			t.Fatal(err)
		}
		ref := make([]float64, len(q))
		scale := make([]float64, len(q))
		sc := 1 / math.Sqrt(float64(cfg.hd))
		group := cfg.nHead / cfg.nKV
		for s := range nSeq {
			for tk := int(offsets[s]); tk < int(offsets[s+1]); tk++ {
				for h := range cfg.nHead {
					kh := h / group
					qb := (tk*cfg.nHead + h) * cfg.hd
					var scores []float64
					mx := math.Inf(-1)
					for j := int(offsets[s]); j <= tk; j++ {
						kb := (j*cfg.nKV + kh) * cfg.hd
						var d float64
						for e := range cfg.hd {
							d += float64(q[qb+e]) * float64(k[kb+e])
						}
						scores = append(scores, d*sc)
						mx = max(mx, d*sc)
					}
					var sum float64
					for i := range scores {
						scores[i] = math.Exp(scores[i] - mx)
						sum += scores[i]
					}
					for e := range cfg.hd {
						var o, abs float64
						for i, p := range scores {
							vv := float64(v[((int(offsets[s])+i)*cfg.nKV+kh)*cfg.hd+e])
							o += p / sum * vv
							abs += p / sum * math.Abs(vv)
						}
						ref[qb+e], scale[qb+e] = o, abs
					}
				}
			}
		}
		compare(t, fmt.Sprintf("heads %d/%d headDim %d", cfg.nHead, cfg.nKV, cfg.hd), out.f32(t), ref, scale)
	}
}

// BenchmarkGEMM times C[80×n] = A[80×4096]·Wᵀ, W uploaded once, for the
// projections of a Llama-3-8B layer (n = 4096, 14336) with f32 and bf16
// weights, and reports GFLOP/s (2·m·n·k per dispatch).
func BenchmarkGEMM(b *testing.B) {
	c := openContext(b, Options{})
	rng := rand.New(rand.NewPCG(17, 18))
	const m, k = 80, 4096
	for _, n := range []int{4096, 14336} {
		for _, wt := range []WeightType{F32, BF16} {
			b.Run(fmt.Sprintf("m=%d,k=%d,n=%d,%s", m, k, n, wt), func(b *testing.B) {
				es, _ := wt.size()
				a, _ := c.Alloc(4 * m * k)
				w, err := c.Alloc(int(es) * n * k)
				if err != nil {
					b.Fatal(err)
				}
				out, _ := c.Alloc(4 * m * n)
				defer a.Free()
				defer w.Free()
				defer out.Free()
				if err := a.UploadF32(0, randF32(rng, m*k, -1, 1)); err != nil {
					b.Fatal(err)
				}
				if wt == F32 {
					err = w.UploadF32(0, randF32(rng, n*k, -1, 1))
				} else {
					h := make([]uint16, n*k)
					for i := range h {
						h[i] = uint16(rng.Uint32())&0x3fff | 0x3c00
					}
					err = w.UploadU16(0, h)
				}
				if err != nil {
					b.Fatal(err)
				}
				// One untimed dispatch builds the pipeline.
				if err := c.GEMM(out.All(), a.All(), w.All(), m, n, k, wt, false); err != nil {
					b.Fatal(err)
				}
				if err := c.Sync(); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				start := time.Now()
				for range b.N {
					if err := c.GEMM(out.All(), a.All(), w.All(), m, n, k, wt, false); err != nil {
						b.Fatal(err)
					}
					if err := c.Sync(); err != nil {
						b.Fatal(err)
					}
				}
				el := time.Since(start).Seconds()
				b.ReportMetric(2*float64(m)*float64(n)*float64(k)*float64(b.N)/el/1e9, "GFLOP/s")
			})
		}
	}
}
