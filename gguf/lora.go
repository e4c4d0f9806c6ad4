package gguf

import (
	"fmt"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/lora"
)

// loraNames are the GGUF names of the Llama modules LoRA adapts.
var loraNames = map[string]string{
	"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
	"gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down",
}

// ExportLoRA writes adapter a, for a Llama checkpoint of config cfg, as a
// GGUF LoRA adapter llama.cpp applies to that checkpoint's GGUF export
// (llama-cli --lora): general.type adapter, adapter.type lora,
// adapter.lora.alpha, and blk.N.<module>.weight.lora_a / lora_b tensors
// (lora_a [r×in] as dims {in, r}, lora_b [out×r] as dims {r, out}). The
// rows of lora_b for attn_q and attn_k are permuted as ExportLlama permutes
// the weights they add to. llama.cpp scales by alpha/r, so alpha is written
// as tli's scale times r (rsLoRA's alpha/sqrt(r) included).
func ExportLoRA(path string, a *lora.Adapter, cfg llama.Config, opt ExportOptions) error {
	if err := CheckLlama(cfg); err != nil {
		return err
	}
	arch, permute, _ := archOf(cfg)
	if opt.DType != engine.F32 && opt.DType != engine.F16 && opt.DType != engine.BF16 || opt.Q8_0 {
		return fmt.Errorf("gguf: adapter dtype: want f32, f16 or bf16")
	}
	if len(a.Layers) != cfg.NumLayers {
		return fmt.Errorf("gguf: adapter is for %d layers, the model has %d", len(a.Layers), cfg.NumLayers)
	}
	name := opt.Name
	if name == "" {
		name = "lora"
	}
	kvs := []KV{
		{"general.architecture", arch},
		{"general.type", "adapter"},
		{"general.name", name},
		{"general.file_type", fileType(opt.DType, false)},
		{"adapter.type", "lora"},
		{"adapter.lora.alpha", float32(float64(a.Config.Scale()) * float64(a.Config.R))},
	}
	var ts []Tensor
	for l, mods := range a.Layers {
		for _, m := range llama.AllLoRAModules {
			ad := mods[m]
			if ad == nil {
				continue
			}
			g, ok := loraNames[m]
			if !ok {
				return fmt.Errorf("gguf: LoRA module %s has no llama.cpp name", m)
			}
			heads := 0
			switch {
			case permute && m == "q_proj":
				heads = cfg.NumHeads
			case permute && m == "k_proj":
				heads = cfg.NumKVHeads
			}
			if ad.Scale != a.Config.Scale() {
				return fmt.Errorf("gguf: layer %d %s: scale %g differs from the adapter's %g (llama.cpp has one alpha per file)", l, m, ad.Scale, a.Config.Scale())
			}
			p := fmt.Sprintf("blk.%d.%s.weight", l, g)
			A := engine.FromF32(ad.A.Data, ad.A.Rows, ad.A.Cols)
			B := engine.FromF32(ad.B.Data, ad.B.Rows, ad.B.Cols)
			ts = append(ts, matrix(p+".lora_a", A, opt.DType, 0, cfg.HeadDim), matrix(p+".lora_b", B, opt.DType, heads, cfg.HeadDim))
		}
	}
	if len(ts) == 0 {
		return fmt.Errorf("gguf: the adapter adapts no module")
	}
	return WriteFile(path, kvs, ts)
}
