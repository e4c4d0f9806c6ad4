package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// attnRef is attention with AttentionOptions in float64 for a packed
// batch: the output, the probabilities (AttentionProbsLen layout), and for
// the tolerances the size of each output (Σ p·|v|) and the largest
// magnitude a float32 score reaches (|scale|·Σ|q||k| + |slope·j|).
type attnRef struct {
	out, outSize, probs []float64
	maxScore            float64
}

// attnShape is the shape of one attention problem.
type attnShape struct {
	offsets              []int
	nHeads, nKV, headDim int
}

func (s attnShape) String() string {
	return fmt.Sprintf("offsets=%v heads=%d/%d hd=%d", s.offsets, s.nHeads, s.nKV, s.headDim)
}

// visible reports whether the query at position i sees the key at j.
func refVisible(i, j, window int) bool {
	return j <= i && (window <= 0 || i-j < window)
}

// refScale is the scale the op uses, as float64.
func refScale(opt AttentionOptions, headDim int) float64 {
	if opt.Scale != 0 {
		return float64(opt.Scale)
	}
	return float64(float32(1 / math.Sqrt(float64(headDim))))
}

// refRawScore is scale·q_i·k_j (before the cap) in float64, and its size.
func refRawScore(sh attnShape, q, k []float64, qi, kj, h int, scale float64) (a, size float64) {
	hd := sh.headDim
	qd, kd := sh.nHeads*hd, sh.nKV*hd
	kh := h / (sh.nHeads / sh.nKV)
	for d := 0; d < hd; d++ {
		x, y := q[qi*qd+h*hd+d], k[kj*kd+kh*hd+d]
		a += x * y
		size += math.Abs(x * y)
	}
	return a * scale, size * math.Abs(scale)
}

// refProbs returns the probabilities of query t0+i, head h, over keys
// t0+0..t0+L-1 of its sequence, in float64.
func refProbs(sh attnShape, q, k []float64, t0, L, i, h int, opt AttentionOptions, maxScore *float64) []float64 {
	scale := refScale(opt, sh.headDim)
	p := make([]float64, L)
	mx := math.Inf(-1)
	for j := 0; j < L; j++ {
		if !refVisible(i, j, opt.Window) {
			continue
		}
		a, size := refRawScore(sh, q, k, t0+i, t0+j, h, scale)
		if c := float64(opt.SoftCap); c > 0 {
			a = c * math.Tanh(a/c)
		}
		if opt.Slopes != nil {
			a += float64(opt.Slopes[h]) * float64(j)
			size += math.Abs(float64(opt.Slopes[h]) * float64(j))
		}
		*maxScore = max(*maxScore, size)
		p[j] = a
		mx = max(mx, a)
	}
	var sum float64
	for j := range p {
		if refVisible(i, j, opt.Window) {
			p[j] = math.Exp(p[j] - mx)
			sum += p[j]
		}
	}
	for j := range p {
		p[j] /= sum
	}
	return p
}

// attentionRefWith computes attnRef for q, k, v (float64 copies of the op's
// inputs).
func attentionRefWith(sh attnShape, q, k, v []float64, opt AttentionOptions) attnRef {
	hd := sh.headDim
	qd, kd := sh.nHeads*hd, sh.nKV*hd
	T := sh.offsets[len(sh.offsets)-1]
	r := attnRef{out: make([]float64, T*qd), outSize: make([]float64, T*qd), probs: make([]float64, AttentionProbsLen(sh.offsets, sh.nHeads))}
	pbase := 0
	for s := 0; s+1 < len(sh.offsets); s++ {
		t0, L := sh.offsets[s], sh.offsets[s+1]-sh.offsets[s]
		for h := 0; h < sh.nHeads; h++ {
			kh := h / (sh.nHeads / sh.nKV)
			for i := 0; i < L; i++ {
				p := refProbs(sh, q, k, t0, L, i, h, opt, &r.maxScore)
				copy(r.probs[pbase+(h*L+i)*L:], p)
				for j, pj := range p {
					for d := 0; d < hd; d++ {
						vj := v[(t0+j)*kd+kh*hd+d]
						r.out[(t0+i)*qd+h*hd+d] += pj * vj
						r.outSize[(t0+i)*qd+h*hd+d] += pj * math.Abs(vj)
					}
				}
			}
		}
		pbase += sh.nHeads * L * L
	}
	return r
}

// attnGrads are the float64 gradients of Σ dout·out with respect to q, k
// and v, with the size of the terms each sums (for the tolerances).
type attnGrads struct {
	dq, dk, dv, dqSize, dkSize, dvSize []float64
}

// attentionGradRef computes the gradients analytically in float64: with
// P the probabilities, dP = dO·Vᵀ, dC = P∘(dP − rowsum(P∘dP)) for the
// capped scores C, dA = dC·cap'(A) for the scaled scores A, dQ = s·dA·K,
// dK = s·dAᵀ·Q and dV = Pᵀ·dO.
func attentionGradRef(sh attnShape, q, k, v, dout []float64, opt AttentionOptions) attnGrads {
	hd := sh.headDim
	qd, kd := sh.nHeads*hd, sh.nKV*hd
	T := sh.offsets[len(sh.offsets)-1]
	scale := refScale(opt, hd)
	g := attnGrads{dq: make([]float64, T*qd), dk: make([]float64, T*kd), dv: make([]float64, T*kd),
		dqSize: make([]float64, T*qd), dkSize: make([]float64, T*kd), dvSize: make([]float64, T*kd)}
	var unused float64
	for s := 0; s+1 < len(sh.offsets); s++ {
		t0, L := sh.offsets[s], sh.offsets[s+1]-sh.offsets[s]
		for h := 0; h < sh.nHeads; h++ {
			kh := h / (sh.nHeads / sh.nKV)
			for i := 0; i < L; i++ {
				p := refProbs(sh, q, k, t0, L, i, h, opt, &unused)
				dp, dpSize := make([]float64, L), make([]float64, L)
				var sum, sumSize float64
				for j := range p {
					for d := 0; d < hd; d++ {
						x, y := dout[(t0+i)*qd+h*hd+d], v[(t0+j)*kd+kh*hd+d]
						dp[j] += x * y
						dpSize[j] += math.Abs(x * y)
					}
					sum += p[j] * dp[j]
					sumSize += p[j] * dpSize[j]
				}
				for j, pj := range p {
					if !refVisible(i, j, opt.Window) {
						continue
					}
					da, daSize := pj*(dp[j]-sum), pj*(dpSize[j]+sumSize)
					if c := float64(opt.SoftCap); c > 0 {
						a, _ := refRawScore(sh, q, k, t0+i, t0+j, h, scale)
						th := math.Tanh(a / c)
						da *= 1 - th*th
						daSize *= 1 - th*th
					}
					for d := 0; d < hd; d++ {
						qo, ko := (t0+i)*qd+h*hd+d, (t0+j)*kd+kh*hd+d
						g.dq[qo] += scale * da * k[ko]
						g.dqSize[qo] += math.Abs(scale) * daSize * math.Abs(k[ko])
						g.dk[ko] += scale * da * q[qo]
						g.dkSize[ko] += math.Abs(scale) * daSize * math.Abs(q[qo])
						g.dv[ko] += pj * dout[qo]
						g.dvSize[ko] += pj * math.Abs(dout[qo])
					}
				}
			}
		}
	}
	return g
}

// attnTol is the relative tolerance for a problem whose float32 scores
// reach maxScore: 1e-5, plus the float32 error of scores that large
// (every ulp of a score is a relative error of the probabilities).
func attnTol(maxScore float64) float64 { return 1e-5 + 16*0x1p-24*maxScore }

// attnCase is one configuration of the attention tests.
type attnCase struct {
	sh  attnShape
	opt AttentionOptions
	amp float64 // standard deviation of q and k
}

func (c attnCase) String() string {
	return fmt.Sprintf("%v scale=%v window=%d alibi=%v cap=%v", c.sh, c.opt.Scale, c.opt.Window, c.opt.Slopes != nil, c.opt.SoftCap)
}

// attnCases mixes packed sequences of different lengths (one of a single
// token), GQA groups of 1, 2 and 3 and multi-query attention, windows of 1,
// shorter and longer than the sequences, ALiBi, soft caps that bite and
// that barely do, another scale, and all of them together.
func attnCases() []attnCase {
	packed := []int{0, 5, 6, 19, 40}
	sh := func(off []int, h, kv, hd int) attnShape { return attnShape{off, h, kv, hd} }
	a4, a6 := ALiBiSlopes(4), ALiBiSlopes(6)
	return []attnCase{
		{sh(packed, 4, 2, 16), AttentionOptions{}, 1},
		{sh(packed, 4, 2, 16), AttentionOptions{Window: 1}, 1},
		{sh(packed, 4, 2, 16), AttentionOptions{Window: 3}, 1},
		{sh(packed, 6, 3, 8), AttentionOptions{Window: 8}, 1},
		{sh(packed, 3, 1, 8), AttentionOptions{Window: 100}, 1},
		{sh(packed, 4, 4, 16), AttentionOptions{Slopes: a4}, 1},
		{sh(packed, 6, 2, 8), AttentionOptions{Slopes: a6}, 1},
		{sh(packed, 4, 2, 16), AttentionOptions{SoftCap: 1.5}, 1.5},
		{sh(packed, 4, 2, 16), AttentionOptions{SoftCap: 50}, 2},
		{sh(packed, 6, 3, 8), AttentionOptions{Scale: 0.3, SoftCap: 2, Window: 4}, 1},
		{sh([]int{0, 33}, 2, 1, 32), AttentionOptions{Scale: 0.125, Window: 7, Slopes: ALiBiSlopes(2), SoftCap: 3}, 1.5},
	}
}

// attnInputs returns guarded random q, k, v and dout for a problem.
func attnInputs(r *rand.Rand, sh attnShape, amp float64) (q, k, v, dout *guardedBuf) {
	T := sh.offsets[len(sh.offsets)-1]
	qd, kd := sh.nHeads*sh.headDim, sh.nKV*sh.headDim
	return randGuarded(r, T*qd, amp), randGuarded(r, T*kd, amp), randGuarded(r, T*kd, 1), randGuarded(r, T*qd, 1)
}

// TestAttentionWith checks AttentionWith's output and probabilities
// against float64 for every case, with guards around every buffer, and
// that it writes every output (they start as garbage).
func TestAttentionWith(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	for _, c := range attnCases() {
		sh := c.sh
		q, k, v, _ := attnInputs(r, sh, c.amp)
		out := newGuarded(len(q.s()), garbage)
		probs := newGuarded(AttentionProbsLen(sh.offsets, sh.nHeads), garbage)
		AttentionWith(out.s(), q.s(), k.s(), v.s(), sh.offsets, sh.nHeads, sh.nKV, sh.headDim, probs.s(), c.opt)
		outNoProbs := newGuarded(len(q.s()), garbage)
		AttentionWith(outNoProbs.s(), q.s(), k.s(), v.s(), sh.offsets, sh.nHeads, sh.nKV, sh.headDim, nil, c.opt)
		for _, g := range []*guardedBuf{q, k, v, out, probs, outNoProbs} {
			g.check(t, c.String())
		}
		ref := attentionRefWith(sh, f64s(q.s()), f64s(k.s()), f64s(v.s()), c.opt)
		tol := attnTol(ref.maxScore)
		for i, w := range ref.out {
			near(t, c.String()+" out", i, out.s()[i], w, tol*ref.outSize[i]+1e-30)
			if outNoProbs.s()[i] != out.s()[i] {
				t.Fatalf("%v: out[%d] = %v without probs, %v with", c, i, outNoProbs.s()[i], out.s()[i])
			}
		}
		for i, w := range ref.probs {
			if w == 0 && probs.s()[i] != 0 {
				t.Fatalf("%v: masked probability %d = %v", c, i, probs.s()[i])
			}
			near(t, c.String()+" probs", i, probs.s()[i], w, tol*w)
		}
	}
}

// TestAttentionWithPlain checks that the options that change nothing give
// the bits of Attention: the explicit default scale, and a window no
// shorter than the longest sequence.
func TestAttentionWithPlain(t *testing.T) {
	r := rand.New(rand.NewPCG(33, 34))
	sh := attnShape{[]int{0, 7, 20}, 4, 2, 16}
	q, k, v, _ := attnInputs(r, sh, 1)
	want := make([]float32, len(q.s()))
	Attention(want, q.s(), k.s(), v.s(), sh.offsets, sh.nHeads, sh.nKV, sh.headDim, nil)
	for _, opt := range []AttentionOptions{{Scale: 0.25}, {Window: 13}, {Window: 1000}} {
		got := make([]float32, len(want))
		AttentionWith(got, q.s(), k.s(), v.s(), sh.offsets, sh.nHeads, sh.nKV, sh.headDim, nil, opt)
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("%+v: out[%d] = %v, Attention %v", opt, i, got[i], want[i])
			}
		}
	}
}

// TestAttentionSlopesLength checks that a slope list of the wrong length
// is refused rather than read past its end or partly ignored.
func TestAttentionSlopesLength(t *testing.T) {
	for _, n := range []int{3, 5} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("AttentionWith with %d slopes for 4 heads did not panic", n)
				}
			}()
			out := make([]float32, 2*4*8)
			AttentionWith(out, out, out[:2*2*8], out[:2*2*8], []int{0, 2}, 4, 2, 8, nil, AttentionOptions{Slopes: ALiBiSlopes(n)})
		}()
	}
}

// TestAttentionBackwardWith checks AttentionBackwardWith against the
// float64 gradients for every case (guards around every buffer, outputs
// starting as garbage), that the float64 gradients match central
// differences of the float64 forward on the smaller cases, and that the
// result does not depend on the thread count.
func TestAttentionBackwardWith(t *testing.T) {
	r := rand.New(rand.NewPCG(35, 36))
	for ci, c := range attnCases() {
		sh := c.sh
		q, k, v, dout := attnInputs(r, sh, c.amp)
		probs := make([]float32, AttentionProbsLen(sh.offsets, sh.nHeads))
		AttentionWith(make([]float32, len(q.s())), q.s(), k.s(), v.s(), sh.offsets, sh.nHeads, sh.nKV, sh.headDim, probs, c.opt)
		dq, dk, dv := newGuarded(len(q.s()), garbage), newGuarded(len(k.s()), garbage), newGuarded(len(v.s()), garbage)
		AttentionBackwardWith(dq.s(), dk.s(), dv.s(), dout.s(), q.s(), k.s(), v.s(), probs, sh.offsets, sh.nHeads, sh.nKV, sh.headDim, c.opt)
		for _, g := range []*guardedBuf{q, k, v, dout, dq, dk, dv} {
			g.check(t, c.String())
		}
		q64, k64, v64, do64 := f64s(q.s()), f64s(k.s()), f64s(v.s()), f64s(dout.s())
		ref := attentionRefWith(sh, q64, k64, v64, c.opt)
		g := attentionGradRef(sh, q64, k64, v64, do64, c.opt)
		tol := attnTol(ref.maxScore)
		for _, x := range []struct {
			name       string
			got        []float32
			want, size []float64
		}{{"dq", dq.s(), g.dq, g.dqSize}, {"dk", dk.s(), g.dk, g.dkSize}, {"dv", dv.s(), g.dv, g.dvSize}} {
			for i, w := range x.want {
				near(t, c.String()+" "+x.name, i, x.got[i], w, tol*x.size[i]+1e-30)
			}
		}
		if ci%3 == 1 || c.opt.SoftCap > 0 {
			checkAttentionFD(t, c, q64, k64, v64, do64, g)
		}
		if ci == len(attnCases())-1 || ci == 2 {
			// One worker: the same bits.
			SetThreads(1)
			dq1, dk1, dv1 := make([]float32, len(q.s())), make([]float32, len(k.s())), make([]float32, len(v.s()))
			AttentionBackwardWith(dq1, dk1, dv1, dout.s(), q.s(), k.s(), v.s(), probs, sh.offsets, sh.nHeads, sh.nKV, sh.headDim, c.opt)
			SetThreads(0)
			for _, p := range [][2][]float32{{dq1, dq.s()}, {dk1, dk.s()}, {dv1, dv.s()}} {
				for i := range p[0] {
					if math.Float32bits(p[0][i]) != math.Float32bits(p[1][i]) {
						t.Fatalf("%v: gradient %d with one thread %v, with %d %v", c, i, p[0][i], Threads(), p[1][i])
					}
				}
			}
		}
	}
}

// checkAttentionFD checks the float64 gradients of a case against central
// differences of Σ dout·out of the float64 forward, on a sample of inputs.
func checkAttentionFD(t *testing.T, c attnCase, q, k, v, dout []float64, g attnGrads) {
	t.Helper()
	loss := func() float64 {
		out := attentionRefWith(c.sh, q, k, v, c.opt).out
		var s float64
		for i, o := range out {
			s += dout[i] * o
		}
		return s
	}
	for _, x := range []struct {
		name       string
		in         []float64
		want, size []float64
	}{{"dq", q, g.dq, g.dqSize}, {"dk", k, g.dk, g.dkSize}, {"dv", v, g.dv, g.dvSize}} {
		for i := 0; i < len(x.in); i += 1 + len(x.in)/12 {
			old := x.in[i]
			h := 1e-5 * (1 + math.Abs(old))
			x.in[i] = old + h
			up := loss()
			x.in[i] = old - h
			down := loss()
			x.in[i] = old
			if fd := (up - down) / (2 * h); math.Abs(fd-x.want[i]) > 1e-6*(1+x.size[i]) {
				t.Fatalf("%v: float64 reference %s[%d] = %v, central difference %v", c, x.name, i, x.want[i], fd)
			}
		}
	}
}

// TestAttentionCachedWith feeds one sequence to AttentionCachedWith in
// pieces (a prefix, single tokens, the rest), on the row-by-row path (11
// tokens) and on blocks of matrix products (300 tokens, so that blocks
// start past the window), and checks every row against float64 attention
// over the whole sequence at absolute positions.
func TestAttentionCachedWith(t *testing.T) {
	r := rand.New(rand.NewPCG(37, 38))
	for _, c := range []struct {
		L   int
		opt AttentionOptions
	}{
		{11, AttentionOptions{}},
		{11, AttentionOptions{Window: 4, Slopes: ALiBiSlopes(4)}},
		{11, AttentionOptions{SoftCap: 2, Scale: 0.3, Window: 20}},
		{300, AttentionOptions{Window: 50}},
		{300, AttentionOptions{Window: 1}},
		{300, AttentionOptions{Slopes: ALiBiSlopes(4), SoftCap: 5}},
		{300, AttentionOptions{Window: 200, SoftCap: 2}},
	} {
		sh := attnShape{[]int{0, c.L}, 4, 2, 8}
		name := fmt.Sprintf("L=%d %+v", c.L, c.opt)
		q, k, v, _ := attnInputs(r, sh, 1)
		qd, kd := sh.nHeads*sh.headDim, sh.nKV*sh.headDim
		out := newGuarded(len(q.s()), garbage)
		for _, piece := range [][2]int{{0, 5}, {5, 6}, {6, 7}, {7, (7 + c.L) / 2}, {(7 + c.L) / 2, c.L}} {
			a, b := piece[0], piece[1]
			// The cache holds the rows up to b; those past it must not be read.
			kc, vc := newGuarded(b*kd, 0), newGuarded(b*kd, 0)
			copy(kc.s(), k.s()[:b*kd])
			copy(vc.s(), v.s()[:b*kd])
			AttentionCachedWith(out.s()[a*qd:b*qd], q.s()[a*qd:b*qd], b-a, a, kc.s(), vc.s(), sh.nHeads, sh.nKV, sh.headDim, c.opt)
			kc.check(t, name+" k")
			vc.check(t, name+" v")
		}
		out.check(t, name+" out")
		ref := attentionRefWith(sh, f64s(q.s()), f64s(k.s()), f64s(v.s()), c.opt)
		tol := attnTol(ref.maxScore)
		for i, w := range ref.out {
			near(t, name, i, out.s()[i], w, tol*ref.outSize[i]+1e-30)
		}
	}
}

// BenchmarkAttentionOps times the packed forward and backward and the
// cached forward on one 256-token sequence (8 query, 2 key/value heads of
// 64), plain and with a sliding window of 64 and a soft cap.
func BenchmarkAttentionOps(b *testing.B) {
	const L, nHeads, nKV, hd = 256, 8, 2, 64
	r := rand.New(rand.NewPCG(1, 2))
	fill := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		return x
	}
	q, k, v := fill(L*nHeads*hd), fill(L*nKV*hd), fill(L*nKV*hd)
	out := make([]float32, L*nHeads*hd)
	off := []int{0, L}
	probs := make([]float32, AttentionProbsLen(off, nHeads))
	dq, dk, dv := make([]float32, len(q)), make([]float32, len(k)), make([]float32, len(v))
	for _, o := range []struct {
		name string
		opt  AttentionOptions
	}{{"plain", AttentionOptions{}}, {"window64", AttentionOptions{Window: 64}}, {"softcap", AttentionOptions{SoftCap: 50}}} {
		b.Run("Forward/"+o.name, func(b *testing.B) {
			for b.Loop() {
				AttentionWith(out, q, k, v, off, nHeads, nKV, hd, probs, o.opt)
			}
		})
		b.Run("Backward/"+o.name, func(b *testing.B) {
			for b.Loop() {
				AttentionBackwardWith(dq, dk, dv, out, q, k, v, probs, off, nHeads, nKV, hd, o.opt)
			}
		})
		b.Run("Cached/"+o.name, func(b *testing.B) {
			for b.Loop() {
				AttentionCachedWith(out, q, L, 0, k, v, nHeads, nKV, hd, o.opt)
			}
		})
		b.Run("CachedRows/"+o.name, func(b *testing.B) {
			for b.Loop() {
				AttentionCachedWith(out, q[:nHeads*hd], 1, 16, k, v, nHeads, nKV, hd, o.opt)
			}
		})
	}
}
