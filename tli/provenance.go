package tli

import (
	"runtime/debug"
	"time"

	"github.com/tli-project/tli/llama"
)

// SchemaVersion is the version of the layout of the JSON files tli writes
// (scan.json, summary.json, run.json, sweep.json); it changes when a field
// changes meaning or is removed.
const SchemaVersion = 1

// Build is the tli build that wrote a result: the main module's version and
// its VCS revision, as the Go toolchain recorded them.
type Build struct {
	Version  string `json:"version"`
	Commit   string `json:"commit,omitempty"`
	Modified bool   `json:"modified,omitempty"`
}

// stampedVersion is the release version .ci/release stamps in with
// -ldflags "-X github.com/tli-project/tli/tli.stampedVersion=VERSION".
var stampedVersion string

// ThisBuild returns the running binary's Build: the stamped release
// version, else the module version the Go toolchain recorded.
func ThisBuild() Build {
	b := Build{Version: "unknown"}
	bi, ok := debug.ReadBuildInfo()
	if ok {
		b.Version = bi.Main.Version
	}
	if stampedVersion != "" {
		b.Version = stampedVersion
	}
	if !ok {
		return b
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Commit = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

// String is "version commit[:12] (modified)".
func (b Build) String() string {
	s := b.Version
	if b.Commit != "" {
		s += " " + b.Commit[:min(12, len(b.Commit))]
	}
	if b.Modified {
		s += " (modified)"
	}
	return s
}

// Provenance is what a run's outputs say about how they were made: the
// build, the model (its folder or repo id, family and how its weights were
// held), every training setting, and how long each phase took.
type Provenance struct {
	Schema int    `json:"schema"`
	Build  Build  `json:"tli"`
	Model  string `json:"model"`
	Family string `json:"model_type,omitempty"`
	DType  string `json:"dtype,omitempty"`
	// Numerics is the model's numeric setting (llama.Numerics: "f32",
	// "nf4 weights, fp16 activations"), and EvalNumerics the evaluation
	// model's where it differs (the published setting evaluates in FP4).
	Numerics     string `json:"numerics,omitempty"`
	EvalNumerics string `json:"eval_numerics,omitempty"`
	// Device is where the model computed when not the CPU (Device.Name).
	Device   string             `json:"device,omitempty"`
	Settings map[string]any     `json:"settings,omitempty"`
	Seconds  map[string]float64 `json:"seconds,omitempty"`
	Date     string             `json:"date,omitempty"`
}

// NewProvenance starts the provenance of results computed with m, named
// model (its folder or repo id): the build, the family, how the weights are
// held and the date; the caller adds settings and times.
func NewProvenance(m *llama.Model, model string) *Provenance {
	dtype := ""
	if m.Embed != nil {
		dtype = m.Embed.DType.String()
	}
	return &Provenance{Schema: SchemaVersion, Build: ThisBuild(), Model: model, Family: m.Config.Family(), DType: dtype,
		Numerics: m.Numerics.String(), Settings: map[string]any{}, Seconds: map[string]float64{}, Date: now().Format(time.RFC3339)}
}

// trainSettings lists every training hyperparameter of o by its flag name.
func trainSettings(o TrainOptions, scan, eval Pooling, scope EvalScope) map[string]any {
	return map[string]any{
		"layer": o.Layer, "epochs": o.Epochs, "max_steps": o.MaxSteps, "batch": o.Batch, "lr": o.LR, "warmup": o.Warmup,
		"margin": o.Margin, "pooling": string(o.Pooling), "seed": o.Seed, "shuffle": o.Shuffle,
		"rank": o.LoRA.R, "alpha": o.LoRA.Alpha, "dropout": o.LoRA.Dropout, "targets": o.LoRA.TargetModules,
		"use_rslora": o.LoRA.UseRSLoRA, "scan_pooling": string(scan), "eval_pooling": string(eval), "eval_layers": string(scope),
	}
}

// now is the date written in provenance (tests replace it).
var now = func() time.Time { return time.Now().UTC() }
