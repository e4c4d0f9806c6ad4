package llama

import (
	"fmt"
	"sort"
	"strings"
)

// An Arch describes one model family's decoder as the ways it differs from
// Llama's. The one forward (forward.go), its backward (train.go), the
// cached generation and the loader consult it; there is no second copy of
// the layer. A checkpoint is read as an Arch only when its config.json
// names it (model_type, architectures): a family tli does not implement is
// refused, never computed as if it were Llama.
type Arch struct {
	// Name is tli's name of the family (--arch, synth shapes).
	Name string
	// ModelType is config.json's model_type; Class is the architectures
	// entry transformers instantiates for causal LM checkpoints.
	ModelType, Class string
	// QKVBias: q_proj, k_proj and v_proj carry a bias (Qwen2).
	QKVBias bool
	// QKNorm: q and k of every head go through an RMSNorm over head_dim
	// (self_attn.q_norm, self_attn.k_norm) before rope (Qwen3).
	QKNorm bool
	// Window says which layers mask keys config.json's sliding_window or
	// more positions behind the query: WindowNone, WindowAll (Mistral) or
	// WindowUpper (Qwen2/Qwen3 with use_sliding_window: layers from
	// max_window_layers up, as transformers' default layer_types).
	Window WindowKind
	// NormPlusOne: RMSNorm multiplies by (1 + w) (Gemma's GemmaRMSNorm).
	NormPlusOne bool
	// EmbedScale: hidden_states[0] is the embedding times sqrt(hidden_size)
	// (Gemma).
	EmbedScale bool
	// GELU: the gated MLP uses tanh-approximated GELU (Gemma's
	// hidden_activation gelu_pytorch_tanh) instead of SiLU.
	GELU bool
	// TiedByDefault: tie_word_embeddings when config.json does not say.
	TiedByDefault bool
	// SandwichNorms: each block's output is normed before the residual
	// add (Gemma 2: post_attention_layernorm on the attention's output,
	// pre_feedforward_layernorm before the MLP, post_feedforward_layernorm
	// on its output). SoftCaps: config.json's attn_logit_softcapping,
	// final_logit_softcapping and query_pre_attn_scalar apply (Gemma 2).
	SandwichNorms, SoftCaps bool

	// BLOOM's differences. LayerNorm: norms are LayerNorm with a bias
	// (layer_norm_epsilon) instead of RMSNorm. ALiBi: attention adds
	// slope·key position per head (engine.ALiBiSlopes) instead of rotary
	// embeddings. EmbedNorm: hidden_states[0] is the embedding after a
	// LayerNorm. FusedQKV: one query_key_value Linear whose output rows
	// are [heads, 3, head_dim]. Biases: every Linear has a bias. Plain MLP:
	// down(gelu_tanh(up(x))) without a gate.
	LayerNorm, ALiBi, EmbedNorm, FusedQKV, Biases, PlainMLP bool

	// Names of the checkpoint's tensors.
	Names Names
	// Modules are the Linear layers LoRA can target, as PEFT names them;
	// DefaultTargets are PEFT's default target_modules for the family.
	Modules, DefaultTargets []string
}

// Names are how a family's checkpoint names its tensors.
type Names struct {
	Embed, EmbedNorm, FinalNorm string // without ".weight"/".bias"
	Layer                       string // Sprintf format of decoder layer i's prefix
	// Bare is a prefix some checkpoints leave out (BLOOM's original files
	// name "word_embeddings.weight", not "transformer.word_embeddings.weight").
	Bare string
}

var (
	llamaNames    = Names{Embed: "model.embed_tokens", FinalNorm: "model.norm", Layer: "model.layers.%d."}
	llamaModules  = []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
	llamaDefaults = []string{"q_proj", "v_proj"}
)

// WindowKind is where an Arch applies the sliding window.
type WindowKind int

const (
	WindowNone  WindowKind = iota // no sliding window
	WindowAll                     // every layer (Mistral)
	WindowUpper                   // with use_sliding_window, layers >= max_window_layers (Qwen2, Qwen3)
	WindowEven                    // layers 0, 2, 4, ... (Gemma 2's alternating local layers)
)

// archs are the families tli implements, by model_type.
var archs = map[string]*Arch{
	"llama":   llamaLike(Arch{Name: "llama", Class: "LlamaForCausalLM"}),
	"mistral": llamaLike(Arch{Name: "mistral", Class: "MistralForCausalLM", Window: WindowAll}),
	"qwen2":   llamaLike(Arch{Name: "qwen2", Class: "Qwen2ForCausalLM", QKVBias: true, Window: WindowUpper}),
	"qwen3":   llamaLike(Arch{Name: "qwen3", Class: "Qwen3ForCausalLM", QKNorm: true, Window: WindowUpper}),
	"gemma": llamaLike(Arch{Name: "gemma", Class: "GemmaForCausalLM", NormPlusOne: true, EmbedScale: true, GELU: true,
		TiedByDefault: true}),
	"gemma2": llamaLike(Arch{Name: "gemma2", Class: "Gemma2ForCausalLM", NormPlusOne: true, EmbedScale: true, GELU: true,
		TiedByDefault: true, SandwichNorms: true, SoftCaps: true, Window: WindowEven}),
	"bloom": {Name: "bloom", ModelType: "bloom", Class: "BloomForCausalLM", TiedByDefault: true,
		LayerNorm: true, ALiBi: true, EmbedNorm: true, FusedQKV: true, Biases: true, PlainMLP: true, GELU: true,
		Names: Names{Embed: "transformer.word_embeddings", EmbedNorm: "transformer.word_embeddings_layernorm",
			FinalNorm: "transformer.ln_f", Layer: "transformer.h.%d.", Bare: "transformer."},
		Modules:        []string{"query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"},
		DefaultTargets: []string{"query_key_value"}},
}

// llamaLike completes the description of a family laid out as Llama.
func llamaLike(a Arch) *Arch {
	a.ModelType = a.Name
	a.Names, a.Modules, a.DefaultTargets = llamaNames, llamaModules, llamaDefaults
	return &a
}

// ArchNames lists the model_type values tli implements, sorted.
func ArchNames() []string {
	var names []string
	for k := range archs {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// LlamaArch is the Arch of Llama checkpoints (and of a Config built in
// memory without one).
var LlamaArch = archs["llama"]

// resolveArch picks the Arch of a config.json from its model_type and
// architectures. A config naming neither is read as Llama (hand-written
// configs); the tensor check at load refuses a checkpoint that is not.
func resolveArch(modelType string, classes []string) (*Arch, error) {
	supported := strings.Join(ArchNames(), ", ")
	var a *Arch
	if modelType != "" {
		a = archs[modelType]
		if a == nil {
			return nil, fmt.Errorf("model_type %q is not implemented by tli (supported: %s); computing it as Llama would give wrong hidden states", modelType, supported)
		}
	}
	for _, c := range classes {
		var byClass *Arch
		for _, x := range archs {
			if x.Class == c {
				byClass = x
			}
		}
		if byClass == nil {
			return nil, fmt.Errorf("architectures %q is not implemented by tli (it reads %s); computing it as Llama would give wrong hidden states", c, archClasses())
		}
		if a != nil && byClass != a {
			return nil, fmt.Errorf("model_type %q and architectures %q disagree", modelType, c)
		}
		a = byClass
	}
	if a == nil {
		a = LlamaArch
	}
	return a, nil
}

func archClasses() string {
	var cs []string
	for _, n := range ArchNames() {
		cs = append(cs, archs[n].Class)
	}
	return strings.Join(cs, ", ")
}

// Family is the name of c's model family ("llama", "qwen2", "bloom", ...).
func (c Config) Family() string { return c.arch().Name }
