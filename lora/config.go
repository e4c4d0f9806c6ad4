package lora

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"

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
}

// PaperConfig is the configuration of the TLI paper: r 16, alpha 32,
// dropout 0.05 on q_proj and v_proj of every layer.
func PaperConfig() Config {
	return Config{R: 16, Alpha: 32, Dropout: 0.05, TargetModules: []string{"q_proj", "v_proj"}}
}

// Scale is the factor applied to the adapter's output: Alpha/R, or
// Alpha/sqrt(R) with rsLoRA (computed in float64 as PEFT does, then rounded).
func (c Config) Scale() float32 {
	if c.UseRSLoRA {
		return float32(c.Alpha / math.Sqrt(float64(c.R)))
	}
	return float32(c.Alpha / float64(c.R))
}

// HasLayer reports whether layer l gets adapters.
func (c Config) HasLayer(l int) bool {
	return c.Layers == nil || slices.Contains(c.Layers, l)
}

// Validate checks the configuration, and against the model's config when
// model is not nil (target modules exist, layers are in range).
func (c Config) Validate(model *llama.Config) error {
	if c.R <= 0 {
		return fmt.Errorf("lora: r must be a positive integer, got %d", c.R)
	}
	if !(c.Alpha > 0) || math.IsInf(c.Alpha, 0) {
		return fmt.Errorf("lora: lora_alpha must be positive, got %v", c.Alpha)
	}
	if c.Dropout < 0 || c.Dropout >= 1 || math.IsNaN(c.Dropout) {
		return fmt.Errorf("lora: lora_dropout must be in [0, 1), got %v", c.Dropout)
	}
	if len(c.TargetModules) == 0 {
		return fmt.Errorf("lora: no target_modules (want some of %v)", llama.LoRAModules)
	}
	seen := map[string]bool{}
	for _, m := range c.TargetModules {
		if !slices.Contains(llama.LoRAModules, m) {
			return fmt.Errorf("lora: target module %q is not supported (want some of %v)", m, llama.LoRAModules)
		}
		if seen[m] {
			return fmt.Errorf("lora: target module %q listed twice", m)
		}
		seen[m] = true
	}
	if c.Layers != nil && len(c.Layers) == 0 {
		return fmt.Errorf("lora: layers_to_transform is an empty list")
	}
	for _, l := range c.Layers {
		if l < 0 || (model != nil && l >= model.NumLayers) {
			n := -1
			if model != nil {
				n = model.NumLayers
			}
			return fmt.Errorf("lora: layer %d in layers_to_transform is outside the model's %d layers", l, n)
		}
	}
	return nil
}

// modules returns the target modules in llama.LoRAModules order.
func (c Config) modules() []string {
	var out []string
	for _, m := range llama.LoRAModules {
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
// alpha patterns, regex target_modules, modules_to_save) are errors.
func ParsePEFT(data []byte, name string) (Config, error) {
	var raw struct {
		PeftType          string          `json:"peft_type"`
		R                 *int            `json:"r"`
		Alpha             *float64        `json:"lora_alpha"`
		Dropout           float64         `json:"lora_dropout"`
		TargetModules     json.RawMessage `json:"target_modules"`
		LayersToTransform json.RawMessage `json:"layers_to_transform"`
		Bias              string          `json:"bias"`
		FanInFanOut       bool            `json:"fan_in_fan_out"`
		UseDoRA           bool            `json:"use_dora"`
		UseRSLoRA         bool            `json:"use_rslora"`
		RankPattern       map[string]any  `json:"rank_pattern"`
		AlphaPattern      map[string]any  `json:"alpha_pattern"`
		ModulesToSave     json.RawMessage `json:"modules_to_save"`
		BaseModel         *string         `json:"base_model_name_or_path"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raw); err != nil {
		return Config{}, fmt.Errorf("%s: %v", name, err)
	}
	fail := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("%s: "+format, append([]any{name}, args...)...)
	}
	if raw.PeftType != "LORA" {
		return fail("peft_type is %q, want \"LORA\"", raw.PeftType)
	}
	if raw.R == nil {
		return fail("field \"r\" is missing")
	}
	if raw.Alpha == nil {
		return fail("field \"lora_alpha\" is missing")
	}
	if raw.Bias != "" && raw.Bias != "none" {
		return fail("bias %q is not supported (want \"none\")", raw.Bias)
	}
	if raw.FanInFanOut {
		return fail("fan_in_fan_out true is not supported (Llama linear layers are [out×in])")
	}
	if raw.UseDoRA {
		return fail("use_dora true is not supported")
	}
	if len(raw.RankPattern) > 0 || len(raw.AlphaPattern) > 0 {
		return fail("rank_pattern and alpha_pattern are not supported")
	}
	if s := string(bytes.TrimSpace(raw.ModulesToSave)); s != "" && s != "null" && s != "[]" {
		return fail("modules_to_save %s is not supported", s)
	}
	c := Config{R: *raw.R, Alpha: *raw.Alpha, Dropout: raw.Dropout, UseRSLoRA: raw.UseRSLoRA}
	if raw.BaseModel != nil {
		c.BaseModel = *raw.BaseModel
	}
	if err := json.Unmarshal(raw.TargetModules, &c.TargetModules); err != nil {
		return fail("target_modules must be a list of module names, got %s", raw.TargetModules)
	}
	if s := string(bytes.TrimSpace(raw.LayersToTransform)); s != "" && s != "null" {
		var one int
		if err := json.Unmarshal(raw.LayersToTransform, &one); err == nil {
			c.Layers = []int{one}
		} else if err := json.Unmarshal(raw.LayersToTransform, &c.Layers); err != nil {
			return fail("layers_to_transform must be null, an integer or a list of integers, got %s", s)
		}
	}
	if err := c.Validate(nil); err != nil {
		return fail("%v", err)
	}
	return c, nil
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
