package main

import (
	"fmt"
	"os"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/internal/atomicfs"
	"github.com/tli-project/tli/lora"
)

func init() {
	register("merge", "write a checkpoint with a LoRA adapter merged into its weights", runMerge)
}

func runMerge(args []string) error {
	fs := newFlagSet("merge", "")
	model := fs.String("model", "", "base checkpoint: "+modelUsage)
	adapter := fs.String("adapter", "", "PEFT adapter folder (e.g. OUT/final of tli train)")
	out := fs.String("out", "", "output folder for the merged checkpoint (Hugging Face layout)")
	dtype := fs.String("dtype", "", "stored dtype of the merged weights: f32, bf16 or f16 (default: the base checkpoint's, from config.json's dtype or torch_dtype, else its embedding's)")
	shardBytes := fs.Int64("shard-bytes", 0, "largest weights file: a larger merged checkpoint is written as model-0000i-of-0000n.safetensors with model.safetensors.index.json, as save_pretrained does (0: 5 GB, save_pretrained's default)")
	force := fs.Bool("force", false, "replace an existing --out (only after the new checkpoint is complete)")
	threads := fs.Int("threads", 0, "worker threads (0: all cores)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := checkThreads(*threads); err != nil {
		return err
	}
	if *model == "" || *adapter == "" || *out == "" {
		return usageErrorf("--model, --adapter and --out are required")
	}
	var opts lora.MergeOptions
	if *dtype != "" {
		dt, err := engine.ParseDType(*dtype)
		if err != nil {
			return usageErrorf("--dtype: %v", err)
		}
		opts.DType = &dt
	}
	if *shardBytes < 0 {
		return usageErrorf("--shard-bytes %d must be >= 0 (0: 5 GB)", *shardBytes)
	}
	opts.ShardBytes, opts.Replace = *shardBytes, *force
	modelDir, _, err := resolveModel(*model)
	if err != nil {
		return err
	}
	if err := atomicfs.CheckDisjoint("--out", *out, atomicfs.Input{Flag: "--model", Path: modelDir}, atomicfs.Input{Flag: "--adapter", Path: *adapter}); err != nil {
		return usageErrorf("%v", err)
	}
	if _, err := os.Stat(*out); err == nil && !*force {
		return usageErrorf("--out %s already exists (use --force to replace it once the merge has succeeded)", *out)
	}
	if *force {
		if err := checkReplaceableCheckpoint(*out); err != nil {
			return err
		}
	}
	// The merged checkpoint is built beside --out and replaces it only when
	// complete: a failed merge leaves an existing --out as it was.
	dt, err := lora.MergeCheckpointWith(modelDir, *adapter, *out, opts)
	if err != nil {
		return err
	}
	fmt.Printf("merged %s into %s: %s (%s)\n", *adapter, *model, absPath(*out), dt)
	return nil
}
