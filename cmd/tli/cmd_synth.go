package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/internal/atomicfs"
	"github.com/tli-project/tli/llama"
)

func init() {
	register("synth", "write a synthetic Llama checkpoint (random weights) for tests and benchmarks", runSynth)
}

// runSynth writes a checkpoint of a known shape with deterministic random
// weights in Hugging Face layout.
func runSynth(args []string) error {
	shapes := strings.Join(llama.SynthShapes, "|")
	fs := newFlagSet("synth", "--out DIR [--shape "+shapes+"] [--layers N] [--dtype f32|bf16] [--tokenizer FILE] [--seed N]")
	out := fs.String("out", "", "output folder (created)")
	force := fs.Bool("force", false, "replace an existing checkpoint in --out (only once the new one is complete)")
	shape := fs.String("shape", "tiny", "model shape: "+strings.Join(llama.SynthShapes, ", ")+" (tiny-FAMILY: a tiny checkpoint of that model family)")
	layers := fs.Int("layers", 0, "number of layers (0: the shape's own)")
	dtype := fs.String("dtype", "f32", "stored dtype: f32, bf16 or f16")
	tok := fs.String("tokenizer", "", "tokenizer.json to copy into the checkpoint (tokenizer_config.json beside it is copied too)")
	seed := fs.Uint64("seed", 1, "random seed of the weights")
	shard := fs.Int64("shard-bytes", 0, "largest shard size in bytes (0: 5 GB)")
	q := fs.String("quant", "", "write the decoder Linears straight in bitsandbytes' 4-bit layout: nf4 or fp4 (random codes; the other weights f16), as a pre-quantised checkpoint; llama3-70b needs it (280 GB in f32)")
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
	if *q != "" && *q != "nf4" && *q != "fp4" {
		return usageErrorf("--quant %q: want nf4 or fp4", *q)
	}
	if *q != "" && dt != engine.F32 && dt != engine.F16 {
		return usageErrorf("--quant: the other weights of a 4-bit checkpoint are f16; drop --dtype %s", *dtype)
	}
	opts := llama.SynthOptions{Shape: *shape, Layers: *layers, DType: dt, Seed: *seed, ShardBytes: *shard, Quant: *q}
	if *tok != "" {
		if opts.TokenizerJSON, err = os.ReadFile(*tok); err != nil {
			return fmt.Errorf("--tokenizer: %w", err)
		}
		if b, err := os.ReadFile(filepath.Join(filepath.Dir(*tok), "tokenizer_config.json")); err == nil {
			opts.TokenizerConfigJSON = b
		}
	}
	if *layers < 0 {
		return usageErrorf("--layers %d must be >= 0 (0: the shape's own)", *layers)
	}
	if *shard < 0 {
		return usageErrorf("--shard-bytes %d must be >= 0", *shard)
	}
	if _, err := llama.SynthConfig(opts); err != nil {
		return usageErrorf("%v", err)
	}
	if err := checkOutDir(*out, *force, false, atomicfs.Input{Flag: "--tokenizer", Path: *tok}); err != nil {
		return err
	}
	if err := synthInto(*out, *force, opts); err != nil {
		return err
	}
	what := dt.String()
	if *q != "" {
		what = *q + " decoder weights, f16 otherwise"
	}
	fmt.Printf("wrote %s checkpoint (%s) to %s\n", *shape, what, *out)
	return nil
}

// synthInto writes a synthetic checkpoint to dir: built beside it and renamed
// into place when complete. An existing non-empty dir is replaced only with
// force and only when it holds a checkpoint (config.json).
func synthInto(dir string, force bool, opts llama.SynthOptions) error {
	if force {
		if err := checkReplaceableCheckpoint(dir); err != nil {
			return err
		}
	}
	st, err := atomicfs.NewDir(dir)
	if err != nil {
		return err
	}
	defer st.Abort()
	if err := llama.Synth(st.Path(), opts); err != nil {
		return err
	}
	if entries, _ := os.ReadDir(dir); len(entries) == 0 {
		os.Remove(dir) // an empty folder is taken over
	}
	return st.Commit(force)
}
