package main

import (
	"fmt"
	"io"
	"math"
	"os"

	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/lora"
)

func init() {
	register("probe", "continue a prompt with a model (greedy or sampled) and print the text", runProbe)
}

// probeOut is where probe prints the continuation (tests replace it).
var probeOut io.Writer = os.Stdout

// runProbe loads a whole model, encodes the prompt with its tokenizer
// (special tokens added), merges the --adapter if one is given, generates
// with a KV cache (on a Vulkan device: the whole sequence at each step)
// until EOS or --max-new-tokens, and prints the continuation's text.
func runProbe(args []string) error {
	fs := newFlagSet("probe", "--model DIR [--adapter DIR] --prompt TEXT [--max-new-tokens N] [--temperature T] [--top-p P] [--seed N]")
	mf := addModelFlags(fs, "bf16")
	adapter := fs.String("adapter", "", "LoRA adapter folder (PEFT layout) to merge into the weights before generating")
	prompt := fs.String("prompt", "", "text to continue")
	maxNew := fs.Int("max-new-tokens", 32, "largest number of tokens to generate")
	temp := fs.Float64("temperature", 0, "0: greedy; > 0: sample from softmax(logits/T)")
	topP := fs.Float64("top-p", 1, "nucleus sampling: keep the most likely tokens whose probabilities sum to P")
	seed := fs.Uint64("seed", 0, "random seed for sampling")
	ids := fs.Bool("ids", false, "also print the generated token ids")
	asJSON := fs.Bool("json", false, "print {prompt, prompt_ids, generated_ids, text} as JSON on stdout (scripts and tests compare ids)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *mf.dir == "" || *prompt == "" {
		return usageErrorf("--model and --prompt are required")
	}
	if *maxNew <= 0 {
		return usageErrorf("--max-new-tokens must be positive")
	}
	if !(*temp >= 0) || math.IsInf(*temp, 0) {
		return usageErrorf("--temperature %v must be a finite number >= 0", *temp)
	}
	if !(*topP > 0 && *topP <= 1) {
		return usageErrorf("--top-p %v must be in (0, 1]", *topP)
	}
	if err := checkText("--prompt", *prompt); err != nil {
		return err
	}
	if _, err := mf.check(); err != nil {
		return err
	}
	m, tok, err := mf.load(llama.AllLayers)
	if err != nil {
		return err
	}
	defer m.Close()
	if *adapter != "" {
		a, err := lora.Load(*adapter, m.Config)
		if err != nil {
			return fmt.Errorf("--adapter: %w", err)
		}
		if err := a.Merge(m); err != nil {
			return fmt.Errorf("--adapter: %w", err)
		}
	}
	in := tok.Encode(*prompt, true)
	if ctx := m.Config.MaxPositionEmbeddings; len(in)+*maxNew > ctx {
		if len(in) >= ctx {
			return usageErrorf("--prompt is %d tokens, as long as the model's context of %d tokens (max_position_embeddings) or longer", len(in), ctx)
		}
		return usageErrorf("--max-new-tokens %d: the prompt's %d tokens plus %d new ones exceed the model's context of %d tokens (max_position_embeddings); use at most %d", *maxNew, len(in), *maxNew, ctx, ctx-len(in))
	}
	// On a device, the merged weights are uploaded; each step runs the
	// whole sequence there, the LM head on the CPU.
	dev, closeDev, err := mf.openDevice(m)
	if err != nil {
		return err
	}
	defer closeDev()
	var dec llama.Decoder
	if g, ok := dev.(interface {
		Decoder(*llama.Model) llama.Decoder
	}); ok {
		dec = g.Decoder(m)
	}
	gen, err := m.GenerateWith(in, llama.GenerateOptions{MaxNewTokens: *maxNew, Temperature: *temp, TopP: *topP, Seed: *seed}, dec)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(probeOut, map[string]any{"prompt": *prompt, "prompt_ids": in, "generated_ids": gen, "text": tok.Decode(gen, true)})
	}
	fmt.Fprintln(probeOut, tok.Decode(gen, true))
	if *ids {
		fmt.Fprintln(probeOut, gen)
	}
	return nil
}
