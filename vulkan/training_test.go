//go:build vulkan && (amd64 || arm64) && (linux || darwin || windows)

package vulkan

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// The training kernels are checked like the forward ones (kernels_test.go):
// operands between guards, outputs against float64 references with a
// tolerance of 1e-5 of the sum of the absolute values of the terms.

// TestGEMMNN checks C (+)= A·W with W [k×n] in f32, bf16 and f16 (the
// backward dX = dY·W) on shapes that exercise every tile choice and edge.
func TestGEMMNN(t *testing.T) {
	c := openContext(t, Options{})
	rng := rand.New(rand.NewPCG(31, 32))
	shapes := [][3]int{{1, 1, 1}, {1, 7, 3}, {3, 5, 7}, {16, 64, 16}, {17, 33, 65}, {33, 65, 17}, {64, 64, 64}, {80, 130, 257}, {130, 70, 40}}
	for _, wt := range []WeightType{F32, BF16, F16} {
		for _, s := range shapes {
			for _, accumulate := range []bool{false, true} {
				checkGEMMKN(t, c, rng, s[0], s[1], s[2], wt, false, accumulate)
			}
		}
	}
}

// TestGEMMTN checks C (+)= Aᵀ·B, f32 (the weight gradient dW = dYᵀ·X).
func TestGEMMTN(t *testing.T) {
	c := openContext(t, Options{})
	rng := rand.New(rand.NewPCG(33, 34))
	shapes := [][3]int{{1, 1, 1}, {1, 7, 3}, {3, 5, 7}, {8, 64, 80}, {17, 33, 65}, {33, 65, 17}, {64, 64, 64}, {130, 16, 200}, {200, 8, 33}}
	for _, s := range shapes {
		for _, accumulate := range []bool{false, true} {
			checkGEMMKN(t, c, rng, s[0], s[1], s[2], F32, true, accumulate)
		}
	}
}

// TestSplitBindingsBackward lowers the binding limit so that GEMMNN (every
// weight type) and GEMMTN split their operands into blocks of rows and of
// k, accumulating over the k blocks, and checks a too-large row is an
// error.
func TestSplitBindingsBackward(t *testing.T) {
	c := openContext(t, Options{})
	c.rangeLimit = 4096
	rng := rand.New(rand.NewPCG(35, 36))
	for _, f := range []func(){
		func() { checkGEMMKN(t, c, rng, 37, 9, 150, F32, false, true) },
		func() { checkGEMMKN(t, c, rng, 37, 9, 150, BF16, false, false) },
		func() { checkGEMMKN(t, c, rng, 70, 11, 301, F16, false, true) },
		func() { checkGEMMKN(t, c, rng, 9, 13, 150, F32, true, false) },
		func() { checkGEMMKN(t, c, rng, 300, 3, 40, F32, true, true) },
		func() { checkGEMMKN(t, c, rng, 70, 40, 5, F32, true, true) }, // blocks of out's rows: columns of a from an offset
	} {
		before := c.dispatches
		f()
		if c.dispatches-before < 3 {
			t.Errorf("%d dispatches, the operands were not split", c.dispatches-before)
		}
	}
	a, _ := c.Alloc(1 << 16)
	c.rangeLimit = 64
	if err := c.GEMMNN(a.All(), a.All(), a.All(), 1, 100, 1, F32, false); err == nil || !strings.Contains(err.Error(), "maxStorageBufferRange") {
		t.Errorf("a 400-byte row under a 64-byte limit: %v", err)
	}
	if err := c.GEMMTN(a.All(), a.All(), a.All(), 100, 1, 1, false); err == nil || !strings.Contains(err.Error(), "maxStorageBufferRange") {
		t.Errorf("a 400-byte row under a 64-byte limit: %v", err)
	}
}

// checkGEMMKN runs GEMMNN (ta false: a [m×k]) or GEMMTN (ta: a [k×m])
// between guards and compares with float64.
func checkGEMMKN(t *testing.T, c *Context, rng *rand.Rand, m, n, k int, wt WeightType, ta, accumulate bool) {
	t.Helper()
	kind := "NN"
	if ta {
		kind = "TN"
	}
	name := fmt.Sprintf("%s %s/%dx%dx%d/acc=%v", kind, wt, m, n, k, accumulate)
	a := randF32(rng, m*k, -1, 1)
	bStored, b := randWeights(rng, k*n, wt)
	var c0 []float32
	if accumulate {
		c0 = randF32(rng, m*n, -2, 2)
	}
	ga := newGuarded(t, c, 4*m*k, a)
	es, _ := wt.size()
	gb := newGuarded(t, c, int(es)*k*n, bStored)
	gc := newGuarded(t, c, 4*m*n, c0)
	var err error
	if ta {
		err = c.GEMMTN(gc.span(), ga.span(), gb.span(), m, n, k, accumulate)
	} else {
		err = c.GEMMNN(gc.span(), ga.span(), gb.span(), m, n, k, wt, accumulate)
	}
	if err != nil {
		t.Fatal(err)
	}
	got := gc.f32(t)
	ref := make([]float64, m*n)
	scale := make([]float64, m*n)
	for i := range m {
		for j := range n {
			var sum, abs float64
			for kk := range k {
				av := a[i*k+kk]
				if ta {
					av = a[kk*m+i]
				}
				p := float64(av) * float64(b[kk*n+j])
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

// TestRMSNormBackward runs RMSNormSave (checking the saved reciprocal RMS
// and that the output equals RMSNorm's) and RMSNormBackward written, added
// and in place, against float64.
func TestRMSNormBackward(t *testing.T) {
	c := openContext(t, Options{})
	rng := rand.New(rand.NewPCG(37, 38))
	const eps = 1e-5
	for _, n := range []int{1, 5, 256, 1000, 4099} {
		for _, mode := range []string{"write", "accumulate", "in-place"} {
			rows := 3
			x := randF32(rng, rows*n, -3, 3)
			w := randF32(rng, n, 0.5, 1.5)
			dy := randF32(rng, rows*n, -1, 1)
			gx, gw := newGuarded(t, c, 4*rows*n, x), newGuarded(t, c, 4*n, w)
			gout, gr := newGuarded(t, c, 4*rows*n, nil), newGuarded(t, c, 4*rows, nil)
			plain := newGuarded(t, c, 4*rows*n, nil)
			if err := c.RMSNormSave(gout.span(), gr.span(), gx.span(), gw.span(), rows, n, eps); err != nil {
				t.Fatal(err)
			}
			if err := c.RMSNorm(plain.span(), gx.span(), gw.span(), rows, n, eps); err != nil {
				t.Fatal(err)
			}
			o1, o2 := gout.f32(t), plain.f32(t)
			for i := range o1 {
				if math.Float32bits(o1[i]) != math.Float32bits(o2[i]) {
					t.Fatalf("n=%d: RMSNormSave's output %d = %v, RMSNorm's %v", n, i, o1[i], o2[i])
				}
			}
			var dx0 []float32
			if mode == "accumulate" {
				dx0 = randF32(rng, rows*n, -1, 1)
			}
			gdy := newGuarded(t, c, 4*rows*n, dy)
			gdx := gdy
			if mode != "in-place" {
				gdx = newGuarded(t, c, 4*rows*n, dx0)
			}
			if err := c.RMSNormBackward(gdx.span(), gdy.span(), gx.span(), gw.span(), gr.span(), rows, n, mode == "accumulate"); err != nil {
				t.Fatal(err)
			}
			rRef := make([]float64, rows)
			rScale := make([]float64, rows)
			ref := make([]float64, rows*n)
			scale := make([]float64, rows*n)
			for r := range rows {
				var ss, s, sa float64
				for i := range n {
					xv := float64(x[r*n+i])
					ss += xv * xv
					s += float64(w[i]) * float64(dy[r*n+i]) * xv
					sa += math.Abs(float64(w[i]) * float64(dy[r*n+i]) * xv)
				}
				rr := 1 / math.Sqrt(ss/float64(n)+eps)
				rRef[r], rScale[r] = rr, rr
				for i := range n {
					xv, g := float64(x[r*n+i]), float64(w[i])*float64(dy[r*n+i])
					ref[r*n+i] = rr * (g - xv*rr*rr*s/float64(n))
					scale[r*n+i] = rr*math.Abs(g) + math.Abs(xv)*rr*rr*rr*sa/float64(n)
					if dx0 != nil {
						ref[r*n+i] += float64(dx0[r*n+i])
						scale[r*n+i] += math.Abs(float64(dx0[r*n+i]))
					}
				}
			}
			compare(t, fmt.Sprintf("rrms n=%d", n), gr.f32(t), rRef, rScale)
			compare(t, fmt.Sprintf("dx n=%d %s", n, mode), gdx.f32(t), ref, scale)
		}
	}
	b, _ := c.Alloc(4096)
	if err := c.RMSNormSave(b.All(), Span{}, b.All(), b.All(), 1, 4, eps); err == nil {
		t.Error("RMSNormSave without rrms: no error")
	}
}

// TestSiLUMulBackward checks dgate and dup out of place and in place
// (dgate = gate, dup = up), over gates wide enough that σ saturates.
func TestSiLUMulBackward(t *testing.T) {
	c := openContext(t, Options{})
	rng := rand.New(rand.NewPCG(39, 40))
	for _, n := range []int{1, 255, 257, 100003} {
		for _, inPlace := range []bool{false, true} {
			g := randF32(rng, n, -30, 30)
			u := randF32(rng, n, -2, 2)
			dy := randF32(rng, n, -1, 1)
			gg, gu, gdy := newGuarded(t, c, 4*n, g), newGuarded(t, c, 4*n, u), newGuarded(t, c, 4*n, dy)
			dg, du := gg, gu
			if !inPlace {
				dg, du = newGuarded(t, c, 4*n, nil), newGuarded(t, c, 4*n, nil)
			}
			if err := c.SiLUMulBackward(dg.span(), du.span(), gdy.span(), gg.span(), gu.span(), n); err != nil {
				t.Fatal(err)
			}
			refG, refU := make([]float64, n), make([]float64, n)
			scG, scU := make([]float64, n), make([]float64, n)
			for i := range n {
				x, up, d := float64(g[i]), float64(u[i]), float64(dy[i])
				s := 1 / (1 + math.Exp(-x))
				refU[i], scU[i] = d*x*s, math.Abs(d*x*s)
				refG[i] = d * up * s * (1 + x*(1-s))
				scG[i] = math.Abs(d*up*s) * (1 + math.Abs(x*(1-s)))
			}
			compare(t, fmt.Sprintf("dgate n=%d in-place=%v", n, inPlace), dg.f32(t), refG, scG)
			compare(t, fmt.Sprintf("dup n=%d in-place=%v", n, inPlace), du.f32(t), refU, scU)
		}
	}
}

// TestRopeBackward checks RopeBackward against the rotation by the
// opposite angle in float64, and that it undoes Rope.
func TestRopeBackward(t *testing.T) {
	c := openContext(t, Options{})
	rng := rand.New(rand.NewPCG(41, 42))
	for _, hd := range []int{2, 8, 64, 128} {
		tokens, heads := 5, 3
		half := hd / 2
		x := randF32(rng, tokens*heads*hd, -2, 2)
		cos := make([]float32, tokens*half)
		sin := make([]float32, tokens*half)
		for tk := range tokens {
			for i := range half {
				ang := float64(7+13*tk) * math.Pow(500000, -float64(2*i)/float64(hd))
				cos[tk*half+i], sin[tk*half+i] = float32(math.Cos(ang)), float32(math.Sin(ang))
			}
		}
		gx, gc, gs := newGuarded(t, c, 4*len(x), x), newGuarded(t, c, 4*len(cos), cos), newGuarded(t, c, 4*len(sin), sin)
		if err := c.RopeBackward(gx.span(), gc.span(), gs.span(), tokens, heads, hd); err != nil {
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
					ref[base+i] = x1*cs + x2*sn
					ref[base+i+half] = x2*cs - x1*sn
					s := math.Abs(x1*cs) + math.Abs(x2*sn) + math.Abs(x2*cs) + math.Abs(x1*sn)
					scale[base+i], scale[base+i+half] = s, s
				}
			}
		}
		compare(t, fmt.Sprintf("backward headDim=%d", hd), gx.f32(t), ref, scale)
		if err := c.Rope(gx.span(), gc.span(), gs.span(), tokens, heads, hd); err != nil {
			t.Fatal(err)
		}
		for i := range ref {
			ref[i], scale[i] = float64(x[i]), 4*scale[i]
		}
		compare(t, fmt.Sprintf("Rope∘RopeBackward headDim=%d", hd), gx.f32(t), ref, scale)
	}
	b, _ := c.Alloc(4096)
	if err := c.RopeBackward(b.All(), b.All(), b.All(), 1, 1, 3); err == nil || !strings.Contains(err.Error(), "RopeBackward") {
		t.Errorf("odd headDim: %v", err)
	}
}

// attnGrad is the float64 reference of attention's gradients and of the
// size of their terms (the tolerance's scale).
type attnGrad struct {
	dq, dk, dv, sq, sk, sv []float64
}

// attentionGradRef computes the gradients of causal packed attention (as
// Attention) with the softmax's Jacobian: P = softmax(s), dP_j = dout·v_j,
// dS_j = P_j·(dP_j − Σ_i P_i·dP_i), dq = scale·Σ dS_j·k_j, dk_j +=
// scale·dS_j·q, dv_j += P_j·dout. A token outside every sequence attends
// to itself only.
func attentionGradRef(q, k, v, dout []float32, offsets []uint32, tokens, nHead, nKV, hd int) attnGrad {
	g := attnGrad{make([]float64, len(q)), make([]float64, len(k)), make([]float64, len(v)), make([]float64, len(q)), make([]float64, len(k)), make([]float64, len(v))}
	sc := 1 / math.Sqrt(float64(hd))
	group := nHead / nKV
	for t := range tokens {
		st := t // a token outside every sequence attends to itself
		for s := range len(offsets) - 1 {
			if int(offsets[s]) <= t && t < int(offsets[s+1]) {
				st = int(offsets[s])
				break
			}
		}
		{
			for h := range nHead {
				kh := h / group
				qb := (t*nHead + h) * hd
				n := t - st + 1
				P, dP, aP := make([]float64, n), make([]float64, n), make([]float64, n)
				mx := math.Inf(-1)
				for i := range n {
					kb := ((st+i)*nKV + kh) * hd
					var d, dp, ap float64
					for e := range hd {
						d += float64(q[qb+e]) * float64(k[kb+e])
						dp += float64(dout[qb+e]) * float64(v[kb+e])
						ap += math.Abs(float64(dout[qb+e]) * float64(v[kb+e]))
					}
					P[i], dP[i], aP[i] = d*sc, dp, ap
					mx = max(mx, d*sc)
				}
				var sum float64
				for i := range P {
					P[i] = math.Exp(P[i] - mx)
					sum += P[i]
				}
				var D, aD float64
				for i := range P {
					P[i] /= sum
					D += P[i] * dP[i]
					aD += P[i] * aP[i]
				}
				for i := range n {
					kb := ((st+i)*nKV + kh) * hd
					ds, ads := P[i]*(dP[i]-D), P[i]*(aP[i]+aD)
					for e := range hd {
						g.dq[qb+e] += sc * ds * float64(k[kb+e])
						g.sq[qb+e] += sc * ads * math.Abs(float64(k[kb+e]))
						g.dk[kb+e] += sc * ds * float64(q[qb+e])
						g.sk[kb+e] += sc * ads * math.Abs(float64(q[qb+e]))
						g.dv[kb+e] += P[i] * float64(dout[qb+e])
						g.sv[kb+e] += P[i] * math.Abs(float64(dout[qb+e]))
					}
				}
			}
		}
	}
	return g
}

// runAttentionBackward runs AttentionBackward between guards and returns
// dq, dk, dv.
func runAttentionBackward(t *testing.T, c *Context, q, k, v, dout []float32, offsets []uint32, tokens, nHead, nKV, hd int) (dq, dk, dv []float32) {
	t.Helper()
	gq, gk, gv, gdo := newGuarded(t, c, 4*len(q), q), newGuarded(t, c, 4*len(k), k), newGuarded(t, c, 4*len(v), v), newGuarded(t, c, 4*len(dout), dout)
	goff := newGuarded(t, c, 4*len(offsets), offsets)
	gdq, gdk, gdv := newGuarded(t, c, 4*len(q), nil), newGuarded(t, c, 4*len(k), nil), newGuarded(t, c, 4*len(v), nil)
	gst := newGuarded(t, c, 8*tokens*nHead, nil)
	if err := c.AttentionBackward(gdq.span(), gdk.span(), gdv.span(), gst.span(), gdo.span(), gq.span(), gk.span(), gv.span(), goff.span(), tokens, len(offsets)-1, nHead, nKV, hd); err != nil {
		t.Fatal(err)
	}
	gst.f32(t) // guards
	return gdq.f32(t), gdk.f32(t), gdv.f32(t)
}

// TestAttentionBackward checks dq, dk and dv against the float64 softmax
// Jacobian over three packed sequences (one longer than a workgroup's
// chunk of keys and queries) with grouped-query heads, and with tokens
// after the last sequence (attending to themselves only). It also checks
// that a device allowing fewer storage buffers per stage than the kernel
// binds gets an error, not a broken pipeline.
func TestAttentionBackward(t *testing.T) {
	c := openContext(t, Options{})
	rng := rand.New(rand.NewPCG(43, 44))
	for _, cfg := range []struct{ nHead, nKV, hd int }{{4, 2, 64}, {2, 2, 16}, {6, 1, 80}, {1, 1, 1}, {2, 1, 130}} {
		offsets := []uint32{0, 5, 6, 76, 150}
		tokens := int(offsets[len(offsets)-1])
		if cfg.nHead == 1 {
			tokens += 3 // tokens outside every sequence
		}
		q := randF32(rng, tokens*cfg.nHead*cfg.hd, -1, 1)
		k := randF32(rng, tokens*cfg.nKV*cfg.hd, -1, 1)
		v := randF32(rng, tokens*cfg.nKV*cfg.hd, -1, 1)
		dout := randF32(rng, tokens*cfg.nHead*cfg.hd, -1, 1)
		dq, dk, dv := runAttentionBackward(t, c, q, k, v, dout, offsets, tokens, cfg.nHead, cfg.nKV, cfg.hd)
		g := attentionGradRef(q, k, v, dout, offsets, tokens, cfg.nHead, cfg.nKV, cfg.hd)
		name := fmt.Sprintf("heads %d/%d headDim %d tokens %d", cfg.nHead, cfg.nKV, cfg.hd, tokens)
		compare(t, "dq "+name, dq, g.dq, g.sq)
		compare(t, "dk "+name, dk, g.dk, g.sk)
		compare(t, "dv "+name, dv, g.dv, g.sv)
	}
	c.Info.MaxStorageBuffersPerStage = 7
	defer func() { c.Info.MaxStorageBuffersPerStage = 8 }()
	b, _ := c.Alloc(1 << 12)
	err := c.AttentionBackward(b.All(), b.All(), b.All(), b.All(), b.All(), b.All(), b.All(), b.All(), b.All(), 1, 1, 1, 1, 1)
	if err == nil || !strings.Contains(err.Error(), "maxPerStageDescriptorStorageBuffers") {
		t.Errorf("8 bindings on a device allowing 7: %v", err)
	}
}

// TestAttentionBackwardFD checks the gradients of a tiny case by central
// differences of the forward kernel: L = Σ dout·Attention(q, k, v), each
// element of q, k, v moved by ±h.
func TestAttentionBackwardFD(t *testing.T) {
	c := openContext(t, Options{})
	rng := rand.New(rand.NewPCG(45, 46))
	const nHead, nKV, hd, h = 4, 2, 4, 1e-2
	offsets := []uint32{0, 3, 4, 6}
	tokens := int(offsets[len(offsets)-1])
	q := randF32(rng, tokens*nHead*hd, -1, 1)
	k := randF32(rng, tokens*nKV*hd, -1, 1)
	v := randF32(rng, tokens*nKV*hd, -1, 1)
	dout := randF32(rng, tokens*nHead*hd, -1, 1)
	dq, dk, dv := runAttentionBackward(t, c, q, k, v, dout, offsets, tokens, nHead, nKV, hd)
	gq, gk, gv := newGuarded(t, c, 4*len(q), q), newGuarded(t, c, 4*len(k), k), newGuarded(t, c, 4*len(v), v)
	goff, out := newGuarded(t, c, 4*len(offsets), offsets), newGuarded(t, c, 4*len(q), nil)
	loss := func() float64 {
		if err := c.Attention(out.span(), gq.span(), gk.span(), gv.span(), goff.span(), tokens, len(offsets)-1, nHead, nKV, hd); err != nil {
			t.Fatal(err)
		}
		var l float64
		for i, o := range out.f32(t) {
			l += float64(o) * float64(dout[i])
		}
		return l
	}
	worst := 0.0
	for _, op := range []struct {
		name string
		g    *guarded
		x    []float32
		grad []float32
	}{{"q", gq, q, dq}, {"k", gk, k, dk}, {"v", gv, v, dv}} {
		for i, x0 := range op.x {
			set := func(x float32) {
				if err := op.g.b.UploadF32(guardBytes/4+i, []float32{x}); err != nil {
					t.Fatal(err)
				}
			}
			set(x0 + h)
			lp := loss()
			set(x0 - h)
			lm := loss()
			set(x0)
			fd := (lp - lm) / (2 * h)
			d := math.Abs(fd - float64(op.grad[i]))
			worst = max(worst, d)
			if d > 1e-3+1e-2*math.Abs(fd) {
				t.Errorf("d%s[%d] = %v, finite difference %v", op.name, i, op.grad[i], fd)
			}
		}
	}
	t.Logf("worst difference from the finite differences: %.2g", worst)
}

// TestMeanPool checks the masked mean over packed sequences (an empty
// sequence, one fully masked, one longer than a workgroup) and its
// backward against float64.
func TestMeanPool(t *testing.T) {
	c := openContext(t, Options{})
	rng := rand.New(rand.NewPCG(47, 48))
	offsets := []uint32{0, 5, 5, 9, 300, 301}
	nSeq, tokens := len(offsets)-1, int(offsets[len(offsets)-1])
	mask := make([]uint32, tokens)
	for i := range mask {
		mask[i] = uint32(rng.IntN(3)) // 0 a third of the time, else 1 or 2
	}
	for i := 5; i < 9; i++ {
		mask[i] = 0
	}
	mask[0] = 1
	for _, dim := range []int{1, 3, 257, 1030} {
		x := randF32(rng, tokens*dim, -2, 2)
		dout := randF32(rng, nSeq*dim, -1, 1)
		gx, gm, goff := newGuarded(t, c, 4*len(x), x), newGuarded(t, c, 4*tokens, mask), newGuarded(t, c, 4*len(offsets), offsets)
		gout, gdo, gdx := newGuarded(t, c, 4*nSeq*dim, nil), newGuarded(t, c, 4*len(dout), dout), newGuarded(t, c, 4*len(x), nil)
		if err := c.MeanPool(gout.span(), gx.span(), gm.span(), goff.span(), tokens, nSeq, dim); err != nil {
			t.Fatal(err)
		}
		if err := c.MeanPoolBackward(gdx.span(), gdo.span(), gm.span(), goff.span(), tokens, nSeq, dim); err != nil {
			t.Fatal(err)
		}
		ref, scale := make([]float64, nSeq*dim), make([]float64, nSeq*dim)
		dref, dscale := make([]float64, len(x)), make([]float64, len(x))
		for s := range nSeq {
			cnt := 0
			for tk := offsets[s]; tk < offsets[s+1]; tk++ {
				if mask[tk] != 0 {
					cnt++
				}
			}
			for d := range dim {
				var sum, abs float64
				for tk := int(offsets[s]); tk < int(offsets[s+1]); tk++ {
					if mask[tk] != 0 {
						sum += float64(x[tk*dim+d])
						abs += math.Abs(float64(x[tk*dim+d]))
						dref[tk*dim+d] = float64(dout[s*dim+d]) / float64(cnt)
						dscale[tk*dim+d] = math.Abs(dref[tk*dim+d])
					}
				}
				if cnt > 0 {
					ref[s*dim+d], scale[s*dim+d] = sum/float64(cnt), abs/float64(cnt)
				}
			}
		}
		compare(t, fmt.Sprintf("pool dim=%d", dim), gout.f32(t), ref, scale)
		compare(t, fmt.Sprintf("pool backward dim=%d", dim), gdx.f32(t), dref, dscale)
	}
}

// TestL2Norm checks L2Norm and L2NormBackward (out of place and in place)
// on rows of several widths, a row of zeros and a row below eps (the
// clamp's branch).
func TestL2Norm(t *testing.T) {
	c := openContext(t, Options{})
	rng := rand.New(rand.NewPCG(49, 50))
	const eps = 1e-6
	for _, n := range []int{1, 5, 256, 1000, 4099} {
		for _, inPlace := range []bool{false, true} {
			rows := 4
			x := randF32(rng, rows*n, -3, 3)
			for i := range n {
				x[2*n+i] = 0
				x[3*n+i] = 1e-9
			}
			dy := randF32(rng, rows*n, -1, 1)
			gx, gdy := newGuarded(t, c, 4*len(x), x), newGuarded(t, c, 4*len(dy), dy)
			gout, gdx := newGuarded(t, c, 4*len(x), nil), gdy
			if !inPlace {
				gdx = newGuarded(t, c, 4*len(x), nil)
			}
			if err := c.L2Norm(gout.span(), gx.span(), rows, n, eps); err != nil {
				t.Fatal(err)
			}
			if err := c.L2NormBackward(gdx.span(), gdy.span(), gx.span(), rows, n, eps); err != nil {
				t.Fatal(err)
			}
			ref, scale := make([]float64, len(x)), make([]float64, len(x))
			dref, dscale := make([]float64, len(x)), make([]float64, len(x))
			for r := range rows {
				var ss, sd, sa float64
				for i := range n {
					xv := float64(x[r*n+i])
					ss += xv * xv
					sd += xv * float64(dy[r*n+i])
					sa += math.Abs(xv * float64(dy[r*n+i]))
				}
				nrm := math.Sqrt(ss)
				for i := range n {
					xv, g := float64(x[r*n+i]), float64(dy[r*n+i])
					if nrm > eps {
						ref[r*n+i] = xv / nrm
						dref[r*n+i] = g/nrm - xv*sd/(nrm*nrm*nrm)
						dscale[r*n+i] = math.Abs(g/nrm) + math.Abs(xv)*sa/(nrm*nrm*nrm)
					} else {
						ref[r*n+i] = xv / eps
						dref[r*n+i] = g / eps
						dscale[r*n+i] = math.Abs(g / eps)
					}
					scale[r*n+i] = math.Abs(ref[r*n+i])
				}
			}
			compare(t, fmt.Sprintf("l2norm n=%d", n), gout.f32(t), ref, scale)
			compare(t, fmt.Sprintf("l2norm backward n=%d in-place=%v", n, inPlace), gdx.f32(t), dref, dscale)
		}
	}
}

// TestLoRA checks the LoRA branch, forward (h and y, written and added)
// and backward (dh, dA, dB and dx, written and added), against float64.
func TestLoRA(t *testing.T) {
	c := openContext(t, Options{})
	rng := rand.New(rand.NewPCG(51, 52))
	for _, s := range [][4]int{{1, 1, 1, 1}, {7, 33, 17, 4}, {80, 130, 96, 16}, {130, 64, 200, 8}} {
		T, in, out, r := s[0], s[1], s[2], s[3]
		const scale = 0.75
		for _, acc := range []bool{false, true} {
			name := fmt.Sprintf("%dx%d→%d r=%d acc=%v", T, in, out, r, acc)
			x, a, b := randF32(rng, T*in, -1, 1), randF32(rng, r*in, -1, 1), randF32(rng, out*r, -1, 1)
			dy := randF32(rng, T*out, -1, 1)
			var y0, dx0, da0, db0 []float32
			if acc {
				y0, dx0, da0, db0 = randF32(rng, T*out, -1, 1), randF32(rng, T*in, -1, 1), randF32(rng, r*in, -1, 1), randF32(rng, out*r, -1, 1)
			}
			gx, ga, gb, gdy := newGuarded(t, c, 4*len(x), x), newGuarded(t, c, 4*len(a), a), newGuarded(t, c, 4*len(b), b), newGuarded(t, c, 4*len(dy), dy)
			gy, gh, gdh := newGuarded(t, c, 4*T*out, y0), newGuarded(t, c, 4*T*r, nil), newGuarded(t, c, 4*T*r, nil)
			gdx, gda, gdb := newGuarded(t, c, 4*T*in, dx0), newGuarded(t, c, 4*r*in, da0), newGuarded(t, c, 4*out*r, db0)
			if err := c.LoRA(gy.span(), gh.span(), gx.span(), ga.span(), gb.span(), T, in, out, r, scale, acc); err != nil {
				t.Fatal(err)
			}
			if err := c.LoRABackward(gdx.span(), gda.span(), gdb.span(), gdh.span(), gdy.span(), gx.span(), ga.span(), gb.span(), gh.span(), T, in, out, r, scale, acc, acc); err != nil {
				t.Fatal(err)
			}
			// float64: h = x·Aᵀ, y = y0 + scale·h·Bᵀ, dh = scale·dy·B,
			// dB = dB0 + scale·dyᵀ·h, dA = dA0 + dhᵀ·x, dx = dx0 + dh·A; the
			// scales carry |h| and |dh| built from absolute values.
			mat := func(m, n, k int, av func(i, kk int) float64, bv func(kk, j int) float64, alpha float64, c0 []float32) (v, sc []float64) {
				v, sc = make([]float64, m*n), make([]float64, m*n)
				for i := range m {
					for j := range n {
						var s, sa float64
						for kk := range k {
							s += av(i, kk) * bv(kk, j)
							sa += math.Abs(av(i, kk) * bv(kk, j))
						}
						v[i*n+j], sc[i*n+j] = alpha*s, math.Abs(alpha)*sa
						if c0 != nil {
							v[i*n+j] += float64(c0[i*n+j])
							sc[i*n+j] += math.Abs(float64(c0[i*n+j]))
						}
					}
				}
				return v, sc
			}
			f := func(s []float32) []float64 {
				v := make([]float64, len(s))
				for i, e := range s {
					v[i] = float64(e)
				}
				return v
			}
			X, A, B, DY := f(x), f(a), f(b), f(dy)
			h, hs := mat(T, r, in, func(i, kk int) float64 { return X[i*in+kk] }, func(kk, j int) float64 { return A[j*in+kk] }, 1, nil)
			y, ys := mat(T, out, r, func(i, kk int) float64 { return h[i*r+kk] }, func(kk, j int) float64 { return B[j*r+kk] }, scale, y0)
			yA, _ := mat(T, out, r, func(i, kk int) float64 { return hs[i*r+kk] }, func(kk, j int) float64 { return math.Abs(B[j*r+kk]) }, scale, nil)
			dh, dhs := mat(T, r, out, func(i, kk int) float64 { return DY[i*out+kk] }, func(kk, j int) float64 { return B[kk*r+j] }, scale, nil)
			db, dbs := mat(out, r, T, func(i, kk int) float64 { return DY[kk*out+i] }, func(kk, j int) float64 { return h[kk*r+j] }, scale, db0)
			dbA, _ := mat(out, r, T, func(i, kk int) float64 { return math.Abs(DY[kk*out+i]) }, func(kk, j int) float64 { return hs[kk*r+j] }, scale, nil)
			da, das := mat(r, in, T, func(i, kk int) float64 { return dh[kk*r+i] }, func(kk, j int) float64 { return X[kk*in+j] }, 1, da0)
			daA, _ := mat(r, in, T, func(i, kk int) float64 { return dhs[kk*r+i] }, func(kk, j int) float64 { return math.Abs(X[kk*in+j]) }, 1, nil)
			dx, dxs := mat(T, in, r, func(i, kk int) float64 { return dh[i*r+kk] }, func(kk, j int) float64 { return A[kk*in+j] }, 1, dx0)
			dxA, _ := mat(T, in, r, func(i, kk int) float64 { return dhs[i*r+kk] }, func(kk, j int) float64 { return math.Abs(A[kk*in+j]) }, 1, nil)
			for i := range ys {
				ys[i] += yA[i]
			}
			for i := range dbs {
				dbs[i] += dbA[i]
			}
			for i := range das {
				das[i] += daA[i]
			}
			for i := range dxs {
				dxs[i] += dxA[i]
			}
			compare(t, "h "+name, gh.f32(t), h, hs)
			compare(t, "y "+name, gy.f32(t), y, ys)
			compare(t, "dh "+name, gdh.f32(t), dh, dhs)
			compare(t, "dB "+name, gdb.f32(t), db, dbs)
			compare(t, "dA "+name, gda.f32(t), da, das)
			compare(t, "dx "+name, gdx.f32(t), dx, dxs)
		}
	}
}
