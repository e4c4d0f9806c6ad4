package main

import (
	"fmt"
	"os"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/internal/atomicfs"
	"github.com/tli-project/tli/llama"
)

func init() {
	register("quantize", "write a checkpoint with its decoder Linears in bitsandbytes 4-bit (NF4/FP4), as transformers saves one", runQuantize)
}

func runQuantize(args []string) error {
	fs := newFlagSet("quantize", "")
	model := fs.String("model", "", "checkpoint to quantise: "+modelUsage)
	q := fs.String("quant", "nf4", "4-bit type: nf4 or fp4")
	double := fs.Bool("double-quant", false, "quantise the block scales too (bnb_4bit_use_double_quant)")
	act := fs.String("activations", "fp16", "dtype of every other weight and of the weights before quantisation (torch_dtype): fp16 (transformers' default for 4-bit), bf16 or f32")
	out := fs.String("out", "", "output folder (Hugging Face layout: transformers and tli load it 4-bit)")
	shardBytes := fs.Int64("shard-bytes", 0, "largest weights file (0: 5 GB, save_pretrained's default)")
	force := fs.Bool("force", false, "replace an existing --out (only after the new checkpoint is complete)")
	threads := fs.Int("threads", 0, "worker threads (0: all cores)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := checkThreads(*threads); err != nil {
		return err
	}
	if *model == "" || *out == "" {
		return usageErrorf("--model and --out are required")
	}
	if *q != "nf4" && *q != "fp4" {
		return usageErrorf("--quant %q: want nf4 or fp4", *q)
	}
	num := llama.Numerics{Quant: *q, DoubleQuant: *double}
	switch *act {
	case "fp16", "f16":
		num.Activations = engine.F16
	case "bf16":
		num.Activations = engine.BF16
	case "f32":
		// quantised from the f32 weights; the rest stored as f16 (see QuantizeCheckpoint)
	default:
		return usageErrorf("--activations %q: want fp16, bf16 or f32", *act)
	}
	if *shardBytes < 0 {
		return usageErrorf("--shard-bytes %d must be >= 0 (0: 5 GB)", *shardBytes)
	}
	modelDir, _, err := resolveModel(*model)
	if err != nil {
		return err
	}
	if err := atomicfs.CheckDisjoint("--out", *out, atomicfs.Input{Flag: "--model", Path: modelDir}); err != nil {
		return usageErrorf("%v", err)
	}
	if _, err := os.Stat(*out); err == nil && !*force {
		return usageErrorf("--out %s already exists (use --force to replace it once the new checkpoint is complete)", *out)
	}
	if *force {
		if err := checkReplaceableCheckpoint(*out); err != nil {
			return err
		}
	}
	if err := llama.QuantizeCheckpoint(modelDir, *out, num, *shardBytes, *force); err != nil {
		return err
	}
	fmt.Printf("quantised %s to %s: %s\n", *model, num, absPath(*out))
	return nil
}
