package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/tli"
)

func init() {
	register("demo", "the whole TLI loop on a synthesised model and the embedded lists (no downloads)", runDemo)
}

// runDemo synthesises a small checkpoint (Llama, or --arch's family) whose tokenizer is learned
// from the embedded word lists, then runs scan -> train -> eval -> report
// on it with the published settings.
func runDemo(args []string) error {
	fs := newFlagSet("demo", "")
	pf := addPlotFlags(fs)
	out := fs.String("out", "tli-demo", "output folder (model/, scan/, train/, eval/, report.md)")
	force := fs.Bool("force", true, "replace the files of an earlier demo in --out")
	epochs := fs.Int("epochs", 5, "training epochs")
	arch := fs.String("arch", "llama", "model family of the synthesised checkpoint: "+strings.Join(llama.ArchNames(), ", "))
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := pf.apply(); err != nil {
		return err
	}
	shape := "tiny"
	if *arch != "llama" {
		shape = "tiny-" + *arch
	}
	if !slices.Contains(llama.SynthShapes, shape) {
		return usageErrorf("--arch %q: want one of %s", *arch, strings.Join(llama.ArchNames(), ", "))
	}
	start := time.Now()
	if err := checkOutDir(*out, *force, false); err != nil {
		return err
	}
	var words []string
	for _, p := range append(tli.DefaultTrainPairs(), tli.DefaultControlPairs()...) {
		words = append(words, p.Source, p.Target)
	}
	modelDir := filepath.Join(*out, "model")
	fmt.Printf("== synthesising a tiny %s checkpoint (random weights, tokenizer learned from the embedded lists) in %s\n", *arch, modelDir)
	if err := synthInto(modelDir, true, llama.SynthOptions{Shape: shape, Seed: 7, Words: words}); err != nil {
		return err
	}
	// The run is tli run's pipeline with the published settings, content
	// pooling throughout (tli's default) and the embedded lists.
	opts := tli.PaperTrainOptions()
	opts.Epochs, opts.Pooling = *epochs, tli.PoolContent
	opts.LoRA.TargetModules = nil // the family's PEFT default: q_proj,v_proj (BLOOM: query_key_value)
	runDir := filepath.Join(*out, "run")
	err := pipeline(runOptions{mf: defaultModelFlags(modelDir), out: runDir, force: true,
		run: tli.RunOptions{Train: opts, ScanPooling: tli.PoolContent, EvalPooling: tli.PoolContent,
			Groups:     []tli.Group{{Name: "trained", Pairs: tli.DefaultTrainPairs()}, {Name: "control", Pairs: tli.DefaultControlPairs()}},
			PairsName:  "embedded training list",
			MapMethods: []string{"pca"},
			Commands:   []string{fmt.Sprintf("tli run --model %s --epochs %d --out %s", modelDir, *epochs, runDir)}}})
	if err != nil {
		return err
	}
	fmt.Printf("\ndemo done in %s: a random tiny model, so the numbers show the machinery, not Swahili.\n", time.Since(start).Round(100*time.Millisecond))
	fmt.Printf("report: %s\n", absPath(filepath.Join(runDir, "report.md")))
	fmt.Println("on a real checkpoint: tli run --model DIR --out DIR (see README)")
	return nil
}
