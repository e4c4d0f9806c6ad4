package llama

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/tli-project/tli/autograd"
	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/kernels"
)

// trainTestModel builds a small random model in memory.
func trainTestModel(t *testing.T, seed uint64, dt engine.DType) *Model {
	t.Helper()
	cfg := Config{HiddenSize: 16, IntermediateSize: 24, NumLayers: 3, NumHeads: 4, NumKVHeads: 2, HeadDim: 4,
		RMSNormEps: 1e-5, RopeTheta: 10000, MaxPositionEmbeddings: 64, VocabSize: 40}
	rng := rand.New(rand.NewPCG(seed, 99))
	randT := func(scale float64, shape ...int) *engine.Tensor {
		x := engine.NewF32(shape...)
		for i := range x.F32 {
			x.F32[i] = float32(rng.NormFloat64() * scale)
		}
		return x.Convert(dt)
	}
	vec := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(1 + 0.2*rng.NormFloat64())
		}
		return v
	}
	rope, err := engine.NewRope(cfg.HeadDim, cfg.RopeTheta, cfg.MaxPositionEmbeddings, engine.RopeScaling{})
	if err != nil {
		t.Fatal(err)
	}
	m := &Model{Config: cfg, Embed: randT(1, cfg.VocabSize, cfg.HiddenSize), Rope: rope}
	for l := 0; l < cfg.NumLayers; l++ {
		L := &Layer{AttnNorm: vec(cfg.HiddenSize), MLPNorm: vec(cfg.HiddenSize)}
		for _, mod := range LoRAModules {
			out, in, _ := cfg.ModuleShape(mod)
			w := randT(0.5/math.Sqrt(float64(in)), out, in)
			switch mod {
			case "q_proj":
				L.Q = w
			case "k_proj":
				L.K = w
			case "v_proj":
				L.V = w
			case "o_proj":
				L.O = w
			case "gate_proj":
				L.Gate = w
			case "up_proj":
				L.Up = w
			case "down_proj":
				L.Down = w
			}
		}
		m.Layers = append(m.Layers, L)
	}
	return m
}

// trainTestAdapters puts random rank-r adapters (B non-zero) on the given
// modules of every layer.
func trainTestAdapters(cfg Config, modules []string, r int, seed uint64, dropout float32) (Adapters, []*autograd.Param) {
	rng := rand.New(rand.NewPCG(seed, 5))
	var ad Adapters
	var params []*autograd.Param
	for l := 0; l < cfg.NumLayers; l++ {
		mods := map[string]*autograd.LoRA{}
		for _, mod := range modules {
			out, in, _ := cfg.ModuleShape(mod)
			A := autograd.NewParam(mod+".A", r, in)
			B := autograd.NewParam(mod+".B", out, r)
			for i := range A.Data {
				A.Data[i] = float32(rng.NormFloat64() * 0.3)
			}
			for i := range B.Data {
				B.Data[i] = float32(rng.NormFloat64() * 0.3)
			}
			mods[mod] = &autograd.LoRA{A: A, B: B, Scale: 2, Dropout: dropout}
			params = append(params, A, B)
		}
		ad = append(ad, mods)
	}
	return ad, params
}

var trainTestBatch = NewBatch([][]int{{1, 5, 9}, {1, 7}, {1, 3, 3, 12}, {1, 39}, {1, 20, 21}, {1, 8, 2, 30, 4}})

// TestTrainGradFiniteDifferences checks the whole-stack LoRA gradients of
// Σ r·hidden_states[2] against central differences.
func TestTrainGradFiniteDifferences(t *testing.T) {
	for _, c := range []struct {
		name    string
		dt      engine.DType
		modules []string
	}{
		{"f32 q,v", engine.F32, []string{"q_proj", "v_proj"}},
		{"bf16 all modules", engine.BF16, LoRAModules},
	} {
		m := trainTestModel(t, 1, c.dt)
		ad, params := trainTestAdapters(m.Config, c.modules, 2, 3, 0)
		target := 2
		tape := autograd.NewTape()
		h, err := m.ForwardTrain(tape, trainTestBatch, target, ad)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(8, 8))
		r := make([]float64, len(h.Data))
		for i := range r {
			r[i] = rng.Float64()*2 - 1
		}
		// The projection Σ r·h as a 1×1 loss: r as a constant row times h flattened.
		rv := make([]float32, len(r))
		for i := range r {
			rv[i] = float32(r[i])
		}
		flat := autograd.Const(rv, 1, len(rv))
		loss := autograd.MatMulNT(tape, flat, reshapeRow(tape, h))
		if err := tape.Backward(loss); err != nil {
			t.Fatal(err)
		}
		obj := func() float64 {
			h, err := m.ForwardTrain(autograd.NewTape(), trainTestBatch, target, ad)
			if err != nil {
				t.Fatal(err)
			}
			var s float64
			for i, v := range h.Data {
				s += float64(v) * r[i]
			}
			return s
		}
		worst := 0.0
		for pi, p := range params {
			layer := pi / (2 * len(c.modules))
			if layer >= target {
				if p.Grad != nil {
					t.Errorf("%s: %s of layer %d (at or above the target layer) got a gradient", c.name, p.Name, layer)
				}
				continue
			}
			if p.Grad == nil {
				t.Fatalf("%s: %s of layer %d got no gradient", c.name, p.Name, layer)
			}
			var gmax, emax float64
			for i := range p.Data {
				old := p.Data[i]
				const hstep = 1e-2
				p.Data[i] = old + hstep
				fp := obj()
				p.Data[i] = old - hstep
				fm := obj()
				p.Data[i] = old
				num := (fp - fm) / (2 * hstep)
				gmax = math.Max(gmax, math.Abs(num))
				emax = math.Max(emax, math.Abs(num-float64(p.Grad[i])))
			}
			rel := emax / gmax
			worst = math.Max(worst, rel)
			if rel > 2e-3 {
				t.Errorf("%s: layer %d %s: max error %.3g relative to max |grad| %.3g", c.name, layer, p.Name, rel, gmax)
			}
		}
		t.Logf("%s: max relative error vs finite differences %.2e", c.name, worst)
	}
}

// reshapeRow views h [T×d] as a 1×(T·d) Var.
func reshapeRow(tape *autograd.Tape, h *autograd.Var) *autograd.Var {
	return autograd.Reshape(tape, h, 1, h.Rows*h.Cols)
}

// trainStep runs one TLI loss forward/backward on the test batch: the first
// half of the sequences are "Swahili", the second half "English".
func trainStep(t *testing.T, m *Model, ad Adapters, seed uint64) float32 {
	tape := autograd.NewTape()
	tape.SetDropoutSeed(seed)
	h, err := m.ForwardTrain(tape, trainTestBatch, 2, ad)
	if err != nil {
		t.Fatal(err)
	}
	p, err := autograd.MeanPool(tape, h, trainTestBatch.Offsets, nil)
	if err != nil {
		t.Fatal(err)
	}
	p = autograd.L2Normalize(tape, p, 1e-12)
	n := p.Rows / 2
	sim := autograd.MatMulNT(tape, autograd.SliceRows(tape, p, 0, n), autograd.SliceRows(tape, p, n, 2*n))
	loss := autograd.TripletMargin(tape, sim, 0.4)
	if err := tape.Backward(loss); err != nil {
		t.Fatal(err)
	}
	return loss.Value()
}

func TestTrainDeterministicThreads(t *testing.T) {
	defer engine.SetThreads(0)
	m := trainTestModel(t, 2, engine.F32)
	var grads [][]float32
	var losses []float32
	for _, n := range []int{1, 2} {
		engine.SetThreads(n)
		ad, params := trainTestAdapters(m.Config, []string{"q_proj", "v_proj"}, 4, 4, 0.05)
		losses = append(losses, trainStep(t, m, ad, 11))
		var g []float32
		for _, p := range params {
			g = append(g, p.Grad...)
		}
		grads = append(grads, g)
	}
	if losses[0] != losses[1] || losses[0] == 0 {
		t.Fatalf("losses %v", losses)
	}
	if len(grads[0]) == 0 {
		t.Fatal("no gradients")
	}
	for i := range grads[0] {
		if grads[0][i] != grads[1][i] {
			t.Fatalf("gradient %d differs between 1 and 2 threads: %v vs %v", i, grads[0][i], grads[1][i])
		}
	}
}

func TestTrainTargetZeroAndErrors(t *testing.T) {
	m := trainTestModel(t, 3, engine.F32)
	ad, _ := trainTestAdapters(m.Config, []string{"q_proj"}, 2, 1, 0)
	h, err := m.ForwardTrain(autograd.NewTape(), trainTestBatch, 0, ad)
	if err != nil {
		t.Fatal(err)
	}
	if h.Tracked() {
		t.Error("hidden_states[0] is tracked")
	}
	row := make([]float32, m.Config.HiddenSize)
	m.Embed.Row(trainTestBatch.Tokens[3], row)
	for i, v := range row {
		if h.Data[3*m.Config.HiddenSize+i] != v {
			t.Fatal("hidden_states[0] is not the embedding")
		}
	}
	bad := []struct {
		name   string
		b      Batch
		target int
		ad     Adapters
		want   string
	}{
		{"target too high", trainTestBatch, 4, ad, "target layer 4"},
		{"token out of range", NewBatch([][]int{{1, 40}}), 1, ad, "outside the vocabulary"},
		{"empty sequence", Batch{Tokens: []int{1}, Offsets: []int{0, 0, 1}}, 1, ad, "empty"},
		{"bad adapter shape", trainTestBatch, 1, Adapters{{"q_proj": {A: autograd.NewParam("A", 2, 15), B: autograd.NewParam("B", 16, 2)}}}, "want A r×16"},
		{"unknown module", trainTestBatch, 1, Adapters{{"lm_head": {A: autograd.NewParam("A", 2, 16), B: autograd.NewParam("B", 16, 2)}}}, "unknown LoRA target module"},
	}
	for _, c := range bad {
		_, err := m.ForwardTrain(autograd.NewTape(), c.b, c.target, c.ad)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
	m.Layers[1] = nil
	if _, err := m.ForwardTrain(autograd.NewTape(), trainTestBatch, 2, ad); err == nil || !strings.Contains(err.Error(), "layer 1 is not loaded") {
		t.Errorf("missing layer: error %v", err)
	}
}

// TestForwardTrainMatchesForward checks that the training forward without
// adapters (and with zero-B adapters, PEFT's initial state) computes the same
// hidden states as the inference forward.
func TestForwardTrainMatchesForward(t *testing.T) {
	for _, c := range []struct {
		dt   engine.DType
		fast bool
	}{{engine.F32, false}, {engine.BF16, false}, {engine.BF16, true}} {
		m := trainTestModel(t, 4, c.dt)
		m.FastBF16 = c.fast
		want, err := m.HiddenStates(trainTestBatch, []int{2})
		if err != nil {
			t.Fatal(err)
		}
		ad, params := trainTestAdapters(m.Config, LoRAModules, 2, 1, 0.5)
		for _, p := range params {
			if strings.Contains(p.Name, ".B") {
				clear(p.Data)
			}
		}
		for _, a := range []Adapters{nil, ad} {
			h, err := m.ForwardTrain(autograd.NewTape(), trainTestBatch, 2, a)
			if err != nil {
				t.Fatal(err)
			}
			var e, mx float64
			for i, v := range want[2] {
				e = math.Max(e, math.Abs(float64(h.Data[i]-v)))
				mx = math.Max(mx, math.Abs(float64(v)))
			}
			if e > 1e-6*mx {
				t.Errorf("%v fast=%v adapters=%v: ForwardTrain differs from Forward by %.3g (max |h| %.3g)", c.dt, c.fast, a != nil, e, mx)
			}
		}
	}
}

// benchModel8B builds the first two decoder layers of a Llama-3.1-8B-shaped
// model with random bf16 weights (a small vocabulary: the embedding gather
// does not depend on its size).
func benchModel8B(b *testing.B) *Model {
	cfg := Config{HiddenSize: 4096, IntermediateSize: 14336, NumLayers: 32, NumHeads: 32, NumKVHeads: 8, HeadDim: 128,
		RMSNormEps: 1e-5, RopeTheta: 500000, MaxPositionEmbeddings: 131072, VocabSize: 1000}
	rope, err := engine.NewRope(128, cfg.RopeTheta, cfg.MaxPositionEmbeddings, engine.RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 8192})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	randBF16 := func(scale float64, rows, cols int) *engine.Tensor {
		t := &engine.Tensor{DType: engine.BF16, Shape: []int{rows, cols}, Half: make([]uint16, rows*cols)}
		for i := range t.Half {
			t.Half[i] = kernels.F32ToBF16(float32((rng.Float64()*2 - 1) * scale * math.Sqrt(3)))
		}
		return t
	}
	m := &Model{Config: cfg, Embed: randBF16(1, cfg.VocabSize, cfg.HiddenSize), Rope: rope, Layers: make([]*Layer, cfg.NumLayers)}
	for l := 0; l < 2; l++ {
		L := &Layer{AttnNorm: make([]float32, 4096), MLPNorm: make([]float32, 4096)}
		for i := range L.AttnNorm {
			L.AttnNorm[i], L.MLPNorm[i] = 1, 1
		}
		for _, mod := range LoRAModules {
			out, in, _ := cfg.ModuleShape(mod)
			L.SetModuleWeight(mod, randBF16(1/math.Sqrt(float64(in)), out, in))
		}
		m.Layers[l] = L
	}
	return m
}

// BenchmarkTrainStep8B times one TLI step (forward to hidden_states[2] with
// LoRA r=16 on q_proj and v_proj, pooling, loss, backward) on a batch of 8
// pairs of 4-token words, against the inference forward to the same layer.
func BenchmarkTrainStep8B(b *testing.B) {
	m := benchModel8B(b)
	ad, params := trainTestAdapters(m.Config, []string{"q_proj", "v_proj"}, 16, 1, 0.05)
	var seqs [][]int
	for i := 0; i < 16; i++ {
		seqs = append(seqs, []int{1, 10 + i, 20 + i, 30 + i})
	}
	batch := NewBatch(seqs)
	b.Run("forward", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := m.HiddenStates(batch, []int{2}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("train", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			for _, p := range params {
				p.ZeroGrad()
			}
			tape := autograd.NewTape()
			tape.SetDropoutSeed(uint64(i))
			h, err := m.ForwardTrain(tape, batch, 2, ad)
			if err != nil {
				b.Fatal(err)
			}
			p, _ := autograd.MeanPool(tape, h, batch.Offsets, nil)
			p = autograd.L2Normalize(tape, p, 1e-12)
			sim := autograd.MatMulNT(tape, autograd.SliceRows(tape, p, 0, 8), autograd.SliceRows(tape, p, 8, 16))
			if err := tape.Backward(autograd.TripletMargin(tape, sim, 2)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
