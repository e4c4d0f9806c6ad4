package lora

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strings"

	"github.com/tli-project/tli/autograd"
	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/internal/atomicfs"
	"github.com/tli-project/tli/llama"
)

// Adapter is a set of LoRA adapters on a model: Layers[l][module] is the
// adapter on that Linear layer of decoder layer l (nil maps for layers
// without adapters). Parameter names are the PEFT tensor names.
type Adapter struct {
	Config Config
	Layers []map[string]*autograd.LoRA
}

// KeyA and KeyB are the PEFT names of the A and B weights of an adapter:
// base_model.model.model.layers.{l}.self_attn.q_proj.lora_A.weight.
func KeyA(layer int, module string) string { return key(layer, module, "lora_A") }
func KeyB(layer int, module string) string { return key(layer, module, "lora_B") }

func key(layer int, module, ab string) string {
	return fmt.Sprintf("base_model.model.model.layers.%d.%s.%s.weight", layer, llama.ModulePrefix(module), ab)
}

// New creates adapters for a model of config model, initialised as PEFT
// does with init_lora_weights=True: A with kaiming_uniform_(a=sqrt(5)),
// i.e. uniform in ±1/sqrt(in), and B zero. Each A is drawn from its own PCG
// stream keyed by seed and the tensor's name, so the values do not depend on
// which other adapters exist.
func New(c Config, model llama.Config, seed uint64) (*Adapter, error) {
	a, err := empty(c, model)
	if err != nil {
		return nil, err
	}
	for _, p := range a.Params() {
		if !strings.Contains(p.Name, "lora_A") {
			continue
		}
		h := fnv.New64a()
		h.Write([]byte(p.Name))
		rng := rand.New(rand.NewPCG(seed, h.Sum64()))
		bound := 1 / math.Sqrt(float64(p.Cols))
		for i := range p.Data {
			p.Data[i] = float32((2*rng.Float64() - 1) * bound)
		}
	}
	return a, nil
}

// empty allocates zeroed adapters for every configured layer and module.
func empty(c Config, model llama.Config) (*Adapter, error) {
	if err := c.Validate(&model); err != nil {
		return nil, err
	}
	a := &Adapter{Config: c, Layers: make([]map[string]*autograd.LoRA, model.NumLayers)}
	for l := 0; l < model.NumLayers; l++ {
		if !c.HasLayer(l) {
			continue
		}
		a.Layers[l] = map[string]*autograd.LoRA{}
		for _, m := range c.modules() {
			out, in, _ := model.ModuleShape(m)
			a.Layers[l][m] = &autograd.LoRA{
				A:       autograd.NewParam(KeyA(l, m), c.R, in),
				B:       autograd.NewParam(KeyB(l, m), out, c.R),
				Scale:   c.Scale(),
				Dropout: float32(c.Dropout),
			}
		}
	}
	return a, nil
}

// Adapters returns the adapters in the form llama.Model.ForwardTrain takes.
func (a *Adapter) Adapters() llama.Adapters { return llama.Adapters(a.Layers) }

// Params returns every A and B, by layer, then module in llama.LoRAModules
// order, A before B.
func (a *Adapter) Params() []*autograd.Param {
	var ps []*autograd.Param
	for _, mods := range a.Layers {
		for _, m := range llama.LoRAModules {
			if ad := mods[m]; ad != nil {
				ps = append(ps, ad.A, ad.B)
			}
		}
	}
	return ps
}

// ZeroGrad forgets every parameter's gradient.
func (a *Adapter) ZeroGrad() {
	for _, p := range a.Params() {
		p.ZeroGrad()
	}
}

// Save writes dir/adapter_config.json and dir/adapter_model.safetensors in
// PEFT's format (F32 tensors). The folder is written under a temporary name
// beside dir and renamed into place, replacing an older adapter there, so dir
// holds either the old adapter or the complete new one.
func (a *Adapter) Save(dir string) error {
	cfgJSON, err := a.Config.MarshalPEFT()
	if err != nil {
		return err
	}
	out, err := atomicfs.NewDir(dir)
	if err != nil {
		return err
	}
	defer out.Abort()
	if err := atomicfs.WriteFile(filepath.Join(out.Path(), ConfigFile), append(cfgJSON, '\n')); err != nil {
		return err
	}
	var list []llama.NamedTensor
	for _, p := range a.Params() {
		list = append(list, llama.NamedTensor{Name: p.Name, Tensor: engine.FromF32(p.Data, p.Rows, p.Cols)})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	if err := llama.WriteSafetensorsOrdered(filepath.Join(out.Path(), WeightsFile), list, map[string]string{"format": "pt"}); err != nil {
		return err
	}
	return out.Commit(true)
}

// Load reads a PEFT adapter folder for a model of config model. Every
// configured (layer, module) must have lora_A [r×in] and lora_B [out×r];
// missing or unexpected tensors, wrong shapes, and a config that disagrees
// with the model are errors naming the file and tensor. Tensors stored as
// bf16 or f16 are widened to f32.
func Load(dir string, model llama.Config) (*Adapter, error) {
	c, err := ReadConfig(dir)
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, ConfigFile)
	a, err := empty(c, model)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", cfgPath, err)
	}
	path := filepath.Join(dir, WeightsFile)
	tensors, _, err := llama.ReadSafetensors(path)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, p := range a.Params() {
		want[p.Name] = true
		t, ok := tensors[p.Name]
		if !ok {
			return nil, fmt.Errorf("%s: missing tensor %q (%s lists r=%d, target_modules %v, layers %v)", path, p.Name, cfgPath, c.R, c.TargetModules, layerList(c.Layers))
		}
		if len(t.Shape) != 2 || t.Shape[0] != p.Rows || t.Shape[1] != p.Cols {
			return nil, fmt.Errorf("%s: tensor %q has shape %v, want [%d %d] (r=%d from %s and the model's sizes)", path, p.Name, t.Shape, p.Rows, p.Cols, c.R, cfgPath)
		}
		copy(p.Data, t.ToF32())
	}
	var extra []string
	for name := range tensors {
		if !want[name] {
			extra = append(extra, name)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		return nil, fmt.Errorf("%s: unexpected tensor %q (not a lora_A/lora_B of the layers and modules %s configures)", path, extra[0], cfgPath)
	}
	return a, nil
}

func layerList(l []int) string {
	if l == nil {
		return "all"
	}
	return fmt.Sprint(l)
}
