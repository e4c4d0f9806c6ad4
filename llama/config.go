package llama

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/tli-project/tli/engine"
)

// Config is the part of a causal LM's config.json that tli uses.
type Config struct {
	// Arch is the model family, from model_type and architectures (nil:
	// Llama).
	Arch                  *Arch              `json:"-"`
	ModelType             string             `json:"model_type"`
	Architectures         []string           `json:"architectures"`
	HiddenSize            int                `json:"hidden_size"`
	IntermediateSize      int                `json:"intermediate_size"`
	NumLayers             int                `json:"num_hidden_layers"`
	NumHeads              int                `json:"num_attention_heads"`
	NumKVHeads            int                `json:"num_key_value_heads"`
	HeadDim               int                `json:"head_dim"`
	RMSNormEps            float64            `json:"rms_norm_eps"` // the norms' eps (BLOOM: layer_norm_epsilon)
	RopeTheta             float64            `json:"rope_theta"`
	RopeScaling           engine.RopeScaling `json:"-"`
	MaxPositionEmbeddings int                `json:"max_position_embeddings"`
	VocabSize             int                `json:"vocab_size"`
	TieWordEmbeddings     bool               `json:"tie_word_embeddings"`
	BOSTokenID            []int              `json:"-"`
	EOSTokenID            []int              `json:"-"`
	TorchDType            string             `json:"torch_dtype"` // torch_dtype, or dtype (transformers >= 4.56) when present
	// Features tli does not implement; ParseConfig reads them so that a
	// checkpoint using them is refused instead of silently misread.
	AttentionBias bool   `json:"attention_bias"`
	MLPBias       bool   `json:"mlp_bias"`
	HiddenAct     string `json:"hidden_act"`
	// HiddenActivation is Gemma's activation key (transformers ignores
	// hidden_act for Gemma; "" means gelu_pytorch_tanh).
	HiddenActivation string `json:"hidden_activation"`
	// SlidingWindow is config.json's sliding_window (0: none or null);
	// UseSlidingWindow, MaxWindowLayers and LayerTypes say which layers use
	// it (Arch.Window).
	SlidingWindow    int      `json:"sliding_window"`
	UseSlidingWindow bool     `json:"use_sliding_window"`
	MaxWindowLayers  int      `json:"max_window_layers"`
	LayerTypes       []string `json:"layer_types"`
	// Gemma 2: the attention's scale is QueryPreAttnScalar^-0.5 (0: 1/sqrt(head_dim)),
	// scores and logits are soft-capped (0: not).
	QueryPreAttnScalar    float64 `json:"query_pre_attn_scalar"`
	AttnLogitSoftcapping  float64 `json:"attn_logit_softcapping"`
	FinalLogitSoftcapping float64 `json:"final_logit_softcapping"`
	// ResidualPostNorm is BLOOM's apply_residual_connection_post_layernorm:
	// the residual added to each block's output is the normed input.
	ResidualPostNorm bool `json:"apply_residual_connection_post_layernorm"`

	// Quantization is config.json's quantization_config of a checkpoint
	// saved 4-bit by transformers (nil when absent).
	Quantization *QuantizationConfig `json:"quantization_config,omitempty"`
}

// QuantizationConfig is the part of transformers' BitsAndBytesConfig that
// a 4-bit checkpoint's config.json records and tli reads.
type QuantizationConfig struct {
	QuantMethod  string   `json:"quant_method"`
	LoadIn4bit   bool     `json:"load_in_4bit"`
	LoadIn8bit   bool     `json:"load_in_8bit"`
	QuantType    string   `json:"bnb_4bit_quant_type"`
	ComputeDType string   `json:"bnb_4bit_compute_dtype"`
	DoubleQuant  bool     `json:"bnb_4bit_use_double_quant"`
	QuantStorage string   `json:"bnb_4bit_quant_storage,omitempty"`
	SkipModules  []string `json:"llm_int8_skip_modules,omitempty"`
}

// check refuses what tli cannot compute the way transformers would.
func (q *QuantizationConfig) check() error {
	switch {
	case q.QuantMethod != "" && q.QuantMethod != "bitsandbytes":
		return fmt.Errorf("quantization_config: quant_method %q is not supported (tli reads bitsandbytes 4-bit checkpoints)", q.QuantMethod)
	case q.LoadIn8bit:
		return fmt.Errorf("quantization_config: load_in_8bit is not supported (tli reads bitsandbytes 4-bit checkpoints)")
	case !q.LoadIn4bit:
		return fmt.Errorf("quantization_config: load_in_4bit is not true: not a 4-bit checkpoint tli can read")
	case q.ComputeDType != "" && q.ComputeDType != "bfloat16":
		return fmt.Errorf("quantization_config: bnb_4bit_compute_dtype %q is not supported (tli computes 4-bit products in bfloat16)", q.ComputeDType)
	}
	return nil
}

// ParseConfig decodes config.json text; name is used in error messages.
func ParseConfig(data []byte, name string) (Config, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return Config{}, fmt.Errorf("%s: not a JSON object: %v", name, err)
	}
	// Older and BLOOM configs name some sizes differently (BloomConfig's
	// attribute_map): read them when the usual key is absent.
	for old, key := range map[string]string{"n_layer": "num_hidden_layers", "n_head": "num_attention_heads",
		"n_embed": "hidden_size", "layer_norm_epsilon": "rms_norm_eps"} {
		if v, ok := raw[old]; ok {
			// BloomConfig takes the legacy n_embed over hidden_size.
			if _, have := raw[key]; !have || old == "n_embed" {
				raw[key] = v
			}
		}
	}
	var c Config
	c.RMSNormEps = 1e-6
	c.RopeTheta = 10000
	c.MaxPositionEmbeddings = 2048
	c.TieWordEmbeddings = false
	c.MaxWindowLayers = -1 // absent: the family's default, below
	ints := map[string]*int{
		"hidden_size": &c.HiddenSize, "intermediate_size": &c.IntermediateSize,
		"num_hidden_layers": &c.NumLayers, "num_attention_heads": &c.NumHeads,
		"num_key_value_heads": &c.NumKVHeads, "head_dim": &c.HeadDim,
		"max_position_embeddings": &c.MaxPositionEmbeddings, "vocab_size": &c.VocabSize,
		"sliding_window": &c.SlidingWindow, "max_window_layers": &c.MaxWindowLayers,
	}
	for k, p := range ints {
		if v, ok := raw[k]; ok && string(v) != "null" {
			if err := json.Unmarshal(v, p); err != nil {
				return Config{}, fmt.Errorf("%s: field %q: want an integer, got %s", name, k, v)
			}
		}
	}
	floats := map[string]*float64{"rms_norm_eps": &c.RMSNormEps, "rope_theta": &c.RopeTheta,
		"query_pre_attn_scalar": &c.QueryPreAttnScalar, "attn_logit_softcapping": &c.AttnLogitSoftcapping,
		"final_logit_softcapping": &c.FinalLogitSoftcapping}
	for k, p := range floats {
		if v, ok := raw[k]; ok && string(v) != "null" {
			if err := json.Unmarshal(v, p); err != nil {
				return Config{}, fmt.Errorf("%s: field %q: want a number, got %s", name, k, v)
			}
		}
	}
	if v, ok := raw["tie_word_embeddings"]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &c.TieWordEmbeddings); err != nil {
			return Config{}, fmt.Errorf("%s: field \"tie_word_embeddings\": want true or false, got %s", name, v)
		}
	}
	for k, p := range map[string]*[]string{"architectures": &c.Architectures, "layer_types": &c.LayerTypes} {
		if v, ok := raw[k]; ok && string(v) != "null" {
			if err := json.Unmarshal(v, p); err != nil {
				return Config{}, fmt.Errorf("%s: field %q: want a list of strings, got %s", name, k, v)
			}
		}
	}
	for k, p := range map[string]*string{"torch_dtype": &c.TorchDType, "hidden_act": &c.HiddenAct, "model_type": &c.ModelType,
		"hidden_activation": &c.HiddenActivation} {
		if v, ok := raw[k]; ok && string(v) != "null" {
			if err := json.Unmarshal(v, p); err != nil {
				return Config{}, fmt.Errorf("%s: field %q: want a string, got %s", name, k, v)
			}
		}
	}
	if v, ok := raw["quantization_config"]; ok && string(v) != "null" {
		c.Quantization = new(QuantizationConfig)
		if err := json.Unmarshal(v, c.Quantization); err != nil {
			return Config{}, fmt.Errorf("%s: field \"quantization_config\": %v", name, err)
		}
		if err := c.Quantization.check(); err != nil {
			return Config{}, fmt.Errorf("%s: %v", name, err)
		}
	}
	// transformers >= 4.56 writes dtype instead of torch_dtype; when both
	// are there, dtype wins, as transformers reads them.
	if v, ok := raw["dtype"]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &c.TorchDType); err != nil {
			return Config{}, fmt.Errorf("%s: field \"dtype\": want a string, got %s", name, v)
		}
	}
	for k, p := range map[string]*bool{"attention_bias": &c.AttentionBias, "mlp_bias": &c.MLPBias, "use_sliding_window": &c.UseSlidingWindow,
		"apply_residual_connection_post_layernorm": &c.ResidualPostNorm} {
		if v, ok := raw[k]; ok && string(v) != "null" {
			if err := json.Unmarshal(v, p); err != nil {
				return Config{}, fmt.Errorf("%s: field %q: want true or false, got %s", name, k, v)
			}
		}
	}
	for k, p := range map[string]*[]int{"bos_token_id": &c.BOSTokenID, "eos_token_id": &c.EOSTokenID} {
		v, ok := raw[k]
		if !ok || string(v) == "null" {
			continue
		}
		var one int
		if err := json.Unmarshal(v, &one); err == nil {
			*p = []int{one}
			continue
		}
		if err := json.Unmarshal(v, p); err != nil {
			return Config{}, fmt.Errorf("%s: field %q: want an integer or a list of integers, got %s", name, k, v)
		}
	}
	if v, ok := raw["rope_scaling"]; ok && string(v) != "null" {
		var rs struct {
			Type           string  `json:"type"`
			RopeType       string  `json:"rope_type"`
			Factor         float64 `json:"factor"`
			LowFreqFactor  float64 `json:"low_freq_factor"`
			HighFreqFactor float64 `json:"high_freq_factor"`
			OrigMax        int     `json:"original_max_position_embeddings"`
		}
		if err := json.Unmarshal(v, &rs); err != nil {
			return Config{}, fmt.Errorf("%s: field \"rope_scaling\": %v", name, err)
		}
		t := rs.RopeType
		if t == "" {
			t = rs.Type
		}
		c.RopeScaling = engine.RopeScaling{Type: t, Factor: rs.Factor, LowFreqFactor: rs.LowFreqFactor,
			HighFreqFactor: rs.HighFreqFactor, OriginalMaxPositionEmbeddings: rs.OrigMax}
	}
	arch, err := resolveArch(c.ModelType, c.Architectures)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %v", name, err)
	}
	c.Arch = arch
	if _, ok := raw["tie_word_embeddings"]; !ok {
		c.TieWordEmbeddings = arch.TiedByDefault
	}
	if c.MaxWindowLayers < 0 {
		c.MaxWindowLayers = 28 // transformers' Qwen2/Qwen3 default
	}
	if arch.PlainMLP && c.IntermediateSize == 0 {
		c.IntermediateSize = 4 * c.HiddenSize // BLOOM's MLP width
	}
	if _, ok := raw["max_position_embeddings"]; !ok && arch.ALiBi {
		// ALiBi has no position table: transformers sets no limit.
		c.MaxPositionEmbeddings = LimitPositions
	}
	if arch.SoftCaps {
		// Gemma2Config's defaults (a key given as null means none).
		for k, p := range map[string]*float64{"query_pre_attn_scalar": &c.QueryPreAttnScalar, "attn_logit_softcapping": &c.AttnLogitSoftcapping,
			"final_logit_softcapping": &c.FinalLogitSoftcapping} {
			if _, ok := raw[k]; !ok {
				*p = map[string]float64{"query_pre_attn_scalar": 256, "attn_logit_softcapping": 50, "final_logit_softcapping": 30}[k]
			}
		}
		if _, ok := raw["sliding_window"]; !ok {
			c.SlidingWindow = 4096
		}
	}
	if arch.FusedQKV {
		// BloomConfig's defaults.
		if _, ok := raw["rms_norm_eps"]; !ok {
			c.RMSNormEps = 1e-5
		}
		if c.BOSTokenID == nil {
			c.BOSTokenID = []int{1}
		}
		if c.EOSTokenID == nil {
			c.EOSTokenID = []int{2}
		}
	}
	if c.NumKVHeads == 0 {
		c.NumKVHeads = c.NumHeads
	}
	if c.HeadDim == 0 && c.NumHeads > 0 && c.HiddenSize > 0 {
		if c.HiddenSize%c.NumHeads != 0 {
			return Config{}, fmt.Errorf("%s: hidden_size %d is not a multiple of num_attention_heads %d; set head_dim explicitly", name, c.HiddenSize, c.NumHeads)
		}
		c.HeadDim = c.HiddenSize / c.NumHeads
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %v", name, err)
	}
	return c, nil
}

// Limits on the sizes a config may give. They are far above every released
// Llama-family model (the largest has 126 layers, hidden size 16384,
// intermediate size 53248, 128 heads, a vocabulary of a few hundred
// thousand and a context of a few million positions) and keep every size
// and every product of sizes the code forms far from overflowing an int, so
// that a hostile or mistyped config.json is refused before anything is
// allocated from it.
const (
	// LimitLayers bounds num_hidden_layers.
	LimitLayers = 1024
	// LimitDim bounds hidden_size, intermediate_size, num_attention_heads,
	// num_key_value_heads, head_dim and num_attention_heads·head_dim.
	LimitDim = 1 << 20
	// LimitVocab bounds vocab_size.
	LimitVocab = 1 << 24
	// LimitPositions bounds max_position_embeddings and the context a model
	// accepts (MaxContext).
	LimitPositions = 1 << 24
	// LimitWeightElems bounds the elements of one weight matrix
	// (vocab_size·hidden_size, intermediate_size·hidden_size), as the
	// safetensors reader bounds one tensor.
	LimitWeightElems = 1 << 40
	// maxConfigBytes bounds config.json (real ones have a few kilobytes).
	maxConfigBytes = 16 << 20
)

// Validate checks that the sizes are positive, within the limits above
// (LimitLayers, LimitDim, LimitVocab, LimitPositions, LimitWeightElems) and
// consistent, and that the numeric fields are finite.
func (c Config) Validate() error {
	for _, f := range []struct {
		name string
		v    int
		max  int
	}{{"hidden_size", c.HiddenSize, LimitDim}, {"intermediate_size", c.IntermediateSize, LimitDim},
		{"num_hidden_layers", c.NumLayers, LimitLayers}, {"num_attention_heads", c.NumHeads, LimitDim},
		{"num_key_value_heads", c.NumKVHeads, LimitDim}, {"head_dim", c.HeadDim, LimitDim},
		{"vocab_size", c.VocabSize, LimitVocab}, {"max_position_embeddings", c.MaxPositionEmbeddings, LimitPositions}} {
		if f.v <= 0 {
			return fmt.Errorf("field %q must be a positive integer, got %d", f.name, f.v)
		}
		if f.v > f.max {
			return fmt.Errorf("field %q is %d, above the limit %d", f.name, f.v, f.max)
		}
	}
	if c.NumHeads%c.NumKVHeads != 0 {
		return fmt.Errorf("num_attention_heads %d is not a multiple of num_key_value_heads %d", c.NumHeads, c.NumKVHeads)
	}
	if c.arch().FusedQKV && c.NumKVHeads != c.NumHeads {
		return fmt.Errorf("num_key_value_heads %d differs from num_attention_heads %d: %s's fused query_key_value has no grouped-query attention", c.NumKVHeads, c.NumHeads, c.arch().Class)
	}
	if c.ResidualPostNorm && !c.arch().LayerNorm {
		return fmt.Errorf("field \"apply_residual_connection_post_layernorm\" true is BLOOM's; model_type %q does not have it", c.arch().ModelType)
	}
	if c.HeadDim%2 != 0 && !c.arch().ALiBi {
		return fmt.Errorf("field \"head_dim\" must be even for rotary embeddings, got %d", c.HeadDim)
	}
	// Each factor is at most 2^24, so the products cannot overflow.
	if q := c.NumHeads * c.HeadDim; q > LimitDim {
		return fmt.Errorf("num_attention_heads %d × head_dim %d = %d is above the limit %d", c.NumHeads, c.HeadDim, q, LimitDim)
	}
	if n := c.VocabSize * c.HiddenSize; n > LimitWeightElems {
		return fmt.Errorf("vocab_size %d × hidden_size %d = %d embedding weights is above the limit %d", c.VocabSize, c.HiddenSize, n, LimitWeightElems)
	}
	if n := c.IntermediateSize * c.HiddenSize; n > LimitWeightElems {
		return fmt.Errorf("intermediate_size %d × hidden_size %d = %d weights is above the limit %d", c.IntermediateSize, c.HiddenSize, n, LimitWeightElems)
	}
	if !(c.RopeTheta > 0) || math.IsInf(c.RopeTheta, 0) {
		return fmt.Errorf("field \"rope_theta\" must be positive and finite, got %v", c.RopeTheta)
	}
	if c.AttentionBias || c.MLPBias {
		return fmt.Errorf("attention_bias/mlp_bias true is not supported (Llama checkpoints have no biases)")
	}
	a := c.arch()
	if a.GELU {
		if c.HiddenActivation != "" && c.HiddenActivation != "gelu_pytorch_tanh" {
			return fmt.Errorf("field \"hidden_activation\" %q is not supported (want gelu_pytorch_tanh)", c.HiddenActivation)
		}
	} else if c.HiddenAct != "" && c.HiddenAct != "silu" {
		return fmt.Errorf("field \"hidden_act\" %q is not supported (want silu)", c.HiddenAct)
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"query_pre_attn_scalar", c.QueryPreAttnScalar}, {"attn_logit_softcapping", c.AttnLogitSoftcapping}, {"final_logit_softcapping", c.FinalLogitSoftcapping}} {
		if f.v != 0 && !a.SoftCaps {
			return fmt.Errorf("field %q is Gemma 2's; model_type %q does not use it", f.name, a.ModelType)
		}
		if f.v < 0 || math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			return fmt.Errorf("field %q must be a finite non-negative number, got %v", f.name, f.v)
		}
	}
	if c.SlidingWindow < 0 || c.SlidingWindow > LimitPositions {
		return fmt.Errorf("field \"sliding_window\" %d is outside 0..%d", c.SlidingWindow, LimitPositions)
	}
	if c.LayerTypes != nil {
		if len(c.LayerTypes) != c.NumLayers {
			return fmt.Errorf("field \"layer_types\" has %d entries, num_hidden_layers is %d", len(c.LayerTypes), c.NumLayers)
		}
		for i, t := range c.LayerTypes {
			if t != "full_attention" && t != "sliding_attention" {
				return fmt.Errorf("field \"layer_types\"[%d] %q is not supported (want full_attention or sliding_attention)", i, t)
			}
		}
	}
	if !(c.RMSNormEps > 0) || math.IsInf(c.RMSNormEps, 0) {
		return fmt.Errorf("field \"rms_norm_eps\" must be positive and finite, got %v", c.RMSNormEps)
	}
	rs := c.RopeScaling
	for _, f := range []struct {
		name string
		v    float64
	}{{"factor", rs.Factor}, {"low_freq_factor", rs.LowFreqFactor}, {"high_freq_factor", rs.HighFreqFactor}} {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) || f.v < 0 {
			return fmt.Errorf("field \"rope_scaling\": %q must be a finite non-negative number, got %v", f.name, f.v)
		}
	}
	if rs.OriginalMaxPositionEmbeddings < 0 || rs.OriginalMaxPositionEmbeddings > LimitPositions {
		return fmt.Errorf("field \"rope_scaling\": \"original_max_position_embeddings\" %d is outside 0..%d", rs.OriginalMaxPositionEmbeddings, LimitPositions)
	}
	return nil
}

// WindowAt is the sliding window of decoder layer i: keys that many
// positions or more behind the query are masked; 0 means none. It follows
// transformers: Mistral windows every layer when sliding_window is set;
// Qwen2 and Qwen3 only with use_sliding_window, from max_window_layers up
// (or where layer_types says sliding_attention).
func (c Config) WindowAt(i int) int {
	if c.SlidingWindow <= 0 {
		return 0
	}
	switch c.arch().Window {
	case WindowAll:
		if c.LayerTypes != nil && c.LayerTypes[i] != "sliding_attention" {
			return 0
		}
		return c.SlidingWindow
	case WindowEven:
		if c.LayerTypes != nil {
			if c.LayerTypes[i] == "sliding_attention" {
				return c.SlidingWindow
			}
			return 0
		}
		if i%2 == 0 {
			return c.SlidingWindow
		}
	case WindowUpper:
		if !c.UseSlidingWindow {
			return 0
		}
		if c.LayerTypes != nil {
			if c.LayerTypes[i] == "sliding_attention" {
				return c.SlidingWindow
			}
			return 0
		}
		if i >= c.MaxWindowLayers {
			return c.SlidingWindow
		}
	}
	return 0
}

// arch is c.Arch, Llama when unset.
func (c Config) arch() *Arch {
	if c.Arch == nil {
		return LlamaArch
	}
	return c.Arch
}

// MaxContext is the longest sequence the model accepts (Forward,
// ForwardTrain, Generate's prompt plus new tokens): max_position_embeddings,
// or with "dynamic" rope scaling, which exists to run past it,
// max_position_embeddings × rope_scaling.factor (at most LimitPositions).
func (c Config) MaxContext() int {
	n := c.MaxPositionEmbeddings
	if c.RopeScaling.Type == "dynamic" && c.RopeScaling.Factor > 1 {
		f := float64(n) * c.RopeScaling.Factor
		if f >= LimitPositions {
			return max(n, LimitPositions)
		}
		n = int(f)
	}
	return n
}

// contextLimit describes MaxContext for error messages.
func (c Config) contextLimit() string {
	n := c.MaxContext()
	if n != c.MaxPositionEmbeddings {
		return fmt.Sprintf("the context limit %d (max_position_embeddings %d × dynamic rope_scaling factor %v)", n, c.MaxPositionEmbeddings, c.RopeScaling.Factor)
	}
	return fmt.Sprintf("max_position_embeddings %d", n)
}

// LoadConfig reads dir/config.json.
func LoadConfig(path string) (Config, error) {
	data, err := readLimited(path, maxConfigBytes, "a config.json")
	if err != nil {
		var tl *tooLargeError
		if errors.As(err, &tl) {
			return Config{}, err
		}
		return Config{}, fmt.Errorf("reading config: %w", err)
	}
	return ParseConfig(data, path)
}
