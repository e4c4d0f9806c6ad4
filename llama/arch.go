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
	// SlidingWindow: config.json's sliding_window masks keys that many
	// positions or more behind the query (Mistral; Qwen2 when
	// use_sliding_window is true).
	SlidingWindow bool
}

// archs are the families tli implements, by model_type.
var archs = map[string]*Arch{
	"llama": {Name: "llama", ModelType: "llama", Class: "LlamaForCausalLM"},
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
