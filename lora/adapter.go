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
// base_model.model.model.layers.{l}.self_attn.q_proj.lora_A.weight, or for
// BLOOM base_model.model.transformer.h.{l}.self_attention.query_key_value.lora_A.weight.
func KeyA(layer int, module string) string { return key(layer, module, "lora_A") }
func KeyB(layer int, module string) string { return key(layer, module, "lora_B") }

func key(layer int, module, ab string) string {
	return fmt.Sprintf("base_model.model.%s.%s.weight", llama.ModulePath(layer, module), ab)
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

// Params returns every A and B, by layer, then module in
// llama.AllLoRAModules order, A before B.
func (a *Adapter) Params() []*autograd.Param {
	var ps []*autograd.Param
	for _, mods := range a.Layers {
		for _, m := range llama.AllLoRAModules {
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
// PEFT's format (F32 tensors). An adapter with a NaN or Inf weight is an
// error naming the tensor and element, and nothing is written. The folder is written under a temporary name
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
		for i, v := range p.Data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("lora: not saving the adapter to %s: tensor %q element %d (row %d, col %d) is %v (NaN or Inf)", dir, p.Name, i, i/p.Cols, i%p.Cols, v)
			}
		}
		list = append(list, llama.NamedTensor{Name: p.Name, Tensor: engine.FromF32(p.Data, p.Rows, p.Cols)})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	if err := llama.WriteSafetensorsOrdered(filepath.Join(out.Path(), WeightsFile), list, map[string]string{"format": "pt"}); err != nil {
		return err
	}
	return out.Commit(true)
}

// MaxDelta is the largest change an adapter may make to one weight that
// Load accepts: the bound Scale·Σₖ maxᵢ|B[i][k]|·maxⱼ|A[k][j]| on every
// |Scale·(B·A)[i][j]| must not exceed it. It is the largest finite f16
// value: no fine-tune changes a weight by that much (Llama weights are
// below 10 in magnitude), a larger delta would overflow an f16 merge, and
// below it the unmerged forward's Scale·B·(A·x) stays finite in f32 for any
// input with |x| < 3.4e38/(MaxDelta·in_features).
const MaxDelta = 65504

// Load reads a PEFT adapter folder for a model of config model. The config
// is validated against the model (an adapter of at most MaxAdapterNumbers
// numbers, layers in range) and every
// configured (layer, module) must have lora_A [r×in] and lora_B [out×r];
// names and shapes are checked against the file's header before any
// adapter memory is allocated. Missing or unexpected tensors, wrong shapes,
// NaN or Inf values, and weights whose delta could exceed MaxDelta are
// errors naming the file and tensor. Tensors stored as bf16 or f16 are
// widened to f32.
func Load(dir string, model llama.Config) (*Adapter, error) {
	c, err := ReadConfig(dir)
	if err != nil {
		return nil, err
	}
	c = c.ForModel(model)
	cfgPath := filepath.Join(dir, ConfigFile)
	if err := c.Validate(&model); err != nil {
		return nil, fmt.Errorf("%s: %s", cfgPath, strings.TrimPrefix(err.Error(), "lora: "))
	}
	path := filepath.Join(dir, WeightsFile)
	// ReadSafetensors allocates only what the file holds and refuses NaN/Inf,
	// naming the tensor and element.
	tensors, _, err := llama.ReadSafetensors(path)
	if err != nil {
		return nil, err
	}
	if _, shapes, err := llama.ReadSafetensorsInts(path); err != nil {
		return nil, err
	} else if len(shapes) > 0 {
		names := make([]string, 0, len(shapes))
		for n := range shapes {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("%s: tensor %q is I64, want F32, BF16 or F16 lora_A/lora_B weights", path, names[0])
	}
	// Names and shapes first: nothing sized by the config is allocated until
	// the file is known to hold every tensor at its size.
	want := map[string]bool{}
	for l := 0; l < model.NumLayers; l++ {
		if !c.HasLayer(l) {
			continue
		}
		for _, m := range c.modules() {
			out, in, _ := model.ModuleShape(m)
			for _, w := range []struct {
				name       string
				rows, cols int
			}{{KeyA(l, m), c.R, in}, {KeyB(l, m), out, c.R}} {
				want[w.name] = true
				t, ok := tensors[w.name]
				if !ok {
					return nil, fmt.Errorf("%s: missing tensor %q (%s lists r=%d, target_modules %v, layers %v)", path, w.name, cfgPath, c.R, c.TargetModules, layerList(c.Layers))
				}
				if len(t.Shape) != 2 || t.Shape[0] != w.rows || t.Shape[1] != w.cols {
					return nil, fmt.Errorf("%s: tensor %q has shape %v, want [%d %d] (r=%d from %s and the model's %s size %d×%d)", path, w.name, t.Shape, w.rows, w.cols, c.R, cfgPath, m, out, in)
				}
			}
		}
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
	a := &Adapter{Config: c, Layers: make([]map[string]*autograd.LoRA, model.NumLayers)}
	param := func(name string) *autograd.Param {
		t := tensors[name]
		return &autograd.Param{Name: name, Rows: t.Shape[0], Cols: t.Shape[1], Data: t.ToF32()}
	}
	for l := 0; l < model.NumLayers; l++ {
		if !c.HasLayer(l) {
			continue
		}
		a.Layers[l] = map[string]*autograd.LoRA{}
		for _, m := range c.modules() {
			ad := &autograd.LoRA{A: param(KeyA(l, m)), B: param(KeyB(l, m)), Scale: c.Scale(), Dropout: float32(c.Dropout)}
			if bound, ka, kb := deltaBound(ad); bound > MaxDelta {
				return nil, fmt.Errorf("%s: tensors %q and %q: the adapter's change to the weight, scale·|B·A|, can reach %.4g (scale %v, max |lora_A| %v, max |lora_B| %v at rank %d), above %v (MaxDelta, the f16 range): the merged weight or the unmerged forward would overflow",
					path, ad.A.Name, ad.B.Name, bound, ad.Scale, ka, kb, c.R, MaxDelta)
			}
			a.Layers[l][m] = ad
		}
	}
	return a, nil
}

// deltaBound returns Scale·Σₖ maxᵢ|B[i][k]|·maxⱼ|A[k][j]| (in float64), a
// bound on every |Scale·(B·A)[i][j]|, and the largest |A| and |B|.
func deltaBound(ad *autograd.LoRA) (bound float64, maxA, maxB float32) {
	r, in := ad.A.Rows, ad.A.Cols
	colMaxB := make([]float64, r)
	for i := 0; i < ad.B.Rows; i++ {
		for k, v := range ad.B.Data[i*r : (i+1)*r] {
			av := math.Abs(float64(v))
			colMaxB[k] = max(colMaxB[k], av)
			maxB = max(maxB, float32(av))
		}
	}
	for k := 0; k < r; k++ {
		var rowMaxA float64
		for _, v := range ad.A.Data[k*in : (k+1)*in] {
			rowMaxA = max(rowMaxA, math.Abs(float64(v)))
		}
		maxA = max(maxA, float32(rowMaxA))
		bound += colMaxB[k] * rowMaxA
	}
	return bound * math.Abs(float64(ad.Scale)), maxA, maxB
}

func layerList(l []int) string {
	if l == nil {
		return "all"
	}
	return fmt.Sprint(l)
}
