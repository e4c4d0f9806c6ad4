package lora

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/quant"
)

// setDTypeKeys rewrites dir/config.json with the given dtype keys (a nil
// value removes the key).
func setDTypeKeys(t *testing.T, dir string, keys map[string]any) {
	t.Helper()
	p := filepath.Join(dir, "config.json")
	var cfg map[string]any
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	for k, v := range keys {
		if v == nil {
			delete(cfg, k)
		} else {
			cfg[k] = v
		}
	}
	if b, err = json.MarshalIndent(cfg, "", "  "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// savedAdapter writes an adapter with non-zero B on q_proj and v_proj of
// every layer of the checkpoint in dir and returns its folder.
func savedAdapter(t *testing.T, dir string) (*Adapter, string) {
	t.Helper()
	return savedAdapterWith(t, dir, PaperConfig())
}

// savedAdapterWith is savedAdapter with the LoRA configuration c (its
// TargetModules nil: every module of the checkpoint's family).
func savedAdapterWith(t *testing.T, dir string, c Config) (*Adapter, string) {
	t.Helper()
	cfg, err := llama.LoadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if c.TargetModules == nil {
		c.TargetModules = cfg.LoRAModules()
	}
	a, err := New(c, cfg, 9)
	if err != nil {
		t.Fatal(err)
	}
	randomizeB(a, 10)
	adir := filepath.Join(t.TempDir(), "adapter")
	if err := a.Save(adir); err != nil {
		t.Fatal(err)
	}
	return a, adir
}

// TestMergeCheckpointSharded: without a dtype the merge keeps the base
// checkpoint's (here bf16, named only by transformers 4.56's dtype key),
// writes config.json with torch_dtype and dtype alike, and shards a
// checkpoint larger than ShardBytes as save_pretrained does; the merged
// folder loads with the in-memory merge's weights.
func TestMergeCheckpointSharded(t *testing.T) {
	dir := synthModel(t, engine.BF16)
	setDTypeKeys(t, dir, map[string]any{"torch_dtype": nil, "dtype": "bfloat16"})
	a, adir := savedAdapter(t, dir)
	out := filepath.Join(t.TempDir(), "merged")
	const limit = 20000
	dt, err := MergeCheckpointWith(dir, adir, out, MergeOptions{ShardBytes: limit})
	if err != nil {
		t.Fatal(err)
	}
	if dt != engine.BF16 {
		t.Errorf("default dtype %v, want the base checkpoint's bf16", dt)
	}

	// config.json: one dtype, under both keys.
	var cfg map[string]any
	b, _ := os.ReadFile(filepath.Join(out, "config.json"))
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg["torch_dtype"] != "bfloat16" || cfg["dtype"] != "bfloat16" {
		t.Errorf("config.json torch_dtype %v, dtype %v; want bfloat16 for both", cfg["torch_dtype"], cfg["dtype"])
	}

	// The index, as save_pretrained writes it.
	b, err = os.ReadFile(filepath.Join(out, llama.IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	var idx map[string]json.RawMessage
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	var meta map[string]int64
	var weightMap map[string]string
	if len(idx) != 2 || json.Unmarshal(idx["metadata"], &meta) != nil || json.Unmarshal(idx["weight_map"], &weightMap) != nil || len(meta) != 1 {
		t.Fatalf("index: want metadata {total_size} and weight_map, got %s", b)
	}
	files := map[string]bool{}
	for _, f := range weightMap {
		files[f] = true
	}
	if len(files) < 2 {
		t.Fatalf("%d shard files at a %d-byte limit", len(files), limit)
	}
	var size int64
	for i := 1; i <= len(files); i++ {
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i, len(files))
		if !files[name] {
			t.Errorf("weight_map names no %s: %v", name, files)
		}
		fi, err := os.Stat(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		size += fi.Size()
	}
	if meta["total_size"] <= 0 || meta["total_size"] > size {
		t.Errorf("metadata.total_size %d; the shards hold %d bytes with their headers", meta["total_size"], size)
	}
	if _, err := os.Stat(filepath.Join(out, "model.safetensors")); err == nil {
		t.Error("model.safetensors beside the shards")
	}

	// The merged folder loads with the weights of the in-memory merge (in
	// bf16, as PEFT merges a bf16 model).
	got, err := llama.Load(out, llama.LoadOptions{DType: engine.BF16, MaxLayer: llama.AllLayers})
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	want, err := llama.Load(dir, llama.LoadOptions{DType: engine.BF16, MaxLayer: llama.AllLayers})
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	if err := a.Merge(want); err != nil {
		t.Fatal(err)
	}
	gw, ww := got.Weights(), want.Weights()
	if len(gw) != len(ww) || len(weightMap) != len(ww) {
		t.Fatalf("%d weights back, %d in weight_map; want %d", len(gw), len(weightMap), len(ww))
	}
	for i := range ww {
		if gw[i].Name != ww[i].Name || !slices.Equal(gw[i].Tensor.Bytes(), ww[i].Tensor.Bytes()) {
			t.Errorf("%s differs from the in-memory merge", ww[i].Name)
		}
	}
}

// TestMergeCheckpointDTypeKeys: the dtype a merge defaults to and the keys
// config.json gets, for each way a base checkpoint names its dtype.
func TestMergeCheckpointDTypeKeys(t *testing.T) {
	f16 := engine.F16
	for _, c := range []struct {
		name    string
		stored  engine.DType
		keys    map[string]any
		dtype   *engine.DType
		want    engine.DType
		keysOut []string
	}{
		{"torch_dtype", engine.F32, map[string]any{"torch_dtype": "float32"}, nil, engine.F32, []string{"torch_dtype", "dtype"}},
		{"none: the embedding's", engine.BF16, map[string]any{"torch_dtype": nil, "dtype": nil}, nil, engine.BF16, []string{"torch_dtype"}},
		{"auto: the embedding's", engine.F16, map[string]any{"torch_dtype": "auto"}, nil, engine.F16, []string{"torch_dtype", "dtype"}},
		{"--dtype f16", engine.F32, map[string]any{"torch_dtype": nil, "dtype": "float32"}, &f16, engine.F16, []string{"torch_dtype", "dtype"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := synthModel(t, c.stored)
			setDTypeKeys(t, dir, c.keys)
			_, adir := savedAdapter(t, dir)
			out := filepath.Join(t.TempDir(), "merged")
			dt, err := MergeCheckpointWith(dir, adir, out, MergeOptions{DType: c.dtype})
			if err != nil {
				t.Fatal(err)
			}
			if dt != c.want {
				t.Errorf("dtype %v, want %v", dt, c.want)
			}
			if _, err := os.Stat(filepath.Join(out, "model.safetensors")); err != nil {
				t.Errorf("a small merge is one model.safetensors: %v", err)
			}
			var cfg map[string]any
			b, _ := os.ReadFile(filepath.Join(out, "config.json"))
			json.Unmarshal(b, &cfg)
			for _, k := range []string{"torch_dtype", "dtype"} {
				v, ok := cfg[k]
				switch {
				case slices.Contains(c.keysOut, k) && v != llama.TorchDTypeName(c.want):
					t.Errorf("%s = %v, want %s", k, v, llama.TorchDTypeName(c.want))
				case !slices.Contains(c.keysOut, k) && ok:
					t.Errorf("%s = %v, want no such key", k, v)
				}
			}
			if d, err := llama.CheckpointDType(out); err != nil || d != c.want {
				t.Errorf("merged checkpoint stores %v (%v), want %v", d, err, c.want)
			}
		})
	}
}

// TestMergeQuantized checks the merge into 4-bit weights as PEFT's bnb
// Linear4bit.merge computes it: the weight dequantised in its quant_state
// dtype plus the f32 delta, quantised again with the same type and block
// size and quant_state dtype float32; and that merging into a checkpoint
// written 4-bit (tli quantize) writes a 4-bit checkpoint holding exactly
// those weights.
func TestMergeQuantized(t *testing.T) {
	dir := synthModel(t, engine.F32)
	num := llama.Numerics{Activations: engine.F16, Quant: "fp4"}
	a, adir := savedAdapter(t, dir)
	m, err := llama.Load(dir, llama.LoadOptions{MaxLayer: llama.AllLayers, Numerics: num})
	if err != nil {
		t.Fatal(err)
	}
	before := m.Layers[1].Q
	if err := a.Merge(m); err != nil {
		t.Fatal(err)
	}
	got := m.Layers[1].Q
	if got.DType != engine.Q4 || got.Q.Kind != quant.FP4 || got.Q.DType != quant.F32 || got.Q.Blocksize != llama.QuantBlocksize {
		t.Fatalf("merged q_proj: %v %+v", got.DType, got.Q)
	}
	w := before.ToF32()
	for i, d := range a.Delta(1, "q_proj") {
		w[i] += d
	}
	want, err := quant.NewTensor(quant.FP4, w, got.Q.Rows, got.Q.Cols, llama.QuantBlocksize, quant.F32, false)
	if err != nil {
		t.Fatal(err)
	}
	if string(want.Packed) != string(got.Q.Packed) {
		t.Fatal("merged codes differ from requantising W + Δ")
	}
	for i := range want.Absmax {
		if want.Absmax[i] != got.Q.Absmax[i] {
			t.Fatalf("merged absmax %d differs", i)
		}
	}

	q := filepath.Join(t.TempDir(), "q")
	if err := llama.QuantizeCheckpoint(dir, q, num, 0, false); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "merged")
	if _, err := MergeCheckpointWith(q, adir, out, MergeOptions{}); err != nil {
		t.Fatal(err)
	}
	mm, err := llama.Load(out, llama.LoadOptions{MaxLayer: llama.AllLayers, Numerics: llama.Numerics{Activations: engine.F16}})
	if err != nil {
		t.Fatal(err)
	}
	defer mm.Close()
	if w := mm.Layers[1].Q; w.DType != engine.Q4 || string(w.Q.Packed) != string(got.Q.Packed) {
		t.Fatalf("the merged 4-bit checkpoint's q_proj is %v and differs from the in-memory merge", w.DType)
	}
}
