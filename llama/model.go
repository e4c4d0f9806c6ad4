package llama

import (
	"sync"

	"github.com/tli-project/tli/engine"
)

// Layer holds the weights of one decoder layer. Linear weights are stored as
// Hugging Face does, [out×in], in f32, bf16 or f16; norm weights are f32.
type Layer struct {
	AttnNorm []float32      // input_layernorm.weight [d]
	Q        *engine.Tensor // self_attn.q_proj.weight [nHeads·headDim × d]
	K        *engine.Tensor // self_attn.k_proj.weight [nKV·headDim × d]
	V        *engine.Tensor // self_attn.v_proj.weight [nKV·headDim × d]
	O        *engine.Tensor // self_attn.o_proj.weight [d × nHeads·headDim]
	MLPNorm  []float32      // post_attention_layernorm.weight [d]
	Gate     *engine.Tensor // mlp.gate_proj.weight [ffn × d]
	Up       *engine.Tensor // mlp.up_proj.weight [ffn × d]
	Down     *engine.Tensor // mlp.down_proj.weight [d × ffn]

	// Weights only some architectures have (nil otherwise).
	QBias, KBias, VBias []float32 // self_attn.{q,k,v}_proj.bias (Qwen2)
	QNorm, KNorm        []float32 // self_attn.{q,k}_norm.weight [headDim] (Qwen3)
	// Gemma 2: post_attention_layernorm (on the attention's output) and
	// post_feedforward_layernorm; its pre_feedforward_layernorm is MLPNorm.
	PostAttnNorm, PostFFNorm []float32
	// BLOOM: the fused self_attention.query_key_value [3·d × d] (Q, K and
	// V are nil; its rows are [heads, 3, headDim]); self_attention.dense is
	// O, mlp.dense_h_to_4h is Up and mlp.dense_4h_to_h is Down (Gate is
	// nil); every Linear and norm has a bias.
	QKV                              *engine.Tensor
	QKVBias, OBias, UpBias, DownBias []float32
	AttnNormBias, MLPNormBias        []float32
}

// Model is a loaded (possibly partially loaded) Llama checkpoint. Weights
// may point into a read-only memory-mapped file (see Load): to change a
// weight, replace the tensor rather than writing into it.
type Model struct {
	Config Config
	Embed  *engine.Tensor // model.embed_tokens.weight [vocab × d]
	// Layers has Config.NumLayers entries; an entry is nil when that layer was
	// not loaded (a run that stops at layer 2 reads only what it needs).
	Layers []*Layer
	Norm   []float32 // model.norm.weight [d]; nil when not loaded
	// BLOOM: the LayerNorm after the embedding (word_embeddings_layernorm)
	// and the final norm's bias (ln_f.bias).
	EmbedNorm, EmbedNormBias, NormBias []float32
	LMHead                             *engine.Tensor // lm_head.weight [vocab × d]; nil when tied or not loaded
	Rope                               *engine.Rope
	// Dir is the checkpoint folder the model was loaded from ("" if built in memory).
	Dir string
	// FastBF16 makes products with bf16 weights round activations to bf16
	// first, as PyTorch's bf16 matmul does (faster; relative errors near
	// 1e-2). When false, bf16 weights are widened exactly to f32.
	FastBF16 bool
	// Numerics is the activation dtype and weight quantisation the model
	// was loaded with (LoadOptions.Numerics); the forward rounds to
	// Numerics.Activations where transformers' code would.
	Numerics Numerics

	// OnLayer, when not nil, is called by Forward before its first layer
	// (done 0) and after each layer it runs: done of total layers, for a
	// batch of tokens tokens (progress of long passes).
	OnLayer func(done, total, tokens int)

	storedDType engine.DType // dtype of the checkpoint's embedding
	closer      func() error // releases memory-mapped shards
	checks      checks       // weights in mapped shards not yet checked for NaN/Inf
	// plusOne caches Gemma's 1 + w of each norm weight, by its first element.
	plusOneMu sync.Mutex
	plusOne   map[*float32][]float32
}

// Close releases the memory-mapped checkpoint files that the model's
// weights may point into; the model must not be used afterwards.
func (m *Model) Close() error {
	if m.closer == nil {
		return nil
	}
	f := m.closer
	m.closer = nil
	return f()
}

// Batch is a packed batch of token sequences: Tokens holds them one after
// another, and sequence s is Tokens[Offsets[s]:Offsets[s+1]]. Positions
// restart at 0 for every sequence; tokens never attend across sequences.
type Batch struct {
	Tokens  []int
	Offsets []int
}

// NumSeqs is the number of sequences in the batch.
func (b Batch) NumSeqs() int { return len(b.Offsets) - 1 }

// NumTokens is the total number of tokens.
func (b Batch) NumTokens() int { return len(b.Tokens) }

// MaxLen is the length of the longest sequence.
func (b Batch) MaxLen() int {
	m := 0
	for s := 0; s+1 < len(b.Offsets); s++ {
		if l := b.Offsets[s+1] - b.Offsets[s]; l > m {
			m = l
		}
	}
	return m
}

// NewBatch packs sequences into a Batch.
func NewBatch(seqs [][]int) Batch {
	b := Batch{Offsets: make([]int, 1, len(seqs)+1)}
	for _, s := range seqs {
		b.Tokens = append(b.Tokens, s...)
		b.Offsets = append(b.Offsets, len(b.Tokens))
	}
	return b
}
