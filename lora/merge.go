package lora

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/internal/atomicfs"
	"github.com/tli-project/tli/kernels"
	"github.com/tli-project/tli/llama"
)

// Delta returns Scale·B·A [out×in] in f32 for the adapter on (layer, module),
// as PEFT's get_delta_weight computes it (f32 product, then the scale).
func (a *Adapter) Delta(layer int, module string) []float32 {
	ad := a.Layers[layer][module]
	out, r, in := ad.B.Rows, ad.A.Rows, ad.A.Cols
	d := make([]float32, out*in)
	kernels.GemmNN(out, in, r, ad.B.Data, r, ad.A.Data, in, d, in, false)
	kernels.Scale(ad.Scale, d)
	return d
}

// Merge adds Scale·B·A to every adapted weight of m: W' = W + Scale·B·A.
// Adapters whose B is zero (never trained, e.g. at or above the training
// target layer) are skipped, so their layers need not be loaded. The merged
// weights are new heap tensors of the same dtype (the originals may be
// read-only memory-mapped files). For bf16 and f16 weights the delta is
// rounded to the weight's dtype and then added, as PEFT merges on CPU, so
// Unmerge restores such weights only up to rounding; f32 weights come back
// up to f32 rounding of W + Δ − Δ.
func (a *Adapter) Merge(m *llama.Model) error { return a.apply(m, 1) }

// Unmerge subtracts Scale·B·A from every adapted weight of m.
func (a *Adapter) Unmerge(m *llama.Model) error { return a.apply(m, -1) }

func (a *Adapter) apply(m *llama.Model, sign float32) error {
	if len(a.Layers) != m.Config.NumLayers {
		return fmt.Errorf("lora: adapter is for %d layers, the model has %d", len(a.Layers), m.Config.NumLayers)
	}
	if err := a.Adapters().Check(m.Config); err != nil {
		return fmt.Errorf("lora: %w", err)
	}
	// Check every layer first so that an error leaves m unchanged.
	type job struct {
		l    int
		name string
	}
	var jobs []job
	for l, mods := range a.Layers {
		for _, name := range llama.LoRAModules {
			if mods[name] == nil || allZero(mods[name].B.Data) {
				continue // Δ = 0: the weight is unchanged (and need not be loaded)
			}
			if l >= len(m.Layers) || m.Layers[l] == nil {
				return fmt.Errorf("lora: decoder layer %d is not loaded, cannot merge its %s adapter", l, name)
			}
			if err := m.VerifyLayer(l); err != nil {
				return fmt.Errorf("lora: %w", err)
			}
			jobs = append(jobs, job{l, name})
		}
	}
	for _, j := range jobs {
		L := m.Layers[j.l]
		L.SetModuleWeight(j.name, addDelta(L.ModuleWeight(j.name), a.Delta(j.l, j.name), sign))
	}
	return nil
}

func allZero(x []float32) bool {
	for _, v := range x {
		if v != 0 {
			return false
		}
	}
	return true
}

// addDelta returns a new tensor W + sign·Δ in W's dtype; for half dtypes Δ is
// rounded to that dtype first.
func addDelta(w *engine.Tensor, delta []float32, sign float32) *engine.Tensor {
	out := &engine.Tensor{DType: w.DType, Shape: append([]int(nil), w.Shape...)}
	n := w.Numel()
	switch w.DType {
	case engine.F32:
		out.F32 = make([]float32, n)
	default:
		out.Half = make([]uint16, n)
	}
	engine.ParallelFor((n+65535)/65536, func(c int) {
		for i := c * 65536; i < min((c+1)*65536, n); i++ {
			d := sign * delta[i]
			switch w.DType {
			case engine.F32:
				out.F32[i] = w.F32[i] + d
			case engine.BF16:
				d = kernels.BF16ToF32(kernels.F32ToBF16(d))
				out.Half[i] = kernels.F32ToBF16(kernels.BF16ToF32(w.Half[i]) + d)
			case engine.F16:
				d = kernels.F16ToF32(kernels.F32ToF16(d))
				out.Half[i] = kernels.F32ToF16(kernels.F16ToF32(w.Half[i]) + d)
			}
		}
	})
	return out
}

// MergeCheckpoint writes to outDir a copy of the checkpoint in modelDir with
// the adapter in adapterDir merged into its weights, stored as dtype (F32,
// BF16 or F16) in one model.safetensors. The other files of modelDir
// (tokenizer, generation config) are copied, and config.json gets the new
// torch_dtype. The merge runs in f32 and is rounded once to dtype, except for
// a bf16 checkpoint written as bf16, which is merged in bf16 as PEFT merges
// it.
//
// outDir may not be, contain or lie inside modelDir or adapterDir. It is
// built under a temporary name beside it and renamed into place only when
// complete; an existing outDir is an error unless replace is set, and is
// then replaced only after the new checkpoint is complete, so a merge that
// fails leaves the previous output as it was.
func MergeCheckpoint(modelDir, adapterDir, outDir string, dtype engine.DType, replace bool) error {
	if err := atomicfs.CheckDisjoint("output folder", outDir,
		atomicfs.Input{Flag: "model folder", Path: modelDir}, atomicfs.Input{Flag: "adapter folder", Path: adapterDir}); err != nil {
		return fmt.Errorf("lora: %w", err)
	}
	if _, err := os.Stat(outDir); err == nil && !replace {
		return fmt.Errorf("lora: output folder %s already exists", outDir)
	}
	// Merge in bf16 (as PEFT does for a bf16 model) only when the checkpoint
	// is bf16 and stays bf16; otherwise merge in f32 and round once.
	cfg, err := llama.LoadConfig(filepath.Join(modelDir, "config.json"))
	if err != nil {
		return err
	}
	hold := engine.F32
	if dtype == engine.BF16 && cfg.TorchDType == "bfloat16" {
		hold = engine.BF16
	}
	m, err := llama.Load(modelDir, llama.LoadOptions{DType: hold, MaxLayer: llama.AllLayers})
	if err != nil {
		return err
	}
	defer m.Close()
	// Every weight is copied into the output: none may be NaN or Inf.
	if err := m.Verify(); err != nil {
		return err
	}
	a, err := Load(adapterDir, m.Config)
	if err != nil {
		return err
	}
	if err := a.Merge(m); err != nil {
		return err
	}
	out, err := atomicfs.NewDir(outDir)
	if err != nil {
		return err
	}
	defer out.Abort()
	tmp := out.Path()
	if err := copyExtras(modelDir, tmp, dtype); err != nil {
		return err
	}
	conv := func(t *engine.Tensor) *engine.Tensor { return t.Convert(dtype) }
	list := []llama.NamedTensor{{Name: "model.embed_tokens.weight", Tensor: conv(m.Embed)}}
	for l, L := range m.Layers {
		p := fmt.Sprintf("model.layers.%d.", l)
		list = append(list, llama.NamedTensor{Name: p + "input_layernorm.weight", Tensor: conv(engine.FromF32(L.AttnNorm, len(L.AttnNorm)))})
		for _, name := range llama.LoRAModules {
			list = append(list, llama.NamedTensor{Name: p + llama.ModulePrefix(name) + ".weight", Tensor: conv(L.ModuleWeight(name))})
		}
		list = append(list, llama.NamedTensor{Name: p + "post_attention_layernorm.weight", Tensor: conv(engine.FromF32(L.MLPNorm, len(L.MLPNorm)))})
	}
	list = append(list, llama.NamedTensor{Name: "model.norm.weight", Tensor: conv(engine.FromF32(m.Norm, len(m.Norm)))})
	if m.LMHead != nil {
		list = append(list, llama.NamedTensor{Name: "lm_head.weight", Tensor: conv(m.LMHead)})
	}
	if err := llama.WriteSafetensorsOrdered(filepath.Join(tmp, "model.safetensors"), list, map[string]string{"format": "pt"}); err != nil {
		return err
	}
	if err := out.Commit(replace); err != nil {
		return fmt.Errorf("lora: %w", err)
	}
	return nil
}

// copyExtras copies every file of src except the weights into dst, setting
// torch_dtype in config.json.
func copyExtras(src, dst string, dtype engine.DType) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasSuffix(name, ".safetensors") || name == "model.safetensors.index.json" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			return err
		}
		if name == "config.json" {
			var cfg map[string]json.RawMessage
			if err := json.Unmarshal(data, &cfg); err != nil {
				return fmt.Errorf("%s: %v", filepath.Join(src, name), err)
			}
			torchName := map[engine.DType]string{engine.F32: "float32", engine.BF16: "bfloat16", engine.F16: "float16"}[dtype]
			cfg["torch_dtype"] = json.RawMessage(`"` + torchName + `"`)
			if data, err = json.MarshalIndent(cfg, "", "  "); err != nil {
				return err
			}
			data = append(data, '\n')
		}
		if err := atomicfs.WriteFile(filepath.Join(dst, name), data); err != nil {
			return err
		}
	}
	return nil
}
