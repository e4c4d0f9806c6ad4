package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/gguf"
	"github.com/tli-project/tli/internal/atomicfs"
	"github.com/tli-project/tli/internal/limitread"
	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/lora"
)

func init() {
	register("export", "write a checkpoint (with a LoRA adapter merged) as a GGUF file llama.cpp runs", runExport)
}

// exportOut is where export prints its summary (tests replace it).
var exportOut io.Writer = os.Stdout

// runExport loads a whole Llama checkpoint, merges the --adapter if one is
// given, and writes it with its tokenizer as one GGUF file (gguf.ExportLlama).
func runExport(args []string) error {
	fs := newFlagSet("export", "--format gguf --model DIR [--adapter DIR [--lora-only]] --out FILE.gguf [--dtype auto|f32|f16|bf16|q8_0]")
	format := fs.String("format", "gguf", "output format: gguf (llama.cpp)")
	dir := fs.String("model", "", "checkpoint folder in Hugging Face layout (config.json, *.safetensors, tokenizer.json), or a Hugging Face repo id in the local cache; model_type llama, mistral, qwen2, qwen3 or gemma (without a sliding window, which llama.cpp does not apply)")
	adapter := fs.String("adapter", "", "LoRA adapter folder (PEFT layout) to merge into the weights before exporting")
	out := fs.String("out", "", "the GGUF file to write")
	dtype := fs.String("dtype", "auto", "type of the weight matrices in the file: f32, f16, bf16 or q8_0 (llama.cpp's 8-bit blocks; matrices whose rows are not a multiple of 32 stay f16); auto: the checkpoint's torch_dtype, f32 when it is neither f16 nor bf16; norms are f32")
	loraOnly := fs.Bool("lora-only", false, "with --adapter: write the adapter alone as a GGUF LoRA adapter (llama.cpp's --lora) for --model's GGUF export, instead of merging it")
	name := fs.String("name", "", "general.name in the file (default: the repo id --model named, else the checkpoint folder's name; the adapter folder's name with --lora-only)")
	force := fs.Bool("force", false, "replace an existing --out (only after the new file is complete)")
	threads := fs.Int("threads", 0, "worker threads (0: all cores)")
	progress := fs.String("progress", "auto", "progress on stderr: auto, bar, plain, jsonl or none")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q", fs.Arg(0))
	}
	if *format != "gguf" {
		return usageErrorf("--format %q: want gguf", *format)
	}
	if *dir == "" || *out == "" {
		return usageErrorf("--model and --out are required")
	}
	if *loraOnly && *adapter == "" {
		return usageErrorf("--lora-only needs --adapter")
	}
	if st, err := os.Stat(*out); err == nil {
		if st.IsDir() {
			return usageErrorf("--out %s is a folder; give the GGUF file's path", *out)
		}
		if !*force {
			return usageErrorf("--out %s already exists (use --force to replace it once the export has succeeded)", *out)
		}
	}
	// --model may name a Hugging Face repo id in the local cache.
	modelDir, repo, err := resolveModel(*dir)
	if err != nil {
		return err
	}
	if *name == "" {
		*name = repo // general.name: the repo id, else the folder's name
	}
	dir = &modelDir
	inputs := []atomicfs.Input{{Flag: "--model", Path: *dir}}
	if *adapter != "" {
		inputs = append(inputs, atomicfs.Input{Flag: "--adapter", Path: *adapter})
	}
	if err := atomicfs.CheckDisjoint("--out", *out, inputs...); err != nil {
		return usageErrorf("%v", err)
	}
	cfg, err := llama.LoadConfig(filepath.Join(*dir, "config.json"))
	if err != nil {
		return err
	}
	if err := gguf.CheckLlama(cfg); err != nil {
		return err
	}
	// --dtype auto is the checkpoint's torch_dtype.
	auto, q8 := *dtype == "auto", *dtype == "q8_0"
	outDT := autoDType(cfg)
	if q8 {
		outDT = engine.F16
	} else if !auto {
		dt, err := engine.ParseDType(*dtype)
		if err != nil {
			return usageErrorf("--dtype %q: want auto, f32, f16, bf16 or q8_0", *dtype)
		}
		outDT = dt
	}
	if *loraOnly {
		if q8 {
			return usageErrorf("--dtype q8_0: a --lora-only adapter is stored as f32, f16 or bf16")
		}
		return exportLoRA(*dir, *adapter, *out, *name, auto, outDT)
	}
	// Hold a bf16 checkpoint as bf16 (every output dtype is reached from it
	// exactly), except when an adapter is merged into an output that is
	// not bf16: then merge in f32 and round once, as tli merge does.
	mf := defaultModelFlags(*dir)
	*mf.threads, *mf.progress = *threads, *progress
	if cfg.TorchDType == "bfloat16" && (*adapter == "" || outDT == engine.BF16) {
		*mf.dtype = "bf16"
	}
	m, _, err := mf.load(llama.AllLayers)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := gguf.CheckLlama(m.Config); err != nil {
		return err
	}
	// Every weight is copied into the file: none may be NaN or Inf.
	if err := m.Verify(); err != nil {
		return err
	}
	if *adapter != "" {
		a, err := lora.Load(*adapter, m.Config)
		if err != nil {
			return fmt.Errorf("--adapter: %w", err)
		}
		if err := a.Merge(m); err != nil {
			return fmt.Errorf("--adapter: %w", err)
		}
	}
	if err := gguf.ExportLlama(*out, m, m.Dir, gguf.ExportOptions{DType: outDT, Name: *name, Q8_0: q8}); err != nil {
		return err
	}
	size := int64(0)
	if st, err := os.Stat(*out); err == nil {
		size = st.Size()
	}
	what := absPath(*dir)
	if *adapter != "" {
		what += " with " + absPath(*adapter) + " merged"
	}
	kind := outDT.String()
	if q8 {
		kind = "q8_0"
	}
	fmt.Fprintf(exportOut, "exported %s to %s (gguf, %s, %s)\n", what, absPath(*out), kind, limitread.Size(size))
	return nil
}

// autoDType is the checkpoint's torch_dtype as an export dtype (f32 when it
// is neither bf16 nor f16).
func autoDType(c llama.Config) engine.DType {
	switch c.TorchDType {
	case "bfloat16":
		return engine.BF16
	case "float16":
		return engine.F16
	}
	return engine.F32
}

// exportLoRA writes the adapter in adapterDir, for the checkpoint in dir
// (only its config.json is read), as a GGUF LoRA adapter (gguf.ExportLoRA).
// The adapter's weights are f32, which --dtype auto keeps.
func exportLoRA(dir, adapterDir, out, name string, auto bool, dt engine.DType) error {
	cfg, err := llama.LoadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return err
	}
	a, err := lora.Load(adapterDir, cfg)
	if err != nil {
		return fmt.Errorf("--adapter: %w", err)
	}
	if auto {
		dt = engine.F32
	}
	if name == "" {
		name = filepath.Base(absPath(adapterDir))
	}
	if err := gguf.ExportLoRA(out, a, cfg, gguf.ExportOptions{DType: dt, Name: name}); err != nil {
		return err
	}
	size := int64(0)
	if st, err := os.Stat(out); err == nil {
		size = st.Size()
	}
	fmt.Fprintf(exportOut, "exported LoRA adapter %s (for %s) to %s (gguf adapter, %s, alpha %g, %s)\n",
		absPath(adapterDir), absPath(dir), absPath(out), dt, a.Config.Scale()*float32(a.Config.R), limitread.Size(size))
	return nil
}
