package lora

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/tli-project/tli/autograd"
	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/llama"
)

// writeAdapter writes an adapter folder with the given config text and
// tensors and returns it.
func writeAdapter(t testing.TB, cfgJSON string, tensors map[string]*engine.Tensor) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(cfgJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := llama.WriteSafetensors(filepath.Join(dir, WeightsFile), tensors, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// rawSafetensors is a safetensors file: the header's length, the header,
// the payload.
func rawSafetensors(header, payload []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	return append(append(b, header...), payload...)
}

// adapterTensors returns the tensors of a (filled) adapter of config c.
func adapterTensors(t testing.TB, c Config, model llama.Config, fill func(name string, i int) float32) map[string]*engine.Tensor {
	t.Helper()
	a, err := New(c, model, 1)
	if err != nil {
		t.Fatal(err)
	}
	ts := map[string]*engine.Tensor{}
	for _, p := range a.Params() {
		if fill != nil {
			for i := range p.Data {
				p.Data[i] = fill(p.Name, i)
			}
		}
		ts[p.Name] = engine.FromF32(p.Data, p.Rows, p.Cols)
	}
	return ts
}

func wantErr(t *testing.T, what string, err error, want string) {
	t.Helper()
	if err == nil || err.Error() != want {
		t.Errorf("%s:\n got error %v\nwant error %s", what, err, want)
	}
}

// TestValidateLimits: r is bounded by the model's module sizes, alpha,
// dropout and the scale by their ranges; each message names the field, the
// value and the valid range.
func TestValidateLimits(t *testing.T) {
	model := tinyConfig() // q_proj 32×32, v_proj 16×32, down_proj 32×48
	qv := []string{"q_proj", "v_proj"}
	cases := []struct {
		c    Config
		want string
	}{
		{Config{R: 1e9, Alpha: 16, TargetModules: qv}, "lora: r: 1000000000 is outside [1, 3195660]: A and B would hold 1000000000×336 numbers, above the limit of 1073741824 (lora.MaxAdapterNumbers, 4 GiB in float32)"},
		{Config{R: 3195661, Alpha: 16, TargetModules: qv}, "lora: r: 3195661 is outside [1, 3195660]: A and B would hold 3195661×336 numbers, above the limit of 1073741824 (lora.MaxAdapterNumbers, 4 GiB in float32)"},
		{Config{R: 2e7, Alpha: 16, TargetModules: []string{"down_proj"}, Layers: []int{1}}, "lora: r: 20000000 is outside [1, 13421772]: A and B would hold 20000000×80 numbers, above the limit of 1073741824 (lora.MaxAdapterNumbers, 4 GiB in float32)"},
		{Config{R: 0, Alpha: 16, TargetModules: qv}, "lora: r: 0 is not a positive integer (want r ≥ 1)"},
		{Config{R: -3, Alpha: 16, TargetModules: qv}, "lora: r: -3 is not a positive integer (want r ≥ 1)"},
		{Config{R: 16, Alpha: 1e308, TargetModules: qv}, "lora: the adapter scale lora_alpha/r = 1e+308/16 = 6.25e+306 is not a positive finite float32 (want it in [1e-45, 3.4028235e+38])"},
		{Config{R: 16, Alpha: 1e308, UseRSLoRA: true, TargetModules: qv}, "lora: the adapter scale lora_alpha/sqrt(r) = 1e+308/sqrt(16) = 2.5e+307 is not a positive finite float32 (want it in [1e-45, 3.4028235e+38])"},
		{Config{R: 16, Alpha: 1e-300, TargetModules: qv}, "lora: the adapter scale lora_alpha/r = 1e-300/16 = 6.25e-302 is not a positive finite float32 (want it in [1e-45, 3.4028235e+38])"},
		{Config{R: 16, Alpha: math.Inf(1), TargetModules: qv}, "lora: lora_alpha: +Inf is not a positive finite number"},
		{Config{R: 16, Alpha: math.NaN(), TargetModules: qv}, "lora: lora_alpha: NaN is not a positive finite number"},
		{Config{R: 16, Alpha: -2, TargetModules: qv}, "lora: lora_alpha: -2 is not a positive finite number"},
		{Config{R: 16, Alpha: 32, Dropout: 1, TargetModules: qv}, "lora: lora_dropout: 1 is outside [0, 1)"},
		{Config{R: 16, Alpha: 32, Dropout: math.NaN(), TargetModules: qv}, "lora: lora_dropout: NaN is outside [0, 1)"},
		{Config{R: 16, Alpha: 32, Dropout: -0.1, TargetModules: qv}, "lora: lora_dropout: -0.1 is outside [0, 1)"},
		{Config{R: 16, Alpha: 32, TargetModules: []string{"q_proj", "qproj"}}, `lora: target_modules: "qproj" is not a module tli can adapt (want some of [q_proj k_proj v_proj o_proj gate_proj up_proj down_proj])`},
		{Config{R: 16, Alpha: 32, TargetModules: []string{"q_proj", "q_proj"}}, `lora: target_modules: "q_proj" is listed twice`},
		{Config{R: 16, Alpha: 32}, "lora: target_modules: empty (want some of [q_proj k_proj v_proj o_proj gate_proj up_proj down_proj])"},
		{Config{R: 16, Alpha: 32, TargetModules: qv, Layers: []int{-1}}, "lora: layers_to_transform: layer -1 is outside [0, 2] (the model has 3 layers)"},
		{Config{R: 16, Alpha: 32, TargetModules: qv, Layers: []int{0, 3}}, "lora: layers_to_transform: layer 3 is outside [0, 2] (the model has 3 layers)"},
		{Config{R: 16, Alpha: 32, TargetModules: qv, Layers: []int{}}, "lora: layers_to_transform: an empty list (want null for every layer, or layer numbers)"},
	}
	for _, tc := range cases {
		wantErr(t, "Validate", tc.c.Validate(&model), tc.want)
		_, err := New(tc.c, model, 1)
		wantErr(t, "New", err, tc.want)
	}
	// Without a model only the model-free checks apply.
	wantErr(t, "Validate(nil)", Config{R: 16, Alpha: 32, TargetModules: qv, Layers: []int{-1}}.Validate(nil),
		"lora: layers_to_transform: layer -1 is negative (layers are numbered from 0)")
	if err := (Config{R: 1e9, Alpha: 32, TargetModules: qv}).Validate(nil); err != nil {
		t.Errorf("r 1e9 without a model: %v", err)
	}
	// The largest r allowed works, and allocates only what the model bounds.
	if a, err := New(Config{R: 16, Alpha: 32, TargetModules: qv}, model, 1); err != nil || a.Layers[0]["v_proj"].A.Rows != 16 {
		t.Errorf("r 16 on q_proj, v_proj: %v", err)
	}
	// PEFT accepts r above min(in_features, out_features), and so does tli.
	if a, err := New(Config{R: 40, Alpha: 32, TargetModules: qv}, model, 1); err != nil || a.Layers[0]["v_proj"].A.Rows != 40 {
		t.Errorf("r 40 on q_proj (32×32), v_proj (16×32): %v", err)
	}
	if r, per, ok := MaxRank(model, []string{"gate_proj", "down_proj", "nope"}, nil); r != 1<<30/480 || per != 480 || !ok {
		t.Errorf("MaxRank = %d %d %v, want %d 480 true", r, per, ok, 1<<30/480)
	}
	if _, _, ok := MaxRank(model, []string{"nope"}, nil); ok {
		t.Errorf("MaxRank of no known module: ok")
	}
}

const cfgHead = `{"peft_type":"LORA","lora_alpha":32,`

// TestParsePEFTFields: every field error names the field, the value and
// what is valid.
func TestParsePEFTFields(t *testing.T) {
	cases := map[string]string{
		`{"peft_type":"LORA","r":16,"lora_alpha":32,"target_modules":["q_proj"],"layers_to_transform":[-1]}`: "f: layers_to_transform: layer -1 is negative (layers are numbered from 0)",
		cfgHead + `"r":"16","target_modules":["q_proj"]}`:                                                    `f: r: want a positive integer, got "16"`,
		cfgHead + `"r":16.5,"target_modules":["q_proj"]}`:                                                    "f: r: 16.5 is not an integer (want a positive integer)",
		cfgHead + `"r":1e30,"target_modules":["q_proj"]}`:                                                    "f: r: 1e30 is outside [1, 2147483647] (and a model bounds it further by the adapter's size)",
		cfgHead + `"r":-4,"target_modules":["q_proj"]}`:                                                      "f: r: -4 is not a positive integer (want r ≥ 1)",
		cfgHead + `"r":[16],"target_modules":["q_proj"]}`:                                                    "f: r: want a positive integer, got [16]",
		`{"peft_type":"LORA","r":16,"lora_alpha":"32","target_modules":["q_proj"]}`:                          `f: lora_alpha: want a number, got "32"`,
		`{"peft_type":"LORA","r":16,"target_modules":["q_proj"]}`:                                            "f: lora_alpha: missing (want a positive number)",
		`{"peft_type":"LORA","r":16,"lora_alpha":0,"target_modules":["q_proj"]}`:                             "f: lora_alpha: 0 is not a positive finite number",
		`{"peft_type":"LORA","r":16,"lora_alpha":1e400,"target_modules":["q_proj"]}`:                         "f: lora_alpha: want a number, got 1e400",
		`{"peft_type":"LORA","r":16,"lora_alpha":1e308,"target_modules":["q_proj"]}`:                         "f: the adapter scale lora_alpha/r = 1e+308/16 = 6.25e+306 is not a positive finite float32 (want it in [1e-45, 3.4028235e+38])",
		cfgHead + `"r":16,"target_modules":["q_proj"],"lora_dropout":1.5}`:                                   "f: lora_dropout: 1.5 is outside [0, 1)",
		cfgHead + `"r":16,"target_modules":["q_proj"],"lora_dropout":"0.1"}`:                                 `f: lora_dropout: want a number, got "0.1"`,
		cfgHead + `"r":16,"target_modules":["q_proj","wq"]}`:                                                 `f: target_modules: "wq" is not a module tli can adapt (want some of [q_proj k_proj v_proj o_proj gate_proj up_proj down_proj query_key_value dense dense_h_to_4h dense_4h_to_h])`,
		cfgHead + `"r":16,"target_modules":[1,2]}`:                                                           "f: target_modules: want a list of module names (some of [q_proj k_proj v_proj o_proj gate_proj up_proj down_proj]), got [1,2]",
		cfgHead + `"r":16,"target_modules":".*proj"}`:                                                        `f: target_modules: the string ".*proj" is a regular expression in PEFT, which tli does not support (want "all-linear" or a list of some of [q_proj k_proj v_proj o_proj gate_proj up_proj down_proj])`,
		cfgHead + `"r":16}`: "f: target_modules: missing (want a list of some of [q_proj k_proj v_proj o_proj gate_proj up_proj down_proj])",
		cfgHead + `"r":16,"target_modules":["q_proj"],"use_dora":true}`:              "f: use_dora: true is not supported (DoRA is not implemented; want false)",
		cfgHead + `"r":16,"target_modules":["q_proj"],"use_dora":"yes"}`:             `f: use_dora: want true or false, got "yes"`,
		cfgHead + `"r":16,"target_modules":["q_proj"],"fan_in_fan_out":true}`:        "f: fan_in_fan_out: true is not supported (it is for GPT-2-style Conv1D weights stored [in×out]; Llama's Linear weights are [out×in]; want false)",
		cfgHead + `"r":16,"target_modules":["q_proj"],"rank_pattern":{"q_proj":8}}`:  `f: rank_pattern: {"q_proj":8} is not supported (per-module ranks are not implemented; want {})`,
		cfgHead + `"r":16,"target_modules":["q_proj"],"alpha_pattern":{"v_proj":4}}`: `f: alpha_pattern: {"v_proj":4} is not supported (per-module alphas are not implemented; want {})`,
		cfgHead + `"r":16,"target_modules":["q_proj"],"layer_replication":[[0,2]]}`:  "f: layer_replication: [[0,2]] is not supported (layer replication is not implemented; want null)",
		cfgHead + `"r":16,"target_modules":["q_proj"],"bias":"lora_only"}`:           `f: bias: "lora_only" is not supported (want "none")`,
		cfgHead + `"r":16,"target_modules":["q_proj"],"layers_to_transform":[1.5]}`:  "f: layers_to_transform: 1.5 is not a layer number (want null, an integer or a list of integers ≥ 0)",
		cfgHead + `"r":16,"target_modules":["q_proj"],"layers_to_transform":[]}`:     "f: layers_to_transform: an empty list (want null for every layer, or layer numbers)",
		cfgHead + `"r":16,"target_modules":["q_proj"],"use_rslora":1}`:               "f: use_rslora: want true or false, got 1",
		`{"peft_type":"PREFIX_TUNING"}`:                                              `f: peft_type: "PREFIX_TUNING" is not supported (want "LORA")`,
		`{"r":16}`:                                                                   `f: peft_type: missing (want "LORA")`,
		`null`:                                                                       "f: not a JSON object: null",
		`[1]`:                                                                        "f: not a JSON object: json: cannot unmarshal array into Go value of type map[string]json.RawMessage",
		cfgHead + `"r":16,"target_modules":["q_proj"]} trailing`:                     "f: not a JSON object: invalid character 't' after top-level value",
	}
	for js, want := range cases {
		_, err := ParsePEFT([]byte(js), "f")
		wantErr(t, js, err, want)
	}
	// Accepted spellings: r as 16.0, all-linear, a single layer number,
	// explicit nulls and empty patterns.
	c, err := ParsePEFT([]byte(cfgHead+`"r":16.0,"target_modules":"all-linear","layers_to_transform":2,"rank_pattern":{},"alpha_pattern":null,"modules_to_save":[],"lora_dropout":null,"bias":null}`), "f")
	if err != nil || c.R != 16 || len(c.TargetModules) != 7 || len(c.Layers) != 1 || c.Layers[0] != 2 || c.Dropout != 0 {
		t.Errorf("accepted spellings: %+v, %v", c, err)
	}
}

// TestLoadHostileConfig: r 1e9 in adapter_config.json is refused by the
// model's bounds before anything is allocated for it, and the alpha 1e308
// of an otherwise valid adapter by the scale's range.
func TestLoadHostileConfig(t *testing.T) {
	model := tinyConfig()
	ts := adapterTensors(t, PaperConfig(), model, nil)
	dir := writeAdapter(t, cfgHead+`"r":1000000000,"target_modules":["q_proj","v_proj"]}`, ts)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := Load(dir, model)
	runtime.ReadMemStats(&after)
	wantErr(t, "r 1e9", err, filepath.Join(dir, ConfigFile)+": r: 1000000000 is outside [1, 3195660]: A and B would hold 1000000000×336 numbers, above the limit of 1073741824 (lora.MaxAdapterNumbers, 4 GiB in float32)")
	if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
		t.Errorf("refusing r 1e9 allocated %d bytes", d)
	}
	dir = writeAdapter(t, `{"peft_type":"LORA","lora_alpha":1e308,"r":16,"target_modules":["q_proj","v_proj"]}`, ts)
	_, err = Load(dir, model)
	wantErr(t, "alpha 1e308", err, filepath.Join(dir, ConfigFile)+": the adapter scale lora_alpha/r = 1e+308/16 = 6.25e+306 is not a positive finite float32 (want it in [1e-45, 3.4028235e+38])")
	dir = writeAdapter(t, cfgHead+`"r":16,"target_modules":["q_proj","v_proj"],"layers_to_transform":[-1]}`, ts)
	_, err = Load(dir, model)
	wantErr(t, "layer -1", err, filepath.Join(dir, ConfigFile)+": layers_to_transform: layer -1 is negative (layers are numbered from 0)")
	dir = writeAdapter(t, cfgHead+`"r":16,"target_modules":["q_proj","v_proj"],"layers_to_transform":[5]}`, ts)
	_, err = Load(dir, model)
	wantErr(t, "layer 5", err, filepath.Join(dir, ConfigFile)+": layers_to_transform: layer 5 is outside [0, 2] (the model has 3 layers)")
}

// TestLoadHostileWeights: shapes, NaN/Inf, overflowing magnitudes and
// stray tensors are refused naming the tensor.
func TestLoadHostileWeights(t *testing.T) {
	model := tinyConfig()
	c := PaperConfig()
	cfgJSON, err := c.MarshalPEFT()
	if err != nil {
		t.Fatal(err)
	}
	a0, b1v := KeyA(0, "q_proj"), KeyB(1, "v_proj")
	path := func(dir string) string { return filepath.Join(dir, WeightsFile) }

	// Weights of 1e30: finite in f32, but scale·|B·A| is far beyond MaxDelta.
	ts := adapterTensors(t, c, model, func(string, int) float32 { return 1e30 })
	dir := writeAdapter(t, string(cfgJSON), ts)
	_, err = Load(dir, model)
	wantErr(t, "1e30 weights", err, path(dir)+`: tensors "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" and "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": the adapter's change to the weight, scale·|B·A|, can reach 3.2e+61 (scale 2, max |lora_A| 1e+30, max |lora_B| 1e+30 at rank 16), above 65504 (MaxDelta, the f16 range): the merged weight or the unmerged forward would overflow`)

	// Just above and at the limit: one rank-1 term of 2·a·b.
	one := func(aVal, bVal float32) func(string, int) float32 {
		return func(name string, i int) float32 {
			switch {
			case name == b1v && i%16 == 0: // column 0 of B [16×16]
				return bVal
			case strings.HasPrefix(name, "base_model.model.model.layers.1.self_attn.v_proj.lora_A") && i < 32: // row 0 of A
				return aVal
			}
			return 0
		}
	}
	dir = writeAdapter(t, string(cfgJSON), adapterTensors(t, c, model, one(4, 8189)))
	_, err = Load(dir, model)
	wantErr(t, "delta 65512", err, path(dir)+`: tensors "base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight" and "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight": the adapter's change to the weight, scale·|B·A|, can reach 6.551e+04 (scale 2, max |lora_A| 4, max |lora_B| 8189 at rank 16), above 65504 (MaxDelta, the f16 range): the merged weight or the unmerged forward would overflow`)
	dir = writeAdapter(t, string(cfgJSON), adapterTensors(t, c, model, one(4, 8188)))
	a, err := Load(dir, model)
	if err != nil {
		t.Fatalf("delta 65504: %v", err)
	}
	if d := a.Delta(1, "v_proj"); d[5] != 65504 || d[len(d)-1] != 65504 {
		t.Errorf("delta 65504: Δ[0][5] = %v, Δ[15][31] = %v", d[5], d[len(d)-1])
	}

	// NaN and Inf, in f32 and bf16 files.
	ts = adapterTensors(t, c, model, nil)
	ts[a0].F32[7] = float32(math.NaN())
	dir = writeAdapter(t, string(cfgJSON), ts)
	_, err = Load(dir, model)
	wantErr(t, "NaN", err, path(dir)+`: tensor "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": element 7 is NaN (NaN or Inf)`)
	ts = adapterTensors(t, c, model, nil)
	ts[b1v] = ts[b1v].Convert(engine.BF16)
	ts[b1v].Half[3] = 0x7f80 // +Inf
	dir = writeAdapter(t, string(cfgJSON), ts)
	_, err = Load(dir, model)
	wantErr(t, "bf16 Inf", err, path(dir)+`: tensor "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight": element 3 is +Inf (NaN or Inf)`)

	// Shapes: A with r+1 rows, B transposed.
	ts = adapterTensors(t, c, model, nil)
	ts[a0] = engine.FromF32(make([]float32, 17*32), 17, 32)
	dir = writeAdapter(t, string(cfgJSON), ts)
	_, err = Load(dir, model)
	wantErr(t, "A shape", err, path(dir)+`: tensor "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" has shape [17 32], want [16 32] (r=16 from `+filepath.Join(dir, ConfigFile)+` and the model's q_proj size 32×32)`)
	ts = adapterTensors(t, c, model, nil)
	ts[b1v] = engine.FromF32(make([]float32, 16*16), 256)
	dir = writeAdapter(t, string(cfgJSON), ts)
	_, err = Load(dir, model)
	wantErr(t, "B 1-D", err, path(dir)+`: tensor "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight" has shape [256], want [16 16] (r=16 from `+filepath.Join(dir, ConfigFile)+` and the model's v_proj size 16×32)`)

	// Stray tensors, float and I64.
	ts = adapterTensors(t, c, model, nil)
	ts["base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight"] = engine.FromF32([]float32{1}, 1)
	dir = writeAdapter(t, string(cfgJSON), ts)
	_, err = Load(dir, model)
	wantErr(t, "stray", err, path(dir)+`: unexpected tensor "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight" (not a lora_A/lora_B of the layers and modules `+filepath.Join(dir, ConfigFile)+` configures)`)
	ts = adapterTensors(t, c, model, nil)
	dir = writeAdapter(t, string(cfgJSON), ts)
	var list []llama.NamedTensor
	for _, name := range sortedKeys(ts) {
		list = append(list, llama.NamedTensor{Name: name, Tensor: ts[name]})
	}
	if err := llama.WriteSafetensorsMixed(path(dir), list, []llama.NamedInts{{Name: "step", Shape: []int{1}, Data: []int64{3}}}, nil); err != nil {
		t.Fatal(err)
	}
	_, err = Load(dir, model)
	wantErr(t, "I64", err, path(dir)+`: tensor "step" is I64, want F32, BF16 or F16 lora_A/lora_B weights`)
}

// TestSaveNonFinite: an adapter with a NaN is not saved, and an older
// adapter in the folder is kept.
func TestSaveNonFinite(t *testing.T) {
	a, err := New(PaperConfig(), tinyConfig(), 1)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := a.Save(dir); err != nil {
		t.Fatal(err)
	}
	a.Layers[2]["v_proj"].B.Data[17] = float32(math.Inf(-1))
	wantErr(t, "Save", a.Save(dir), "lora: not saving the adapter to "+dir+`: tensor "base_model.model.model.layers.2.self_attn.v_proj.lora_B.weight" element 17 (row 1, col 1) is -Inf (NaN or Inf)`)
	if _, err := Load(dir, tinyConfig()); err != nil {
		t.Errorf("the older adapter: %v", err)
	}
}

// TestMergeOverflow: an in-memory adapter whose delta overflows the
// weight's dtype (f32 or bf16: llama.Load holds no f16 weights; f16 outputs
// are TestMergeCheckpointOverflow's) is refused naming the layer, module and element, and the
// model is left unchanged.
func TestMergeOverflow(t *testing.T) {
	for _, tc := range []struct {
		dt   engine.DType
		b    float32 // B[0][0]; A[0][1] is 1, scale 2
		want string
	}{
		{engine.F32, 3e38, "lora: layer 1 q_proj (base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight): merged weight [0 1] is W %v + Δ +Inf = +Inf: the adapter's delta overflowed f32 (largest finite value 3.4028235e+38)"},
		{engine.BF16, 1.7e38, "lora: layer 1 q_proj (base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight): merged weight [0 1] is W %v + Δ +Inf = +Inf: the adapter's delta overflowed bf16 (largest finite value 3.3895314e+38)"},
	} {
		m, err := llama.Load(synthModel(t, tc.dt), llama.LoadOptions{DType: tc.dt, MaxLayer: llama.AllLayers})
		if err != nil {
			t.Fatal(err)
		}
		a, err := New(PaperConfig(), m.Config, 1)
		if err != nil {
			t.Fatal(err)
		}
		randomizeB(a, 2)
		ad := a.Layers[1]["q_proj"]
		clear(ad.A.Data[:ad.A.Cols])
		ad.A.Data[1] = 1
		ad.B.Data[0] = tc.b
		w := m.Layers[1].Q.At(1)
		q0, v0 := m.Layers[0].Q, m.Layers[0].V
		want := strings.Replace(tc.want, "%v", fmt.Sprint(w), 1)
		wantErr(t, tc.dt.String(), a.Merge(m), want)
		if m.Layers[0].Q != q0 || m.Layers[0].V != v0 {
			t.Errorf("%v: a refused merge changed layer 0", tc.dt)
		}
		m.Close()
	}
}

// TestMergeCheckpointOverflow: merges whose result does not fit the output
// dtype, adapters with alpha 1e308 or weights 1e30, are refused and leave no
// output folder.
func TestMergeCheckpointOverflow(t *testing.T) {
	dir := synthModel(t, engine.F32)
	p := filepath.Join(dir, "model.safetensors")
	ts, meta, err := llama.ReadSafetensors(p)
	if err != nil {
		t.Fatal(err)
	}
	ts["model.layers.1.self_attn.q_proj.weight"].F32[32*2+5] = 100
	if err := llama.WriteSafetensors(p, ts, meta); err != nil {
		t.Fatal(err)
	}
	cfg, err := llama.LoadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	c := PaperConfig()
	// Δ = 2·4·8188 = 65504 on row 2 of layer 1's q_proj: W+Δ = 65604 fits
	// f32 and bf16 but not f16.
	adapter := writeAdapter(t, mustJSON(t, c), adapterTensors(t, c, cfg, func(name string, i int) float32 {
		switch {
		case name == KeyB(1, "q_proj") && i == 2*16:
			return 8188
		case name == KeyA(1, "q_proj") && i < 32:
			return 4
		}
		return 0
	}))
	out := filepath.Join(t.TempDir(), "merged")
	err = MergeCheckpoint(dir, adapter, out, engine.F16, false)
	wantErr(t, "f16", err, "lora: model.layers.1.self_attn.q_proj.weight [2 5]: the merged weight W+Δ = 65604 does not fit f16: the adapter's delta overflowed the dtype (largest finite value 65504); write another dtype")
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a refused merge left %s (%v)", out, err)
	}
	entries, _ := os.ReadDir(filepath.Dir(out))
	if len(entries) != 0 {
		t.Errorf("a refused merge left %v beside %s", entries, out)
	}
	if err := MergeCheckpoint(dir, adapter, out, engine.BF16, false); err != nil {
		t.Errorf("bf16: %v", err)
	}

	// A base weight that does not fit f16, in a module the adapter leaves alone.
	ts["model.embed_tokens.weight"].F32[40] = 1e5
	if err := llama.WriteSafetensors(p, ts, meta); err != nil {
		t.Fatal(err)
	}
	out2 := filepath.Join(t.TempDir(), "merged")
	err = MergeCheckpoint(dir, adapter, out2, engine.F16, false)
	wantErr(t, "embed f16", err, "lora: model.embed_tokens.weight [1 8]: the checkpoint's weight 100000 does not fit f16 (largest finite value 65504); write another dtype")

	// Hostile adapters: alpha 1e308, weights 1e30.
	for name, ad := range map[string]string{
		"alpha": writeAdapter(t, `{"peft_type":"LORA","r":16,"lora_alpha":1e308,"target_modules":["q_proj","v_proj"]}`, adapterTensors(t, c, cfg, nil)),
		"1e30":  writeAdapter(t, mustJSON(t, c), adapterTensors(t, c, cfg, func(string, int) float32 { return 1e30 })),
	} {
		out := filepath.Join(t.TempDir(), "merged")
		err := MergeCheckpoint(dir, ad, out, engine.F32, false)
		if err == nil || !strings.Contains(err.Error(), map[string]string{"alpha": "scale lora_alpha/r = 1e+308/16", "1e30": "above 65504 (MaxDelta"}[name]) {
			t.Errorf("%s: %v", name, err)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("%s: a refused merge left %s (%v)", name, out, err)
		}
	}
}

func mustJSON(t testing.TB, c Config) string {
	js, err := c.MarshalPEFT()
	if err != nil {
		t.Fatal(err)
	}
	return string(js)
}

// TestLoadAdamWHostile: state files that do not match the parameters, hold
// negative second moments, bad step counts or hyperparameters are refused
// naming the parameter or key.
func TestLoadAdamWHostile(t *testing.T) {
	a, b := autograd.NewParam("a", 2, 3), autograd.NewParam("b", 1, 2)
	params := []*autograd.Param{a, b}
	good := func() (map[string]*engine.Tensor, map[string]string) {
		return map[string]*engine.Tensor{
				"a.exp_avg": engine.FromF32(make([]float32, 6), 6), "a.exp_avg_sq": engine.FromF32(make([]float32, 6), 6),
			}, map[string]string{
				"optimizer": "AdamW", "steps": `{"a":3}`, "beta1": "0.9", "beta2": "0.999", "eps": "1e-08", "weight_decay": "0.01",
			}
	}
	p := filepath.Join(t.TempDir(), "optimizer.safetensors")
	load := func(ts map[string]*engine.Tensor, meta map[string]string) error {
		if err := llama.WriteSafetensors(p, ts, meta); err != nil {
			t.Fatal(err)
		}
		_, err := LoadAdamW(p, params)
		return err
	}
	ts, meta := good()
	if err := load(ts, meta); err != nil {
		t.Fatalf("good state: %v", err)
	}
	for _, tc := range []struct {
		edit func(map[string]*engine.Tensor, map[string]string)
		want string
	}{
		{func(_ map[string]*engine.Tensor, m map[string]string) { m["steps"] = `{"a":-1}` }, `parameter "a": step count -1, want an integer in [1, 1073741824]`},
		{func(_ map[string]*engine.Tensor, m map[string]string) { m["steps"] = `{"a":1e30}` }, `parameter "a": step count 1e30, want an integer in [1, 1073741824]`},
		{func(_ map[string]*engine.Tensor, m map[string]string) { m["steps"] = `{"a":2.5}` }, `parameter "a": step count 2.5, want an integer in [1, 1073741824]`},
		{func(_ map[string]*engine.Tensor, m map[string]string) { m["steps"] = `{"a":"3"}` }, `parameter "a": step count "3", want an integer in [1, 1073741824]`},
		{func(_ map[string]*engine.Tensor, m map[string]string) { m["steps"] = `[3]` }, `metadata "steps" is "[3]", want a JSON object of parameter name to step count`},
		{func(_ map[string]*engine.Tensor, m map[string]string) { delete(m, "steps") }, `metadata "steps" is missing (want a JSON object of parameter name to step count)`},
		{func(_ map[string]*engine.Tensor, m map[string]string) { m["beta1"] = "1.5" }, `metadata "beta1" is "1.5", want in [0, 1)`},
		{func(_ map[string]*engine.Tensor, m map[string]string) { m["eps"] = "NaN" }, `metadata "eps" is "NaN", want a positive finite number`},
		{func(_ map[string]*engine.Tensor, m map[string]string) { m["weight_decay"] = "-1" }, `metadata "weight_decay" is "-1", want a finite number ≥ 0`},
		{func(_ map[string]*engine.Tensor, m map[string]string) { delete(m, "beta2") }, `metadata "beta2" is missing (want in [0, 1))`},
		{func(_ map[string]*engine.Tensor, m map[string]string) { m["optimizer"] = "SGD" }, `not an AdamW state file (metadata optimizer="SGD", want "AdamW")`},
		{func(ts map[string]*engine.Tensor, _ map[string]string) { ts["a.exp_avg_sq"].F32[4] = -1 }, `tensor "a.exp_avg_sq" element 4 is -1, want ≥ 0 (a running mean of squared gradients)`},
		{func(ts map[string]*engine.Tensor, _ map[string]string) { ts["a.exp_avg"].F32[2] = float32(math.Inf(1)) }, `tensor "a.exp_avg": element 2 is +Inf (NaN or Inf)`},
		{func(ts map[string]*engine.Tensor, _ map[string]string) { delete(ts, "a.exp_avg_sq") }, `parameter "a": tensor "a.exp_avg_sq" is missing`},
		{func(ts map[string]*engine.Tensor, _ map[string]string) {
			ts["a.exp_avg"] = ts["a.exp_avg"].Convert(engine.BF16)
		}, `tensor "a.exp_avg" is bf16, want f32`},
		{func(ts map[string]*engine.Tensor, _ map[string]string) {
			ts["a.exp_avg"] = engine.FromF32(make([]float32, 5), 5)
		}, `parameter "a": exp_avg has 5 values, exp_avg_sq 6`},
		{func(ts map[string]*engine.Tensor, _ map[string]string) {
			ts["a.exp_avg"], ts["a.exp_avg_sq"] = engine.FromF32(make([]float32, 5), 5), engine.FromF32(make([]float32, 5), 5)
		}, `parameter "a" has 5 values in the state, 6 in the adapter`},
		{func(ts map[string]*engine.Tensor, m map[string]string) {
			m["steps"] = `{"a":3,"c":1}`
			ts["c.exp_avg"], ts["c.exp_avg_sq"] = engine.FromF32([]float32{0}, 1), engine.FromF32([]float32{0}, 1)
		}, `state for parameter "c", which the adapter does not have`},
		{func(ts map[string]*engine.Tensor, _ map[string]string) {
			ts["b.exp_avg"] = engine.FromF32([]float32{0, 0}, 2)
		}, `unexpected tensor "b.exp_avg" (not the exp_avg or exp_avg_sq of a parameter in metadata "steps")`},
	} {
		ts, meta := good()
		tc.edit(ts, meta)
		wantErr(t, tc.want, load(ts, meta), p+": "+tc.want)
	}
}
