package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/llama"
)

func init() {
	register("synth", "write a synthetic Llama checkpoint (random weights) for tests and benchmarks", runSynth)
}

// runSynth writes a checkpoint of a known Llama shape with deterministic
// random weights in Hugging Face layout.
func runSynth(args []string) error {
	fs := newFlagSet("synth", "--out DIR [--shape tiny|llama3.2-1b|llama3-8b] [--layers N] [--dtype f32|bf16] [--tokenizer FILE] [--seed N]")
	out := fs.String("out", "", "output folder (created)")
	shape := fs.String("shape", "tiny", "model shape: tiny, llama3.2-1b or llama3-8b")
	layers := fs.Int("layers", 0, "number of layers (0: the shape's own)")
	dtype := fs.String("dtype", "f32", "stored dtype: f32, bf16 or f16")
	tok := fs.String("tokenizer", "", "tokenizer.json to copy into the checkpoint (tokenizer_config.json beside it is copied too)")
	seed := fs.Uint64("seed", 1, "random seed of the weights")
	shard := fs.Int64("shard-bytes", 0, "largest shard size in bytes (0: 5 GB)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return usageErrorf("--out is required")
	}
	dt, err := engine.ParseDType(*dtype)
	if err != nil {
		return usageErrorf("--dtype: %v", err)
	}
	opts := llama.SynthOptions{Shape: *shape, Layers: *layers, DType: dt, Seed: *seed, ShardBytes: *shard}
	if *tok != "" {
		if opts.TokenizerJSON, err = os.ReadFile(*tok); err != nil {
			return fmt.Errorf("--tokenizer: %w", err)
		}
		if b, err := os.ReadFile(filepath.Join(filepath.Dir(*tok), "tokenizer_config.json")); err == nil {
			opts.TokenizerConfigJSON = b
		}
	}
	if _, err := llama.SynthConfig(opts); err != nil {
		return usageErrorf("%v", err)
	}
	if err := llama.Synth(*out, opts); err != nil {
		return err
	}
	fmt.Printf("wrote %s checkpoint (%s) to %s\n", *shape, dt, *out)
	return nil
}
