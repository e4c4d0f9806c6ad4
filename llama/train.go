package llama

import (
	"fmt"
	"slices"

	"github.com/tli-project/tli/autograd"
	"github.com/tli-project/tli/engine"
)

// LoRAModules are the Linear layers of a Llama-family decoder layer (Llama,
// Mistral, Qwen2, Qwen3, Gemma) that LoRA can target, named as PEFT names
// them; Config.LoRAModules gives a model's own list (BLOOM's differ).
var LoRAModules = slices.Clone(llamaModules)

// AllLoRAModules are the module names of every family, in a fixed order
// (the order of adapters' parameters): Llama's, then BLOOM's.
var AllLoRAModules = append(slices.Clone(llamaModules), archs["bloom"].Modules...)

// LoRAModules are the modules of c's family LoRA can target.
func (c Config) LoRAModules() []string { return c.arch().Modules }

// DefaultTargets are PEFT's default target_modules for c's family
// (q_proj, v_proj; BLOOM: query_key_value).
func (c Config) DefaultTargets() []string { return slices.Clone(c.arch().DefaultTargets) }

// module is one Linear layer LoRA can target: its name after the layer
// prefix (without ".weight"), where Layer holds it and its [out×in] shape.
type module struct {
	path  string
	field func(*Layer) **engine.Tensor
	shape func(c Config) (out, in int)
}

var modules = map[string]module{
	"q_proj": {"self_attn.q_proj", func(l *Layer) **engine.Tensor { return &l.Q }, func(c Config) (int, int) { return c.qDim(), c.HiddenSize }},
	"k_proj": {"self_attn.k_proj", func(l *Layer) **engine.Tensor { return &l.K }, func(c Config) (int, int) { return c.kvDim(), c.HiddenSize }},
	"v_proj": {"self_attn.v_proj", func(l *Layer) **engine.Tensor { return &l.V }, func(c Config) (int, int) { return c.kvDim(), c.HiddenSize }},
	"o_proj": {"self_attn.o_proj", func(l *Layer) **engine.Tensor { return &l.O }, func(c Config) (int, int) { return c.HiddenSize, c.qDim() }},
	"gate_proj": {"mlp.gate_proj", func(l *Layer) **engine.Tensor { return &l.Gate },
		func(c Config) (int, int) { return c.IntermediateSize, c.HiddenSize }},
	"up_proj": {"mlp.up_proj", func(l *Layer) **engine.Tensor { return &l.Up }, func(c Config) (int, int) { return c.IntermediateSize, c.HiddenSize }},
	"down_proj": {"mlp.down_proj", func(l *Layer) **engine.Tensor { return &l.Down },
		func(c Config) (int, int) { return c.HiddenSize, c.IntermediateSize }},
	"query_key_value": {"self_attention.query_key_value", func(l *Layer) **engine.Tensor { return &l.QKV },
		func(c Config) (int, int) { return 3 * c.qDim(), c.HiddenSize }},
	"dense": {"self_attention.dense", func(l *Layer) **engine.Tensor { return &l.O }, func(c Config) (int, int) { return c.HiddenSize, c.qDim() }},
	"dense_h_to_4h": {"mlp.dense_h_to_4h", func(l *Layer) **engine.Tensor { return &l.Up },
		func(c Config) (int, int) { return c.IntermediateSize, c.HiddenSize }},
	"dense_4h_to_h": {"mlp.dense_4h_to_h", func(l *Layer) **engine.Tensor { return &l.Down },
		func(c Config) (int, int) { return c.HiddenSize, c.IntermediateSize }},
}

func (c Config) qDim() int  { return c.NumHeads * c.HeadDim }
func (c Config) kvDim() int { return c.NumKVHeads * c.HeadDim }

// ModuleWeight returns the frozen weight of a Linear layer named as in
// AllLoRAModules ("q_proj", ..., "query_key_value", ...), or nil for an
// unknown name or one the layer does not have.
func (l *Layer) ModuleWeight(module string) *engine.Tensor {
	if m, ok := modules[module]; ok {
		return *m.field(l)
	}
	return nil
}

// SetModuleWeight replaces the weight of a Linear layer named as in
// AllLoRAModules (used to merge adapters into a copy of a memory-mapped
// weight). It reports false for an unknown name.
func (l *Layer) SetModuleWeight(module string, w *engine.Tensor) bool {
	m, ok := modules[module]
	if ok {
		*m.field(l) = w
	}
	return ok
}

// ModulePrefix is the part of a Hugging Face tensor name between the layer
// prefix and ".weight": "self_attn.q_proj", "mlp.up_proj",
// "self_attention.query_key_value".
func ModulePrefix(module string) string { return modules[module].path }

// ModulePath is the full name of module's Linear layer in decoder layer i,
// without ".weight": "model.layers.3.self_attn.q_proj" or, for BLOOM's
// modules, "transformer.h.3.self_attention.query_key_value".
func ModulePath(layer int, module string) string {
	for _, a := range archs {
		if slices.Contains(a.Modules, module) {
			return fmt.Sprintf(a.Names.Layer, layer) + ModulePrefix(module)
		}
	}
	return fmt.Sprintf(llamaNames.Layer, layer) + ModulePrefix(module)
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
				return fmt.Errorf("layer %d: unknown LoRA target module %q (want one of %v)", l, name, cfg.LoRAModules())
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

// ModuleShape returns the [out×in] shape of a Linear layer of c's family
// named as in c.LoRAModules(); ok is false for another name.
func (c Config) ModuleShape(module string) (out, in int, ok bool) {
	if !slices.Contains(c.LoRAModules(), module) {
		return 0, 0, false
	}
	out, in = modules[module].shape(c)
	return out, in, true
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
	tape.Round = m.act() // the rounding of the inference forward

	emb := make([]float32, T*d)
	m.embed(emb, b.Tokens)
	h := autograd.Const(emb, T, d)
	if targetLayer == 0 {
		return h, nil
	}
	a := cfg.arch()
	cos, sin := m.ropeTables(engine.Positions(b.Offsets), b.MaxLen())
	norm := func(x *autograd.Var, w, bias []float32) *autograd.Var {
		if a.LayerNorm {
			return autograd.LayerNorm(tape, x, w, bias, eps)
		}
		return autograd.RMSNorm(tape, x, m.normWeight(w), eps)
	}
	bias := func(x *autograd.Var, b []float32) *autograd.Var {
		if b == nil {
			return x
		}
		return autograd.AddBias(tape, x, b)
	}
	act := autograd.SiLUMul
	if a.GELU {
		act = autograd.GELUMul
	}
	for l := 0; l < targetLayer; l++ {
		L := m.Layers[l]
		ad := func(module string) *autograd.LoRA { return adapters.get(l, module) }

		// Self-attention block.
		x := norm(h, L.AttnNorm, L.AttnNormBias)
		var q, k, v *autograd.Var
		if L.QKV != nil {
			qkv := bias(autograd.Linear(tape, x, L.QKV, ad("query_key_value"), fast), L.QKVBias)
			q = autograd.HeadPart(tape, qkv, nH, 3, 0, hd)
			k = autograd.HeadPart(tape, qkv, nH, 3, 1, hd)
			v = autograd.HeadPart(tape, qkv, nH, 3, 2, hd)
		} else {
			q = bias(autograd.Linear(tape, x, L.Q, ad("q_proj"), fast), L.QBias)
			k = bias(autograd.Linear(tape, x, L.K, ad("k_proj"), fast), L.KBias)
			v = bias(autograd.Linear(tape, x, L.V, ad("v_proj"), fast), L.VBias)
		}
		if L.QNorm != nil {
			q = autograd.Reshape(tape, autograd.RMSNorm(tape, autograd.Reshape(tape, q, T*nH, hd), L.QNorm, eps), T, nH*hd)
			k = autograd.Reshape(tape, autograd.RMSNorm(tape, autograd.Reshape(tape, k, T*nKV, hd), L.KNorm, eps), T, nKV*hd)
		}
		if m.Rope != nil {
			q = autograd.Rope(tape, q, nH, hd, cos, sin)
			k = autograd.Rope(tape, k, nKV, hd, cos, sin)
		}
		att := autograd.AttentionWith(tape, q, k, v, b.Offsets, nH, nKV, hd, cfg.attentionOptions(l))
		res := h
		if cfg.ResidualPostNorm {
			res = x
		}
		o := bias(autograd.Linear(tape, att, L.O, ad(oModule(a)), fast), L.OBias)
		if L.PostAttnNorm != nil {
			o = norm(o, L.PostAttnNorm, nil)
		}
		h = autograd.Add(tape, res, o)

		// MLP block.
		x = norm(h, L.MLPNorm, L.MLPNormBias)
		res = h
		if cfg.ResidualPostNorm {
			res = x
		}
		if a.PlainMLP {
			u := autograd.GELU(tape, bias(autograd.Linear(tape, x, L.Up, ad("dense_h_to_4h"), fast), L.UpBias))
			h = autograd.Add(tape, res, bias(autograd.Linear(tape, u, L.Down, ad("dense_4h_to_h"), fast), L.DownBias))
			continue
		}
		g := autograd.Linear(tape, x, L.Gate, ad("gate_proj"), fast)
		u := autograd.Linear(tape, x, L.Up, ad("up_proj"), fast)
		y := autograd.Linear(tape, act(tape, g, u), L.Down, ad("down_proj"), fast)
		if L.PostFFNorm != nil {
			y = norm(y, L.PostFFNorm, nil)
		}
		h = autograd.Add(tape, res, y)
	}
	return h, nil
}

// oModule is the LoRA name of the attention's output projection.
func oModule(a *Arch) string {
	if a.FusedQKV {
		return "dense"
	}
	return "o_proj"
}
