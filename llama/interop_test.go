package llama

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tli-project/tli/engine"
)

// TestConfigDTypeKey: transformers >= 4.56 writes dtype instead of
// torch_dtype; both are read, and dtype wins when both are there.
func TestConfigDTypeKey(t *testing.T) {
	base := `"hidden_size":64,"intermediate_size":172,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":512`
	for _, c := range []struct{ json, want string }{
		{`{` + base + `}`, ""},
		{`{` + base + `,"torch_dtype":"bfloat16"}`, "bfloat16"},
		{`{` + base + `,"dtype":"float16"}`, "float16"},
		{`{` + base + `,"torch_dtype":"float32","dtype":"bfloat16"}`, "bfloat16"},
		{`{` + base + `,"torch_dtype":"float32","dtype":null}`, "float32"},
	} {
		cfg, err := ParseConfig([]byte(c.json), "config.json")
		if err != nil || cfg.TorchDType != c.want {
			t.Errorf("%s: TorchDType %q, %v; want %q", c.json, cfg.TorchDType, err, c.want)
		}
	}
	if _, err := ParseConfig([]byte(`{`+base+`,"dtype":3}`), "config.json"); err == nil || !strings.Contains(err.Error(), `"dtype"`) {
		t.Errorf("dtype 3: %v, want an error naming the field", err)
	}
}

// TestWriteCheckpointWeights: shards as save_pretrained lays them out
// (model-0000i-of-0000n.safetensors, each under the limit unless one
// tensor is larger, and model.safetensors.index.json with
// metadata.total_size and weight_map), which Load reads back.
func TestWriteCheckpointWeights(t *testing.T) {
	src := synthTiny(t, SynthOptions{Seed: 4, DType: engine.BF16})
	m, err := Load(src, LoadOptions{DType: engine.BF16, MaxLayer: AllLayers})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var list []NamedTensor
	var total int64
	for _, w := range m.Weights() {
		t := w.Tensor
		if t.DType == engine.F32 {
			t = t.Convert(engine.BF16) // norms are held as f32: store them as the checkpoint does
		}
		list = append(list, NamedTensor{Name: w.Name, Tensor: t})
		total += int64(len(t.Bytes()))
	}
	const limit = 40000
	out := t.TempDir()
	os.WriteFile(filepath.Join(out, "config.json"), mustRead(t, filepath.Join(src, "config.json")), 0o644)
	os.WriteFile(filepath.Join(out, "model.safetensors"), []byte("stale"), 0o644)
	if err := WriteCheckpointWeights(out, list, map[string]string{"format": "pt"}, limit); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, "model.safetensors")); err == nil {
		t.Error("a stale model.safetensors is left beside the shards")
	}
	var idx struct {
		Metadata  map[string]json.Number `json:"metadata"`
		WeightMap map[string]string      `json:"weight_map"`
	}
	raw := mustRead(t, filepath.Join(out, IndexFile))
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	var top map[string]json.RawMessage
	json.Unmarshal(raw, &top)
	if len(top) != 2 || top["metadata"] == nil || top["weight_map"] == nil {
		t.Errorf("index keys: %s", raw)
	}
	if got := idx.Metadata["total_size"].String(); got != strconv.FormatInt(total, 10) {
		t.Errorf("metadata.total_size %s, want %d", got, total)
	}
	if len(idx.WeightMap) != len(list) {
		t.Errorf("weight_map has %d tensors, want %d", len(idx.WeightMap), len(list))
	}
	files := map[string]bool{}
	for _, f := range idx.WeightMap {
		files[f] = true
	}
	n := len(files)
	if n < 2 {
		t.Fatalf("%d shards; want several at a %d-byte limit", n, limit)
	}
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i, n)
		if !files[name] {
			t.Errorf("no shard %s in %v", name, files)
		}
		ts, meta, err := ReadSafetensors(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		var size int64
		for tn, tt := range ts {
			if idx.WeightMap[tn] != name {
				t.Errorf("%s is in %s, weight_map says %s", tn, name, idx.WeightMap[tn])
			}
			size += int64(len(tt.Bytes()))
		}
		if size > limit && len(ts) > 1 {
			t.Errorf("%s holds %d bytes in %d tensors, over the %d limit", name, size, len(ts), limit)
		}
		if meta["format"] != "pt" {
			t.Errorf("%s metadata %v", name, meta)
		}
	}
	back, err := Load(out, LoadOptions{DType: engine.BF16, MaxLayer: AllLayers})
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	ws, bs := m.Weights(), back.Weights()
	if len(ws) != len(bs) {
		t.Fatalf("%d weights back, want %d", len(bs), len(ws))
	}
	for i := range ws {
		if ws[i].Name != bs[i].Name || !slices.Equal(ws[i].Tensor.Bytes(), bs[i].Tensor.Bytes()) {
			t.Errorf("weight %s differs after the round trip", ws[i].Name)
		}
	}
	// Under the limit: one model.safetensors, and the index is removed.
	if err := WriteCheckpointWeights(out, list, nil, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, IndexFile)); err == nil {
		t.Error("the index of the sharded layout is left beside model.safetensors")
	}
	if _, err := os.Stat(filepath.Join(out, "model.safetensors")); err != nil {
		t.Error(err)
	}
}

// TestCheckpointDType: config.json's dtype, else the embedding's.
func TestCheckpointDType(t *testing.T) {
	dir := synthTiny(t, SynthOptions{Seed: 4, DType: engine.F16})
	if d, err := CheckpointDType(dir); err != nil || d != engine.F16 {
		t.Errorf("f16 checkpoint: %v, %v", d, err)
	}
	cfg := string(mustRead(t, filepath.Join(dir, "config.json")))
	var m map[string]any
	json.Unmarshal([]byte(cfg), &m)
	delete(m, "torch_dtype")
	m["dtype"] = "bfloat16"
	b, _ := json.Marshal(m)
	os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644)
	if d, err := CheckpointDType(dir); err != nil || d != engine.BF16 {
		t.Errorf("dtype bfloat16 in config.json: %v, %v", d, err)
	}
	m["dtype"] = "auto"
	b, _ = json.Marshal(m)
	os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644)
	if d, err := CheckpointDType(dir); err != nil || d != engine.F16 {
		t.Errorf("dtype auto: %v, %v; want the embedding's f16", d, err)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
