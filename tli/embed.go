package tli

import (
	"fmt"

	"github.com/tli-project/tli/llama"
)

// Encoder turns text into token ids the way Hugging Face's AutoTokenizer does
// (special tokens added as the tokenizer says) and tells which ids are special.
type Encoder interface {
	Encode(text string, addSpecial bool) []int
	IsSpecial(id int) bool
}

// Embedder returns one pooled, L2-normalised vector per word at each
// requested layer (HF numbering: 0 = embeddings) for each requested pooling,
// all from one pass over the model.
type Embedder interface {
	Embed(words []string, layers []int, poolings []Pooling) (Vectors, error)
}

// Vectors are pooled word vectors: Vectors[pooling][layer][word].
type Vectors map[Pooling]map[int][][]float32

// ModelEmbedder embeds words with a Llama model. All words go through the
// model as one packed batch, layer by layer, so each weight is read once per
// pass (what lets a checkpoint larger than RAM stream from its mmap).
type ModelEmbedder struct {
	Model *llama.Model
	Tok   Encoder
	// MaxTokens bounds the tokens of one pass (0: no bound). Larger lists are
	// split into several passes.
	MaxTokens int
}

// Tokenize encodes every word with special tokens and returns the packed
// batch and the special-token mask. A word that encodes to no content token
// is an error naming it.
func Tokenize(tok Encoder, words []string) (llama.Batch, []bool, error) {
	seqs := make([][]int, len(words))
	var special []bool
	for i, w := range words {
		ids := tok.Encode(w, true)
		content := 0
		for _, id := range ids {
			sp := tok.IsSpecial(id)
			special = append(special, sp)
			if !sp {
				content++
			}
		}
		if content == 0 {
			return llama.Batch{}, nil, fmt.Errorf("word %d %q tokenises to no content token", i, w)
		}
		seqs[i] = ids
	}
	return llama.NewBatch(seqs), special, nil
}

// Embed implements Embedder.
func (e *ModelEmbedder) Embed(words []string, layers []int, poolings []Pooling) (Vectors, error) {
	out := make(Vectors, len(poolings))
	for _, p := range poolings {
		out[p] = make(map[int][][]float32, len(layers))
	}
	d := e.Model.Config.HiddenSize
	for start := 0; start < len(words); {
		end := len(words)
		if e.MaxTokens > 0 {
			end, _ = e.chunkEnd(words, start)
		}
		b, special, err := Tokenize(e.Tok, words[start:end])
		if err != nil {
			return nil, err
		}
		err = e.Model.Forward(b, layers, func(layer int, h []float32) error {
			for _, p := range poolings {
				vecs, err := PoolRows(h, d, b.Offsets, special, p)
				if err != nil {
					return fmt.Errorf("layer %d: %w", layer, err)
				}
				out[p][layer] = append(out[p][layer], vecs...)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		start = end
	}
	return out, nil
}

// chunkEnd returns the end of the chunk of words starting at start that stays
// within MaxTokens (always at least one word).
func (e *ModelEmbedder) chunkEnd(words []string, start int) (int, int) {
	tokens := 0
	i := start
	for ; i < len(words); i++ {
		n := len(e.Tok.Encode(words[i], true))
		if i > start && tokens+n > e.MaxTokens {
			break
		}
		tokens += n
	}
	return i, tokens
}
