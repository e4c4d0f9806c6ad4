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
	// Device, when not nil, runs the forward instead of Model (a Vulkan
	// device holding Model's weights); nil: the CPU.
	Device Forwarder
}

// A Device holds a model's weights on an accelerator (a Vulkan GPU) and
// runs there what the pipeline's stages ask of the model: the forward
// (scan, embed, evaluation) and the model's part of a training step.
// Refresh uploads again the layers whose weights changed in place on the
// host (Evaluate merges the adapter into them, then puts the originals
// back).
type Device interface {
	Forwarder
	StepModel
	Refresh(m *llama.Model, layers []int) error
	// Name says which device it is, for provenance ("vulkan:0 NVIDIA
	// ...").
	Name() string
}

// Forwarder runs a model's forward as llama.Model.Forward does: the
// hidden states of the packed batch b asked for in layers, each passed to
// fn in increasing order. *llama.Model is one; a device's model is another.
type Forwarder interface {
	Forward(b llama.Batch, layers []int, fn func(layer int, h []float32) error) error
}

// Tokenize encodes every word with special tokens and returns the packed
// batch and the special-token mask. A word that encodes to no content token
// is an error naming it.
//
// ContentTokens counts the same way.
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
	b, special, err := Tokenize(e.Tok, words)
	if err != nil {
		return nil, err
	}
	out := make(Vectors, len(poolings))
	for _, p := range poolings {
		out[p] = make(map[int][][]float32, len(layers))
	}
	d := e.Model.Config.HiddenSize
	var f Forwarder = e.Model
	if e.Device != nil {
		f = e.Device
	}
	err = f.Forward(b, layers, func(layer int, h []float32) error {
		for _, p := range poolings {
			vecs, err := PoolRows(h, d, b.Offsets, special, p)
			if err != nil {
				return fmt.Errorf("layer %d: %w", layer, err)
			}
			out[p][layer] = vecs
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ContentTokens is the number of tokens of ids that are not special
// (BOS, EOS, ...): what content pooling averages over.
func ContentTokens(tok Encoder, ids []int) int {
	n := 0
	for _, id := range ids {
		if !tok.IsSpecial(id) {
			n++
		}
	}
	return n
}
