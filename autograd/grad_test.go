package autograd

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/tli-project/tli/engine"
)

// Every op's backward is checked against central finite differences: the
// objective is Σ r·y for a fixed random r, evaluated in float64 from the f32
// outputs, differentiated numerically with respect to every element of every
// parameter, and compared with the tape's gradients.

func randn(rng *rand.Rand, n int, scale float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64()) * scale
	}
	return v
}

func randParam(rng *rand.Rand, name string, rows, cols int, scale float32) *Param {
	p := NewParam(name, rows, cols)
	copy(p.Data, randn(rng, rows*cols, scale))
	return p
}

// project records the objective Σ r·y as a 1×1 Var.
func project(t *Tape, y *Var, r []float32) *Var {
	var s float64
	for i, v := range y.Data {
		s += float64(v) * float64(r[i])
	}
	out := &Var{Data: []float32{float32(s)}, Rows: 1, Cols: 1}
	yn := y.node
	if yn == nil {
		return out
	}
	return t.record(out, func(d []float32) {
		g := yn.buf()
		for i := range g {
			g[i] += d[0] * r[i]
		}
	})
}

// checkGrad compares the tape's gradients of Σ r·f(params) with central
// differences of step h. It returns the largest error relative to the largest
// gradient magnitude of each parameter.
func checkGrad(t *testing.T, name string, params []*Param, f func(tp *Tape) *Var, h, tol float64) float64 {
	t.Helper()
	tp := NewTape()
	y := f(tp)
	rng := rand.New(rand.NewPCG(7, 7))
	r := make([]float32, len(y.Data))
	for i := range r {
		r[i] = float32(rng.Float64()*2 - 1)
	}
	for _, p := range params {
		p.ZeroGrad()
	}
	if err := tp.Backward(project(tp, y, r)); err != nil {
		t.Fatal(err)
	}
	if tp.Len() != 0 {
		t.Fatalf("%s: tape not empty after backward", name)
	}
	obj := func() float64 {
		out := f(NewTape())
		var s float64
		for i, v := range out.Data {
			s += float64(v) * float64(r[i])
		}
		return s
	}
	worst := 0.0
	for _, p := range params {
		if p.Grad == nil {
			t.Fatalf("%s: %s got no gradient", name, p.Name)
		}
		var gmax, emax float64
		for i := range p.Data {
			old := p.Data[i]
			p.Data[i] = old + float32(h)
			fp := obj()
			hp := float64(p.Data[i] - old)
			p.Data[i] = old - float32(h)
			fm := obj()
			hm := float64(old - p.Data[i])
			p.Data[i] = old
			num := (fp - fm) / (hp + hm)
			gmax = math.Max(gmax, math.Abs(num))
			emax = math.Max(emax, math.Abs(num-float64(p.Grad[i])))
		}
		rel := emax / math.Max(gmax, 1e-6)
		if rel > tol {
			t.Errorf("%s: d/d%s: max error %.3g relative to max |grad| %.3g (tol %g)", name, p.Name, rel, gmax, tol)
		}
		worst = math.Max(worst, rel)
	}
	t.Logf("%s: max relative error %.2e", name, worst)
	return worst
}

func TestGradLinearLoRA(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	T, in, out, r := 5, 12, 10, 4
	x := randParam(rng, "x", T, in, 1)
	A := randParam(rng, "A", r, in, 0.3)
	B := randParam(rng, "B", out, r, 0.3)
	w := engine.FromF32(randn(rng, out*in, 0.3), out, in)
	lora := &LoRA{A: A, B: B, Scale: 2, Dropout: 0.3}
	for _, dropout := range []bool{false, true} {
		name := "Linear+LoRA"
		if dropout {
			name += "+dropout"
		}
		f := func(tp *Tape) *Var {
			if dropout {
				tp.SetDropoutSeed(42)
			}
			return Linear(tp, Input(tp, x), w, lora, false)
		}
		checkGrad(t, name, []*Param{x, A, B}, f, 1e-2, 2e-3)
	}
	// bf16 frozen weight, no adapter: only dx = dy·W.
	wb := w.Convert(engine.BF16)
	checkGrad(t, "Linear bf16", []*Param{x}, func(tp *Tape) *Var { return Linear(tp, Input(tp, x), wb, nil, false) }, 1e-2, 2e-3)
	// A constant input: A and B get gradients, the input none.
	c := Const(x.Data, T, in)
	checkGrad(t, "Linear+LoRA const input", []*Param{A, B}, func(tp *Tape) *Var { return Linear(tp, c, wb, lora, false) }, 1e-2, 2e-3)
}

func TestLinearDropoutSemantics(t *testing.T) {
	// With dropout p, the adapter sees x·mask/(1−p): about p of the inputs
	// are zeroed and the rest scaled by 1/(1−p). Without a seed (evaluation)
	// the adapter sees x unchanged.
	rng := rand.New(rand.NewPCG(3, 4))
	T, in := 200, 50
	x := Const(randn(rng, T*in, 1), T, in)
	A := NewParam("A", in, in)
	for i := 0; i < in; i++ {
		A.Data[i*in+i] = 1 // identity adapter: output = dropout(x)·Scale
	}
	B := NewParam("B", in, in)
	copy(B.Data, A.Data)
	w := engine.NewF32(in, in)
	lora := &LoRA{A: A, B: B, Scale: 1, Dropout: 0.25}
	tp := NewTape()
	tp.SetDropoutSeed(9)
	y := Linear(tp, x, w, lora, false)
	zero := 0
	for i, v := range y.Data {
		if v == 0 {
			zero++
		} else if d := math.Abs(float64(v - x.Data[i]/0.75)); d > 1e-5 {
			t.Fatalf("kept element %d = %v, want %v", i, v, x.Data[i]/0.75)
		}
	}
	if frac := float64(zero) / float64(T*in); math.Abs(frac-0.25) > 0.02 {
		t.Errorf("dropped fraction %.3f, want 0.25", frac)
	}
	y2 := Linear(NewTape(), x, w, lora, false)
	for i, v := range y2.Data {
		if v != x.Data[i] {
			t.Fatalf("evaluation: element %d = %v, want %v", i, v, x.Data[i])
		}
	}
}

func TestGradRMSNormRopeSiLUAdd(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	T, nH, hd := 4, 2, 8
	d := nH * hd
	x := randParam(rng, "x", T, d, 1)
	y := randParam(rng, "y", T, d, 1)
	w := randn(rng, d, 1)
	checkGrad(t, "RMSNorm", []*Param{x}, func(tp *Tape) *Var { return RMSNorm(tp, Input(tp, x), w, 1e-5) }, 1e-2, 2e-3)

	rope, err := engine.NewRope(hd, 10000, 128, engine.RopeScaling{})
	if err != nil {
		t.Fatal(err)
	}
	cos, sin := rope.Tables([]int{0, 1, 2, 7}, 8)
	checkGrad(t, "Rope", []*Param{x}, func(tp *Tape) *Var { return Rope(tp, Input(tp, x), nH, hd, cos, sin) }, 1e-2, 1e-3)
	checkGrad(t, "SiLUMul", []*Param{x, y}, func(tp *Tape) *Var { return SiLUMul(tp, Input(tp, x), Input(tp, y)) }, 1e-2, 2e-3)
	checkGrad(t, "Add", []*Param{x, y}, func(tp *Tape) *Var { return Add(tp, Input(tp, x), Input(tp, y)) }, 1e-2, 1e-3)
	checkGrad(t, "SliceRows", []*Param{x}, func(tp *Tape) *Var { return SliceRows(tp, Input(tp, x), 1, 3) }, 1e-2, 1e-3)
	// The same Var used twice accumulates both gradients.
	checkGrad(t, "Add(x, x)", []*Param{x}, func(tp *Tape) *Var { v := Input(tp, x); return Add(tp, v, v) }, 1e-2, 1e-3)
}

func TestGradAttention(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	offsets := []int{0, 3, 7, 8}
	T := 8
	for _, c := range []struct{ nH, nKV int }{{4, 2}, {2, 2}, {4, 1}} {
		hd := 4
		q := randParam(rng, "q", T, c.nH*hd, 1)
		k := randParam(rng, "k", T, c.nKV*hd, 1)
		v := randParam(rng, "v", T, c.nKV*hd, 1)
		f := func(tp *Tape) *Var {
			return Attention(tp, Input(tp, q), Input(tp, k), Input(tp, v), offsets, c.nH, c.nKV, hd)
		}
		checkGrad(t, "Attention", []*Param{q, k, v}, f, 1e-2, 2e-3)
		// Only q tracked (k and v constants), as in layer 0 with LoRA on q only.
		kc, vc := Const(k.Data, T, c.nKV*hd), Const(v.Data, T, c.nKV*hd)
		checkGrad(t, "Attention q only", []*Param{q}, func(tp *Tape) *Var { return Attention(tp, Input(tp, q), kc, vc, offsets, c.nH, c.nKV, hd) }, 1e-2, 2e-3)
	}
}

func TestGradPoolNormalizeSim(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	offsets := []int{0, 3, 4, 8}
	x := randParam(rng, "x", 8, 6, 1)
	checkGrad(t, "MeanPool", []*Param{x}, func(tp *Tape) *Var {
		y, err := MeanPool(tp, Input(tp, x), offsets, nil)
		if err != nil {
			t.Fatal(err)
		}
		return y
	}, 1e-2, 1e-3)
	mask := []bool{false, true, true, true, false, true, true, true}
	checkGrad(t, "MeanPool masked", []*Param{x}, func(tp *Tape) *Var {
		y, err := MeanPool(tp, Input(tp, x), offsets, mask)
		if err != nil {
			t.Fatal(err)
		}
		return y
	}, 1e-2, 1e-3)
	if _, err := MeanPool(NewTape(), Const(x.Data, 8, 6), offsets, []bool{true, true, true, false, true, true, true, true}); err == nil {
		t.Error("MeanPool with an empty masked sequence: no error")
	}
	checkGrad(t, "L2Normalize", []*Param{x}, func(tp *Tape) *Var { return L2Normalize(tp, Input(tp, x), 1e-12) }, 1e-2, 2e-3)
	a := randParam(rng, "a", 3, 6, 1)
	b := randParam(rng, "b", 4, 6, 1)
	checkGrad(t, "MatMulNT", []*Param{a, b}, func(tp *Tape) *Var { return MatMulNT(tp, Input(tp, a), Input(tp, b)) }, 1e-2, 1e-3)
}

func TestGradTripletMargin(t *testing.T) {
	// Random embeddings: away from kinks the loss is smooth in them.
	rng := rand.New(rand.NewPCG(11, 12))
	n, d := 6, 5
	s := randParam(rng, "s", n, d, 1)
	e := randParam(rng, "e", n, d, 1)
	f := func(tp *Tape) *Var {
		S := L2Normalize(tp, Input(tp, s), 1e-12)
		E := L2Normalize(tp, Input(tp, e), 1e-12)
		return TripletMargin(tp, MatMulNT(tp, S, E), 0.4)
	}
	checkGrad(t, "TripletMargin∘cos", []*Param{s, e}, f, 1e-3, 5e-3)
}

func TestTripletMarginSubgradients(t *testing.T) {
	// Margin 0.375 (all values exact in binary).
	// Row 0: negatives 1 and 2 tie at 0.5: the gradient goes to the first (1).
	// Row 1: hardest negative 0.125 (j=0), l = (0.375+0.125) − 0.5 = 0
	// exactly: relu'(0) = 0, no gradient.
	// Row 2: hardest negative 0.5 (j=0), l > 0.
	sim := NewParam("sim", 3, 3)
	copy(sim.Data, []float32{
		0.25, 0.5, 0.5,
		0.125, 0.5, 0.0625,
		0.5, 0.25, 0.125,
	})
	tp := NewTape()
	loss := TripletMargin(tp, Input(tp, sim), 0.375)
	// l0 = 0.375+0.5−0.25 = 0.625, l1 = 0, l2 = 0.375+0.5−0.125 = 0.75.
	if want := float32((0.625 + 0.75) / 3); math.Abs(float64(loss.Value()-want)) > 1e-7 {
		t.Errorf("loss %v, want %v", loss.Value(), want)
	}
	if err := tp.Backward(loss); err != nil {
		t.Fatal(err)
	}
	g := float32(1.0 / 3)
	want := []float32{-g, g, 0, 0, 0, 0, g, 0, -g}
	for i, v := range sim.Grad {
		if math.Abs(float64(v-want[i])) > 1e-7 {
			t.Fatalf("grad %v, want %v", sim.Grad, want)
		}
	}
}

func TestBackwardErrors(t *testing.T) {
	tp := NewTape()
	c := Const([]float32{1}, 1, 1)
	if err := tp.Backward(c); err == nil {
		t.Error("Backward of a constant: no error")
	}
	if err := tp.Backward(Const([]float32{1, 2}, 1, 2)); err == nil {
		t.Error("Backward of a 1×2 Var: no error")
	}
}

func TestConstantOpsAreNotRecorded(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	x := Const(randn(rng, 12, 1), 3, 4)
	w := engine.FromF32(randn(rng, 16, 1), 4, 4)
	tp := NewTape()
	y := RMSNorm(tp, x, randn(rng, 4, 1), 1e-5)
	y = Linear(tp, y, w, nil, false)
	y = Add(tp, y, x)
	if tp.Len() != 0 || y.Tracked() {
		t.Errorf("constant ops recorded %d nodes (tracked=%v)", tp.Len(), y.Tracked())
	}
	A, B := NewParam("A", 2, 4), NewParam("B", 4, 2)
	z := Linear(tp, y, w, &LoRA{A: A, B: B, Scale: 1}, false)
	if tp.Len() != 1 || !z.Tracked() {
		t.Errorf("LoRA linear: %d nodes, tracked=%v", tp.Len(), z.Tracked())
	}
}

// chain runs a small layer-like graph and returns the gradients of A and B.
func chain(seed uint64) ([]float32, []float32, float32) {
	rng := rand.New(rand.NewPCG(seed, 1))
	T, nH, nKV, hd := 13, 4, 2, 8
	d := nH * hd
	offsets := []int{0, 5, 9, 13}
	x := Const(randn(rng, T*d, 1), T, d)
	wq := engine.FromF32(randn(rng, d*d, 0.2), d, d)
	wk := engine.FromF32(randn(rng, nKV*hd*d, 0.2), nKV*hd, d)
	A := randParam(rng, "A", 4, d, 0.2)
	B := randParam(rng, "B", d, 4, 0.2)
	rope, _ := engine.NewRope(hd, 10000, 64, engine.RopeScaling{})
	cos, sin := rope.Tables(engine.Positions(offsets), 5)
	tp := NewTape()
	tp.SetDropoutSeed(3)
	h := RMSNorm(tp, x, randn(rng, d, 1), 1e-5)
	q := Rope(tp, Linear(tp, h, wq, &LoRA{A: A, B: B, Scale: 2, Dropout: 0.1}, false), nH, hd, cos, sin)
	k := Rope(tp, Linear(tp, h, wk, nil, false), nKV, hd, cos, sin)
	a := Attention(tp, q, k, k, offsets, nH, nKV, hd)
	a = Add(tp, a, x)
	a = RMSNorm(tp, a, randn(rng, d, 1), 1e-5)
	p, _ := MeanPool(tp, a, offsets, nil)
	p = L2Normalize(tp, p, 1e-12)
	loss := TripletMargin(tp, MatMulNT(tp, p, Const(randn(rng, 3*d, 1), 3, d)), 0.4)
	if err := tp.Backward(loss); err != nil {
		panic(err)
	}
	return A.Grad, B.Grad, loss.Value()
}

func TestDeterministicAcrossThreads(t *testing.T) {
	defer engine.SetThreads(0)
	engine.SetThreads(1)
	a1, b1, l1 := chain(5)
	engine.SetThreads(2)
	a2, b2, l2 := chain(5)
	engine.SetThreads(4)
	a4, b4, l4 := chain(5)
	if l1 != l2 || l1 != l4 {
		t.Fatalf("loss differs: %v %v %v", l1, l2, l4)
	}
	if l1 == 0 {
		t.Fatal("loss is 0: the test checks nothing")
	}
	for i := range a1 {
		if a1[i] != a2[i] || a1[i] != a4[i] {
			t.Fatalf("dA[%d] differs: %v %v %v", i, a1[i], a2[i], a4[i])
		}
	}
	for i := range b1 {
		if b1[i] != b2[i] || b1[i] != b4[i] {
			t.Fatalf("dB[%d] differs: %v %v %v", i, b1[i], b2[i], b4[i])
		}
	}
}

// TestDeterministicLargeLinear repeats the thread check on a LoRA linear
// large enough for the kernels to split products across workers.
func TestDeterministicLargeLinear(t *testing.T) {
	defer engine.SetThreads(0)
	run := func() [][]float32 {
		rng := rand.New(rand.NewPCG(21, 1))
		T, in, out, r := 64, 512, 768, 16
		x := randParam(rng, "x", T, in, 1)
		A := randParam(rng, "A", r, in, 0.05)
		B := randParam(rng, "B", out, r, 0.05)
		w := engine.FromF32(randn(rng, out*in, 0.05), out, in).Convert(engine.BF16)
		tp := NewTape()
		tp.SetDropoutSeed(1)
		h := RMSNorm(tp, Input(tp, x), randn(rng, in, 1), 1e-5)
		y := Linear(tp, h, w, &LoRA{A: A, B: B, Scale: 2, Dropout: 0.05}, false)
		p, _ := MeanPool(tp, y, []int{0, 20, 64}, nil)
		rv := randn(rng, 2*out, 1)
		if err := tp.Backward(MatMulNT(tp, Const(rv, 1, 2*out), Reshape(tp, p, 1, 2*out))); err != nil {
			t.Fatal(err)
		}
		return [][]float32{x.Grad, A.Grad, B.Grad}
	}
	engine.SetThreads(1)
	g1 := run()
	for _, n := range []int{2, 3} {
		engine.SetThreads(n)
		gn := run()
		for k := range g1 {
			for i := range g1[k] {
				if g1[k][i] != gn[k][i] {
					t.Fatalf("%d threads: gradient %d[%d] = %v, 1 thread %v", n, k, i, gn[k][i], g1[k][i])
				}
			}
		}
	}
}
