package llama

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/internal/atomicfs"
	"github.com/tli-project/tli/quant"
)

// DefaultShardBytes is the largest weights file WriteCheckpointWeights
// (and Synth) write by default: save_pretrained's max_shard_size "5GB",
// 5·10⁹ bytes.
const DefaultShardBytes int64 = 5_000_000_000

// IndexFile is the index of a sharded checkpoint.
const IndexFile = "model.safetensors.index.json"

// WriteCheckpointWeights writes a checkpoint's weights into the folder dir
// as transformers' save_pretrained does: one model.safetensors when they
// take at most shardBytes (<= 0: DefaultShardBytes), else
// model-0000i-of-0000n.safetensors, filled in the order given (a new shard
// starts where the next tensor would pass shardBytes; a larger tensor has a
// shard of its own), and model.safetensors.index.json with
// metadata.total_size (the tensors' bytes) and weight_map (tensor name ->
// file). Every file carries metadata. A model.safetensors or index of the
// other layout left in dir is removed.
func WriteCheckpointWeights(dir string, tensors []NamedTensor, metadata map[string]string, shardBytes int64) error {
	var entries []stEntry
	for _, nt := range tensors {
		if nt.Tensor != nil && nt.Tensor.DType == engine.Q4 {
			es, err := quantEntries(nt)
			if err != nil {
				return err
			}
			entries = append(entries, es...)
			continue
		}
		e, err := floatEntry(filepath.Join(dir, "model.safetensors"), nt)
		if err != nil {
			return err
		}
		entries = append(entries, e)
	}
	return writeShards(dir, entries, metadata, shardBytes)
}

// quantEntries are the tensors transformers saves for a 4-bit weight named
// nt.Name ("….weight"): the packed codes, the scales, the code table and the
// quant_state (quant.Export), in that order.
func quantEntries(nt NamedTensor) ([]stEntry, error) {
	base := strings.TrimSuffix(nt.Name, ".weight")
	blobs, err := quant.Export(base, nt.Tensor.Q)
	if err != nil {
		return nil, err
	}
	w := base + ".weight"
	var entries []stEntry
	for _, key := range append([]string{w}, quantKeys(w)...) {
		b, ok := blobs[key]
		if !ok {
			continue
		}
		e := stEntry{Name: key, Shape: b.Shape, Write: func(wr io.Writer) error {
			_, err := wr.Write(b.Data)
			return err
		}}
		switch b.DType {
		case "U8":
			e.Bytes = true
		case "F32":
			e.DType = engine.F32
		default:
			return nil, fmt.Errorf("%s: 4-bit part of dtype %s", key, b.DType)
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// writeShards is WriteCheckpointWeights for entries whose data are
// streamed.
func writeShards(dir string, entries []stEntry, metadata map[string]string, limit int64) error {
	if limit <= 0 {
		limit = DefaultShardBytes
	}
	var shards [][]stEntry
	var cur []stEntry
	var curSize, total int64
	for _, e := range entries {
		size := e.bytes()
		if len(cur) > 0 && curSize+size > limit {
			shards = append(shards, cur)
			cur, curSize = nil, 0
		}
		cur = append(cur, e)
		curSize += size
		total += size
	}
	shards = append(shards, cur)
	os.Remove(filepath.Join(dir, IndexFile))
	if len(shards) == 1 {
		return writeSafetensorsStream(filepath.Join(dir, "model.safetensors"), shards[0], metadata)
	}
	os.Remove(filepath.Join(dir, "model.safetensors"))
	weightMap := map[string]string{}
	for i, sh := range shards {
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(shards))
		if err := writeSafetensorsStream(filepath.Join(dir, name), sh, metadata); err != nil {
			return err
		}
		for _, e := range sh {
			weightMap[e.Name] = name
		}
	}
	ij, err := json.MarshalIndent(map[string]any{"metadata": map[string]any{"total_size": total}, "weight_map": weightMap}, "", "  ")
	if err != nil {
		return err
	}
	return atomicfs.WriteFile(filepath.Join(dir, IndexFile), append(ij, '\n'))
}

// torchDTypes are the config.json spellings of the weight dtypes.
var torchDTypes = map[string]engine.DType{"float32": engine.F32, "bfloat16": engine.BF16, "float16": engine.F16}

// TorchDTypeName is config.json's spelling of d (torch_dtype, dtype):
// float32, bfloat16 or float16.
func TorchDTypeName(d engine.DType) string {
	for name, v := range torchDTypes {
		if v == d {
			return name
		}
	}
	return d.String()
}

// CheckpointDType is the dtype the checkpoint in dir stores its weights
// in: config.json's dtype (or torch_dtype) when it is float32, bfloat16 or
// float16, else (absent, "auto") the stored dtype of the embedding.
func CheckpointDType(dir string) (engine.DType, error) {
	cfg, err := LoadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return 0, err
	}
	if d, ok := torchDTypes[cfg.TorchDType]; ok {
		return d, nil
	}
	ck, err := openCheckpoint(dir)
	if err != nil {
		return 0, err
	}
	defer ck.close()
	ck.addPrefix(cfg)
	t, _, err := ck.raw(cfg.arch().Names.Embed + ".weight")
	if err != nil {
		return 0, err
	}
	return t.DType, nil
}
