package lora

import (
	"fmt"
	"math"
	"os"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/internal/atomicfs"
	"github.com/tli-project/tli/kernels"
	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/quant"
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
		for _, name := range llama.AllLoRAModules {
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
	// Every merged weight must be finite in its dtype: check all of them
	// before changing any (recomputing Δ rather than holding every merged
	// copy at once).
	for _, j := range jobs {
		w := m.Layers[j.l].ModuleWeight(j.name)
		if err := checkMerged(w, a.Delta(j.l, j.name), sign); err != nil {
			return fmt.Errorf("lora: layer %d %s (%s): %w", j.l, j.name, a.Layers[j.l][j.name].B.Name, err)
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

// dtypeMax is the largest finite value of each weight dtype.
var dtypeMax = map[engine.DType]float32{engine.F32: math.MaxFloat32, engine.BF16: 0x1.fep127, engine.F16: 65504}

// mergedAt returns element i of W + sign·Δ as addDelta rounds it, widened
// to f32, and Δ as rounded to W's dtype.
func mergedAt(w *engine.Tensor, i int, d float32) (merged, delta float32) {
	switch w.DType {
	case engine.BF16:
		d = kernels.BF16ToF32(kernels.F32ToBF16(d))
		return kernels.BF16ToF32(kernels.F32ToBF16(kernels.BF16ToF32(w.Half[i]) + d)), d
	case engine.F16:
		d = kernels.F16ToF32(kernels.F32ToF16(d))
		return kernels.F16ToF32(kernels.F32ToF16(kernels.F16ToF32(w.Half[i]) + d)), d
	}
	return w.F32[i] + d, d
}

func finite(v float32) bool { return math.Float32bits(v)&0x7f800000 != 0x7f800000 }

// checkMerged returns an error naming the first element of W + sign·Δ that
// is not finite in W's dtype after rounding.
func checkMerged(w *engine.Tensor, delta []float32, sign float32) error {
	if w.DType == engine.Q4 { // dequantised once, not element by element
		w = engine.FromF32(w.ToF32(), w.Shape...)
	}
	for i, d := range delta {
		if v, dr := mergedAt(w, i, sign*d); !finite(v) {
			cols := w.Shape[len(w.Shape)-1]
			return fmt.Errorf("merged weight [%d %d] is W %v + Δ %v = %v: the adapter's delta overflowed %v (largest finite value %v)",
				i/cols, i%cols, w.At(i), dr, v, w.DType, dtypeMax[w.DType])
		}
	}
	return nil
}

// addDelta returns a new tensor W + sign·Δ in W's dtype; for half dtypes Δ is
// rounded to that dtype first. A 4-bit weight is requantised (see
// requantize).
func addDelta(w *engine.Tensor, delta []float32, sign float32) *engine.Tensor {
	if w.DType == engine.Q4 {
		return requantize(w.Q, delta, sign)
	}
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
			v, _ := mergedAt(w, i, sign*delta[i])
			switch w.DType {
			case engine.F32:
				out.F32[i] = v
			case engine.BF16:
				out.Half[i] = kernels.F32ToBF16(v) // exact: v is a bf16 value
			case engine.F16:
				out.Half[i] = kernels.F32ToF16(v)
			}
		}
	})
	return out
}

// requantize merges Δ into a 4-bit weight as PEFT's bnb Linear4bit.merge
// does: the weight dequantised (in its quant_state dtype) plus the f32 delta
// makes an f32 weight (PyTorch's type promotion), which is quantised again
// with the same quant type, block size and double quantisation; its
// quant_state dtype is then float32.
func requantize(q *quant.Tensor, delta []float32, sign float32) *engine.Tensor {
	w := make([]float32, q.Len())
	q.Dequantize(w)
	engine.ParallelFor((len(w)+65535)/65536, func(c int) {
		for i := c * 65536; i < min((c+1)*65536, len(w)); i++ {
			w[i] += sign * delta[i]
		}
	})
	out, err := quant.NewTensor(q.Kind, w, q.Rows, q.Cols, q.Blocksize, quant.F32, q.Double != nil)
	if err != nil { // cannot happen: q's own kind and block size
		panic(err)
	}
	return engine.FromQuant(out)
}

// MergeOptions are MergeCheckpointWith's settings.
type MergeOptions struct {
	// DType is the stored dtype of the merged weights: F32, BF16 or F16;
	// nil: the base checkpoint's (llama.CheckpointDType: config.json's
	// dtype or torch_dtype, else the embedding's).
	DType *engine.DType
	// ShardBytes is the largest weights file: a larger merged checkpoint is
	// written as model-0000i-of-0000n.safetensors with
	// model.safetensors.index.json, as save_pretrained shards it (<= 0:
	// llama.DefaultShardBytes, 5 GB).
	ShardBytes int64
	// Replace lets an existing outDir be replaced (once the new checkpoint
	// is complete).
	Replace bool
}

// MergeCheckpoint is MergeCheckpointWith storing the weights as dtype.
func MergeCheckpoint(modelDir, adapterDir, outDir string, dtype engine.DType, replace bool) error {
	_, err := MergeCheckpointWith(modelDir, adapterDir, outDir, MergeOptions{DType: &dtype, Replace: replace})
	return err
}

// MergeCheckpointWith writes to outDir a copy of the checkpoint in
// modelDir with the adapter in adapterDir merged into its weights, stored
// as opts.DType (default: the checkpoint's own dtype), which it returns, in
// model.safetensors or, above opts.ShardBytes, in shards with an index. The
// other files of modelDir (tokenizer, generation config) are copied, and
// config.json gets the new dtype: as torch_dtype and dtype when it had
// either (transformers >= 4.56 writes dtype, older versions torch_dtype; a
// copy with only one of them changed would say two things), else as
// torch_dtype. The merge runs in f32 and is rounded once to the dtype,
// except for a bf16 checkpoint written as bf16, which is merged in bf16 as
// PEFT merges it. A merged weight that is not finite in the dtype (the
// adapter's delta overflowed it; f16 holds at most 65504) is an error
// naming the tensor and element, and nothing is written.
//
// outDir may not be, contain or lie inside modelDir or adapterDir. It is
// built under a temporary name beside it and renamed into place only when
// complete; an existing outDir is an error unless opts.Replace is set, and
// is then replaced only after the new checkpoint is complete, so a merge
// that fails leaves the previous output as it was.
func MergeCheckpointWith(modelDir, adapterDir, outDir string, opts MergeOptions) (engine.DType, error) {
	if err := atomicfs.CheckDisjoint("output folder", outDir,
		atomicfs.Input{Flag: "model folder", Path: modelDir}, atomicfs.Input{Flag: "adapter folder", Path: adapterDir}); err != nil {
		return 0, fmt.Errorf("lora: %w", err)
	}
	if _, err := os.Stat(outDir); err == nil && !opts.Replace {
		return 0, fmt.Errorf("lora: output folder %s already exists", outDir)
	}
	stored, err := llama.CheckpointDType(modelDir)
	if err != nil {
		return 0, err
	}
	dtype := stored
	if opts.DType != nil {
		dtype = *opts.DType
	}
	if _, ok := dtypeMax[dtype]; !ok {
		return 0, fmt.Errorf("lora: cannot store merged weights as %v (want f32, bf16 or f16)", dtype)
	}
	// Merge in bf16 (as PEFT does for a bf16 model) only when the checkpoint
	// is bf16 and stays bf16; otherwise merge in f32 and round once.
	hold := engine.F32
	if dtype == engine.BF16 && stored == engine.BF16 {
		hold = engine.BF16
	}
	m, err := llama.Load(modelDir, llama.LoadOptions{DType: hold, MaxLayer: llama.AllLayers})
	if err != nil {
		return 0, err
	}
	defer m.Close()
	// Every weight is copied into the output: none may be NaN or Inf.
	if err := m.Verify(); err != nil {
		return 0, err
	}
	a, err := Load(adapterDir, m.Config)
	if err != nil {
		return 0, err
	}
	if err := a.Merge(m); err != nil {
		return 0, err
	}
	// Round to the output dtype and check every weight still fits it before
	// anything is written: an f16 output overflows above 65504.
	var list []llama.NamedTensor
	add := func(name string, t *engine.Tensor, adapted bool) error {
		if t.DType == engine.Q4 { // a 4-bit checkpoint stays 4-bit (requantised where merged)
			list = append(list, llama.NamedTensor{Name: name, Tensor: t})
			return nil
		}
		c := t.Convert(dtype)
		if c != t {
			if i := c.FirstNonFinite(); i >= 0 {
				cols := t.Shape[len(t.Shape)-1]
				why := fmt.Sprintf("the checkpoint's weight %v does not fit %v", t.At(i), dtype)
				if adapted {
					why = fmt.Sprintf("the merged weight W+Δ = %v does not fit %v: the adapter's delta overflowed the dtype", t.At(i), dtype)
				}
				return fmt.Errorf("lora: %s [%d %d]: %s (largest finite value %v); write another dtype", name, i/cols, i%cols, why, dtypeMax[dtype])
			}
		}
		list = append(list, llama.NamedTensor{Name: name, Tensor: c})
		return nil
	}
	for _, w := range m.Weights() {
		adapted := w.Module != "" && w.Layer < len(a.Layers) && a.Layers[w.Layer] != nil && a.Layers[w.Layer][w.Module] != nil && !allZero(a.Layers[w.Layer][w.Module].B.Data)
		if err := add(w.Name, w.Tensor, adapted); err != nil {
			return 0, err
		}
	}
	out, err := atomicfs.NewDir(outDir)
	if err != nil {
		return 0, err
	}
	defer out.Abort()
	tmp := out.Path()
	if err := llama.CopyCheckpointExtras(modelDir, tmp, dtype, nil); err != nil {
		return 0, err
	}
	if err := llama.WriteCheckpointWeights(tmp, list, map[string]string{"format": "pt"}, opts.ShardBytes); err != nil {
		return 0, err
	}
	if err := out.Commit(opts.Replace); err != nil {
		return 0, fmt.Errorf("lora: %w", err)
	}
	return dtype, nil
}
