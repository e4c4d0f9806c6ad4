package gguf

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"strings"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/kernels"
	"github.com/tli-project/tli/llama"
)

// ExportOptions controls ExportLlama.
type ExportOptions struct {
	// DType is the type of the matrices (embedding, attention and MLP
	// weights, LM head): F32, F16 or BF16. Norm weights and rope_freqs are
	// always F32, as llama.cpp's converter writes them.
	DType engine.DType
	// Name is general.name (default: the checkpoint folder's name).
	Name string
	// Q8_0 stores the matrices whose rows are a multiple of 32 elements as
	// Q8_0 (llama.cpp's 8-bit blocks), the others as DType, as the
	// converter's --outtype q8_0 does (with DType F16).
	Q8_0 bool
}

// llama_ftype values of general.file_type.
func fileType(d engine.DType, q8 bool) uint32 {
	if q8 {
		return 7
	}
	switch d {
	case engine.F16:
		return 1
	case engine.BF16:
		return 32
	}
	return 0
}

func tensorType(d engine.DType) TensorType {
	switch d {
	case engine.F16:
		return F16
	case engine.BF16:
		return BF16
	}
	return F32
}

// archOf is llama.cpp's architecture for cfg's family and whether the
// q/k rows are permuted for it: llama.cpp's llama architecture rotates
// interleaved pairs (the converter permutes Hugging Face's rotate-half
// rows), qwen2 and qwen3 rotate halves as Hugging Face does.
func archOf(cfg llama.Config) (arch string, permute bool, err error) {
	name := "llama"
	if cfg.Arch != nil {
		name = cfg.Arch.Name
	}
	switch name {
	case "llama", "mistral":
		arch, permute = "llama", true
	case "qwen2", "qwen3":
		arch = name
	case "gemma":
		arch = name
		if !cfg.TieWordEmbeddings {
			return "", false, fmt.Errorf("gguf: a Gemma checkpoint with an untied lm_head is not exported (llama.cpp's gemma takes the embedding as the head)")
		}
	default:
		return "", false, fmt.Errorf("gguf: export supports model_type llama, mistral, qwen2, qwen3 and gemma for now; this checkpoint is model_type %q", name)
	}
	for i := 0; i < cfg.NumLayers; i++ {
		if w := cfg.WindowAt(i); w > 0 && w < cfg.MaxPositionEmbeddings {
			return "", false, fmt.Errorf("gguf: layer %d attends to a sliding window of %d positions, which llama.cpp's %s architecture does not apply: its results would differ past %d tokens", i, w, arch, w)
		}
	}
	return arch, permute, nil
}

// CheckLlama returns an error when cfg is not a checkpoint ExportLlama can
// write: a Llama-like family llama.cpp runs the same way (llama, mistral
// without a sliding window, qwen2, qwen3, gemma with a tied head), with a
// rope scaling llama.cpp computes the same way.
func CheckLlama(cfg llama.Config) error {
	arch, _, err := archOf(cfg)
	if err != nil {
		return err
	}
	switch cfg.RopeScaling.Type {
	case "", "default", "linear":
	case "llama3":
		if arch != "llama" {
			return fmt.Errorf("gguf: llama3 rope scaling on a %s checkpoint is not exported", arch)
		}
	default:
		return fmt.Errorf("gguf: rope_scaling type %q is not exported (llama.cpp computes it differently); supported: llama3, linear", cfg.RopeScaling.Type)
	}
	if cfg.HeadDim%2 != 0 {
		return fmt.Errorf("gguf: head_dim %d is odd", cfg.HeadDim)
	}
	return nil
}

// ExportLlama writes m (every layer and the LM head loaded, e.g. with an
// adapter merged) and the tokenizer in tokDir (tokenizer.json and
// tokenizer_config.json) as a GGUF file at path, atomically.
//
// What it writes follows llama.cpp's convert_hf_to_gguf.py for
// LlamaForCausalLM (and MistralForCausalLM, Qwen2ForCausalLM,
// Qwen3ForCausalLM, GemmaForCausalLM, whose norms are stored as 1+w): the
// llama.* (qwen2.*, qwen3.*, gemma.*) hyperparameters,
// tensors named token_embd, blk.N.attn_q ... output_norm, output (absent
// when tied), for the llama architecture the rows of attn_q and attn_k
// permuted from Hugging Face's rotate-half layout to the interleaved pairs
// llama.cpp rotates, rope_freqs for llama3 rope scaling, and the tokenizer
// as tokenizer.ggml.* (gpt2 with its pre-tokenizer name for byte-level
// BPE, llama with scores for SentencePiece-style BPE).
func ExportLlama(path string, m *llama.Model, tokDir string, opt ExportOptions) error {
	c := m.Config
	if err := CheckLlama(c); err != nil {
		return err
	}
	arch, permute, _ := archOf(c)
	if opt.DType != engine.F32 && opt.DType != engine.F16 && opt.DType != engine.BF16 {
		return fmt.Errorf("gguf: dtype %v: want f32, f16 or bf16", opt.DType)
	}
	for i, L := range m.Layers {
		if L == nil {
			return fmt.Errorf("gguf: layer %d is not loaded", i)
		}
	}
	if m.Norm == nil || (m.LMHead == nil && !c.TieWordEmbeddings) {
		return fmt.Errorf("gguf: the final norm and the LM head are not loaded")
	}
	voc, err := readVocab(tokDir, c.VocabSize)
	if err != nil {
		return err
	}
	name := opt.Name
	if name == "" {
		name = filepath.Base(filepath.Clean(m.Dir))
	}
	a := arch + "."
	kvs := []KV{
		{"general.architecture", arch},
		{"general.type", "model"},
		{"general.name", name},
		{"general.file_type", fileType(opt.DType, opt.Q8_0)},
		{"general.quantization_version", uint32(2)},
		{a + "vocab_size", uint32(c.VocabSize)},
		{a + "context_length", uint32(c.MaxPositionEmbeddings)},
		{a + "embedding_length", uint32(c.HiddenSize)},
		{a + "block_count", uint32(c.NumLayers)},
		{a + "feed_forward_length", uint32(c.IntermediateSize)},
		{a + "attention.head_count", uint32(c.NumHeads)},
		{a + "attention.head_count_kv", uint32(c.NumKVHeads)},
		{a + "rope.freq_base", float32(c.RopeTheta)},
		{a + "attention.layer_norm_rms_epsilon", float32(c.RMSNormEps)},
		{a + "attention.key_length", uint32(c.HeadDim)},
		{a + "attention.value_length", uint32(c.HeadDim)},
		{a + "rope.dimension_count", uint32(c.HeadDim)},
	}
	if c.RopeScaling.Type == "linear" {
		kvs = append(kvs, KV{a + "rope.scaling.type", "linear"}, KV{a + "rope.scaling.factor", float32(c.RopeScaling.Factor)})
	}
	kvs = append(kvs, voc.kvs()...)

	mat := func(name string, t *engine.Tensor, perm int) Tensor {
		if opt.Q8_0 && t.Cols()%q8Block == 0 {
			return matrixQ8(name, t, perm, c.HeadDim)
		}
		return matrix(name, t, opt.DType, perm, c.HeadDim)
	}
	vec := func(name string, v []float32) Tensor {
		return Tensor{Name: name, Dims: []uint64{uint64(len(v))}, Type: F32, Data: func(w io.Writer) error { return writeF32(w, v) }}
	}
	// Gemma's RMSNorm multiplies by 1+w; llama.cpp's by w, so the
	// converter stores 1+w.
	norm := vec
	if c.Arch != nil && c.Arch.NormPlusOne {
		norm = func(name string, v []float32) Tensor {
			w := make([]float32, len(v))
			for i, x := range v {
				w[i] = x + 1
			}
			return vec(name, w)
		}
	}
	ts := []Tensor{mat("token_embd.weight", m.Embed, 0)}
	if c.RopeScaling.Type == "llama3" {
		ts = append(ts, vec("rope_freqs.weight", llama3Factors(c)))
	}
	qHeads, kHeads := 0, 0
	if permute {
		qHeads, kHeads = c.NumHeads, c.NumKVHeads
	}
	for i, L := range m.Layers {
		p := fmt.Sprintf("blk.%d.", i)
		ts = append(ts, norm(p+"attn_norm.weight", L.AttnNorm))
		if L.QBias != nil { // Qwen2 (no permutation: llama.cpp's qwen2 rotates halves)
			ts = append(ts, vec(p+"attn_q.bias", L.QBias), vec(p+"attn_k.bias", L.KBias), vec(p+"attn_v.bias", L.VBias))
		}
		if L.QNorm != nil { // Qwen3
			ts = append(ts, vec(p+"attn_q_norm.weight", L.QNorm), vec(p+"attn_k_norm.weight", L.KNorm))
		}
		ts = append(ts,
			mat(p+"attn_q.weight", L.Q, qHeads),
			mat(p+"attn_k.weight", L.K, kHeads),
			mat(p+"attn_v.weight", L.V, 0),
			mat(p+"attn_output.weight", L.O, 0),
			norm(p+"ffn_norm.weight", L.MLPNorm),
			mat(p+"ffn_gate.weight", L.Gate, 0),
			mat(p+"ffn_up.weight", L.Up, 0),
			mat(p+"ffn_down.weight", L.Down, 0),
		)
	}
	ts = append(ts, norm("output_norm.weight", m.Norm))
	if !c.TieWordEmbeddings {
		ts = append(ts, mat("output.weight", m.LMHead, 0))
	}
	return WriteFile(path, kvs, ts)
}

// PermuteRow is the Hugging Face row that row o of a GGUF attn_q or attn_k
// weight holds: within each head of headDim rows, llama.cpp's converter
// interleaves the two halves that Hugging Face's rotate-half pairs
// (output rows 2j and 2j+1 are input rows j and j+headDim/2).
func PermuteRow(o, headDim int) int {
	h, r := o/headDim, o%headDim
	return h*headDim + (r%2)*(headDim/2) + r/2
}

// matrix is a 2-D weight [out×in] as a GGUF tensor of dims {in, out} in
// dtype d; with heads > 0 its rows are permuted (PermuteRow) per head of
// headDim rows.
func matrix(name string, t *engine.Tensor, d engine.DType, heads, headDim int) Tensor {
	rows, cols := t.Rows(), t.Cols()
	return Tensor{Name: name, Dims: []uint64{uint64(cols), uint64(rows)}, Type: tensorType(d), Data: func(w io.Writer) error {
		if heads > 0 && rows != heads*headDim {
			return fmt.Errorf("%d rows, want %d heads × %d", rows, heads, headDim)
		}
		row := make([]float32, cols)
		buf := make([]byte, cols*d.Size())
		for o := 0; o < rows; o++ {
			src := o
			if heads > 0 {
				src = PermuteRow(o, headDim)
			}
			t.Row(src, row)
			for i, v := range row {
				switch d {
				case engine.F32:
					binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
				case engine.BF16:
					binary.LittleEndian.PutUint16(buf[2*i:], kernels.F32ToBF16(v))
				case engine.F16:
					h := kernels.F32ToF16(v)
					if h&0x7c00 == 0x7c00 && !math.IsInf(float64(v), 0) && !math.IsNaN(float64(v)) {
						return fmt.Errorf("value %g at row %d, column %d overflows f16 (use --dtype bf16 or f32)", v, src, i)
					}
					binary.LittleEndian.PutUint16(buf[2*i:], h)
				}
			}
			if _, err := w.Write(buf); err != nil {
				return err
			}
		}
		return nil
	}}
}

// matrixQ8 is matrix for Q8_0 (t.Cols() a multiple of 32): each block of
// 32 values x of a row becomes d = max|x|/127 (stored as f16) and
// q = round(x/d) (half away from zero), as ggml's quantize_row_q8_0_ref.
func matrixQ8(name string, t *engine.Tensor, heads, headDim int) Tensor {
	rows, cols := t.Rows(), t.Cols()
	return Tensor{Name: name, Dims: []uint64{uint64(cols), uint64(rows)}, Type: Q8_0, Data: func(w io.Writer) error {
		if heads > 0 && rows != heads*headDim {
			return fmt.Errorf("%d rows, want %d heads × %d", rows, heads, headDim)
		}
		row := make([]float32, cols)
		buf := make([]byte, cols/q8Block*q8BlockSize)
		for o := 0; o < rows; o++ {
			src := o
			if heads > 0 {
				src = PermuteRow(o, headDim)
			}
			t.Row(src, row)
			for b := 0; b < cols/q8Block; b++ {
				QuantizeQ8Block(buf[b*q8BlockSize:(b+1)*q8BlockSize], row[b*q8Block:(b+1)*q8Block])
			}
			if _, err := w.Write(buf); err != nil {
				return err
			}
		}
		return nil
	}}
}

// QuantizeQ8Block writes the Q8_0 block (34 bytes) of 32 values x to dst.
func QuantizeQ8Block(dst []byte, x []float32) {
	var amax float32
	for _, v := range x {
		amax = max(amax, float32(math.Abs(float64(v))))
	}
	d := amax / 127
	var id float32
	if d != 0 {
		id = 1 / d
	}
	binary.LittleEndian.PutUint16(dst, kernels.F32ToF16(d))
	for j, v := range x {
		dst[2+j] = byte(int8(math.Round(float64(v * id))))
	}
}

// DequantizeQ8 returns the values of Q8_0 data.
func DequantizeQ8(b []byte) []float32 {
	out := make([]float32, 0, len(b)/q8BlockSize*q8Block)
	for ; len(b) >= q8BlockSize; b = b[q8BlockSize:] {
		d := kernels.F16ToF32(binary.LittleEndian.Uint16(b))
		for j := 0; j < q8Block; j++ {
			out = append(out, d*float32(int8(b[2+j])))
		}
	}
	return out
}

func writeF32(w io.Writer, v []float32) error {
	buf := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(x))
	}
	_, err := w.Write(buf)
	return err
}

// llama3Factors are the rope_freqs values of llama3 rope scaling, as the
// converter computes them: llama.cpp divides each frequency of the
// unscaled rope by its factor (1 for high frequencies, rope_scaling.factor
// for low ones, interpolated between).
func llama3Factors(c llama.Config) []float32 {
	rs := c.RopeScaling
	dim := c.HeadDim
	factor := rs.Factor
	if factor == 0 {
		factor = 8
	}
	low, high := rs.LowFreqFactor, rs.HighFreqFactor
	if low == 0 {
		low = 1
	}
	if high == 0 {
		high = 4
	}
	old := float64(rs.OriginalMaxPositionEmbeddings)
	if old == 0 {
		old = 8192
	}
	lowWave, highWave := old/low, old/high
	out := make([]float32, dim/2)
	for i := range out {
		// The converter computes the frequencies in float32.
		freq := float64(float32(1 / math.Pow(c.RopeTheta, float64(2*i)/float64(dim))))
		wave := 2 * math.Pi / freq
		switch {
		case wave < highWave:
			out[i] = 1
		case wave > lowWave:
			out[i] = float32(factor)
		default:
			smooth := (old/wave - low) / (high - low)
			out[i] = float32(1 / ((1-smooth)/factor + smooth))
		}
	}
	return out
}

// Name maps a Hugging Face weight name of a Llama-like checkpoint to its GGUF
// name ("model.layers.3.self_attn.q_proj.weight" -> "blk.3.attn_q.weight"),
// or "" when it has none.
func Name(hf string) string {
	switch hf {
	case "model.embed_tokens.weight":
		return "token_embd.weight"
	case "model.norm.weight":
		return "output_norm.weight"
	case "lm_head.weight":
		return "output.weight"
	}
	rest, ok := strings.CutPrefix(hf, "model.layers.")
	if !ok {
		return ""
	}
	num, mod, ok := strings.Cut(rest, ".")
	if !ok {
		return ""
	}
	g, ok := layerNames[mod]
	if !ok {
		return ""
	}
	return "blk." + num + "." + g
}

var layerNames = map[string]string{
	"input_layernorm.weight":          "attn_norm.weight",
	"self_attn.q_proj.bias":           "attn_q.bias",
	"self_attn.k_proj.bias":           "attn_k.bias",
	"self_attn.v_proj.bias":           "attn_v.bias",
	"self_attn.q_norm.weight":         "attn_q_norm.weight",
	"self_attn.k_norm.weight":         "attn_k_norm.weight",
	"self_attn.q_proj.weight":         "attn_q.weight",
	"self_attn.k_proj.weight":         "attn_k.weight",
	"self_attn.v_proj.weight":         "attn_v.weight",
	"self_attn.o_proj.weight":         "attn_output.weight",
	"post_attention_layernorm.weight": "ffn_norm.weight",
	"mlp.gate_proj.weight":            "ffn_gate.weight",
	"mlp.up_proj.weight":              "ffn_up.weight",
	"mlp.down_proj.weight":            "ffn_down.weight",
}
