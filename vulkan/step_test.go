//go:build vulkan && (amd64 || arm64) && (linux || darwin || windows)

package vulkan

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/tli-project/tli/autograd"
	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/lora"
	"github.com/tli-project/tli/tli"
)

// randomAdapters puts an adapter of rank r on each of targets in every
// layer (A and B random, so that both get gradients), and returns it twice
// with separate parameters: one for the CPU, one for the device.
func randomAdapters(rng *rand.Rand, cfg llama.Config, targets []string, r int, dropout float32) (llama.Adapters, llama.Adapters) {
	a, b := make(llama.Adapters, cfg.NumLayers), make(llama.Adapters, cfg.NumLayers)
	for l := range a {
		a[l], b[l] = map[string]*autograd.LoRA{}, map[string]*autograd.LoRA{}
		for _, name := range targets {
			out, in, _ := cfg.ModuleShape(name)
			A, B := autograd.NewParam("A", r, in), autograd.NewParam("B", out, r)
			for i := range A.Data {
				A.Data[i] = float32(rng.NormFloat64()) * 0.1
			}
			for i := range B.Data {
				B.Data[i] = float32(rng.NormFloat64()) * 0.1
			}
			A2, B2 := autograd.NewParam("A", r, in), autograd.NewParam("B", out, r)
			copy(A2.Data, A.Data)
			copy(B2.Data, B.Data)
			a[l][name] = &autograd.LoRA{A: A, B: B, Scale: 2, Dropout: dropout}
			b[l][name] = &autograd.LoRA{A: A2, B: B2, Scale: 2, Dropout: dropout}
		}
	}
	return a, b
}

// upload opens a context and uploads m (closed at the test's end); with
// stream, under streamingLimit with StreamReserveTokens = reserve (put back
// afterwards), and the test fails unless some layer is streamed.
func upload(t *testing.T, m *llama.Model, stream bool, reserve int) (*Context, *Model) {
	t.Helper()
	opt := Options{}
	if stream {
		saved := StreamReserveTokens
		StreamReserveTokens = reserve
		t.Cleanup(func() { StreamReserveTokens = saved })
		opt.MemoryLimit = int64(streamingLimit(m))
	}
	c := openContext(t, opt)
	dm, err := Upload(c, m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dm.Close() })
	if stream && dm.Streamed() == 0 {
		t.Fatal("no layer streamed")
	}
	return c, dm
}

// relErr is max |got − want| / RMS(want).
func relErr(got, want []float32) float64 {
	var ss, worst float64
	for i, w := range want {
		ss += float64(w) * float64(w)
		e := math.Abs(float64(got[i]) - float64(w))
		if math.IsNaN(e) {
			e = math.Inf(1)
		}
		worst = max(worst, e)
	}
	if ss == 0 {
		return math.Inf(1)
	}
	return worst / math.Sqrt(ss/float64(len(want)))
}

// bosFirst is a tli.Encoder whose special token is id 0 (the tests' BOS).
type bosFirst struct{}

func (bosFirst) Encode(string, bool) []int { return nil }
func (bosFirst) IsSpecial(id int) bool     { return id == 0 }

// TestStepMatchesCPU runs the model's part of a TLI step (tli.StepModel)
// on the device and on the CPU (tli.CPUStep: ForwardTrain on a tape) with
// the same adapters and dropout seed: the pooled vectors within 1e-4 of
// their RMS, every adapter parameter's gradient within 1e-3 of its RMS
// (and none where the CPU gives none: layers at or above the target), the
// whole step's loss (tli.Step) within 1e-4 relative and its gradients
// within 1e-3, over several steps
// of an optimiser so the adapters change between uploads; for f32, bf16
// and f16 weights, GQA, Qwen2's biases, Qwen3's q/k norms, adapters on
// every projection, content and mean pooling, dropout on and off, and a
// streamed model.
func TestStepMatchesCPU(t *testing.T) {
	gqa := llama.SynthOptions{Shape: "tiny", Layers: 5, Hidden: 96, Heads: 6, KVHeads: 2, HeadDim: 16, FFN: 160, Vocab: 300}
	all := []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
	qv := []string{"q_proj", "v_proj"}
	cases := []struct {
		name     string
		opts     llama.SynthOptions
		load     engine.DType
		f16      bool
		noWindow bool
		layer    int
		targets  []string
		dropout  float32
		pool     tli.Pooling
		stream   bool
	}{
		{name: "tiny-f32-qv", opts: llama.SynthOptions{Shape: "tiny"}, layer: 2, targets: qv, dropout: 0.05, pool: tli.PoolMean},
		{name: "tiny-f32-all-content", opts: llama.SynthOptions{Shape: "tiny"}, layer: 4, targets: all, dropout: 0.1, pool: tli.PoolContent},
		{name: "gqa-bf16-all", opts: withDType(gqa, engine.BF16), load: engine.BF16, layer: 3, targets: all, dropout: 0.05, pool: tli.PoolContent},
		{name: "gqa-f16-nodropout", opts: withDType(gqa, engine.F16), f16: true, layer: 5, targets: qv, pool: tli.PoolMean},
		{name: "qwen2-biases", opts: llama.SynthOptions{Shape: "tiny-qwen2"}, noWindow: true, layer: 2, targets: all, dropout: 0.05, pool: tli.PoolContent},
		{name: "qwen3-qknorm", opts: llama.SynthOptions{Shape: "tiny-qwen3", DType: engine.BF16}, load: engine.BF16, noWindow: true, layer: 3, targets: all, dropout: 0.05, pool: tli.PoolLast},
		{name: "tiny-streamed", opts: llama.SynthOptions{Shape: "tiny"}, layer: 3, targets: all, dropout: 0.05, pool: tli.PoolContent, stream: true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Seed = uint64(i + 1)
			m := synthModel(t, t.TempDir(), tc.opts, llama.LoadOptions{MaxLayer: llama.AllLayers, DType: tc.load})
			if tc.f16 {
				toF16(m)
			}
			if tc.noWindow {
				m.Config.SlidingWindow = 0
			}
			c, dm := upload(t, m, tc.stream, 1024) // streamed: room the step takes over
			live := c.Live()["buffer"]
			rng := rand.New(rand.NewPCG(uint64(i), 9))
			adCPU, adDev := randomAdapters(rng, m.Config, tc.targets, 4, tc.dropout)
			cpu := &tli.CPUStep{Model: m}
			worstPool, worstGrad, worstStep, worstLoss := 0.0, 0.0, 0.0, 0.0
			for step := 0; step < 3; step++ {
				// Four pairs: eight sequences of 2..6 tokens, BOS (id 0) first.
				var seqs [][]int
				for s := 0; s < 8; s++ {
					seq := []int{0}
					for n := 1 + rng.IntN(5); n > 0; n-- {
						seq = append(seq, 1+rng.IntN(m.Config.VocabSize-1))
					}
					seqs = append(seqs, seq)
				}
				var dropCPU, dropDev *autograd.Dropout
				if tc.dropout > 0 {
					dropCPU, dropDev = autograd.NewDropout(uint64(step)), autograd.NewDropout(uint64(step))
				}
				// The pooled vectors and the gradients from one random dpooled.
				b := llama.NewBatch(seqs)
				var mask []bool
				if tc.pool == tli.PoolContent {
					mask = make([]bool, len(b.Tokens))
					for j, id := range b.Tokens {
						mask[j] = id != 0
					}
				}
				want, err := cpu.PoolForward(b, mask, tc.layer, adCPU, dropCPU)
				if err != nil {
					t.Fatal(err)
				}
				want = append([]float32(nil), want...)
				got, err := dm.PoolForward(b, mask, tc.layer, adDev, dropDev)
				if err != nil {
					t.Fatal(err)
				}
				if e := relErr(got, want); e > 1e-4 {
					t.Errorf("step %d: pooled vectors: max error / RMS %.3g > 1e-4", step, e)
				} else {
					worstPool = max(worstPool, e)
				}
				dp := make([]float32, len(want))
				for j := range dp {
					dp[j] = float32(rng.NormFloat64())
				}
				if err := cpu.PoolBackward(dp); err != nil {
					t.Fatal(err)
				}
				if err := dm.PoolBackward(dp); err != nil {
					t.Fatal(err)
				}
				worstGrad = max(worstGrad, compareGrads(t, adCPU, adDev, tc.layer))

				// The whole step, loss on the host.
				if tc.dropout > 0 {
					dropCPU, dropDev = autograd.NewDropout(uint64(step+10)), autograd.NewDropout(uint64(step+10))
				}
				rc, err := tli.Step(cpu, bosFirst{}, adCPU, seqs, tc.layer, tc.pool, 0.4, dropCPU)
				if err != nil {
					t.Fatal(err)
				}
				rd, err := tli.Step(dm, bosFirst{}, adDev, seqs, tc.layer, tc.pool, 0.4, dropDev)
				if err != nil {
					t.Fatal(err)
				}
				if rc.Loss == 0 {
					t.Fatalf("step %d: the CPU's loss is 0: the test checks nothing", step)
				}
				e := math.Abs(rd.Loss-rc.Loss) / math.Abs(rc.Loss)
				worstLoss = max(worstLoss, e)
				if e > 1e-4 {
					t.Errorf("step %d: loss %v on the device, %v on the CPU (relative error %.3g)", step, rd.Loss, rc.Loss, e)
				}
				worstStep = max(worstStep, compareGrads(t, adCPU, adDev, tc.layer))
				// The adapters change (the same on both) before the next
				// step uploads them again.
				for l, mods := range adCPU {
					for name, la := range mods {
						for j, p := range la.Params() {
							for k := range p.Data {
								p.Data[k] += 0.01 * float32(rng.NormFloat64())
							}
							q := adDev[l][name].Params()[j]
							copy(q.Data, p.Data)
							p.ZeroGrad()
							q.ZeroGrad()
						}
					}
				}
			}
			// Nothing of the steps stays allocated (a streamed model's
			// inference activations may have made way for them), and the
			// inference forward still runs.
			if n := c.Live()["buffer"]; n > live || (!tc.stream && n != live) {
				t.Errorf("%d buffers live after the steps, %d before", n, live)
			}
			compareForward(t, m, dm, randomBatch(rng, m.Config.VocabSize, 3, 9), []int{1, tc.layer})
			t.Logf("%s: worst max error / RMS: pooled %.2e, gradients %.2e (%.2e from the loss); loss relative error %.2e", tc.name, worstPool, worstGrad, worstStep, worstLoss)
		})
	}
}

// compareGrads checks every parameter's gradient of the device's adapters
// against the CPU's (accumulated over the same steps) and returns the worst
// max error / RMS.
func compareGrads(t *testing.T, cpu, dev llama.Adapters, layer int) float64 {
	t.Helper()
	worst := 0.0
	for l := range cpu {
		for name, lc := range cpu[l] {
			ld := dev[l][name]
			for j, pc := range lc.Params() {
				pd := ld.Params()[j]
				if (pc.Grad == nil) != (pd.Grad == nil) {
					t.Errorf("layer %d %s param %d: CPU gradient nil %v, device nil %v", l, name, j, pc.Grad == nil, pd.Grad == nil)
					continue
				}
				if pc.Grad == nil {
					if l < layer {
						t.Errorf("layer %d %s: no gradient below the target layer %d", l, name, layer)
					}
					continue
				}
				e := relErr(pd.Grad, pc.Grad)
				worst = max(worst, e)
				if e > 1e-3 {
					t.Errorf("layer %d %s param %d: gradient max error / RMS %.3g > 1e-3", l, name, j, e)
				}
			}
		}
	}
	return worst
}

// TestStepOutOfMemory checks that a training step whose activations do
// not fit beside the weights is an error wrapping ErrOutOfMemory that says
// so in one line, leaves nothing allocated, and that a smaller step then
// runs.
func TestStepOutOfMemory(t *testing.T) {
	dir := t.TempDir()
	m := synthModel(t, dir, llama.SynthOptions{Shape: "tiny"}, llama.LoadOptions{MaxLayer: llama.AllLayers})
	limit := weightBytes(m) + (&Model{cfg: m.Config}).actBytes(min(StreamReserveTokens, m.Config.MaxContext())) + 64<<10
	c := openContext(t, Options{MemoryLimit: int64(limit)})
	dm, err := Upload(c, m)
	if err != nil {
		t.Fatal(err)
	}
	defer dm.Close()
	if dm.Streamed() != 0 {
		t.Fatalf("%d layers streamed", dm.Streamed())
	}
	live := c.Live()["buffer"]
	rng := rand.New(rand.NewPCG(3, 3))
	_, ad := randomAdapters(rng, m.Config, []string{"q_proj", "v_proj"}, 4, 0.05)
	var seqs [][]int
	for range 16 {
		seq := make([]int, 60)
		for i := range seq {
			seq[i] = 1 + rng.IntN(m.Config.VocabSize-1)
		}
		seqs = append(seqs, seq)
	}
	_, err = dm.PoolForward(llama.NewBatch(seqs), nil, 4, ad, autograd.NewDropout(1))
	if !errors.Is(err, ErrOutOfMemory) || !strings.Contains(err.Error(), "do not fit the device memory") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("a step of %d tokens under %s: %v, want one line wrapping ErrOutOfMemory", 16*60, byteSize(limit), err)
	}
	t.Log(err)
	if err := c.Sync(); err != nil {
		t.Fatal(err)
	}
	if n := c.Live()["buffer"]; n != live {
		t.Errorf("%d buffers live after the failed step, %d before", n, live)
	}
	if _, err := dm.PoolForward(llama.NewBatch(seqs[:2]), nil, 2, ad, autograd.NewDropout(1)); err != nil {
		t.Fatal(err)
	}
	if err := dm.PoolBackward(make([]float32, 2*m.Config.HiddenSize)); err != nil {
		t.Fatal(err)
	}
}

// TestStepContract checks PoolForward's refusals (one line each), a
// PoolBackward without a forward or with the wrong size, a step whose loss
// depends on no adapter, and that a step's buffers are freed by the next
// forward or by Close.
func TestStepContract(t *testing.T) {
	c := openContext(t, Options{})
	m := synthModel(t, t.TempDir(), llama.SynthOptions{Shape: "tiny"}, llama.LoadOptions{MaxLayer: llama.AllLayers})
	dm, err := Upload(c, m)
	if err != nil {
		t.Fatal(err)
	}
	live := c.Live()["buffer"]
	rng := rand.New(rand.NewPCG(1, 2))
	_, ad := randomAdapters(rng, m.Config, []string{"q_proj", "v_proj"}, 2, 0)
	b := llama.NewBatch([][]int{{0, 5, 6}, {0, 7}})
	for _, tc := range []struct {
		name  string
		b     llama.Batch
		mask  []bool
		layer int
		ad    llama.Adapters
		want  string
	}{
		{"layer", b, nil, 9, ad, "target layer 9 is outside 0..4"},
		{"mask", b, []bool{true}, 2, ad, "the mask has 1 entries for 5 tokens"},
		{"token", llama.NewBatch([][]int{{0, 1 << 20}}), nil, 2, ad, "outside the vocabulary"},
		{"module", b, nil, 2, llama.Adapters{{"lm_head": ad[0]["q_proj"]}}, "unknown LoRA target module"},
		{"empty-pool", b, []bool{false, true, true, false, false}, 2, ad, "sequence 1 has no token to pool"},
	} {
		_, err := dm.PoolForward(tc.b, tc.mask, tc.layer, tc.ad, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want one line with %q", tc.name, err, tc.want)
		}
	}
	if err := dm.PoolBackward(make([]float32, 2*m.Config.HiddenSize)); err == nil || !strings.Contains(err.Error(), "without a PoolForward") {
		t.Errorf("PoolBackward first: %v", err)
	}
	if _, err := dm.PoolForward(b, nil, 2, ad, nil); err != nil {
		t.Fatal(err)
	}
	if err := dm.PoolBackward(make([]float32, 3)); err == nil || !strings.Contains(err.Error(), "3 values for the gradient of 2 pooled vectors") {
		t.Errorf("PoolBackward of the wrong size: %v", err)
	}
	// Only adapters at or above the target layer: nothing to train.
	high := make(llama.Adapters, 3)
	high[2] = ad[2]
	if _, err := dm.PoolForward(b, nil, 2, high, nil); err != nil {
		t.Fatal(err)
	}
	if err := dm.PoolBackward(make([]float32, 2*m.Config.HiddenSize)); err == nil || !strings.Contains(err.Error(), "does not depend on any trainable parameter") {
		t.Errorf("no adapter below the target: %v", err)
	}
	// A forward left without its backward is freed by the next one and by Close.
	for range 2 {
		if _, err := dm.PoolForward(b, nil, 3, ad, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := dm.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(); err != nil {
		t.Fatal(err)
	}
	if n := c.Live()["buffer"]; n != 0 {
		t.Errorf("%d buffers live after Close (%d with the model)", n, live)
	}
	if _, err := dm.PoolForward(b, nil, 2, ad, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("PoolForward after Close: %v", err)
	}
}

// wordEnc is a tli.Encoder of the tests: BOS (id 0), then one id per byte
// of the word.
type wordEnc struct{ vocab int }

func (e wordEnc) Encode(w string, _ bool) []int {
	ids := []int{0}
	for _, c := range []byte(w) {
		ids = append(ids, 1+int(c)%(e.vocab-1))
	}
	return ids
}
func (wordEnc) IsSpecial(id int) bool { return id == 0 }

// TestEvaluateOnDevice evaluates an adapter (tli.Evaluate: the base model's
// vectors, then the adapter merged and its layers uploaded again) on the
// device and on the CPU: every vector within 1e-4 of its RMS, the summary
// means within 1e-5; afterwards the device holds the original weights
// again (its forward matches the CPU's base model), for resident and
// streamed layers, f32 and bf16 weights.
func TestEvaluateOnDevice(t *testing.T) {
	for _, tc := range []struct {
		name   string
		dt     engine.DType
		stream bool
	}{{"f32", engine.F32, false}, {"bf16", engine.BF16, false}, {"f32-streamed", engine.F32, true}} {
		t.Run(tc.name, func(t *testing.T) {
			m := synthModel(t, t.TempDir(), llama.SynthOptions{Shape: "tiny", DType: tc.dt, Seed: 4}, llama.LoadOptions{MaxLayer: llama.AllLayers, DType: tc.dt})
			_, dm := upload(t, m, tc.stream, 128)
			cfg := lora.Config{R: 4, Alpha: 8, TargetModules: []string{"q_proj", "v_proj", "down_proj"}}
			a, err := lora.New(cfg, m.Config, 3)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(4, 4))
			for _, p := range a.Params() {
				for i := range p.Data {
					p.Data[i] = float32(rng.NormFloat64()) * 0.2
				}
			}
			words := []string{"maji", "water", "moto", "fire", "nyumba", "house", "mti", "tree", "jua", "sun"}
			var pairs []tli.Pair
			for i := 0; i+1 < len(words); i += 2 {
				pairs = append(pairs, tli.Pair{Source: words[i], Target: words[i+1]})
			}
			groups := []tli.Group{{Name: "trained", Pairs: pairs[:3]}, {Name: "control", Pairs: pairs[3:]}}
			enc := wordEnc{m.Config.VocabSize}
			layers := []int{0, 2, 4}
			want, err := tli.Evaluate(m, nil, enc, a, groups, layers, layers, tli.PoolContent, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tli.Evaluate(m, dm, enc, a, groups, layers, layers, tli.PoolContent, nil)
			if err != nil {
				t.Fatal(err)
			}
			worst := 0.0
			for _, vs := range []struct {
				name      string
				got, want tli.GroupVectors
			}{{"before", got.Before, want.Before}, {"after", got.After, want.After}} {
				for _, l := range layers {
					for g, w := range vs.want[tli.PoolContent][l] {
						d := vs.got[tli.PoolContent][l][g]
						for side, wv := range [][][]float32{w.Src, w.Tgt} {
							dv := [][][]float32{d.Src, d.Tgt}[side]
							for i := range wv {
								e := relErr(dv[i], wv[i])
								worst = max(worst, e)
								if e > 1e-4 {
									t.Errorf("%s %s layer %d vector %d: max error / RMS %.3g", vs.name, g, l, i, e)
								}
							}
						}
					}
				}
			}
			for i, g := range want.Summary.Groups {
				h := got.Summary.Groups[i]
				if math.Abs(g.MeanPost-h.MeanPost) > 1e-5 || math.Abs(g.MeanPre-h.MeanPre) > 1e-5 {
					t.Errorf("%s layer %d: means %.7f → %.7f on the device, %.7f → %.7f on the CPU", g.Group, g.Layer, h.MeanPre, h.MeanPost, g.MeanPre, g.MeanPost)
				}
			}
			if d := want.Summary.Groups[len(want.Summary.Groups)-1]; math.Abs(d.MeanPost-d.MeanPre) < 1e-4 {
				t.Fatalf("the adapter changes nothing at layer %d (%.6f → %.6f): the test checks nothing", d.Layer, d.MeanPre, d.MeanPost)
			}
			compareForward(t, m, dm, randomBatch(rng, m.Config.VocabSize, 4, 7), allLayers(m.Config.NumLayers))
			t.Logf("%s: worst vector max error / RMS %.2e", tc.name, worst)
		})
	}
}
