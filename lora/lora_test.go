package lora

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tli-project/tli/autograd"
	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/llama"
)

// synthModel writes a small synthetic checkpoint and returns its folder.
func synthModel(t *testing.T, dt engine.DType) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "model")
	if err := llama.Synth(dir, llama.SynthOptions{Layers: 3, Hidden: 32, Heads: 4, KVHeads: 2, FFN: 48, Vocab: 300, DType: dt, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func tinyConfig() llama.Config {
	return llama.Config{HiddenSize: 32, IntermediateSize: 48, NumLayers: 3, NumHeads: 4, NumKVHeads: 2, HeadDim: 8, VocabSize: 64, RMSNormEps: 1e-5}
}

// randomizeB gives every B non-zero values so that adapters change outputs.
func randomizeB(a *Adapter, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	for _, p := range a.Params() {
		if strings.Contains(p.Name, "lora_B") {
			for i := range p.Data {
				p.Data[i] = float32(rng.NormFloat64() * 0.1)
			}
		}
	}
}

func TestInitPEFT(t *testing.T) {
	cfg := tinyConfig()
	a, err := New(PaperConfig(), cfg, 7)
	if err != nil {
		t.Fatal(err)
	}
	ps := a.Params()
	if len(ps) != 3*2*2 {
		t.Fatalf("%d params, want 12", len(ps))
	}
	if ps[0].Name != "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" || ps[3].Name != "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight" {
		t.Errorf("names %q, %q", ps[0].Name, ps[3].Name)
	}
	ad := a.Layers[1]["v_proj"]
	if ad.A.Rows != 16 || ad.A.Cols != 32 || ad.B.Rows != 16 || ad.B.Cols != 16 || ad.Scale != 2 || ad.Dropout != 0.05 {
		t.Errorf("v_proj adapter: A %d×%d B %d×%d scale %v dropout %v", ad.A.Rows, ad.A.Cols, ad.B.Rows, ad.B.Cols, ad.Scale, ad.Dropout)
	}
	// A ~ U(±1/sqrt(in)): every value inside the bound, mean ≈ 0, variance ≈ bound²/3.
	bound := 1 / math.Sqrt(32)
	var n, sum, sq float64
	for _, p := range ps {
		for _, v := range p.Data {
			if strings.Contains(p.Name, "lora_B") {
				if v != 0 {
					t.Fatalf("%s not zero", p.Name)
				}
				continue
			}
			if math.Abs(float64(v)) > bound {
				t.Fatalf("%s: %v outside ±%v", p.Name, v, bound)
			}
			n++
			sum += float64(v)
			sq += float64(v) * float64(v)
		}
	}
	mean, variance := sum/n, sq/n-(sum/n)*(sum/n)
	if math.Abs(mean) > 0.1*bound || math.Abs(variance/(bound*bound/3)-1) > 0.1 {
		t.Errorf("A mean %v variance %v, want 0 and %v", mean, variance, bound*bound/3)
	}
	// Deterministic in the seed, independent of the other modules.
	b, _ := New(Config{R: 16, Alpha: 32, TargetModules: []string{"q_proj"}}, cfg, 7)
	c, _ := New(PaperConfig(), cfg, 8)
	if b.Layers[2]["q_proj"].A.Data[5] != a.Layers[2]["q_proj"].A.Data[5] {
		t.Error("q_proj A depends on whether v_proj is adapted")
	}
	if c.Layers[2]["q_proj"].A.Data[5] == a.Layers[2]["q_proj"].A.Data[5] {
		t.Error("a different seed gives the same A")
	}
}

const paperConfigJSON = `{
  "alpha_pattern": {},
  "auto_mapping": null,
  "base_model_name_or_path": "meta-llama/Llama-3.1-8B-Instruct",
  "bias": "none",
  "fan_in_fan_out": false,
  "inference_mode": true,
  "init_lora_weights": true,
  "layer_replication": null,
  "layers_pattern": null,
  "layers_to_transform": null,
  "loftq_config": {},
  "lora_alpha": 32,
  "lora_dropout": 0.05,
  "megatron_config": null,
  "megatron_core": "megatron.core",
  "modules_to_save": null,
  "peft_type": "LORA",
  "r": 16,
  "rank_pattern": {},
  "revision": null,
  "target_modules": [
    "q_proj",
    "v_proj"
  ],
  "task_type": "CAUSAL_LM",
  "use_dora": false,
  "use_rslora": false
}`

func TestConfigPEFT(t *testing.T) {
	c := PaperConfig()
	c.BaseModel = "meta-llama/Llama-3.1-8B-Instruct"
	js, err := c.MarshalPEFT()
	if err != nil {
		t.Fatal(err)
	}
	if string(js) != paperConfigJSON {
		t.Errorf("adapter_config.json:\n%s\nwant\n%s", js, paperConfigJSON)
	}
	back, err := ParsePEFT(js, "x")
	if err != nil {
		t.Fatal(err)
	}
	if back.R != 16 || back.Alpha != 32 || back.Dropout != 0.05 || back.Layers != nil || back.BaseModel != c.BaseModel || strings.Join(back.TargetModules, ",") != "q_proj,v_proj" {
		t.Errorf("round trip: %+v", back)
	}
	// layers_to_transform as an integer or a list; rsLoRA scale.
	c2, err := ParsePEFT([]byte(`{"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":["v_proj"],"layers_to_transform":1,"use_rslora":true}`), "x")
	if err != nil || len(c2.Layers) != 1 || c2.Layers[0] != 1 || c2.Scale() != 4 {
		t.Errorf("int layers_to_transform, rslora: %+v (scale %v), %v", c2, c2.Scale(), err)
	}
	bad := map[string]string{
		`{"peft_type":"PREFIX_TUNING","r":4,"lora_alpha":8,"target_modules":["q_proj"]}`:                  "peft_type",
		`{"peft_type":"LORA","lora_alpha":8,"target_modules":["q_proj"]}`:                                 `x: r: missing (want a positive integer)`,
		`{"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":"q_proj|v_proj"}`:                      `target_modules: the string "q_proj|v_proj" is a regular expression in PEFT`,
		`{"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":["lm_head"]}`:                          `x: target_modules: "lm_head" is not a module tli can adapt (want some of [q_proj k_proj v_proj o_proj gate_proj up_proj down_proj query_key_value dense dense_h_to_4h dense_4h_to_h])`,
		`{"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":["q_proj"],"use_dora":true}`:           "use_dora",
		`{"peft_type":"LORA","r":0,"lora_alpha":8,"target_modules":["q_proj"]}`:                           "x: r: 0 is not a positive integer (want r ≥ 1)",
		`{"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":["q_proj"],"modules_to_save":["x"]}`:   "modules_to_save",
		`{"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":["q_proj"],"bias":"all"}`:              "bias",
		`{"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":["q_proj"],"rank_pattern":{"a":2}}`:    "rank_pattern",
		`{"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":["q_proj"],"layers_to_transform":"x"}`: "layers_to_transform",
		`not json`: "x:",
	}
	for js, want := range bad {
		if _, err := ParsePEFT([]byte(js), "x"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", js, err, want)
		}
	}
	// Layers outside the model.
	if _, err := New(Config{R: 2, Alpha: 2, TargetModules: []string{"q_proj"}, Layers: []int{3}}, tinyConfig(), 1); err == nil || !strings.Contains(err.Error(), "layer 3") {
		t.Errorf("layer out of range: %v", err)
	}
}

func TestSaveLoad(t *testing.T) {
	cfg := tinyConfig()
	c := Config{R: 4, Alpha: 8, Dropout: 0.1, TargetModules: []string{"v_proj", "q_proj", "down_proj"}, Layers: []int{0, 2}, BaseModel: "x"}
	a, err := New(c, cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	randomizeB(a, 2)
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := a.Save(dir); err != nil {
		t.Fatal(err)
	}
	// Saving again replaces the folder atomically (no leftovers beside it).
	if err := a.Save(dir); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(dir)); len(ents) != 1 {
		t.Errorf("%d entries beside the adapter, want 1", len(ents))
	}
	tensors, meta, err := llama.ReadSafetensors(filepath.Join(dir, WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(tensors) != 2*3*2 || meta["format"] != "pt" {
		t.Errorf("%d tensors, metadata %v", len(tensors), meta)
	}
	bt := tensors["base_model.model.model.layers.2.mlp.down_proj.lora_B.weight"]
	if bt == nil || bt.DType != engine.F32 || bt.Shape[0] != 32 || bt.Shape[1] != 4 {
		t.Fatalf("down_proj lora_B: %+v", bt)
	}
	b, err := Load(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if b.Layers[1] != nil || len(b.Layers[2]) != 3 || b.Config.Dropout != 0.1 {
		t.Errorf("loaded layers %v, config %+v", b.Layers, b.Config)
	}
	pa, pb := a.Params(), b.Params()
	for i := range pa {
		if pa[i].Name != pb[i].Name {
			t.Fatalf("param %d: %s vs %s", i, pa[i].Name, pb[i].Name)
		}
		for j := range pa[i].Data {
			if pa[i].Data[j] != pb[i].Data[j] {
				t.Fatalf("%s[%d] differs", pa[i].Name, j)
			}
		}
	}

	// Broken adapters get errors naming the problem.
	cfgPath := filepath.Join(dir, ConfigFile)
	orig, _ := os.ReadFile(cfgPath)
	check := func(name, want string) {
		t.Helper()
		if _, err := Load(dir, cfg); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", name, err, want)
		}
	}
	os.WriteFile(cfgPath, []byte(strings.Replace(string(orig), `"r": 4`, `"r": 8`, 1)), 0o644)
	check("r disagrees with tensors", "has shape [4 32], want [8 32]")
	os.WriteFile(cfgPath, []byte(strings.Replace(string(orig), `"q_proj",`, `"q_proj", "k_proj",`, 1)), 0o644)
	check("missing tensors", `missing tensor "base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight"`)
	os.WriteFile(cfgPath, []byte(strings.Replace(string(orig), `"q_proj",`, ``, 1)), 0o644)
	check("extra tensors", `unexpected tensor "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"`)
	os.WriteFile(cfgPath, orig, 0o644)
	small := cfg
	small.NumLayers = 2
	check2 := func() {
		if _, err := Load(dir, small); err == nil || !strings.Contains(err.Error(), "layer 2") {
			t.Errorf("model with fewer layers: %v", err)
		}
	}
	check2()
	other := cfg
	other.IntermediateSize = 40
	if _, err := Load(dir, other); err == nil || !strings.Contains(err.Error(), "want [4 40]") {
		t.Errorf("model of another shape: %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "none"), cfg); err == nil || !strings.Contains(err.Error(), ConfigFile) {
		t.Errorf("missing folder: %v", err)
	}
}

func TestAdamWMatchesFormula(t *testing.T) {
	// Three steps with lr 1e-2 against the update computed in float64.
	p := autograd.NewParam("p", 1, 3)
	copy(p.Data, []float32{0.5, -1, 2})
	idle := autograd.NewParam("idle", 1, 2)
	copy(idle.Data, []float32{1, 2})
	grads := [][]float32{{0.1, -0.2, 0.3}, {0.05, 0.4, -1}, {0, 0.1, 0.2}}
	o := NewAdamW()
	ref := []float64{0.5, -1, 2}
	m, v := make([]float64, 3), make([]float64, 3)
	for step, g := range grads {
		p.Grad = g
		lr := 1e-2
		o.Step([]*autograd.Param{p, idle}, lr)
		tt := float64(step + 1)
		for i := range ref {
			ref[i] *= 1 - lr*0.01
			m[i] = 0.9*m[i] + 0.1*float64(g[i])
			v[i] = 0.999*v[i] + 0.001*float64(g[i])*float64(g[i])
			ref[i] -= lr / (1 - math.Pow(0.9, tt)) * m[i] / (math.Sqrt(v[i])/math.Sqrt(1-math.Pow(0.999, tt)) + 1e-8)
		}
	}
	for i := range ref {
		if math.Abs(float64(p.Data[i])-ref[i]) > 1e-6*math.Abs(ref[i]) {
			t.Errorf("p[%d] = %v, want %v", i, p.Data[i], ref[i])
		}
	}
	if idle.Data[0] != 1 || idle.Data[1] != 2 || o.StepCount("idle") != 0 || o.StepCount("p") != 3 {
		t.Errorf("a parameter without gradient changed: %v, steps %d/%d", idle.Data, o.StepCount("idle"), o.StepCount("p"))
	}
}

func TestAdamWResume(t *testing.T) {
	run := func(steps int, o *AdamW, p *autograd.Param, from int) {
		for s := from; s < from+steps; s++ {
			rng := rand.New(rand.NewPCG(uint64(s), 0))
			p.Grad = make([]float32, len(p.Data))
			for i := range p.Grad {
				p.Grad[i] = float32(rng.NormFloat64())
			}
			o.Step([]*autograd.Param{p}, 1e-3*LinearSchedule(s, 2, 6))
		}
	}
	p1 := autograd.NewParam("w", 2, 5)
	o1 := NewAdamW()
	run(5, o1, p1, 0)

	p2 := autograd.NewParam("w", 2, 5)
	o2 := NewAdamW()
	run(3, o2, p2, 0)
	path := filepath.Join(t.TempDir(), "optimizer.safetensors")
	if err := o2.SaveState(path); err != nil {
		t.Fatal(err)
	}
	o3, err := LoadAdamW(path, []*autograd.Param{p2})
	if err != nil {
		t.Fatal(err)
	}
	run(2, o3, p2, 3)
	for i := range p1.Data {
		if p1.Data[i] != p2.Data[i] {
			t.Fatalf("resumed run differs at %d: %v vs %v", i, p1.Data[i], p2.Data[i])
		}
	}
	if _, err := LoadAdamW(path, []*autograd.Param{autograd.NewParam("w", 1, 5)}); err == nil || !strings.Contains(err.Error(), "10 values") {
		t.Errorf("size mismatch: %v", err)
	}
	if _, err := LoadAdamW(path, []*autograd.Param{autograd.NewParam("x", 2, 5)}); err == nil || !strings.Contains(err.Error(), "does not have") {
		t.Errorf("unknown parameter: %v", err)
	}
}

func TestLinearSchedule(t *testing.T) {
	cases := []struct {
		step, warmup, total int
		want                float64
	}{
		{0, 50, 100, 0}, {25, 50, 100, 0.5}, {50, 50, 100, 1}, {75, 50, 100, 0.5}, {100, 50, 100, 0}, {130, 50, 100, 0},
		{0, 0, 10, 1}, {5, 0, 10, 0.5}, {1, 3, 3, 1.0 / 3},
	}
	for _, c := range cases {
		if got := LinearSchedule(c.step, c.warmup, c.total); math.Abs(got-c.want) > 1e-15 {
			t.Errorf("LinearSchedule(%d, %d, %d) = %v, want %v", c.step, c.warmup, c.total, got, c.want)
		}
	}
}

func TestMerge(t *testing.T) {
	for _, dt := range []engine.DType{engine.F32, engine.BF16} {
		dir := synthModel(t, dt)
		m, err := llama.Load(dir, llama.LoadOptions{DType: dt, MaxLayer: llama.AllLayers})
		if err != nil {
			t.Fatal(err)
		}
		a, err := New(Config{R: 4, Alpha: 8, TargetModules: []string{"q_proj", "v_proj", "up_proj"}}, m.Config, 5)
		if err != nil {
			t.Fatal(err)
		}
		randomizeB(a, 6)
		batch := llama.NewBatch([][]int{{1, 5, 9, 10}, {1, 7}, {1, 30, 31}})
		// The adapters on the tape (dropout off) give the same hidden states
		// as the merged weights without adapters.
		hA, err := m.ForwardTrain(autograd.NewTape(), batch, 3, a.Adapters())
		if err != nil {
			t.Fatal(err)
		}
		orig := m.Layers[1].V
		if err := a.Merge(m); err != nil {
			t.Fatal(err)
		}
		hM, err := m.ForwardTrain(autograd.NewTape(), batch, 3, nil)
		if err != nil {
			t.Fatal(err)
		}
		var maxErr, maxAbs float64
		for i := range hA.Data {
			maxErr = math.Max(maxErr, math.Abs(float64(hA.Data[i]-hM.Data[i])))
			maxAbs = math.Max(maxAbs, math.Abs(float64(hA.Data[i])))
		}
		tol := 1e-5
		if dt == engine.BF16 {
			tol = 2e-2 // the merged weight is rounded to bf16
		}
		if maxErr > tol*maxAbs {
			t.Errorf("%v: merged forward differs from the adapter forward by %.3g (max |h| %.3g)", dt, maxErr, maxAbs)
		}
		t.Logf("%v: merged vs adapter forward: max error %.3g relative", dt, maxErr/maxAbs)
		// One element as PEFT computes it.
		delta := a.Delta(1, "v_proj")
		merged := m.Layers[1].V
		for _, i := range []int{0, 17, len(delta) - 1} {
			var want float32
			if dt == engine.F32 {
				want = orig.F32[i] + delta[i]
			} else {
				want = engine.FromF32([]float32{orig.At(i) + engine.FromF32([]float32{delta[i]}, 1).Convert(engine.BF16).At(0)}, 1).Convert(engine.BF16).At(0)
			}
			if merged.At(i) != want {
				t.Errorf("%v: merged[%d] = %v, want %v", dt, i, merged.At(i), want)
			}
		}
		if err := a.Unmerge(m); err != nil {
			t.Fatal(err)
		}
		var back float64
		for i := 0; i < orig.Numel(); i++ {
			back = math.Max(back, math.Abs(float64(m.Layers[1].V.At(i)-orig.At(i))))
		}
		if (dt == engine.F32 && back > 1e-6) || back > 1e-2 {
			t.Errorf("%v: unmerge leaves an error of %v", dt, back)
		}
		m.Close()
	}
}

func TestMergeCheckpoint(t *testing.T) {
	dir := synthModel(t, engine.F32)
	a, adir := savedAdapter(t, dir)
	out := filepath.Join(t.TempDir(), "merged")
	if err := MergeCheckpoint(dir, adir, out, engine.BF16, false); err != nil {
		t.Fatal(err)
	}
	if err := MergeCheckpoint(dir, adir, out, engine.BF16, false); err == nil {
		t.Error("merging into an existing folder: no error")
	}
	got, err := llama.Load(out, llama.LoadOptions{DType: engine.F32, MaxLayer: llama.AllLayers})
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if got.Config.TorchDType != "bfloat16" {
		t.Errorf("torch_dtype %q", got.Config.TorchDType)
	}
	want, err := llama.Load(dir, llama.LoadOptions{DType: engine.F32, MaxLayer: llama.AllLayers})
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	if err := a.Merge(want); err != nil {
		t.Fatal(err)
	}
	for l := range want.Layers {
		for _, mod := range llama.LoRAModules {
			w, g := want.Layers[l].ModuleWeight(mod), got.Layers[l].ModuleWeight(mod)
			for i := 0; i < w.Numel(); i++ {
				if r := engine.FromF32([]float32{w.At(i)}, 1).Convert(engine.BF16).At(0); g.At(i) != r {
					t.Fatalf("layer %d %s[%d] = %v, want %v", l, mod, i, g.At(i), r)
				}
			}
		}
	}
	if _, err := os.Stat(filepath.Join(out, "generation_config.json")); err != nil {
		t.Errorf("generation_config.json not copied: %v", err)
	}
}

func TestClipGradNorm(t *testing.T) {
	a, b, idle := autograd.NewParam("a", 1, 2), autograd.NewParam("b", 1, 1), autograd.NewParam("idle", 1, 1)
	a.Grad, b.Grad = []float32{3, 0}, []float32{4}
	if n := ClipGradNorm([]*autograd.Param{a, b, idle}, 10); n != 5 || a.Grad[0] != 3 || b.Grad[0] != 4 || idle.Grad != nil {
		t.Errorf("no clipping expected: norm %v, grads %v %v %v", n, a.Grad, b.Grad, idle.Grad)
	}
	if n := ClipGradNorm([]*autograd.Param{a, b, idle}, 1); n != 5 {
		t.Errorf("norm %v, want 5", n)
	}
	c := 1 / (5 + 1e-6)
	if math.Abs(float64(a.Grad[0])-3*c) > 1e-7 || math.Abs(float64(b.Grad[0])-4*c) > 1e-7 || idle.Grad != nil {
		t.Errorf("clipped grads %v %v %v", a.Grad, b.Grad, idle.Grad)
	}
}

func TestMergePartialModel(t *testing.T) {
	dir := synthModel(t, engine.F32)
	m, err := llama.Load(dir, llama.LoadOptions{DType: engine.F32, MaxLayer: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	a, err := New(PaperConfig(), m.Config, 1)
	if err != nil {
		t.Fatal(err)
	}
	// B of layers 0 and 1 trained (non-zero), layer 2 (not loaded) untouched.
	for l := 0; l < 2; l++ {
		for i := range a.Layers[l]["q_proj"].B.Data {
			a.Layers[l]["q_proj"].B.Data[i] = 0.01
		}
	}
	q0 := m.Layers[0].Q.F32[0]
	if err := a.Merge(m); err != nil {
		t.Fatal(err)
	}
	if m.Layers[0].Q.F32[0] == q0 {
		t.Error("layer 0 q_proj unchanged by the merge")
	}
	q0 = m.Layers[0].Q.F32[0]
	a.Layers[2]["v_proj"].B.Data[0] = 1
	if err := a.Merge(m); err == nil || !strings.Contains(err.Error(), "layer 2 is not loaded") {
		t.Errorf("merging a trained adapter into an unloaded layer: %v", err)
	}
	if m.Layers[0].Q.F32[0] != q0 {
		t.Error("a failed merge changed layer 0")
	}
}

// TestMergeNaNWeight: a weight left in the mapped checkpoint is checked for
// NaN/Inf before a merge reads it (Load defers that check to first use), so
// Merge fails leaving the model as it was, and MergeCheckpoint writes
// nothing even when the bad weight is one the adapter does not touch.
func TestMergeNaNWeight(t *testing.T) {
	dir := synthModel(t, engine.F32)
	p := filepath.Join(dir, "model.safetensors")
	ts, meta, err := llama.ReadSafetensors(p)
	if err != nil {
		t.Fatal(err)
	}
	ts["model.layers.1.self_attn.v_proj.weight"].F32[3] = float32(math.NaN())
	ts["model.layers.2.mlp.down_proj.weight"].F32[4] = float32(math.Inf(1))
	if err := llama.WriteSafetensors(p, ts, meta); err != nil {
		t.Fatal(err)
	}
	m, err := llama.Load(dir, llama.LoadOptions{DType: engine.F32, MaxLayer: llama.AllLayers})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	a, err := New(PaperConfig(), m.Config, 9)
	if err != nil {
		t.Fatal(err)
	}
	randomizeB(a, 10)
	q0 := m.Layers[0].Q
	err = a.Merge(m)
	if err == nil || !strings.Contains(err.Error(), "model.layers.1.self_attn.v_proj.weight") || !strings.Contains(err.Error(), "NaN") {
		t.Fatalf("Merge: %v, want the NaN of layer 1's v_proj", err)
	}
	if m.Layers[0].Q != q0 {
		t.Error("a failed Merge changed layer 0")
	}
	adir := filepath.Join(t.TempDir(), "adapter")
	if err := a.Save(adir); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "merged")
	err = MergeCheckpoint(dir, adir, out, engine.F32, false)
	if err == nil || !strings.Contains(err.Error(), "NaN") && !strings.Contains(err.Error(), "Inf") {
		t.Fatalf("MergeCheckpoint: %v, want a NaN/Inf error", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("MergeCheckpoint left %s after failing (%v)", out, err)
	}
}

// A merged checkpoint of every family holds every weight its loader reads
// (biases, q/k norms, Gemma's norms as stored), equal to the in-memory
// merge, and gives the same hidden states.
func TestMergeCheckpointFamilies(t *testing.T) {
	for _, fam := range []string{"mistral", "qwen2", "qwen3", "gemma", "gemma2", "bloom"} {
		t.Run(fam, func(t *testing.T) {
			dir := t.TempDir()
			if err := llama.Synth(dir, llama.SynthOptions{Shape: "tiny-" + fam, Layers: 2, Seed: 3}); err != nil {
				t.Fatal(err)
			}
			want, err := llama.Load(dir, llama.LoadOptions{DType: engine.F32, MaxLayer: llama.AllLayers})
			if err != nil {
				t.Fatal(err)
			}
			defer want.Close()
			a, adir := savedAdapterWith(t, dir, Config{R: 4, Alpha: 8})
			out := filepath.Join(t.TempDir(), "merged")
			if err := MergeCheckpoint(dir, adir, out, engine.F32, false); err != nil {
				t.Fatal(err)
			}
			got, err := llama.Load(out, llama.LoadOptions{DType: engine.F32, MaxLayer: llama.AllLayers})
			if err != nil {
				t.Fatal(err)
			}
			defer got.Close()
			if got.Config.Arch != want.Config.Arch {
				t.Fatalf("merged checkpoint reads as %s, want %s", got.Config.Arch.Name, want.Config.Arch.Name)
			}
			if err := a.Merge(want); err != nil {
				t.Fatal(err)
			}
			gw, ww := got.Weights(), want.Weights()
			if len(gw) != len(ww) {
				t.Fatalf("%d weights, want %d", len(gw), len(ww))
			}
			for i := range ww {
				if gw[i].Name != ww[i].Name || gw[i].Tensor.Numel() != ww[i].Tensor.Numel() {
					t.Fatalf("weight %d: %s, want %s", i, gw[i].Name, ww[i].Name)
				}
				for j := 0; j < ww[i].Tensor.Numel(); j++ {
					if gw[i].Tensor.At(j) != ww[i].Tensor.At(j) {
						t.Fatalf("%s[%d] = %v, want %v", ww[i].Name, j, gw[i].Tensor.At(j), ww[i].Tensor.At(j))
					}
				}
			}
			b := llama.NewBatch([][]int{{1, 5, 9, 10, 11, 12, 13, 14, 15}, {1, 7}})
			layers := []int{0, 1, 2}
			hg, err := got.HiddenStates(b, layers)
			if err != nil {
				t.Fatal(err)
			}
			hw, err := want.HiddenStates(b, layers)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range layers {
				for i := range hw[k] {
					if hg[k][i] != hw[k][i] {
						t.Fatalf("hidden_states[%d][%d] = %v, want %v", k, i, hg[k][i], hw[k][i])
					}
				}
			}
		})
	}
}

// An adapter_config.json as PEFT 0.13 writes it (every key, defaults) is
// read; the family's modules replace "all-linear" for BLOOM.
func TestParsePEFTRecent(t *testing.T) {
	js := `{"alpha_pattern": {}, "auto_mapping": null, "base_model_name_or_path": "org/base", "bias": "none", "eva_config": null, "exclude_modules": null, "fan_in_fan_out": false, "inference_mode": true, "init_lora_weights": true, "layer_replication": null, "layers_pattern": null, "layers_to_transform": [0, 2], "loftq_config": {}, "lora_alpha": 32, "lora_bias": false, "lora_dropout": 0.05, "megatron_config": null, "megatron_core": "megatron.core", "modules_to_save": null, "peft_type": "LORA", "r": 16, "rank_pattern": {}, "revision": null, "target_modules": ["v_proj", "q_proj"], "task_type": "CAUSAL_LM", "use_dora": false, "use_rslora": true}`
	c, err := ParsePEFT([]byte(js), "adapter_config.json")
	if err != nil {
		t.Fatal(err)
	}
	if c.R != 16 || c.Alpha != 32 || c.BaseModel != "org/base" || !c.UseRSLoRA || fmt.Sprint(c.Layers) != "[0 2]" || fmt.Sprint(c.TargetModules) != "[v_proj q_proj]" {
		t.Errorf("parsed %+v", c)
	}
	all, err := ParsePEFT([]byte(`{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": "all-linear"}`), "x")
	if err != nil {
		t.Fatal(err)
	}
	bloom, err := llama.ParseConfig([]byte(`{"model_type": "bloom", "hidden_size": 64, "n_head": 4, "n_layer": 2, "vocab_size": 100}`), "bloom")
	if err != nil {
		t.Fatal(err)
	}
	if got := all.ForModel(bloom).TargetModules; fmt.Sprint(got) != "[query_key_value dense dense_h_to_4h dense_4h_to_h]" {
		t.Errorf("all-linear on BLOOM: %v", got)
	}
}
