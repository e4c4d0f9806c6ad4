package llama

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/internal/atomicfs"
)

// QuantizeCheckpoint writes to outDir the checkpoint in modelDir with every
// decoder-layer Linear weight quantised as num says (num.Quant "nf4" or
// "fp4", blocksize 64, optionally double-quantised), in the layout
// transformers saves a bitsandbytes 4-bit model in: each such weight as its
// packed U8 codes, absmax, quant_map and quant_state JSON (quant.Export),
// every other weight in num.Activations (transformers' torch_dtype; F16
// when the caller leaves it F32, as transformers loads a 4-bit model
// without torch_dtype), and config.json with that dtype and a
// quantization_config (load_in_4bit, the quant type, compute dtype
// bfloat16, double quantisation). Tokenizer and other files are copied.
// outDir is written under a temporary name and renamed when complete; an
// existing outDir is replaced only with replace.
func QuantizeCheckpoint(modelDir, outDir string, num Numerics, shardBytes int64, replace bool) error {
	if num.Quant == "" {
		return fmt.Errorf("quantize: no quantisation given (nf4 or fp4)")
	}
	if num.Activations == engine.F32 {
		num.Activations = engine.F16
	}
	if err := atomicfs.CheckDisjoint("output folder", outDir, atomicfs.Input{Flag: "model folder", Path: modelDir}); err != nil {
		return fmt.Errorf("quantize: %w", err)
	}
	if _, err := os.Stat(outDir); err == nil && !replace {
		return fmt.Errorf("quantize: output folder %s already exists", outDir)
	}
	m, err := Load(modelDir, LoadOptions{MaxLayer: AllLayers, Numerics: num})
	if err != nil {
		return err
	}
	defer m.Close()
	if err := m.Verify(); err != nil {
		return err
	}
	var list []NamedTensor
	for _, w := range m.Weights() {
		t := w.Tensor
		if t.DType != engine.Q4 {
			t = t.Convert(num.Activations) // norms are held as f32 values of the dtype
			if i := t.FirstNonFinite(); i >= 0 {
				return fmt.Errorf("quantize: %s element %d: %v does not fit %v", w.Name, i, w.Tensor.At(i), num.Activations)
			}
		}
		list = append(list, NamedTensor{Name: w.Name, Tensor: t})
	}
	out, err := atomicfs.NewDir(outDir)
	if err != nil {
		return err
	}
	defer out.Abort()
	qc := QuantizationConfig{QuantMethod: "bitsandbytes", LoadIn4bit: true, QuantType: num.Quant,
		ComputeDType: "bfloat16", DoubleQuant: num.DoubleQuant, QuantStorage: "uint8"}
	err = CopyCheckpointExtras(modelDir, out.Path(), num.Activations, func(cfg map[string]json.RawMessage) error {
		b, err := json.Marshal(qc)
		cfg["quantization_config"] = b
		return err
	})
	if err != nil {
		return err
	}
	if err := WriteCheckpointWeights(out.Path(), list, map[string]string{"format": "pt"}, shardBytes); err != nil {
		return err
	}
	return out.Commit(replace)
}

// CopyCheckpointExtras copies every file of src except the weights into
// dst, setting the dtype in config.json (torch_dtype, and dtype when it had
// either: transformers >= 4.56 writes dtype, older versions torch_dtype; a
// copy with only one of them changed would say two things) and letting
// edit change its other fields (edit may be nil).
func CopyCheckpointExtras(src, dst string, dtype engine.DType, edit func(cfg map[string]json.RawMessage) error) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasSuffix(name, ".safetensors") || name == IndexFile {
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
			dt := json.RawMessage(`"` + TorchDTypeName(dtype) + `"`)
			_, hasTorch := cfg["torch_dtype"]
			_, hasNew := cfg["dtype"]
			cfg["torch_dtype"] = dt
			if hasTorch || hasNew {
				cfg["dtype"] = dt
			}
			if edit != nil {
				if err := edit(cfg); err != nil {
					return err
				}
			}
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
