package llama

import (
	"fmt"

	"github.com/tli-project/tli/autograd"
	"github.com/tli-project/tli/engine"
)

// LoRAModules are the Linear layers of a decoder layer that LoRA can target,
// named as PEFT names them.
var LoRAModules = []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}

// ModuleWeight returns the frozen weight of a Linear layer named as in
// LoRAModules ("q_proj", ..., "down_proj"), or nil for an unknown name.
func (l *Layer) ModuleWeight(module string) *engine.Tensor {
	switch module {
	case "q_proj":
		return l.Q
	case "k_proj":
		return l.K
	case "v_proj":
		return l.V
	case "o_proj":
		return l.O
	case "gate_proj":
		return l.Gate
	case "up_proj":
		return l.Up
	case "down_proj":
		return l.Down
	}
	return nil
}

// SetModuleWeight replaces the weight of a Linear layer named as in
// LoRAModules (used to merge adapters into a copy of a memory-mapped weight).
// It reports false for an unknown name.
func (l *Layer) SetModuleWeight(module string, w *engine.Tensor) bool {
	switch module {
	case "q_proj":
		l.Q = w
	case "k_proj":
		l.K = w
	case "v_proj":
		l.V = w
	case "o_proj":
		l.O = w
	case "gate_proj":
		l.Gate = w
	case "up_proj":
		l.Up = w
	case "down_proj":
		l.Down = w
	default:
		return false
	}
	return true
}

// ModulePrefix is the part of a Hugging Face tensor name between
// "model.layers.{i}." and ".weight": "self_attn.q_proj" or "mlp.up_proj".
func ModulePrefix(module string) string {
	switch module {
	case "gate_proj", "up_proj", "down_proj":
		return "mlp." + module
	}
	return "self_attn." + module
}

// Adapters are the LoRA adapters used in a training forward: Adapters[l]
// maps a module name of LoRAModules to the adapter on that Linear layer of
// decoder layer l. Missing layers, nil maps and missing modules have no
// adapter.
type Adapters []map[string]*autograd.LoRA

func (a Adapters) get(layer int, module string) *autograd.LoRA {
	if layer >= len(a) || a[layer] == nil {
		return nil
	}
	return a[layer][module]
}

// Check verifies that every adapter names a known module of an existing layer
// and that its A [r×in] and B [out×r] fit the model's weight shapes.
func (a Adapters) Check(cfg Config) error {
	if len(a) > cfg.NumLayers {
		return fmt.Errorf("adapters for %d layers, the model has %d", len(a), cfg.NumLayers)
	}
	for l, mods := range a {
		for name, ad := range mods {
			if ad == nil {
				continue
			}
			out, in, ok := cfg.ModuleShape(name)
			if !ok {
				return fmt.Errorf("layer %d: unknown LoRA target module %q (want one of %v)", l, name, LoRAModules)
			}
			if ad.A == nil || ad.B == nil {
				return fmt.Errorf("layer %d %s: LoRA A or B missing", l, name)
			}
			r := ad.A.Rows
			if r <= 0 || ad.A.Cols != in || ad.B.Rows != out || ad.B.Cols != r {
				return fmt.Errorf("layer %d %s: LoRA A is %d×%d and B %d×%d, want A r×%d and B %d×r", l, name, ad.A.Rows, ad.A.Cols, ad.B.Rows, ad.B.Cols, in, out)
			}
			if ad.Dropout < 0 || ad.Dropout >= 1 {
				return fmt.Errorf("layer %d %s: LoRA dropout %v is not in [0, 1)", l, name, ad.Dropout)
			}
		}
	}
	return nil
}

// ModuleShape returns the [out×in] shape of a Linear layer named as in
// LoRAModules; ok is false for an unknown name.
func (c Config) ModuleShape(module string) (out, in int, ok bool) {
	d, qd, kvd, f := c.HiddenSize, c.NumHeads*c.HeadDim, c.NumKVHeads*c.HeadDim, c.IntermediateSize
	switch module {
	case "q_proj":
		return qd, d, true
	case "k_proj", "v_proj":
		return kvd, d, true
	case "o_proj":
		return d, qd, true
	case "gate_proj", "up_proj":
		return f, d, true
	case "down_proj":
		return d, f, true
	}
	return 0, 0, false
}

// ForwardTrain runs the embeddings and decoder layers 0..targetLayer-1 on a
// packed batch, recording on tape every op that depends on an adapter, and
// returns hidden_states[targetLayer] [T×d] as Hugging Face numbers them
// (0: the embeddings, k: the output of decoder layer k−1). Layers at or above
// targetLayer are not run, so their adapters get no gradient. The products
// with bf16 weights follow m.FastBF16 as the inference forward does; dropout
// on the adapters' inputs is on when the tape has a dropout seed. A sequence
// longer than Config.MaxContext is an error.
func (m *Model) ForwardTrain(tape *autograd.Tape, b Batch, targetLayer int, adapters Adapters) (*autograd.Var, error) {
	cfg := m.Config
	if targetLayer < 0 || targetLayer > cfg.NumLayers {
		return nil, fmt.Errorf("ForwardTrain: target layer %d is outside 0..%d", targetLayer, cfg.NumLayers)
	}
	if err := adapters.Check(cfg); err != nil {
		return nil, fmt.Errorf("ForwardTrain: %w", err)
	}
	if err := cfg.checkBatch(b, false); err != nil {
		return nil, fmt.Errorf("ForwardTrain: %w", err)
	}
	if m.Embed == nil {
		return nil, fmt.Errorf("ForwardTrain: the embedding table is not loaded")
	}
	for l := 0; l < targetLayer; l++ {
		if l >= len(m.Layers) || m.Layers[l] == nil {
			return nil, fmt.Errorf("ForwardTrain: decoder layer %d is not loaded (target layer %d needs layers 0..%d)", l, targetLayer, targetLayer-1)
		}
	}
	if err := m.verifyThrough(targetLayer); err != nil {
		return nil, fmt.Errorf("ForwardTrain: %w", err)
	}
	d, T := cfg.HiddenSize, b.NumTokens()
	nH, nKV, hd := cfg.NumHeads, cfg.NumKVHeads, cfg.HeadDim
	eps := float32(cfg.RMSNormEps)
	fast := m.FastBF16

	emb := make([]float32, T*d)
	m.embed(emb, b.Tokens)
	h := autograd.Const(emb, T, d)
	if targetLayer == 0 {
		return h, nil
	}
	cos, sin := m.Rope.Tables(engine.Positions(b.Offsets), b.MaxLen())
	act := autograd.SiLUMul
	if cfg.arch().GELU {
		act = autograd.GELUMul
	}
	for l := 0; l < targetLayer; l++ {
		L := m.Layers[l]
		ad := func(module string) *autograd.LoRA { return adapters.get(l, module) }

		// Self-attention block.
		x := autograd.RMSNorm(tape, h, m.normWeight(L.AttnNorm), eps)
		q := autograd.Linear(tape, x, L.Q, ad("q_proj"), fast)
		k := autograd.Linear(tape, x, L.K, ad("k_proj"), fast)
		v := autograd.Linear(tape, x, L.V, ad("v_proj"), fast)
		if L.QBias != nil {
			q = autograd.AddBias(tape, q, L.QBias)
			k = autograd.AddBias(tape, k, L.KBias)
			v = autograd.AddBias(tape, v, L.VBias)
		}
		if L.QNorm != nil {
			q = autograd.Reshape(tape, autograd.RMSNorm(tape, autograd.Reshape(tape, q, T*nH, hd), L.QNorm, eps), T, nH*hd)
			k = autograd.Reshape(tape, autograd.RMSNorm(tape, autograd.Reshape(tape, k, T*nKV, hd), L.KNorm, eps), T, nKV*hd)
		}
		q = autograd.Rope(tape, q, nH, hd, cos, sin)
		k = autograd.Rope(tape, k, nKV, hd, cos, sin)
		a := autograd.AttentionWith(tape, q, k, v, b.Offsets, nH, nKV, hd, cfg.attentionOptions(l))
		h = autograd.Add(tape, h, autograd.Linear(tape, a, L.O, ad("o_proj"), fast))

		// MLP block.
		x = autograd.RMSNorm(tape, h, m.normWeight(L.MLPNorm), eps)
		g := autograd.Linear(tape, x, L.Gate, ad("gate_proj"), fast)
		u := autograd.Linear(tape, x, L.Up, ad("up_proj"), fast)
		h = autograd.Add(tape, h, autograd.Linear(tape, act(tape, g, u), L.Down, ad("down_proj"), fast))
	}
	return h, nil
}
