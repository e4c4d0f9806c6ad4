package tli

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/llama/tokenizer"
)

func TestScanBestLayers(t *testing.T) {
	s := &ScanResult{Layers: []LayerStats{
		{Layer: 0, Mean: 0.9, Gap: 0.30},
		{Layer: 1, Mean: 0.99, Gap: 0.01},
		{Layer: 2, Mean: 0.5, Gap: 0.20},
		{Layer: 3, Mean: 0.6, Gap: 0.20},
	}}
	gap, _ := s.Best()
	mean, _ := s.BestByMean()
	train, ok := s.BestTrainable()
	if gap.Layer != 0 || mean.Layer != 1 || train.Layer != 2 || !ok {
		t.Errorf("best by gap %d, by mean %d, trainable %d; want 0, 1, 2 (earliest on ties)", gap.Layer, mean.Layer, train.Layer)
	}
	if got := ReportLayers(2, 32); !reflect.DeepEqual(got, []int{2, 32}) {
		t.Errorf("ReportLayers(2, 32) = %v", got)
	}
	if got := ReportLayers(4, 4); !reflect.DeepEqual(got, []int{4}) {
		t.Errorf("ReportLayers(4, 4) = %v", got)
	}
}

// TestOptionErrors: the library names the option field; the CLI maps it to
// its flag.
func TestOptionErrors(t *testing.T) {
	cfg := llama.Config{NumLayers: 4, HiddenSize: 8, NumHeads: 2, NumKVHeads: 1, HeadDim: 4, IntermediateSize: 8, VocabSize: 10}
	for _, c := range []struct {
		mod   func(*TrainOptions)
		field string
		msg   string
	}{
		{func(o *TrainOptions) { o.Layer = 5 }, "Layer", "Layer 5 is outside [1, 4]: layer 0 is the embedding table, which LoRA on attention cannot change"},
		{func(o *TrainOptions) { o.Margin = -1 }, "Margin", "Margin -1 must be in [0, 2] (cosines lie in [-1, 1])"},
		{func(o *TrainOptions) { o.Pooling = "max" }, "Pooling", `Pooling "max": `},
	} {
		o := PaperTrainOptions()
		c.mod(&o)
		err := o.Validate(cfg, 10)
		var oe *OptionError
		if !errors.As(err, &oe) || oe.Field != c.field || len(err.Error()) < len(c.msg) || err.Error()[:len(c.msg)] != c.msg {
			t.Errorf("got %v, want an OptionError on %s starting %q", err, c.field, c.msg)
		}
	}
}

// EvalToTrain stops the adapted pass at the training layer: its summary
// at that layer equals the full evaluation's, and no layer above it is
// embedded after training.
func TestRunEvalScope(t *testing.T) {
	dir := t.TempDir()
	pairs := DefaultTrainPairs()[:12]
	control := DefaultControlPairs()[:6]
	var words []string
	for _, p := range append(append([]Pair{}, pairs...), control...) {
		words = append(words, p.Source, p.Target)
	}
	if err := llama.Synth(dir, llama.SynthOptions{Shape: "tiny", Layers: 4, Seed: 9, Words: words}); err != nil {
		t.Fatal(err)
	}
	m, err := llama.Load(dir, llama.LoadOptions{DType: engine.F32, MaxLayer: llama.AllLayers})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tok, err := tokenizer.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	opts := PaperTrainOptions()
	opts.Layer, opts.MaxSteps, opts.Warmup, opts.LR = 1, 3, 1, 1e-3
	groups := []Group{{Name: "trained", Pairs: pairs}, {Name: "control", Pairs: control}}
	run := func(scope EvalScope) (*RunResult, []int) {
		var passTops []int
		m.OnLayer = func(done, total, tokens int) {
			if done == 0 {
				passTops = append(passTops, total)
			}
		}
		defer func() { m.OnLayer = nil }()
		out := t.TempDir()
		res, err := Run(context.Background(), m, tok, RunOptions{Train: opts, ScanPooling: PoolContent, EvalPooling: PoolContent,
			EvalScope: scope, Groups: groups, Out: out, Model: "synthetic"})
		if err != nil {
			t.Fatal(err)
		}
		// run.json and report.md say how the results were made.
		var rj struct {
			Schema     int
			Provenance Provenance
			Train      TrainSummary
		}
		b, err := os.ReadFile(filepath.Join(out, "run.json"))
		if err != nil || json.Unmarshal(b, &rj) != nil {
			t.Fatalf("run.json: %v %s", err, b)
		}
		pv := rj.Provenance
		if rj.Schema != SchemaVersion || pv.Model != "synthetic" || pv.Family != "llama" || pv.DType != "f32" || pv.Settings["eval_layers"] != string(scope) ||
			pv.Settings["rank"] != float64(16) || rj.Train.Steps != 3 || pv.Seconds["train"] <= 0 {
			t.Errorf("run.json: %s", b)
		}
		rep, _ := os.ReadFile(filepath.Join(out, "report.md"))
		for _, want := range []string{"## Training", "3 optimiser steps", "## Run", "settings: alpha=32", "train/loss.png"} {
			if !strings.Contains(string(rep), want) {
				t.Errorf("report.md lacks %q", want)
			}
		}
		sj, _ := os.ReadFile(filepath.Join(out, "eval", "summary.json"))
		if !strings.Contains(string(sj), `"schema": 1`) {
			t.Errorf("summary.json has no schema")
		}
		return res, passTops
	}
	full, _ := run(EvalAll)
	short, tops := run(EvalToTrain)
	if got := tops[len(tops)-1]; got != opts.Layer {
		t.Errorf("the last pass (the adapted model's) ran %d layers, want %d", got, opts.Layer)
	}
	var fullAt []GroupSummary
	for _, g := range full.Eval.Summary.Groups {
		if g.Layer == opts.Layer {
			fullAt = append(fullAt, g)
		}
	}
	if len(fullAt) != 2 || len(short.Eval.Summary.Groups) != 2 {
		t.Fatalf("groups at layer %d: all %d, train %d; want 2 and 2", opts.Layer, len(fullAt), len(short.Eval.Summary.Groups))
	}
	for i, g := range short.Eval.Summary.Groups {
		if g.Layer != opts.Layer || g.Group != fullAt[i].Group || !reflect.DeepEqual(g, fullAt[i]) {
			t.Errorf("group %s at layer %d: %+v, with every layer %+v", g.Group, g.Layer, g, fullAt[i])
		}
	}
	for l := range short.Eval.After[PoolContent] {
		if l > opts.Layer {
			t.Errorf("EvalToTrain embedded layer %d after training", l)
		}
	}
	if _, err := Run(context.Background(), m, tok, RunOptions{Train: opts, EvalScope: "some", Groups: groups, Out: t.TempDir(),
		ScanPooling: PoolContent, EvalPooling: PoolContent}); err == nil || !strings.Contains(err.Error(), "EvalScope") {
		t.Errorf("EvalScope \"some\": error %v, want one naming EvalScope", err)
	}
}

// A release build's stamped version (.ci/release) is the build's version.
func TestStampedVersion(t *testing.T) {
	defer func(v string) { stampedVersion = v }(stampedVersion)
	stampedVersion = "v1.2.3"
	if b := ThisBuild(); b.Version != "v1.2.3" || !strings.HasPrefix(b.String(), "v1.2.3") {
		t.Errorf("ThisBuild() = %+v", b)
	}
}
