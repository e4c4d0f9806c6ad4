package lora

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tli-project/tli/llama"
)

// Config is a LoRA configuration, the part of PEFT's LoraConfig that tli
// uses.
type Config struct {
	R       int     // rank r
	Alpha   float64 // lora_alpha; the adapter output is scaled by Alpha/R
	Dropout float64 // lora_dropout on the adapter's input during training
	// TargetModules are names from llama.LoRAModules ("q_proj", "v_proj", ...).
	TargetModules []string
	// Layers are the decoder layers that get adapters (PEFT's
	// layers_to_transform); nil means every layer.
	Layers []int
	// BaseModel is written as base_model_name_or_path.
	BaseModel string
	// UseRSLoRA scales by Alpha/sqrt(R) instead of Alpha/R (PEFT's use_rslora).
	UseRSLoRA bool
	// allLinear: the file said target_modules "all-linear", which means
	// the model family's modules (ForModel).
	allLinear bool
}

// ForModel resolves what depends on the model's family: target_modules
// "all-linear" becomes every Linear module of that family.
func (c Config) ForModel(model llama.Config) Config {
	if c.allLinear {
		c.TargetModules = slices.Clone(model.LoRAModules())
	}
	return c
}

// PaperConfig is the configuration of the TLI paper: r 16, alpha 32,
// dropout 0.05 on q_proj and v_proj of every layer.
func PaperConfig() Config {
	return Config{R: 16, Alpha: 32, Dropout: 0.05, TargetModules: []string{"q_proj", "v_proj"}}
}

// Scale is the factor applied to the adapter's output: Alpha/R, or
// Alpha/sqrt(R) with rsLoRA (computed in float64 as PEFT does, then rounded).
func (c Config) Scale() float32 { return float32(c.scale64()) }

func (c Config) scale64() float64 {
	if c.UseRSLoRA {
		return c.Alpha / math.Sqrt(float64(c.R))
	}
	return c.Alpha / float64(c.R)
}

// HasLayer reports whether layer l gets adapters.
func (c Config) HasLayer(l int) bool {
	return c.Layers == nil || slices.Contains(c.Layers, l)
}

// MaxAdapterNumbers bounds the size of an adapter: A and B over every
// adapted layer and module may hold at most this many numbers (4 GiB in
// float32; training keeps three more of the same size for the gradient and
// AdamW's moments). It refuses r 1e9 before anything is allocated and leaves
// room for any rank an experiment uses: on Llama-3.1-8B's q_proj and v_proj
// in all 32 layers it allows r up to 2520. PEFT itself accepts r above
// min(in_features, out_features), and so does tli: such an adapter cannot
// reach a higher rank, but it trains differently and its files exist.
const MaxAdapterNumbers = 1 << 30

// MaxRank returns the largest rank r that model allows for modules on
// layers (nil: every layer): the r at which A [r×in] and B [out×r] over
// every adapted layer and module hold MaxAdapterNumbers numbers. perRank is
// the count for r = 1. Unknown module names are skipped; ok is false when
// none is known.
func MaxRank(model llama.Config, modules []string, layers []int) (r int, perRank int64, ok bool) {
	n := int64(model.NumLayers)
	if layers != nil {
		n = int64(len(layers))
	}
	for _, m := range modules {
		out, in, known := model.ModuleShape(m)
		if !known {
			continue
		}
		perRank += n * int64(in+out)
		ok = true
	}
	if !ok || perRank <= 0 {
		return 0, 0, false
	}
	return int(min(MaxAdapterNumbers/perRank, math.MaxInt32)), perRank, true
}

// Validate checks the configuration, and against the model's config when
// model is not nil: target modules exist, the adapter r makes holds at
// most MaxAdapterNumbers numbers, layers are in range. Each error names the PEFT field, its value and the valid range.
func (c Config) Validate(model *llama.Config) error {
	if c.R <= 0 {
		return fmt.Errorf("lora: r: %d is not a positive integer (want r ≥ 1)", c.R)
	}
	if !(c.Alpha > 0) || math.IsInf(c.Alpha, 0) {
		return fmt.Errorf("lora: lora_alpha: %v is not a positive finite number", c.Alpha)
	}
	if c.Dropout < 0 || c.Dropout >= 1 || math.IsNaN(c.Dropout) {
		return fmt.Errorf("lora: lora_dropout: %v is outside [0, 1)", c.Dropout)
	}
	if s := c.scale64(); !(s > 0) || math.IsInf(float64(float32(s)), 0) || float32(s) == 0 {
		what := fmt.Sprintf("lora_alpha/r = %v/%d", c.Alpha, c.R)
		if c.UseRSLoRA {
			what = fmt.Sprintf("lora_alpha/sqrt(r) = %v/sqrt(%d)", c.Alpha, c.R)
		}
		return fmt.Errorf("lora: the adapter scale %s = %v is not a positive finite float32 (want it in [%v, %v])", what, s, float32(math.SmallestNonzeroFloat32), float32(math.MaxFloat32))
	}
	known := llama.AllLoRAModules
	if model != nil {
		known = model.LoRAModules()
	}
	if len(c.TargetModules) == 0 {
		return fmt.Errorf("lora: target_modules: empty (want some of %v)", known)
	}
	seen := map[string]bool{}
	for _, m := range c.TargetModules {
		if !slices.Contains(known, m) {
			return fmt.Errorf("lora: target_modules: %q is not a module tli can adapt (want some of %v)", m, known)
		}
		if seen[m] {
			return fmt.Errorf("lora: target_modules: %q is listed twice", m)
		}
		seen[m] = true
	}
	if c.Layers != nil && len(c.Layers) == 0 {
		return fmt.Errorf("lora: layers_to_transform: an empty list (want null for every layer, or layer numbers)")
	}
	for _, l := range c.Layers {
		if model != nil && (l < 0 || l >= model.NumLayers) {
			return fmt.Errorf("lora: layers_to_transform: layer %d is outside [0, %d] (the model has %d layers)", l, model.NumLayers-1, model.NumLayers)
		}
		if l < 0 {
			return fmt.Errorf("lora: layers_to_transform: layer %d is negative (layers are numbered from 0)", l)
		}
	}
	if model != nil {
		if maxR, perRank, ok := MaxRank(*model, c.TargetModules, c.Layers); ok && c.R > maxR {
			return fmt.Errorf("lora: r: %d is outside [1, %d]: A and B would hold %d×%d numbers, above the limit of %d (lora.MaxAdapterNumbers, 4 GiB in float32)", c.R, maxR, c.R, perRank, MaxAdapterNumbers)
		}
	}
	return nil
}

// modules returns the target modules in llama.AllLoRAModules order.
func (c Config) modules() []string {
	var out []string
	for _, m := range llama.AllLoRAModules {
		if slices.Contains(c.TargetModules, m) {
			out = append(out, m)
		}
	}
	return out
}

// ConfigFile and WeightsFile are the names PEFT gives an adapter's files.
const (
	ConfigFile  = "adapter_config.json"
	WeightsFile = "adapter_model.safetensors"
)

// MarshalPEFT renders c as PEFT's adapter_config.json (keys sorted, two-space
// indent, as LoraConfig.save_pretrained writes it).
func (c Config) MarshalPEFT() ([]byte, error) {
	var layers any
	if c.Layers != nil {
		layers = c.Layers
	}
	var base any
	if c.BaseModel != "" {
		base = c.BaseModel
	}
	m := map[string]any{
		"alpha_pattern":           map[string]any{},
		"auto_mapping":            nil,
		"base_model_name_or_path": base,
		"bias":                    "none",
		"fan_in_fan_out":          false,
		"inference_mode":          true,
		"init_lora_weights":       true,
		"layer_replication":       nil,
		"layers_pattern":          nil,
		"layers_to_transform":     layers,
		"loftq_config":            map[string]any{},
		"lora_alpha":              c.Alpha,
		"lora_dropout":            c.Dropout,
		"megatron_config":         nil,
		"megatron_core":           "megatron.core",
		"modules_to_save":         nil,
		"peft_type":               "LORA",
		"r":                       c.R,
		"rank_pattern":            map[string]any{},
		"revision":                nil,
		"target_modules":          c.modules(),
		"task_type":               "CAUSAL_LM",
		"use_dora":                false,
		"use_rslora":              c.UseRSLoRA,
	}
	return json.MarshalIndent(m, "", "  ")
}

// ParsePEFT reads an adapter_config.json; name is used in error messages.
// Features tli does not implement (DoRA, fan_in_fan_out, biases, rank or
// alpha patterns, regex target_modules, modules_to_save, layer replication)
// are errors naming the field. Each error says the field, the value found
// and what is valid. target_modules "all-linear" means every module of
// llama.LoRAModules, as in PEFT (for another family, ForModel gives its
// modules). The result passes c.Validate(nil); the
// checks that need the model (r against the module sizes, layer numbers
// against the layer count) are Validate's with the model's config.
func ParsePEFT(data []byte, name string) (Config, error) {
	fail := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("%s: "+format, append([]any{name}, args...)...)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return fail("not a JSON object: %v", err)
	}
	if raw == nil {
		return fail("not a JSON object: null")
	}
	// field returns the raw value of key, or nil when absent or null.
	field := func(key string) json.RawMessage {
		v := bytes.TrimSpace(raw[key])
		if len(v) == 0 || string(v) == "null" {
			return nil
		}
		return v
	}
	str := func(key string) (string, bool, error) {
		v := field(key)
		if v == nil {
			return "", false, nil
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", false, fmt.Errorf("%s: want a string, got %s", key, clip(v))
		}
		return s, true, nil
	}
	boolean := func(key string) (bool, error) {
		v := field(key)
		if v == nil {
			return false, nil
		}
		var b bool
		if err := json.Unmarshal(v, &b); err != nil {
			return false, fmt.Errorf("%s: want true or false, got %s", key, clip(v))
		}
		return b, nil
	}
	number := func(key string) (float64, bool, error) {
		v := field(key)
		if v == nil {
			return 0, false, nil
		}
		var f float64
		if err := json.Unmarshal(v, &f); err != nil {
			return 0, false, fmt.Errorf("%s: want a number, got %s", key, clip(v))
		}
		return f, true, nil
	}
	// empty reports whether key is absent, null, {} or [].
	empty := func(key string) bool {
		v := field(key)
		if v == nil {
			return true
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(v, &obj) == nil && len(obj) == 0 {
			return true
		}
		var list []json.RawMessage
		return json.Unmarshal(v, &list) == nil && len(list) == 0
	}

	peftType, ok, err := str("peft_type")
	if err != nil {
		return fail("%v", err)
	}
	if !ok {
		return fail("peft_type: missing (want \"LORA\")")
	}
	if peftType != "LORA" {
		return fail("peft_type: %q is not supported (want \"LORA\")", peftType)
	}
	var c Config
	// r: an integer (16, or 16.0 / 1.6e1 as a float with an integral value).
	rv := field("r")
	if rv == nil {
		return fail("r: missing (want a positive integer)")
	}
	var rf float64
	if err := json.Unmarshal(rv, &rf); err != nil {
		return fail("r: want a positive integer, got %s", clip(rv))
	}
	if rf != math.Trunc(rf) {
		return fail("r: %s is not an integer (want a positive integer)", clip(rv))
	}
	if rf < 1 {
		return fail("r: %s is not a positive integer (want r ≥ 1)", clip(rv))
	}
	if rf > math.MaxInt32 {
		return fail("r: %s is outside [1, %d] (and a model bounds it further by the adapter's size)", clip(rv), math.MaxInt32)
	}
	c.R = int(rf)
	alpha, ok, err := number("lora_alpha")
	if err != nil {
		return fail("%v", err)
	}
	if !ok {
		return fail("lora_alpha: missing (want a positive number)")
	}
	c.Alpha = alpha
	if c.Dropout, _, err = number("lora_dropout"); err != nil {
		return fail("%v", err)
	}
	if c.UseRSLoRA, err = boolean("use_rslora"); err != nil {
		return fail("%v", err)
	}
	if c.BaseModel, _, err = str("base_model_name_or_path"); err != nil {
		return fail("%v", err)
	}
	if bias, ok, err := str("bias"); err != nil {
		return fail("%v", err)
	} else if ok && bias != "none" {
		return fail("bias: %q is not supported (want \"none\")", bias)
	}
	for _, f := range []struct{ key, why string }{
		{"fan_in_fan_out", "it is for GPT-2-style Conv1D weights stored [in×out]; Llama's Linear weights are [out×in]"},
		{"use_dora", "DoRA is not implemented"},
		{"lora_bias", "a bias on lora_B is not implemented"},
		{"use_qalora", "QA-LoRA is not implemented"},
	} {
		b, err := boolean(f.key)
		if err != nil {
			return fail("%v", err)
		}
		if b {
			return fail("%s: true is not supported (%s; want false)", f.key, f.why)
		}
	}
	for _, f := range []struct{ key, why string }{
		{"rank_pattern", "per-module ranks are not implemented; want {}"},
		{"alpha_pattern", "per-module alphas are not implemented; want {}"},
		{"modules_to_save", "fully trained extra modules are not implemented; want null or []"},
		{"layer_replication", "layer replication is not implemented; want null"},
		{"exclude_modules", "module exclusion is not implemented; want null"},
		{"trainable_token_indices", "trainable tokens are not implemented; want null"},
	} {
		if !empty(f.key) {
			return fail("%s: %s is not supported (%s)", f.key, clip(field(f.key)), f.why)
		}
	}
	tm := field("target_modules")
	if tm == nil {
		return fail("target_modules: missing (want a list of some of %v)", llama.LoRAModules)
	}
	var one string
	if json.Unmarshal(tm, &one) == nil {
		if one != "all-linear" {
			return fail("target_modules: the string %q is a regular expression in PEFT, which tli does not support (want \"all-linear\" or a list of some of %v)", one, llama.LoRAModules)
		}
		c.TargetModules, c.allLinear = slices.Clone(llama.LoRAModules), true
	} else if err := json.Unmarshal(tm, &c.TargetModules); err != nil {
		return fail("target_modules: want a list of module names (some of %v), got %s", llama.LoRAModules, clip(tm))
	}
	if lt := field("layers_to_transform"); lt != nil {
		var list []json.RawMessage
		if json.Unmarshal(lt, &list) != nil {
			list = []json.RawMessage{lt}
		}
		c.Layers = []int{}
		for _, v := range list {
			var f float64
			if err := json.Unmarshal(v, &f); err != nil || f != math.Trunc(f) || math.Abs(f) > math.MaxInt32 {
				return fail("layers_to_transform: %s is not a layer number (want null, an integer or a list of integers ≥ 0)", clip(v))
			}
			c.Layers = append(c.Layers, int(f))
		}
	}
	if err := c.Validate(nil); err != nil {
		return fail("%s", strings.TrimPrefix(err.Error(), "lora: "))
	}
	return c, nil
}

// clip returns JSON text for an error message on one line (runs of white
// space become one space), shortened to 60 characters.
func clip(v []byte) string {
	r := []rune(strings.Join(strings.Fields(string(v)), " "))
	if len(r) > 60 {
		return string(r[:57]) + "..."
	}
	return string(r)
}

// ReadConfig reads dir/adapter_config.json.
func ReadConfig(dir string) (Config, error) {
	path := filepath.Join(dir, ConfigFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading adapter config: %w", err)
	}
	return ParsePEFT(data, path)
}
