package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/internal/atomicfs"
	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/llama/tokenizer"
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
	fs := newFlagSet("embed", "--model DIR --words WORDS.json --layers all|K,K,... --pooling mean|content|last|none --out FILE.safetensors [--dtype f32|bf16]")
	model := fs.String("model", "", "checkpoint folder (config.json, safetensors, tokenizer.json)")
	wordsPath := fs.String("words", "", "JSON file holding a list of strings")
	layersFlag := fs.String("layers", "all", "hidden_states to write: all, or a comma-separated list (0 = embeddings, num_hidden_layers = after the final norm)")
	pooling := fs.String("pooling", "mean", "mean (all tokens, BOS/EOS included), content (special tokens left out), last (last token) or none (every token)")
	out := fs.String("out", "", "output .safetensors file")
	dtype := fs.String("dtype", "f32", "how weights are held: f32 (exact; f32 checkpoints stay memory-mapped) or bf16 (half the memory)")
	batchTokens := fs.Int("batch-tokens", 4096, "largest number of tokens in one packed forward pass")
	fast := fs.Bool("fast", false, "with bf16 weights, round activations to bf16 in products (PyTorch bf16 semantics, faster)")
	force := fs.Bool("force", false, "replace an existing --out file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *model == "" || *wordsPath == "" || *out == "" {
		return usageErrorf("--model, --words and --out are required")
	}
	switch *pooling {
	case "mean", "content", "last", "none":
	default:
		return usageErrorf("--pooling: unknown pooling %q (want mean, content, last or none)", *pooling)
	}
	dt, err := engine.ParseDType(*dtype)
	if err != nil || dt == engine.F16 {
		return usageErrorf("--dtype: want f32 or bf16, got %q", *dtype)
	}
	if *batchTokens <= 0 {
		return usageErrorf("--batch-tokens must be positive")
	}
	if err := checkOutFile("--out", *out, *force, atomicfs.Input{Flag: "--model", Path: *model}, atomicfs.Input{Flag: "--words", Path: *wordsPath}); err != nil {
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
	cfg, err := llama.LoadConfig(filepath.Join(*model, "config.json"))
	if err != nil {
		return err
	}
	layers, err := parseLayers("--layers", *layersFlag, cfg.NumLayers)
	if err != nil {
		return err
	}
	tok, err := tokenizer.LoadDir(*model)
	if err != nil {
		return err
	}
	top := 0
	for _, k := range layers {
		top = max(top, k)
	}
	m, err := llama.Load(*model, llama.LoadOptions{DType: dt, MaxLayer: top})
	if err != nil {
		return err
	}
	defer m.Close()
	m.FastBF16 = *fast

	// Tokenize; every word is one sequence.
	seqs := make([][]int, len(words))
	offsets := []int64{0}
	var ids []int64
	for w, s := range words {
		seqs[w] = tok.Encode(s, true)
		if len(seqs[w]) == 0 {
			return fmt.Errorf("word %d %q encodes to no tokens", w, s)
		}
		if *pooling == "content" && contentCount(seqs[w], tok) == 0 {
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
			for s := 0; s < b.NumSeqs(); s++ {
				seq := b.Tokens[b.Offsets[s]:b.Offsets[s+1]]
				hs := h[b.Offsets[s]*d : b.Offsets[s+1]*d]
				if *pooling == "none" {
					copy(dst[int(offsets[w0+s])*d:], hs)
					continue
				}
				pool(dst[(w0+s)*d:(w0+s+1)*d], hs, seq, d, *pooling, tok)
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
	meta := map[string]string{"model": *model, "pooling": *pooling, "dtype": dt.String(), "words": strconv.Itoa(len(words))}
	if err := llama.WriteSafetensorsMixed(*out, tensors, ints, meta); err != nil {
		return err
	}
	fmt.Printf("wrote %d layers of %d words (%d tokens, %s pooling) to %s\n", len(layers), len(words), len(ids), *pooling, *out)
	return nil
}

// contentCount is the number of non-special tokens of seq.
func contentCount(seq []int, tok *tokenizer.Tokenizer) int {
	n := 0
	for _, id := range seq {
		if !tok.IsSpecial(id) {
			n++
		}
	}
	return n
}

// pool writes into dst the pooled vector of one word's hidden states hs
// [len(seq) × d]: the mean over all tokens (mean), over non-special tokens
// (content), or the last token's state (last). Sums are in float64.
func pool(dst, hs []float32, seq []int, d int, how string, tok *tokenizer.Tokenizer) {
	if how == "last" {
		copy(dst, hs[(len(seq)-1)*d:])
		return
	}
	acc := make([]float64, d)
	n := 0
	for t, id := range seq {
		if how == "content" && tok.IsSpecial(id) {
			continue
		}
		for i, v := range hs[t*d : (t+1)*d] {
			acc[i] += float64(v)
		}
		n++
	}
	for i := range dst {
		dst[i] = float32(acc[i] / float64(n))
	}
}
