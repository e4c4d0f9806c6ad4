package lora

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tli-project/tli/autograd"
	"github.com/tli-project/tli/llama"
)

// fuzzModel is a one-layer model small enough for the fuzzers: q_proj and
// o_proj 4×4, k_proj and v_proj 2×4, gate_proj and up_proj 6×4, down_proj 4×6.
func fuzzModel() llama.Config {
	return llama.Config{HiddenSize: 4, IntermediateSize: 6, NumLayers: 1, NumHeads: 2, NumKVHeads: 1, HeadDim: 2, VocabSize: 8, RMSNormEps: 1e-5}
}

// FuzzParsePEFT: any adapter_config.json either errors or gives a config
// that validates without a model and, against a model, either errors or
// gives adapters of the configured shapes; MarshalPEFT round-trips it.
func FuzzParsePEFT(f *testing.F) {
	f.Add([]byte(paperConfigJSON))
	f.Add([]byte(`{"peft_type":"LORA","r":1000000000,"lora_alpha":1e308,"target_modules":"all-linear","layers_to_transform":[-1]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParsePEFT(data, "adapter_config.json")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "adapter_config.json: ") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error without the file name or on several lines: %q", err)
			}
			return
		}
		if err := c.Validate(nil); err != nil {
			t.Fatalf("ParsePEFT accepted a config Validate refuses: %v", err)
		}
		if s := c.Scale(); !(s > 0) || math.IsInf(float64(s), 0) {
			t.Fatalf("scale %v", s)
		}
		js, err := c.MarshalPEFT()
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParsePEFT(js, "again")
		if err != nil || back.R != c.R || back.Alpha != c.Alpha || back.Dropout != c.Dropout || back.UseRSLoRA != c.UseRSLoRA || len(back.TargetModules) != len(c.TargetModules) {
			t.Fatalf("round trip: %+v, %v; want %+v", back, err, c)
		}
		model := fuzzModel()
		a, err := New(c, model, 1)
		if err != nil {
			return
		}
		for _, p := range a.Params() {
			if p.Rows*p.Cols != len(p.Data) || (p.Rows != c.R && p.Cols != c.R) {
				t.Fatalf("%s: %d×%d with r %d", p.Name, p.Rows, p.Cols, c.R)
			}
		}
	})
}

// FuzzLoad: an adapter folder made of fuzzed config bytes and a
// safetensors file of a fuzzed header and payload either fails to load or
// gives adapters of the model's shapes with finite values within MaxDelta.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(`{"peft_type":"LORA","r":1,"lora_alpha":2,"target_modules":["v_proj"]}`),
		[]byte(`{"base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight":{"dtype":"F32","shape":[1,4],"data_offsets":[0,16]},"base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight":{"dtype":"F32","shape":[2,1],"data_offsets":[16,24]}}`),
		make([]byte, 24))
	f.Fuzz(func(t *testing.T, cfg, header, payload []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, ConfigFile), cfg, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, WeightsFile), rawSafetensors(header, payload), 0o644); err != nil {
			t.Fatal(err)
		}
		model := fuzzModel()
		a, err := Load(dir, model)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error on several lines: %q", err)
			}
			return
		}
		if err := a.Adapters().Check(model); err != nil {
			t.Fatal(err)
		}
		for l, mods := range a.Layers {
			for name, ad := range mods {
				out, in, _ := model.ModuleShape(name)
				if ad.A.Rows != a.Config.R || ad.A.Cols != in || ad.B.Rows != out || ad.B.Cols != a.Config.R {
					t.Fatalf("layer %d %s: A %d×%d B %d×%d", l, name, ad.A.Rows, ad.A.Cols, ad.B.Rows, ad.B.Cols)
				}
				for _, p := range []*autograd.Param{ad.A, ad.B} {
					for i, v := range p.Data {
						if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
							t.Fatalf("%s[%d] = %v", p.Name, i, v)
						}
					}
				}
				for i, d := range a.Delta(l, name) {
					if !(math.Abs(float64(d)) <= MaxDelta) {
						t.Fatalf("layer %d %s: Δ[%d] = %v", l, name, i, d)
					}
				}
			}
		}
	})
}

// FuzzLoadAdamW: a fuzzed optimiser state file either fails to load or
// gives state for the parameters with finite moments, exp_avg_sq ≥ 0, and
// step counts in range.
func FuzzLoadAdamW(f *testing.F) {
	f.Add([]byte(`{"__metadata__":{"optimizer":"AdamW","steps":"{\"a\":3}","beta1":"0.9","beta2":"0.999","eps":"1e-08","weight_decay":"0.01"},"a.exp_avg":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a.exp_avg_sq":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}`), make([]byte, 16))
	f.Fuzz(func(t *testing.T, header, payload []byte) {
		p := filepath.Join(t.TempDir(), "optimizer.safetensors")
		if err := os.WriteFile(p, rawSafetensors(header, payload), 0o644); err != nil {
			t.Fatal(err)
		}
		params := []*autograd.Param{autograd.NewParam("a", 1, 2), autograd.NewParam("b", 2, 1)}
		o, err := LoadAdamW(p, params)
		if err != nil {
			return
		}
		if !(o.Beta1 >= 0 && o.Beta1 < 1 && o.Beta2 >= 0 && o.Beta2 < 1 && o.Eps > 0 && o.WeightDecay >= 0) {
			t.Fatalf("hyperparameters %+v", o)
		}
		for name, s := range o.state {
			if s.step < 1 || s.step > MaxAdamSteps || len(s.m) != 2 || len(s.v) != 2 {
				t.Fatalf("%s: step %d, %d and %d values", name, s.step, len(s.m), len(s.v))
			}
			for i := range s.m {
				if math.IsNaN(float64(s.m[i])) || math.IsInf(float64(s.m[i]), 0) || !(s.v[i] >= 0) || math.IsInf(float64(s.v[i]), 0) {
					t.Fatalf("%s[%d]: m %v v %v", name, i, s.m[i], s.v[i])
				}
			}
		}
		// A step with the loaded state stays finite.
		for _, q := range params {
			q.Grad = []float32{1, -1}
		}
		o.Step(params, 1e-3)
		for _, q := range params {
			for _, v := range q.Data {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatalf("%s after a step: %v", q.Name, q.Data)
				}
			}
		}
	})
}
