package llama

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/tli-project/tli/engine"
)

// Config is the part of a LlamaForCausalLM config.json that tli uses.
type Config struct {
	HiddenSize            int                `json:"hidden_size"`
	IntermediateSize      int                `json:"intermediate_size"`
	NumLayers             int                `json:"num_hidden_layers"`
	NumHeads              int                `json:"num_attention_heads"`
	NumKVHeads            int                `json:"num_key_value_heads"`
	HeadDim               int                `json:"head_dim"`
	RMSNormEps            float64            `json:"rms_norm_eps"`
	RopeTheta             float64            `json:"rope_theta"`
	RopeScaling           engine.RopeScaling `json:"-"`
	MaxPositionEmbeddings int                `json:"max_position_embeddings"`
	VocabSize             int                `json:"vocab_size"`
	TieWordEmbeddings     bool               `json:"tie_word_embeddings"`
	BOSTokenID            []int              `json:"-"`
	EOSTokenID            []int              `json:"-"`
	TorchDType            string             `json:"torch_dtype"`
	// Features tli does not implement; ParseConfig reads them so that a
	// checkpoint using them is refused instead of silently misread.
	AttentionBias bool   `json:"attention_bias"`
	MLPBias       bool   `json:"mlp_bias"`
	HiddenAct     string `json:"hidden_act"`
}

// ParseConfig decodes config.json text; name is used in error messages.
func ParseConfig(data []byte, name string) (Config, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return Config{}, fmt.Errorf("%s: not a JSON object: %v", name, err)
	}
	var c Config
	c.RMSNormEps = 1e-6
	c.RopeTheta = 10000
	c.MaxPositionEmbeddings = 2048
	c.TieWordEmbeddings = false
	ints := map[string]*int{
		"hidden_size": &c.HiddenSize, "intermediate_size": &c.IntermediateSize,
		"num_hidden_layers": &c.NumLayers, "num_attention_heads": &c.NumHeads,
		"num_key_value_heads": &c.NumKVHeads, "head_dim": &c.HeadDim,
		"max_position_embeddings": &c.MaxPositionEmbeddings, "vocab_size": &c.VocabSize,
	}
	for k, p := range ints {
		if v, ok := raw[k]; ok && string(v) != "null" {
			if err := json.Unmarshal(v, p); err != nil {
				return Config{}, fmt.Errorf("%s: field %q: want an integer, got %s", name, k, v)
			}
		}
	}
	floats := map[string]*float64{"rms_norm_eps": &c.RMSNormEps, "rope_theta": &c.RopeTheta}
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
	for k, p := range map[string]*string{"torch_dtype": &c.TorchDType, "hidden_act": &c.HiddenAct} {
		if v, ok := raw[k]; ok && string(v) != "null" {
			if err := json.Unmarshal(v, p); err != nil {
				return Config{}, fmt.Errorf("%s: field %q: want a string, got %s", name, k, v)
			}
		}
	}
	for k, p := range map[string]*bool{"attention_bias": &c.AttentionBias, "mlp_bias": &c.MLPBias} {
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
	if c.NumKVHeads == 0 {
		c.NumKVHeads = c.NumHeads
	}
	if c.HeadDim == 0 && c.NumHeads > 0 {
		c.HeadDim = c.HiddenSize / c.NumHeads
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %v", name, err)
	}
	return c, nil
}

// Validate checks that the sizes are positive and consistent.
func (c Config) Validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"hidden_size", c.HiddenSize}, {"intermediate_size", c.IntermediateSize},
		{"num_hidden_layers", c.NumLayers}, {"num_attention_heads", c.NumHeads},
		{"num_key_value_heads", c.NumKVHeads}, {"head_dim", c.HeadDim}, {"vocab_size", c.VocabSize}} {
		if f.v <= 0 {
			return fmt.Errorf("field %q must be a positive integer, got %d", f.name, f.v)
		}
	}
	if c.NumHeads%c.NumKVHeads != 0 {
		return fmt.Errorf("num_attention_heads %d is not a multiple of num_key_value_heads %d", c.NumHeads, c.NumKVHeads)
	}
	if !(c.RopeTheta > 0) {
		return fmt.Errorf("field \"rope_theta\" must be positive, got %v", c.RopeTheta)
	}
	if c.MaxPositionEmbeddings <= 0 {
		return fmt.Errorf("field \"max_position_embeddings\" must be positive, got %d", c.MaxPositionEmbeddings)
	}
	if c.AttentionBias || c.MLPBias {
		return fmt.Errorf("attention_bias/mlp_bias true is not supported (Llama checkpoints have no biases)")
	}
	if c.HiddenAct != "" && c.HiddenAct != "silu" {
		return fmt.Errorf("field \"hidden_act\" %q is not supported (want silu)", c.HiddenAct)
	}
	if c.RMSNormEps <= 0 {
		return fmt.Errorf("field \"rms_norm_eps\" must be positive, got %v", c.RMSNormEps)
	}
	return nil
}

// LoadConfig reads dir/config.json.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading config: %w", err)
	}
	return ParseConfig(data, path)
}
