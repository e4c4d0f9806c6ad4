package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/internal/atomicfs"
	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/tli"
)

func init() {
	register("embed", "write per-layer hidden states of words (pooled or per token) to a safetensors file", runEmbed)
}

// runEmbed tokenizes every word of a JSON list (with the tokenizer's special
// tokens), runs them through the model as packed batches, and writes for
// each requested layer K a float32 tensor "layer.K": [words × d] pooled
// vectors (not normalised), or [total tokens × d] with --pooling none. It
// also writes "token_ids" [total tokens] and "offsets" [words+1] (I64), so
// word w's tokens are token_ids[offsets[w]:offsets[w+1]].
func runEmbed(args []string) error {
	fs := newFlagSet("embed", "--model DIR --words WORDS.json --layers all|K,K,... --pooling content|mean|last|none --out FILE.safetensors [--dtype f32|bf16] [--fast] [--threads N]")
	mf := addModelFlags(fs, "f32")
	wordsPath := fs.String("words", "", "JSON file holding a list of strings")
	layersFlag := fs.String("layers", "all", "hidden_states to write: all, or a comma-separated list (0 = embeddings, num_hidden_layers = after the final norm)")
	pooling := fs.String("pooling", string(tli.PoolContent), "content (special tokens left out), mean (all tokens, BOS/EOS included), last (last token) or none (every token)")
	out := fs.String("out", "", "output .safetensors file")
	batchTokens := fs.Int("batch-tokens", 4096, "largest number of tokens in one packed forward pass")
	force := fs.Bool("force", false, "replace an existing --out file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *mf.dir == "" || *wordsPath == "" || *out == "" {
		return usageErrorf("--model, --words and --out are required")
	}
	switch *pooling {
	case "mean", "content", "last", "none":
	default:
		return usageErrorf("--pooling: unknown pooling %q (want mean, content, last or none)", *pooling)
	}
	dt, err := mf.check()
	if err != nil {
		return err
	}
	if *batchTokens <= 0 {
		return usageErrorf("--batch-tokens must be positive")
	}
	if err := checkOutFile("--out", *out, *force, atomicfs.Input{Flag: "--model", Path: *mf.dir}, atomicfs.Input{Flag: "--words", Path: *wordsPath}); err != nil {
		return err
	}
	raw, err := readFileLimit(*wordsPath, maxWordsFile)
	if err != nil {
		return fmt.Errorf("--words: %w", err)
	}
	var words []string
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&words); err != nil {
		return fmt.Errorf("%s: want a JSON list of strings: %v", *wordsPath, err)
	}
	if dec.More() {
		return fmt.Errorf("%s: unexpected data after the JSON list", *wordsPath)
	}
	if len(words) == 0 {
		return fmt.Errorf("%s: the word list is empty", *wordsPath)
	}
	for i, w := range words {
		if err := checkText(fmt.Sprintf("%s: word %d", *wordsPath, i), w); err != nil {
			return err
		}
		if len(w) > tli.MaxWordBytes {
			return fmt.Errorf("%s: word %d is %d bytes long, over the limit of %d bytes (tli.MaxWordBytes) for a word or phrase", *wordsPath, i, len(w), tli.MaxWordBytes)
		}
	}
	cfg, err := peekConfig(*mf.dir)
	if err != nil {
		return err
	}
	layers, err := parseLayers("--layers", *layersFlag, cfg.NumLayers)
	if err != nil {
		return err
	}
	m, tok, err := mf.load(maxOf(layers))
	if err != nil {
		return err
	}
	defer m.Close()

	// Tokenize; every word is one sequence.
	seqs := make([][]int, len(words))
	offsets := []int64{0}
	var ids []int64
	for w, s := range words {
		seqs[w] = tok.Encode(s, true)
		if len(seqs[w]) == 0 {
			return fmt.Errorf("word %d %q encodes to no tokens", w, s)
		}
		if *pooling == "content" && tli.ContentTokens(tok, seqs[w]) == 0 {
			return fmt.Errorf("word %d %q has only special tokens: nothing to pool with --pooling content", w, s)
		}
		for _, id := range seqs[w] {
			ids = append(ids, int64(id))
		}
		offsets = append(offsets, int64(len(ids)))
	}

	d := cfg.HiddenSize
	rows := len(words)
	if *pooling == "none" {
		rows = len(ids)
	}
	outs := map[int][]float32{}
	for _, k := range layers {
		outs[k] = make([]float32, rows*d)
	}
	// Packed batches of whole words, at most batchTokens tokens each.
	for w0 := 0; w0 < len(words); {
		w1, n := w0, 0
		for w1 < len(words) && (w1 == w0 || n+len(seqs[w1]) <= *batchTokens) {
			n += len(seqs[w1])
			w1++
		}
		b := llama.NewBatch(seqs[w0:w1])
		err := m.Forward(b, layers, func(k int, h []float32) error {
			dst := outs[k]
			if *pooling == "none" {
				copy(dst[int(offsets[w0])*d:], h[:b.Offsets[b.NumSeqs()]*d])
				return nil
			}
			special := make([]bool, len(b.Tokens))
			for t, id := range b.Tokens {
				special[t] = tok.IsSpecial(id)
			}
			vs, err := tli.PoolRaw(h, d, b.Offsets, special, tli.Pooling(*pooling))
			if err != nil {
				return err
			}
			for s, v := range vs {
				copy(dst[(w0+s)*d:], v)
			}
			return nil
		})
		if err != nil {
			return err
		}
		w0 = w1
	}
	var tensors []llama.NamedTensor
	for _, k := range layers {
		tensors = append(tensors, llama.NamedTensor{Name: fmt.Sprintf("layer.%d", k), Tensor: engine.FromF32(outs[k], rows, d)})
	}
	ints := []llama.NamedInts{
		{Name: "token_ids", Shape: []int{len(ids)}, Data: ids},
		{Name: "offsets", Shape: []int{len(offsets)}, Data: offsets},
	}
	meta := map[string]string{"model": mf.name(), "pooling": *pooling, "dtype": dt.String(), "words": strconv.Itoa(len(words))}
	if err := llama.WriteSafetensorsMixed(*out, tensors, ints, meta); err != nil {
		return err
	}
	fmt.Printf("wrote %d layers of %d words (%d tokens, %s pooling) to %s\n", len(layers), len(words), len(ids), *pooling, *out)
	return nil
}
