package llama

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/internal/atomicfs"
	"github.com/tli-project/tli/kernels"
	"github.com/tli-project/tli/llama/tokenizer"
	"github.com/tli-project/tli/quant"
)

// SynthOptions describes a synthetic checkpoint: a model of a known shape
// with deterministic random weights, for tests and benchmarks.
type SynthOptions struct {
	// Shape is "tiny" (the default), "llama3.2-1b" or "llama3-8b", or a
	// tiny checkpoint of another family: "tiny-mistral", "tiny-qwen2",
	// "tiny-qwen3", "tiny-gemma" (SynthShapes).
	Shape string
	// Layers overrides the shape's number of layers when > 0. Negative
	// overrides are refused, as are sizes above the config limits
	// (LimitLayers, LimitDim, ...).
	Layers int
	// DType is the stored dtype: F32 (default), BF16 or F16.
	DType engine.DType
	// Seed selects the weights; the same seed gives the same files.
	Seed uint64
	// Overrides of the shape's sizes when > 0. HeadDim may differ from
	// Hidden/Heads, as in some Llama variants.
	Hidden, Heads, KVHeads, FFN, Vocab, HeadDim, MaxPositions int
	// RopeTheta overrides the shape's rope base when > 0.
	RopeTheta float64
	// RopeScaling overrides the shape's rope_scaling; Type "none" removes it.
	RopeScaling *engine.RopeScaling
	// Tied overrides whether the LM head is the embedding.
	Tied *bool
	// ShardBytes is the largest shard size; above it the weights are split
	// into model-0000i-of-0000n.safetensors with an index (0:
	// DefaultShardBytes, 5 GB; see WriteCheckpointWeights).
	ShardBytes int64
	// TokenizerJSON and TokenizerConfigJSON, when set, are written as
	// tokenizer.json and tokenizer_config.json. Otherwise, when a tokenizer
	// synthesiser is available (SynthTokenizer), one is made from Words.
	TokenizerJSON, TokenizerConfigJSON []byte
	Words                              []string
	// BOS and EOS token ids for config.json (default: taken from the
	// tokenizer's added tokens, else 1 and 2 for "tiny", Llama 3's ids
	// otherwise).
	BOS, EOS []int
	// Quant, "nf4" or "fp4", writes the decoder Linears straight in the
	// 4-bit layout transformers saves (random codes, uniform over the 16
	// values — for NF4, whose codes are quantiles of a normal, that is a
	// normal weight — and block scales near the largest of 64 normal draws
	// of the weight's deviation), with a quantization_config; the other
	// weights are then F16. A model far larger than memory as F32 (the
	// 70B shape) fits a disk this way.
	Quant string
}

// SynthTokenizer, when not nil, makes tokenizer.json and
// tokenizer_config.json from a word list for a vocabulary of vocabSize ids
// (tokenizer.Synth: a byte-level BPE learned from the words, with BOS and
// EOS as the last two ids). Set it to nil to write checkpoints without a
// tokenizer.
var SynthTokenizer = tokenizer.Synth

// DefaultSynthWords are the words a synthetic tokenizer learns from when
// SynthOptions.Words is empty: a few English and Swahili words, so that
// demo text tokenizes into whole words.
var DefaultSynthWords = strings.Fields(`the a of and to in is that it was for on are with as
he she they we you be at by this from have not or one had but what all were when there
can an your which their said if do will each about how up out them then many some so
mtoto watoto mama baba nyumba maji chakula shule mwalimu kitabu vitabu rafiki habari
jambo asante sana ndiyo hapana leo kesho jana mimi wewe yeye sisi ninyi wao kula kunywa
kusoma kuandika kwenda kuja kupenda kulala kukimbia mji kijiji nchi ziwa mlima mti
language model word injection lexical target english swahili dictionary translation`)

// SynthShapes are the shapes Synth knows.
var SynthShapes = []string{"tiny", "llama3.2-1b", "llama3-8b", "llama3-70b", "tiny-mistral", "tiny-qwen2", "tiny-qwen3", "tiny-gemma", "tiny-gemma2", "tiny-bloom"}

// SynthConfig returns the config of the checkpoint opts describes.
func SynthConfig(opts SynthOptions) (Config, error) {
	var c Config
	c.RMSNormEps = 1e-5
	c.RopeTheta = 500000
	shape := opts.Shape
	if fam, ok := strings.CutPrefix(shape, "tiny-"); ok && archs[fam] != nil {
		// The tiny Llama with the family's differences, each small enough
		// to matter in short test sequences: a sliding window of 6
		// positions (on every layer, or from layer 1 up for Qwen), Qwen3's
		// and Gemma's head_dim different from hidden_size/heads.
		c.Arch = archs[fam]
		shape = "tiny"
		switch fam {
		case "mistral":
			c.SlidingWindow = 6
		case "qwen2":
			c.SlidingWindow, c.UseSlidingWindow, c.MaxWindowLayers = 6, true, 1
		case "qwen3":
			c.SlidingWindow, c.UseSlidingWindow, c.MaxWindowLayers = 6, true, 1
			opts.HeadDim = cmp.Or(opts.HeadDim, 24)
		case "gemma":
			opts.HeadDim = cmp.Or(opts.HeadDim, 32)
			c.RMSNormEps = 1e-6
		case "gemma2":
			// Caps small enough to bend random scores and logits, a scale
			// other than 1/sqrt(head_dim), the window on even layers.
			opts.HeadDim = cmp.Or(opts.HeadDim, 32)
			c.RMSNormEps = 1e-6
			c.SlidingWindow, c.QueryPreAttnScalar, c.AttnLogitSoftcapping, c.FinalLogitSoftcapping = 6, 24, 2, 3
		case "bloom":
			// 6 heads: ALiBi's slopes for a head count that is not a
			// power of two; no GQA, MLP width 4·hidden.
			opts.Hidden, opts.Heads = cmp.Or(opts.Hidden, 96), cmp.Or(opts.Heads, 6)
			opts.KVHeads = cmp.Or(opts.KVHeads, opts.Heads)
			opts.FFN = cmp.Or(opts.FFN, 4*opts.Hidden)
		}
		c.TieWordEmbeddings = c.Arch.TiedByDefault
	}
	switch shape {
	case "", "tiny":
		c.HiddenSize, c.NumLayers, c.NumHeads, c.NumKVHeads, c.IntermediateSize, c.VocabSize = 64, 4, 4, 2, 172, 512
		c.MaxPositionEmbeddings = 2048
		c.BOSTokenID, c.EOSTokenID = []int{1}, []int{2}
	case "llama3.2-1b":
		c.HiddenSize, c.NumLayers, c.NumHeads, c.NumKVHeads, c.IntermediateSize, c.VocabSize = 2048, 16, 32, 8, 8192, 128256
		c.TieWordEmbeddings = true
		c.MaxPositionEmbeddings = 131072
		c.RopeScaling = engine.RopeScaling{Type: "llama3", Factor: 32, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 8192}
		c.BOSTokenID, c.EOSTokenID = []int{128000}, []int{128001, 128008, 128009}
	case "llama3-8b":
		c.HiddenSize, c.NumLayers, c.NumHeads, c.NumKVHeads, c.IntermediateSize, c.VocabSize = 4096, 32, 32, 8, 14336, 128256
		c.MaxPositionEmbeddings = 131072
		c.RopeScaling = engine.RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 8192}
		c.BOSTokenID, c.EOSTokenID = []int{128000}, []int{128001, 128008, 128009}
	case "llama3-70b":
		c.HiddenSize, c.NumLayers, c.NumHeads, c.NumKVHeads, c.IntermediateSize, c.VocabSize = 8192, 80, 64, 8, 28672, 128256
		c.MaxPositionEmbeddings = 131072
		c.RopeScaling = engine.RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 8192}
		c.BOSTokenID, c.EOSTokenID = []int{128000}, []int{128001, 128008, 128009}
	default:
		return c, fmt.Errorf("synth: unknown shape %q (want one of %s)", opts.Shape, strings.Join(SynthShapes, ", "))
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"Layers", opts.Layers}, {"Hidden", opts.Hidden}, {"Heads", opts.Heads}, {"KVHeads", opts.KVHeads},
		{"FFN", opts.FFN}, {"Vocab", opts.Vocab}, {"HeadDim", opts.HeadDim}, {"MaxPositions", opts.MaxPositions}} {
		if f.v < 0 {
			return c, fmt.Errorf("synth: %s %d is negative (0 keeps the shape's value)", f.name, f.v)
		}
	}
	if opts.RopeTheta < 0 || math.IsNaN(opts.RopeTheta) {
		return c, fmt.Errorf("synth: RopeTheta %v is negative (0 keeps the shape's value)", opts.RopeTheta)
	}
	set := func(dst *int, v int) {
		if v > 0 {
			*dst = v
		}
	}
	set(&c.NumLayers, opts.Layers)
	set(&c.HiddenSize, opts.Hidden)
	set(&c.NumHeads, opts.Heads)
	set(&c.NumKVHeads, opts.KVHeads)
	set(&c.IntermediateSize, opts.FFN)
	set(&c.VocabSize, opts.Vocab)
	set(&c.MaxPositionEmbeddings, opts.MaxPositions)
	if opts.HeadDim > 0 {
		c.HeadDim = opts.HeadDim
	} else if c.HiddenSize%c.NumHeads != 0 {
		return c, fmt.Errorf("synth: hidden size %d is not a multiple of %d heads; set HeadDim", c.HiddenSize, c.NumHeads)
	} else {
		c.HeadDim = c.HiddenSize / c.NumHeads
	}
	if opts.RopeTheta > 0 {
		c.RopeTheta = opts.RopeTheta
	}
	if opts.RopeScaling != nil {
		c.RopeScaling = *opts.RopeScaling
		if c.RopeScaling.Type == "none" {
			c.RopeScaling = engine.RopeScaling{}
		}
	}
	if opts.Tied != nil {
		c.TieWordEmbeddings = *opts.Tied
	}
	if opts.BOS != nil {
		c.BOSTokenID = opts.BOS
	}
	if opts.EOS != nil {
		c.EOSTokenID = opts.EOS
	}
	switch opts.DType {
	case engine.F32:
		c.TorchDType = "float32"
	case engine.BF16:
		c.TorchDType = "bfloat16"
	case engine.F16:
		c.TorchDType = "float16"
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("synth: %v", err)
	}
	if _, err := engine.NewRope(c.HeadDim, c.RopeTheta, c.MaxPositionEmbeddings, c.RopeScaling); err != nil {
		return c, fmt.Errorf("synth: %v", err)
	}
	return c, nil
}

// ConfigJSON renders c as a Hugging Face config.json.
func (c Config) ConfigJSON() ([]byte, error) {
	a := c.arch()
	if a.FusedQKV {
		return c.bloomConfigJSON()
	}
	m := map[string]any{
		"architectures":           []string{a.Class},
		"model_type":              a.ModelType,
		"hidden_act":              "silu",
		"attention_bias":          false,
		"attention_dropout":       0.0,
		"mlp_bias":                false,
		"pretraining_tp":          1,
		"initializer_range":       0.02,
		"use_cache":               true,
		"hidden_size":             c.HiddenSize,
		"intermediate_size":       c.IntermediateSize,
		"num_hidden_layers":       c.NumLayers,
		"num_attention_heads":     c.NumHeads,
		"num_key_value_heads":     c.NumKVHeads,
		"head_dim":                c.HeadDim,
		"rms_norm_eps":            c.RMSNormEps,
		"rope_theta":              c.RopeTheta,
		"max_position_embeddings": c.MaxPositionEmbeddings,
		"vocab_size":              c.VocabSize,
		"tie_word_embeddings":     c.TieWordEmbeddings,
		"torch_dtype":             c.TorchDType,
		"rope_scaling":            nil,
	}
	if c.TorchDType == "" {
		m["torch_dtype"] = "float32"
	}
	if c.Quantization != nil {
		m["quantization_config"] = c.Quantization
	}
	if a.GELU {
		m["hidden_act"] = "gelu_pytorch_tanh"
		m["hidden_activation"] = "gelu_pytorch_tanh"
	}
	if a.SoftCaps {
		m["query_pre_attn_scalar"] = c.QueryPreAttnScalar
		m["attn_logit_softcapping"] = c.AttnLogitSoftcapping
		m["final_logit_softcapping"] = c.FinalLogitSoftcapping
	}
	switch a.Window {
	case WindowEven:
		m["sliding_window"] = c.SlidingWindow
	case WindowAll:
		m["sliding_window"] = nil
		if c.SlidingWindow > 0 {
			m["sliding_window"] = c.SlidingWindow
		}
	case WindowUpper:
		m["use_sliding_window"] = c.UseSlidingWindow
		m["sliding_window"] = c.SlidingWindow
		m["max_window_layers"] = c.MaxWindowLayers
	}
	one := func(ids []int) any {
		if len(ids) == 1 {
			return ids[0]
		}
		return ids
	}
	if len(c.BOSTokenID) > 0 {
		m["bos_token_id"] = one(c.BOSTokenID)
	}
	if len(c.EOSTokenID) > 0 {
		m["eos_token_id"] = one(c.EOSTokenID)
	}
	if s := c.RopeScaling; s.Type != "" && s.Type != "default" {
		rs := map[string]any{"rope_type": s.Type, "factor": s.Factor}
		if s.Type == "llama3" {
			rs["low_freq_factor"] = s.LowFreqFactor
			rs["high_freq_factor"] = s.HighFreqFactor
			rs["original_max_position_embeddings"] = s.OriginalMaxPositionEmbeddings
		}
		m["rope_scaling"] = rs
	}
	return json.MarshalIndent(m, "", "  ")
}

// bloomConfigJSON renders c as BLOOM's config.json (BloomConfig's keys).
func (c Config) bloomConfigJSON() ([]byte, error) {
	m := map[string]any{
		"architectures":      []string{"BloomForCausalLM"},
		"model_type":         "bloom",
		"hidden_size":        c.HiddenSize,
		"n_head":             c.NumHeads,
		"n_layer":            c.NumLayers,
		"layer_norm_epsilon": c.RMSNormEps,
		"vocab_size":         c.VocabSize,
		"apply_residual_connection_post_layernorm": c.ResidualPostNorm,
		"tie_word_embeddings":                      c.TieWordEmbeddings,
		"initializer_range":                        0.02,
		"use_cache":                                true,
		"torch_dtype":                              cmp.Or(c.TorchDType, "float32"),
	}
	if len(c.BOSTokenID) > 0 {
		m["bos_token_id"] = c.BOSTokenID[0]
	}
	if len(c.EOSTokenID) > 0 {
		m["eos_token_id"] = c.EOSTokenID[0]
	}
	return json.MarshalIndent(m, "", "  ")
}

// synthTensor is one weight of a synthetic checkpoint: values are
// mean + std·z with z of unit variance, drawn deterministically from the
// seed and the tensor's name.
type synthTensor struct {
	name      string
	shape     []int
	mean, std float64
}

// synthTensors lists the weights of c in Hugging Face order: the layers'
// weights are those the loader reads (layerWeights).
func synthTensors(c Config) []synthTensor {
	d := c.HiddenSize
	inv := func(n int) float64 { return 1 / math.Sqrt(float64(n)) }
	// Norm weights are 1 ± 0.1, as factors: Gemma stores them minus one.
	normMean := 1.0
	if c.arch().NormPlusOne {
		normMean = 0
	}
	// The embedding (std 1), and BLOOM's LayerNorm after it.
	var ts []synthTensor
	for _, w := range modelWeights(c) {
		if w.part != partEmbed {
			continue
		}
		t := synthTensor{w.name, w.shape, 0, 0.1}
		if len(w.shape) == 2 {
			t.std = 1
		} else if strings.HasSuffix(w.name, ".weight") {
			t.mean = normMean
		}
		ts = append(ts, t)
	}
	for i := 0; i < c.NumLayers; i++ {
		for _, w := range layerWeights(c) {
			t := synthTensor{c.layerPrefix(i) + w.name, w.shape, 0, 0.1}
			switch {
			case len(w.shape) == 2:
				t.std = inv(w.shape[1])
			case strings.HasSuffix(w.name, "layernorm.weight"):
				t.mean = normMean
				if c.arch().LayerNorm {
					t.mean = 1
				}
			case strings.HasSuffix(w.name, "_norm.weight"):
				t.mean = 1 // Qwen3's q_norm and k_norm: plain RMSNorm
			}
			ts = append(ts, t)
		}
	}
	for _, w := range modelWeights(c) {
		if w.part == partFinal {
			t := synthTensor{w.name, w.shape, 0, 0.1}
			if strings.HasSuffix(w.name, ".weight") {
				t.mean = normMean
			}
			ts = append(ts, t)
		}
	}
	if !c.TieWordEmbeddings {
		ts = append(ts, synthTensor{"lm_head.weight", []int{c.VocabSize, d}, 0, inv(d)})
	}
	return ts
}

// writer returns the function that streams the tensor's bytes in dtype dt.
// Values come in blocks of synthBlock elements, each from its own PCG
// stream (seed, hash(name)+block), generated in parallel; z is an
// Irwin–Hall sum of four 16-bit uniforms scaled to unit variance.
func (s synthTensor) writer(seed uint64, dt engine.DType) func(io.Writer) error {
	return func(w io.Writer) error {
		h := fnv.New64a()
		h.Write([]byte(s.name))
		key := h.Sum64()
		n := engine.Numel(s.shape)
		const synthBlock = 1 << 16
		const group = 256 // blocks generated per write
		es := dt.Size()
		buf := make([]byte, group*synthBlock*es)
		for g0 := 0; g0*synthBlock < n; g0 += group {
			lo := g0 * synthBlock
			hi := min(n, (g0+group)*synthBlock)
			nb := (hi - lo + synthBlock - 1) / synthBlock
			engine.ParallelFor(nb, func(b int) {
				r := rand.New(rand.NewPCG(seed, key+uint64(g0+b)))
				i0 := lo + b*synthBlock
				i1 := min(hi, i0+synthBlock)
				for i := i0; i < i1; i++ {
					u := r.Uint64()
					z := (float64(u&0xffff)+float64(u>>16&0xffff)+float64(u>>32&0xffff)+float64(u>>48)+2)/65536 - 2
					v := float32(s.mean + s.std*z*math.Sqrt(3))
					o := buf[(i-lo)*es:]
					switch dt {
					case engine.F32:
						binary.LittleEndian.PutUint32(o, math.Float32bits(v))
					case engine.BF16:
						binary.LittleEndian.PutUint16(o, kernels.F32ToBF16(v))
					default:
						binary.LittleEndian.PutUint16(o, kernels.F32ToF16(v))
					}
				}
			})
			if _, err := w.Write(buf[:(hi-lo)*es]); err != nil {
				return err
			}
		}
		return nil
	}
}

// quantEntries are the tensors of a 4-bit Linear weight (see
// SynthOptions.Quant), streamed: random codes, block scales of the
// weight's deviation times 2.2-2.6, the code table, the quant_state.
func (s synthTensor) quantEntries(seed uint64, kind quant.Kind) []stEntry {
	h := fnv.New64a()
	h.Write([]byte(s.name))
	key := h.Sum64()
	rows, cols := s.shape[0], s.shape[1]
	n := rows * cols
	blocks := quant.Blocks(n, QuantBlocksize)
	meta := &quant.Tensor{Kind: kind, Blocksize: QuantBlocksize, Rows: rows, Cols: cols, DType: quant.F16}
	blob := func(name string, b quant.Blob) stEntry {
		e := stEntry{Name: name, Shape: b.Shape, Bytes: b.DType == "U8", Write: func(w io.Writer) error {
			_, err := w.Write(b.Data)
			return err
		}}
		if b.DType == "F32" {
			e.DType = engine.F32
		}
		return e
	}
	return []stEntry{
		{Name: s.name, Shape: []int{quant.PackedLen(n), 1}, Bytes: true, Write: func(w io.Writer) error {
			const chunk = 1 << 24
			buf := make([]byte, chunk)
			for off, i := 0, uint64(0); off < quant.PackedLen(n); off, i = off+chunk, i+1 {
				b := buf[:min(chunk, quant.PackedLen(n)-off)]
				engine.ParallelFor((len(b)+4095)/4096, func(j int) {
					r := rand.New(rand.NewPCG(seed, key+i<<20+uint64(j)))
					for k := j * 4096; k < min(len(b), (j+1)*4096); k++ {
						b[k] = byte(r.Uint32())
					}
				})
				if _, err := w.Write(b); err != nil {
					return err
				}
			}
			return nil
		}},
		{Name: s.name + ".absmax", DType: engine.F32, Shape: []int{blocks}, Write: func(w io.Writer) error {
			r := rand.New(rand.NewPCG(seed, key^0xab5))
			buf := make([]byte, 4*blocks)
			for b := range blocks {
				binary.LittleEndian.PutUint32(buf[4*b:], math.Float32bits(float32(s.std*(2.2+0.4*r.Float64()))))
			}
			_, err := w.Write(buf)
			return err
		}},
		blob(s.name+".quant_map", quant.QuantMapBlob(kind)),
		blob(s.name+".quant_state.bitsandbytes__"+kind.String(), quant.StateBlob(meta)),
	}
}

// Synth writes a synthetic checkpoint to dir in Hugging Face layout:
// config.json, generation_config.json, model.safetensors (or shards with
// model.safetensors.index.json when larger than opts.ShardBytes), and
// tokenizer.json with tokenizer_config.json when a tokenizer is given or
// can be synthesised. Weights are deterministic in opts.Seed and scaled so
// that activations stay of order one through the layers: linear weights
// have standard deviation 1/sqrt(fan_in), the embedding 1, and norm weights
// are 1 ± 0.1.
func Synth(dir string, opts SynthOptions) error {
	if opts.DType > engine.F16 {
		return fmt.Errorf("synth: unknown dtype %v", opts.DType)
	}
	var kind quant.Kind
	if opts.Quant != "" {
		var err error
		if kind, err = quant.ParseKind(opts.Quant); err != nil {
			return fmt.Errorf("synth: %v", err)
		}
		if opts.DType == engine.BF16 {
			return fmt.Errorf("synth: a 4-bit checkpoint holds its other weights as f16 (transformers' default for 4-bit); bf16 was asked")
		}
		opts.DType = engine.F16
	}
	tokJSON, tokCfg := opts.TokenizerJSON, opts.TokenizerConfigJSON
	vocab := opts.Vocab
	if vocab <= 0 {
		c0, err := SynthConfig(opts)
		if err != nil {
			return err
		}
		vocab = c0.VocabSize
	}
	if tokJSON == nil && SynthTokenizer != nil {
		var err error
		words := opts.Words
		if len(words) == 0 {
			words = DefaultSynthWords
		}
		tokJSON, tokCfg, err = SynthTokenizer(words, vocab)
		if err != nil {
			return fmt.Errorf("synth: tokenizer: %w", err)
		}
	}
	if tokJSON != nil && opts.BOS == nil && opts.EOS == nil {
		opts.BOS, opts.EOS = specialIDs(tokJSON)
	}
	c, err := SynthConfig(opts)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if opts.Quant != "" {
		c.Quantization = &QuantizationConfig{QuantMethod: "bitsandbytes", LoadIn4bit: true, QuantType: opts.Quant,
			ComputeDType: "bfloat16", QuantStorage: "uint8"}
	}
	cj, err := c.ConfigJSON()
	if err != nil {
		return err
	}
	if err := atomicfs.WriteFile(filepath.Join(dir, "config.json"), cj); err != nil {
		return err
	}
	gen := map[string]any{"_from_model_config": true, "do_sample": false}
	if len(c.BOSTokenID) > 0 {
		gen["bos_token_id"] = c.BOSTokenID[0]
	}
	if len(c.EOSTokenID) > 0 {
		gen["eos_token_id"] = c.EOSTokenID
	}
	gj, _ := json.MarshalIndent(gen, "", "  ")
	if err := atomicfs.WriteFile(filepath.Join(dir, "generation_config.json"), gj); err != nil {
		return err
	}
	if tokJSON != nil {
		if err := atomicfs.WriteFile(filepath.Join(dir, "tokenizer.json"), tokJSON); err != nil {
			return err
		}
		if tokCfg != nil {
			if err := atomicfs.WriteFile(filepath.Join(dir, "tokenizer_config.json"), tokCfg); err != nil {
				return err
			}
		}
	}

	var entries []stEntry
	embed := c.arch().Names.Embed + ".weight"
	for _, st := range synthTensors(c) {
		if opts.Quant != "" && len(st.shape) == 2 && st.name != embed && st.name != "lm_head.weight" {
			entries = append(entries, st.quantEntries(opts.Seed, kind)...)
			continue
		}
		entries = append(entries, stEntry{Name: st.name, DType: opts.DType, Shape: st.shape, Write: st.writer(opts.Seed, opts.DType)})
	}
	return writeShards(dir, entries, map[string]string{"format": "pt"}, opts.ShardBytes)
}

// specialIDs finds the ids of the begin- and end-of-text tokens among a
// tokenizer.json's added_tokens (nil when absent).
func specialIDs(tokJSON []byte) (bos, eos []int) {
	var tj struct {
		AddedTokens []struct {
			ID      int    `json:"id"`
			Content string `json:"content"`
		} `json:"added_tokens"`
	}
	if json.Unmarshal(tokJSON, &tj) != nil {
		return nil, nil
	}
	for _, t := range tj.AddedTokens {
		switch t.Content {
		case "<|begin_of_text|>", "<s>", "<bos>":
			bos = append(bos, t.ID)
		case "<|end_of_text|>", "</s>", "<eos>", "<|eot_id|>":
			eos = append(eos, t.ID)
		}
	}
	return bos, eos
}
