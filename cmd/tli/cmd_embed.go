package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/internal/atomicfs"
	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/tli"
)

func init() {
	register("embed", "write per-layer hidden states of words (pooled or per token) to a safetensors, JSON or NPY file", runEmbed)
}

// runEmbed tokenizes every word of a JSON list (with the tokenizer's special
// tokens), runs them through the model as packed batches, and writes for
// each requested layer K a float32 tensor "layer.K": [words × d] pooled
// vectors (L2-normalised with --normalize), or [total tokens × d] with
// --pooling none. It also writes "token_ids" [total tokens] and "offsets"
// [words+1] (I64), so word w's tokens are token_ids[offsets[w]:offsets[w+1]],
// and the words themselves (metadata "word_list", a JSON list). --out's
// extension chooses the format: .safetensors, .json (words, token ids and
// vectors by layer) or .npy (one float32 array [layers × rows × d], layers
// in the order of --layers).
func runEmbed(args []string) error {
	fs := newFlagSet("embed", "--model DIR --words WORDS.json --layers all|K,K,... --pooling content|mean|last|none --out FILE.safetensors [--dtype f32|bf16] [--fast] [--threads N]")
	mf := addModelFlags(fs, "f32")
	wordsPath := fs.String("words", "", "JSON file holding a list of strings, or a text file with one word per line; - reads standard input")
	layersFlag := fs.String("layers", "all", "hidden_states to write: all, or a comma-separated list (0 = embeddings, num_hidden_layers = after the final norm)")
	pooling := fs.String("pooling", string(tli.PoolContent), "content (special tokens left out), mean (all tokens, BOS/EOS included), last (last token) or none (every token)")
	out := fs.String("out", "", "output file: .safetensors, .json or .npy (by its extension)")
	normalize := fs.Bool("normalize", false, "L2-normalise each vector (the cosines of TLI are dot products of normalised vectors)")
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
	inputs := []atomicfs.Input{{Flag: "--model", Path: *mf.dir}}
	if *wordsPath != "-" {
		inputs = append(inputs, atomicfs.Input{Flag: "--words", Path: *wordsPath})
	}
	if err := checkOutFile("--out", *out, *force, inputs...); err != nil {
		return err
	}
	format := strings.TrimPrefix(strings.ToLower(filepath.Ext(*out)), ".")
	switch format {
	case "safetensors", "json", "npy":
	default:
		return usageErrorf("--out %s: want a .safetensors, .json or .npy file", *out)
	}
	var raw []byte
	if *wordsPath == "-" {
		raw, err = io.ReadAll(io.LimitReader(embedIn, maxWordsFile+1))
		if err == nil && len(raw) > maxWordsFile {
			err = fmt.Errorf("standard input is larger than %d bytes", maxWordsFile)
		}
	} else {
		raw, err = readFileLimit(*wordsPath, maxWordsFile)
	}
	if err != nil {
		return fmt.Errorf("--words: %w", err)
	}
	words, err := parseWordList(raw, *wordsPath)
	if err != nil {
		return err
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
	var fwd tli.Forwarder = m
	dev, closeDev, err := mf.openDevice(m)
	if err != nil {
		return err
	}
	defer closeDev()
	if dev != nil {
		fwd = dev
	}

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
		err := fwd.Forward(b, layers, func(k int, h []float32) error {
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
	if *normalize {
		for _, k := range layers {
			for r := 0; r < rows; r++ {
				normalizeRow(outs[k][r*d : (r+1)*d])
			}
		}
	}
	meta := map[string]string{"model": mf.name(), "pooling": *pooling, "dtype": dt.String(), "words": strconv.Itoa(len(words)),
		"normalized": strconv.FormatBool(*normalize), "numerics": m.Numerics.String()}
	switch format {
	case "json":
		err = writeEmbedJSON(*out, words, seqs, layers, outs, rows, d, meta)
	case "npy":
		err = writeEmbedNPY(*out, layers, outs, rows, d)
	default:
		err = writeEmbedSafetensors(*out, words, layers, outs, rows, d, ids, offsets, meta)
	}
	if err != nil {
		return err
	}
	fmt.Printf("wrote %d layers of %d words (%d tokens, %s pooling) to %s\n", len(layers), len(words), len(ids), *pooling, *out)
	return nil
}

// embedIn is where --words - reads from (tests replace it).
var embedIn io.Reader = os.Stdin

// parseWordList reads a JSON list of strings, or (when the text does not
// start with '[') one word or phrase per line, blank lines skipped.
func parseWordList(raw []byte, name string) ([]string, error) {
	if name == "-" {
		name = "standard input"
	}
	var words []string
	if t := bytes.TrimLeft(raw, " \t\r\n\ufeff"); len(t) > 0 && t[0] == '[' {
		dec := json.NewDecoder(bytes.NewReader(raw))
		if err := dec.Decode(&words); err != nil {
			return nil, fmt.Errorf("%s: want a JSON list of strings: %v", name, err)
		}
		if dec.More() {
			return nil, fmt.Errorf("%s: unexpected data after the JSON list", name)
		}
	} else {
		for _, l := range strings.Split(string(raw), "\n") {
			if l = strings.TrimRight(l, "\r"); strings.TrimSpace(l) != "" {
				words = append(words, l)
			}
		}
	}
	if len(words) == 0 {
		return nil, fmt.Errorf("%s: the word list is empty", name)
	}
	for i, w := range words {
		if err := checkText(fmt.Sprintf("%s: word %d", name, i), w); err != nil {
			return nil, err
		}
		if len(w) > tli.MaxWordBytes {
			return nil, fmt.Errorf("%s: word %d is %d bytes long, over the limit of %d bytes (tli.MaxWordBytes) for a word or phrase", name, i, len(w), tli.MaxWordBytes)
		}
	}
	return words, nil
}

// normalizeRow scales v to unit L2 norm (a zero vector stays zero).
func normalizeRow(v []float32) {
	var ss float64
	for _, x := range v {
		ss += float64(x) * float64(x)
	}
	if ss == 0 {
		return
	}
	inv := 1 / math.Sqrt(ss)
	for i, x := range v {
		v[i] = float32(float64(x) * inv)
	}
}

func writeEmbedSafetensors(path string, words []string, layers []int, outs map[int][]float32, rows, d int, ids, offsets []int64, meta map[string]string) error {
	var tensors []llama.NamedTensor
	for _, k := range layers {
		tensors = append(tensors, llama.NamedTensor{Name: fmt.Sprintf("layer.%d", k), Tensor: engine.FromF32(outs[k], rows, d)})
	}
	ints := []llama.NamedInts{
		{Name: "token_ids", Shape: []int{len(ids)}, Data: ids},
		{Name: "offsets", Shape: []int{len(offsets)}, Data: offsets},
	}
	wl, err := json.Marshal(words)
	if err != nil {
		return err
	}
	meta["word_list"] = string(wl)
	return llama.WriteSafetensorsMixed(path, tensors, ints, meta)
}

// writeEmbedJSON writes {"words", "token_ids" (per word), "layers",
// "vectors": {"K": [[...] per row]}, and the metadata}.
func writeEmbedJSON(path string, words []string, seqs [][]int, layers []int, outs map[int][]float32, rows, d int, meta map[string]string) error {
	vecs := map[string][][]float32{}
	for _, k := range layers {
		rs := make([][]float32, rows)
		for r := range rs {
			rs[r] = outs[k][r*d : (r+1)*d]
		}
		vecs[strconv.Itoa(k)] = rs
	}
	doc := map[string]any{"schema": tli.SchemaVersion, "words": words, "token_ids": seqs, "layers": layers, "vectors": vecs, "metadata": meta}
	b, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	return atomicfs.WriteFile(path, append(b, '\n'))
}

// writeEmbedNPY writes one NumPy .npy array, float32 little-endian,
// shaped [layers × rows × d] in the order of layers.
func writeEmbedNPY(path string, layers []int, outs map[int][]float32, rows, d int) error {
	header := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d, %d), }", len(layers), rows, d)
	// Magic, version 1.0, header length, then the header padded with
	// spaces and a newline so the data starts at a multiple of 64 bytes.
	pad := 64 - (10+len(header)+1)%64
	header += strings.Repeat(" ", pad%64) + "\n"
	var buf bytes.Buffer
	buf.WriteString("\x93NUMPY\x01\x00")
	binary.Write(&buf, binary.LittleEndian, uint16(len(header)))
	buf.WriteString(header)
	for _, k := range layers {
		binary.Write(&buf, binary.LittleEndian, outs[k][:rows*d])
	}
	return atomicfs.WriteFile(path, buf.Bytes())
}
