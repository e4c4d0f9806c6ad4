package llama

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/tli-project/tli/engine"
)

// A checkpoint of a family tli does not implement is refused by its
// config.json, and one holding a tensor the architecture does not read is
// refused by that tensor's name: neither is ever computed as Llama.
func TestUnknownArchitectureRefused(t *testing.T) {
	for _, c := range []struct {
		from, to string
		want     []string
	}{
		{`"model_type": "llama"`, `"model_type": "falcon"`, []string{"config.json", `model_type "falcon" is not implemented`, "supported: bloom, gemma, llama, mistral, qwen2, qwen3"}},
		{`"LlamaForCausalLM"`, `"RwkvForCausalLM"`, []string{"config.json", `architectures "RwkvForCausalLM" is not implemented`, "LlamaForCausalLM"}},
		{`"LlamaForCausalLM"`, `"MistralForCausalLM"`, []string{"config.json", `model_type "llama" and architectures "MistralForCausalLM" disagree`}},
	} {
		dir := synthTiny(t, SynthOptions{Seed: 1})
		editConfig(t, dir, c.from, c.to)
		_, err := Load(dir, LoadOptions{MaxLayer: AllLayers})
		wantErr(t, err, c.want...)
	}
	// Neither model_type nor architectures: read as Llama.
	dir := synthTiny(t, SynthOptions{Seed: 1})
	editConfig(t, dir, `"model_type": "llama",`, ``, `"architectures": [
    "LlamaForCausalLM"
  ],`, ``)
	m, err := Load(dir, LoadOptions{MaxLayer: AllLayers})
	if err != nil {
		t.Fatal(err)
	}
	if m.Config.arch() != LlamaArch {
		t.Errorf("arch %v, want llama", m.Config.Arch)
	}
	m.Close()
}

func TestUnconsumedTensorRefused(t *testing.T) {
	for _, c := range []struct {
		name  string
		shape []int
		ok    bool
	}{
		{"model.layers.1.self_attn.q_proj.bias", []int{64}, false},   // Qwen2's biases
		{"model.layers.0.self_attn.k_norm.weight", []int{16}, false}, // Qwen3's per-head norms
		{"model.layers.7.mlp.gate_proj.weight", []int{4, 4}, false},  // a layer config.json does not have
		{"model.layers.0.self_attn.rotary_emb.inv_freq", []int{8}, true},
	} {
		dir := synthTiny(t, SynthOptions{Seed: 1})
		p := filepath.Join(dir, "model.safetensors")
		ts, meta, err := ReadSafetensors(p)
		if err != nil {
			t.Fatal(err)
		}
		n := 1
		for _, d := range c.shape {
			n *= d
		}
		ts[c.name] = &engine.Tensor{DType: engine.F32, Shape: c.shape, F32: make([]float32, n)}
		if err := WriteSafetensors(p, ts, meta); err != nil {
			t.Fatal(err)
		}
		m, err := Load(dir, LoadOptions{MaxLayer: 1})
		if c.ok {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			} else {
				m.Close()
			}
			continue
		}
		wantErr(t, err, p, `tensor "`+c.name+`"`, "is not part of a LlamaForCausalLM checkpoint", "wrong hidden states")
	}
}

// BLOOM checkpoints with bigscience's bare tensor names ("h.0.…") read as
// the transformers names, with the same hidden states; and
// apply_residual_connection_post_layernorm matches the reference.
func TestBloomBareNamesAndPostNormResidual(t *testing.T) {
	dir := t.TempDir()
	if err := Synth(dir, SynthOptions{Shape: "tiny-bloom", Layers: 2, Seed: 5}); err != nil {
		t.Fatal(err)
	}
	seqs := testSeqs(512, 9, 3)
	b := NewBatch(seqs)
	layers := allLayers(2)
	states := func(dir string) map[int][]float32 {
		m, err := Load(dir, LoadOptions{DType: engine.F32, MaxLayer: AllLayers})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		h, err := m.HiddenStates(b, layers)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	want := states(dir)
	p := filepath.Join(dir, "model.safetensors")
	ts, meta, err := ReadSafetensors(p)
	if err != nil {
		t.Fatal(err)
	}
	bare := map[string]*engine.Tensor{}
	for n, x := range ts {
		bare[strings.TrimPrefix(n, "transformer.")] = x
	}
	if err := WriteSafetensors(p, bare, meta); err != nil {
		t.Fatal(err)
	}
	got := states(dir)
	for _, k := range layers {
		for i := range want[k] {
			if got[k][i] != want[k][i] {
				t.Fatalf("bare names: hidden_states[%d][%d] = %v, want %v", k, i, got[k][i], want[k][i])
			}
		}
	}
	editConfig(t, dir, `"apply_residual_connection_post_layernorm": false`, `"apply_residual_connection_post_layernorm": true`)
	got = states(dir)
	ref := refForward(t, dir, seqs, layers, "f32")
	compareLayers(t, "post-norm residual", b, 96, layers, got, ref[0], 1e-4)
}
