package tli

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/internal/peer"
	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/lora"
)

// bosOnly marks token id 1 (the synthetic checkpoints' BOS in these
// batches) as the only special token; the batches are token ids already.
type bosOnly struct{}

func (bosOnly) Encode(string, bool) []int { return nil }
func (bosOnly) IsSpecial(id int) bool     { return id == 1 }

// randomizeB gives every lora_B a non-zero value, so that the first steps
// already move every parameter.
func randomizeB(a *lora.Adapter, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	for _, p := range a.Params() {
		if strings.Contains(p.Name, "lora_B") {
			for i := range p.Data {
				p.Data[i] = float32(rng.NormFloat64() * 0.1)
			}
		}
	}
}

type refBatch struct {
	SW [][]int `json:"sw"`
	EN [][]int `json:"en"`
}

type refRequest struct {
	Batches     []refBatch `json:"batches"`
	TargetLayer int        `json:"target_layer"`
	Margin      float64    `json:"margin"`
	LR          float64    `json:"lr"`
	Warmup      int        `json:"warmup"`
	Total       int        `json:"total"`
	Steps       int        `json:"steps"`
	Pool        string     `json:"pool"`
}

// relErr is max |a−b| over max |b|.
func relErr(a []float32, b *engine.Tensor) float64 {
	var e, m float64
	for i, v := range a {
		w := float64(b.At(i))
		e = math.Max(e, math.Abs(float64(v)-w))
		m = math.Max(m, math.Abs(w))
	}
	return e / math.Max(m, 1e-30)
}

// TestTrainParityTorch trains the same adapter for 20 steps with the
// trainer's own Step in Go and in PyTorch (internal/ref/train_ref.py) and
// compares the first step's LoRA gradients, every step's loss and the final
// adapter weights.
func TestTrainParityTorch(t *testing.T) {
	py := peer.Torch(t)
	trainParity(t, py, "tiny", []string{"q_proj", "v_proj"}, 4, []parityRun{{"all", 20}, {"content", 3}})
}

// TestTrainParityFamilies is TestTrainParityTorch for the other families,
// with LoRA on every Linear layer (the backward through Qwen2's biases,
// Qwen3's q/k norms, Gemma's GeGLU and norms) and words of up to 9 tokens,
// longer than the tiny shapes' sliding window of 6.
func TestTrainParityFamilies(t *testing.T) {
	py := peer.Torch(t)
	for _, fam := range []string{"mistral", "qwen2", "qwen3", "gemma", "gemma2", "bloom"} {
		t.Run(fam, func(t *testing.T) {
			trainParity(t, py, "tiny-"+fam, nil, 8, []parityRun{{"all", 20}})
		})
	}
}

type parityRun struct {
	pool  string
	steps int
}

// parityTol are the relative errors trainParity allows: losses, first-step
// gradients, final adapters; num is the numeric setting trained in.
type parityTol struct {
	loss, grad, param float64
	num               llama.Numerics
}

// exactTol is the f32 setting's.
var exactTol = parityTol{loss: 1e-4, grad: 1e-4, param: 1e-3}

// TestTrainParityPaperNumerics is TestTrainParityTorch in the published
// numerics (NF4 weights, fp16 activations; the reference rounds at the
// same points, in float64, with gradients passed straight through the
// rounding). Products rounded to bf16 in another summation order flip a
// value to its bf16 neighbour now and then, so the losses agree to 1e-3
// and the gradients and adapters less closely than in f32.
func TestTrainParityPaperNumerics(t *testing.T) {
	py := peer.Torch(t)
	trainParityWith(t, py, "tiny", []string{"q_proj", "v_proj"}, 4, []parityRun{{"all", 10}},
		parityTol{loss: 1e-3, grad: 2e-2, param: 2e-2, num: PaperScanNumerics})
}

// trainParity trains in Go and in PyTorch on a 3-layer synthetic
// checkpoint of the shape, at layer 2, with LoRA on targets (nil: every
// module of the family), words of
// 1..maxTokens tokens after BOS, and compares losses, first-step
// gradients and final adapters.
func trainParity(t *testing.T, py, shape string, targets []string, maxTokens int, runs []parityRun) {
	trainParityWith(t, py, shape, targets, maxTokens, runs, exactTol)
}

// trainParityWith is trainParity in the numeric setting and with the
// tolerances of tol.
func trainParityWith(t *testing.T, py, shape string, targets []string, maxTokens int, runs []parityRun, tol parityTol) {
	tmp := t.TempDir()
	modelDir := filepath.Join(tmp, "model")
	if err := llama.Synth(modelDir, llama.SynthOptions{Shape: shape, Layers: 3, Seed: 21}); err != nil {
		t.Fatal(err)
	}
	m, err := llama.Load(modelDir, llama.LoadOptions{DType: engine.F32, MaxLayer: 2, Numerics: tol.num})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// The initial adapter: PEFT init with a non-zero B, through PEFT files.
	if targets == nil {
		targets = m.Config.LoRAModules()
	}
	a0, err := lora.New(lora.Config{R: 4, Alpha: 8, TargetModules: targets}, m.Config, 4)
	if err != nil {
		t.Fatal(err)
	}
	randomizeB(a0, 5)
	adapterDir := filepath.Join(tmp, "adapter")
	if err := a0.Save(adapterDir); err != nil {
		t.Fatal(err)
	}
	// Fixed, unshuffled batches of 8 pairs of 1–4 word tokens after BOS 1.
	rng := rand.New(rand.NewPCG(6, 6))
	word := func() []int {
		w := []int{1}
		for n := 1 + rng.IntN(maxTokens); n > 0; n-- {
			w = append(w, 3+rng.IntN(m.Config.VocabSize-3))
		}
		return w
	}
	var batches []refBatch
	for b := 0; b < 3; b++ {
		var rb refBatch
		for i := 0; i < 8; i++ {
			rb.SW = append(rb.SW, word())
			rb.EN = append(rb.EN, word())
		}
		batches = append(batches, rb)
	}

	for _, c := range runs {
		req := refRequest{Batches: batches, TargetLayer: 2, Margin: 0.4, LR: 5e-3, Warmup: 3, Total: 20, Steps: c.steps, Pool: c.pool}
		reqJSON, _ := json.Marshal(req)
		reqPath := filepath.Join(tmp, "req.json")
		outPath := filepath.Join(tmp, "out-"+c.pool+".safetensors")
		if err := os.WriteFile(reqPath, reqJSON, 0o644); err != nil {
			t.Fatal(err)
		}
		args := []string{filepath.Join(peer.Root(), "internal", "ref", "train_ref.py"),
			"--model", modelDir, "--adapter", adapterDir, "--request", reqPath, "--out", outPath}
		if tol.num.Quant != "" || tol.num.Activations != engine.F32 {
			q := tol.num.Quant
			if q == "" {
				q = "none"
			}
			args = append(args, "--quant", q, "--activations", map[engine.DType]string{engine.F32: "f32", engine.BF16: "bf16", engine.F16: "fp16"}[tol.num.Activations])
		}
		cmd := exec.Command(py, args...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("train_ref.py: %v\n%s", err, out)
		}
		ref, _, err := llama.ReadSafetensors(outPath)
		if err != nil {
			t.Fatal(err)
		}

		a, err := lora.Load(adapterDir, m.Config)
		if err != nil {
			t.Fatal(err)
		}
		opt := lora.NewAdamW()
		var worstLoss, worstGrad float64
		for step := 0; step < req.Steps; step++ {
			b := batches[step%len(batches)]
			a.ZeroGrad()
			pool := PoolMean
			if c.pool == "content" {
				pool = PoolContent
			}
			res, err := Step(&CPUStep{Model: m}, bosOnly{}, a.Adapters(), append(append([][]int{}, b.SW...), b.EN...), req.TargetLayer, pool, float32(req.Margin), nil)
			if err != nil {
				t.Fatal(err)
			}
			loss := res.Loss
			want := float64(ref["losses"].At(step))
			if want == 0 {
				t.Fatalf("%s: step %d: reference loss is 0, the test checks nothing", c.pool, step)
			}
			e := math.Abs(loss-want) / math.Abs(want)
			worstLoss = math.Max(worstLoss, e)
			if e > tol.loss {
				t.Errorf("%s: step %d: loss %v, PyTorch %v (relative error %.2g)", c.pool, step, loss, want, e)
			}
			if step == 0 {
				for _, p := range a.Params() {
					g := ref["grad."+p.Name]
					if g == nil {
						if p.Grad != nil {
							t.Errorf("%s: %s has a gradient, PyTorch none", c.pool, p.Name)
						}
						continue
					}
					if p.Grad == nil {
						t.Fatalf("%s: %s has no gradient, PyTorch has", c.pool, p.Name)
					}
					e := relErr(p.Grad, g)
					worstGrad = math.Max(worstGrad, e)
					if e > tol.grad {
						t.Errorf("%s: gradient of %s: relative error %.2g", c.pool, p.Name, e)
					}
				}
			}
			opt.Step(a.Params(), req.LR*lora.LinearSchedule(step, req.Warmup, req.Total))
		}
		var worstParam float64
		for _, p := range a.Params() {
			e := relErr(p.Data, ref[p.Name])
			worstParam = math.Max(worstParam, e)
			if e > tol.param {
				t.Errorf("%s: final %s: relative error %.2g", c.pool, p.Name, e)
			}
			if p.Name == lora.KeyA(2, "q_proj") {
				init := a0.Layers[2]["q_proj"].A.Data
				for i := range init {
					if p.Data[i] != init[i] {
						t.Fatalf("%s: adapter of layer 2 (at the target layer) changed", c.pool)
					}
				}
			}
		}
		t.Logf("pool %s, %d steps: max relative error: losses %.2e, first-step gradients %.2e, final A and B %.2e",
			c.pool, req.Steps, worstLoss, worstGrad, worstParam)
	}
}
