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
		{`"model_type": "llama"`, `"model_type": "falcon"`, []string{"config.json", `model_type "falcon" is not implemented`, "supported: bloom, gemma, gemma2, llama, mistral, qwen2, qwen3"}},
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

// Real config.json files of each family (as published on the Hugging Face
// hub, trimmed of keys tli does not read) parse to the right description.
func TestRealFamilyConfigs(t *testing.T) {
	for _, c := range []struct {
		name, json string
		arch       string
		tied       bool
		headDim    int
		windows    map[int]int // layer -> window
		eps        float64
		err        string
	}{
		{name: "Qwen2.5-0.5B", json: `{"architectures":["Qwen2ForCausalLM"],"attention_dropout":0.0,"bos_token_id":151643,"eos_token_id":151643,"hidden_act":"silu","hidden_size":896,"initializer_range":0.02,"intermediate_size":4864,"max_position_embeddings":32768,"max_window_layers":24,"model_type":"qwen2","num_attention_heads":14,"num_hidden_layers":24,"num_key_value_heads":2,"rms_norm_eps":1e-06,"rope_theta":1000000.0,"sliding_window":32768,"tie_word_embeddings":true,"torch_dtype":"bfloat16","use_cache":true,"use_sliding_window":false,"vocab_size":151936}`,
			arch: "qwen2", tied: true, headDim: 64, windows: map[int]int{0: 0, 23: 0}, eps: 1e-6},
		{name: "Qwen3-0.6B", json: `{"architectures":["Qwen3ForCausalLM"],"attention_bias":false,"attention_dropout":0.0,"bos_token_id":151643,"eos_token_id":151645,"head_dim":128,"hidden_act":"silu","hidden_size":1024,"intermediate_size":3072,"max_position_embeddings":40960,"max_window_layers":28,"model_type":"qwen3","num_attention_heads":16,"num_hidden_layers":28,"num_key_value_heads":8,"rms_norm_eps":1e-06,"rope_scaling":null,"rope_theta":1000000,"sliding_window":null,"tie_word_embeddings":true,"torch_dtype":"bfloat16","use_sliding_window":false,"vocab_size":151936}`,
			arch: "qwen3", tied: true, headDim: 128, windows: map[int]int{0: 0, 27: 0}, eps: 1e-6},
		{name: "Mistral-7B-v0.1", json: `{"architectures":["MistralForCausalLM"],"bos_token_id":1,"eos_token_id":2,"hidden_act":"silu","hidden_size":4096,"initializer_range":0.02,"intermediate_size":14336,"max_position_embeddings":32768,"model_type":"mistral","num_attention_heads":32,"num_hidden_layers":32,"num_key_value_heads":8,"rms_norm_eps":1e-05,"rope_theta":10000.0,"sliding_window":4096,"tie_word_embeddings":false,"torch_dtype":"bfloat16","vocab_size":32000}`,
			arch: "mistral", headDim: 128, windows: map[int]int{0: 4096, 31: 4096}, eps: 1e-5},
		{name: "Mistral-7B-v0.3", json: `{"architectures":["MistralForCausalLM"],"hidden_size":4096,"intermediate_size":14336,"max_position_embeddings":32768,"model_type":"mistral","num_attention_heads":32,"num_hidden_layers":32,"num_key_value_heads":8,"rms_norm_eps":1e-05,"rope_theta":1000000.0,"sliding_window":null,"vocab_size":32768}`,
			arch: "mistral", headDim: 128, windows: map[int]int{0: 0}, eps: 1e-5},
		{name: "gemma-2b", json: `{"architectures":["GemmaForCausalLM"],"bos_token_id":2,"eos_token_id":1,"head_dim":256,"hidden_act":"gelu","hidden_activation":"gelu_pytorch_tanh","hidden_size":2048,"intermediate_size":16384,"max_position_embeddings":8192,"model_type":"gemma","num_attention_heads":8,"num_hidden_layers":18,"num_key_value_heads":1,"pad_token_id":0,"rms_norm_eps":1e-06,"rope_theta":10000.0,"torch_dtype":"bfloat16","vocab_size":256000}`,
			arch: "gemma", tied: true, headDim: 256, windows: map[int]int{0: 0}, eps: 1e-6},
		{name: "bloom-560m", json: `{"apply_residual_connection_post_layernorm":false,"architectures":["BloomForCausalLM"],"attention_dropout":0.0,"bos_token_id":1,"eos_token_id":2,"hidden_dropout":0.0,"hidden_size":1024,"initializer_range":0.02,"layer_norm_epsilon":1e-05,"masked_softmax_fusion":true,"model_type":"bloom","n_head":16,"n_inner":null,"n_layer":24,"offset_alibi":100,"pad_token_id":3,"pretraining_tp":1,"skip_bias_add":true,"skip_bias_add_qkv":false,"slow_but_exact":false,"unk_token_id":0,"use_cache":true,"vocab_size":250880}`,
			arch: "bloom", tied: true, headDim: 64, windows: map[int]int{0: 0}, eps: 1e-5},
		{name: "gemma-2-2b", json: `{"architectures":["Gemma2ForCausalLM"],"model_type":"gemma2","hidden_size":2304,"num_hidden_layers":26,"num_attention_heads":8,"num_key_value_heads":4,"head_dim":256,"intermediate_size":9216,"vocab_size":256000}`,
			arch: "gemma2", tied: true, headDim: 256, windows: map[int]int{0: 4096, 1: 0, 24: 4096, 25: 0}, eps: 1e-6},
		{name: "gemma-3", json: `{"architectures":["Gemma3ForCausalLM"],"model_type":"gemma3_text","hidden_size":640,"num_hidden_layers":18,"num_attention_heads":4,"vocab_size":262144}`,
			err: `model_type "gemma3_text" is not implemented by tli`},
	} {
		cfg, err := ParseConfig([]byte(c.json), c.name)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if cfg.arch().Name != c.arch || cfg.TieWordEmbeddings != c.tied || cfg.HeadDim != c.headDim || cfg.RMSNormEps != c.eps {
			t.Errorf("%s: arch %s tied %v head_dim %d eps %v; want %s %v %d %v", c.name, cfg.arch().Name, cfg.TieWordEmbeddings, cfg.HeadDim, cfg.RMSNormEps, c.arch, c.tied, c.headDim, c.eps)
		}
		for l, w := range c.windows {
			if got := cfg.WindowAt(l); got != w {
				t.Errorf("%s: layer %d window %d, want %d", c.name, l, got, w)
			}
		}
	}
	// BLOOM's legacy n_embed wins over hidden_size, as BloomConfig reads it.
	if cfg, err := ParseConfig([]byte(`{"model_type":"bloom","n_embed":64,"hidden_size":32,"n_head":4,"n_layer":2,"vocab_size":100}`), "b"); err != nil || cfg.HiddenSize != 64 || cfg.IntermediateSize != 256 {
		t.Errorf("bloom n_embed: hidden %d, ffn %d, %v", cfg.HiddenSize, cfg.IntermediateSize, err)
	}
	// Qwen2 with use_sliding_window: the window from max_window_layers up.
	cfg, err := ParseConfig([]byte(`{"model_type":"qwen2","hidden_size":64,"intermediate_size":128,"num_hidden_layers":4,"num_attention_heads":4,"vocab_size":100,"use_sliding_window":true,"sliding_window":16,"max_window_layers":2}`), "q")
	if err != nil {
		t.Fatal(err)
	}
	for l, w := range []int{0, 0, 16, 16} {
		if got := cfg.WindowAt(l); got != w {
			t.Errorf("qwen2 use_sliding_window: layer %d window %d, want %d", l, got, w)
		}
	}
}
