package tli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/lora"
)

// This file is the method as a library: scan -> train -> evaluate ->
// report, each step also usable alone (the CLI's scan, train and eval
// commands, and every cell of a sweep, call these).

// BestByMean returns the layer with the largest raw mean cosine; beside
// Best it shows how far the raw mean misleads (it is not alignment).
func (s *ScanResult) BestByMean() (best LayerStats, ok bool) {
	for i, l := range s.Layers {
		if i == 0 || l.Mean > best.Mean {
			best, ok = l, true
		}
	}
	return best, ok
}

// BestTrainable returns the layer with the largest gap among layers >= 1:
// layer 0 is the embedding table, which LoRA on attention cannot move.
func (s *ScanResult) BestTrainable() (best LayerStats, ok bool) {
	for _, l := range s.Layers {
		if l.Layer >= 1 && (!ok || l.Gap > best.Gap) {
			best, ok = l, true
		}
	}
	return best, ok
}

// ReportLayers are the layers an evaluation reports by default: the
// training layer and the model's last layer.
func ReportLayers(trainLayer, numLayers int) []int {
	if trainLayer == numLayers {
		return []int{trainLayer}
	}
	return []int{trainLayer, numLayers}
}

// EvalScope selects the layers an evaluation after training embeds.
type EvalScope string

const (
	EvalAll     EvalScope = "all"   // every layer; report the training layer and the last
	EvalToTrain EvalScope = "train" // layers 0..training layer; report the training layer
)

// ParseEvalScope reads "all" or "train".
func ParseEvalScope(s string) (EvalScope, error) {
	switch EvalScope(s) {
	case EvalAll, EvalToTrain:
		return EvalScope(s), nil
	}
	return "", fmt.Errorf("want all or train, got %q", s)
}

// LayerRange is 0..n, every hidden state of an n-layer model.
func LayerRange(n int) []int {
	out := make([]int, n+1)
	for i := range out {
		out[i] = i
	}
	return out
}

// WriteScan writes scan.csv, scan.json and scan.png into dir, and the table
// and the best layers to w.
func WriteScan(dir string, res *ScanResult, w io.Writer) error {
	if err := WriteScanCSV(filepath.Join(dir, "scan.csv"), res); err != nil {
		return err
	}
	if err := WriteScanJSON(filepath.Join(dir, "scan.json"), res); err != nil {
		return err
	}
	byGap, _ := res.Best()
	byMean, _ := res.BestByMean()
	title := fmt.Sprintf("Swahili–English alignment by layer (%s pooling)", res.Pooling)
	if err := PlotScan(filepath.Join(dir, plotFile("scan")), res.Layers, byGap.Layer, title); err != nil {
		return err
	}
	if err := WriteScanTable(w, res); err != nil {
		return err
	}
	fmt.Fprintf(w, "best layer by gap: %d (mean %.4f, mismatched %.4f, gap %.4f, P@1 %.3f)\n",
		byGap.Layer, byGap.Mean, byGap.MismatchedMean, byGap.Gap, byGap.PrecisionAt1)
	note := ""
	if byMean.Layer != byGap.Layer {
		note = "  <- the raw mean is not alignment: see the mismatched baseline"
	}
	fmt.Fprintf(w, "best layer by raw mean: %d (mean %.4f, mismatched %.4f)%s\n", byMean.Layer, byMean.Mean, byMean.MismatchedMean, note)
	return nil
}

// Evaluation is what Evaluate produced: the summary, one row per pair and
// layer, and the vectors before and after.
type Evaluation struct {
	Summary *EvalSummary
	Rows    []PairResult
	Before  GroupVectors // base model
	After   GroupVectors // adapter merged
}

// Evaluate embeds the groups with the base model (unless before already
// holds them for pooling p: then only its layers in all are kept) and with
// adapter a merged, at every layer of all, and summarises the layers of
// report. dev, when not nil, holds m's weights and runs the forwards.
func Evaluate(m *llama.Model, dev Device, tok Encoder, a *lora.Adapter, groups []Group, all, report []int, p Pooling, before GroupVectors) (*Evaluation, error) {
	if before != nil && before[p] != nil {
		before = before.Subset(p, all)
	} else {
		var err error
		before, err = EmbedGroups(embedder(m, dev, tok), groups, all, []Pooling{p})
		if err != nil {
			return nil, fmt.Errorf("base model: %w", err)
		}
	}
	after, err := EmbedAdapted(m, dev, tok, a, groups, all, []Pooling{p})
	if err != nil {
		return nil, fmt.Errorf("adapted model: %w", err)
	}
	sums, rows, err := Compare(before, after, groups, report, p)
	if err != nil {
		return nil, err
	}
	return &Evaluation{Summary: &EvalSummary{Pooling: p, Groups: sums, Notes: CollapseNotes(sums)}, Rows: rows, Before: before, After: after}, nil
}

// CollapseNotes warns where the mean cosine rose but the gap to the
// mismatched baseline did not: the adapter pulled every word together
// instead of aligning translations, and the raw mean overstates the effect.
func CollapseNotes(sums []GroupSummary) []string {
	var notes []string
	for _, g := range sums {
		if g.Pre == nil || g.Post == nil || g.Change <= 0 {
			continue
		}
		if g.Post.Gap <= g.Pre.Gap {
			notes = append(notes, fmt.Sprintf("Warning: %s pairs at layer %d: the mean cosine rose by %+.4f but the mismatched baseline rose by %+.4f, so the gap fell (%.4f -> %.4f): the adapter moved all words closer together rather than aligning translations.",
				g.Group, g.Layer, g.Change, g.Post.MismatchedMean-g.Pre.MismatchedMean, g.Pre.Gap, g.Post.Gap))
		}
	}
	return notes
}

// Write writes results.csv, summary.json and the plots of the evaluation
// into dir, the table and notes to w, and returns the plots made. all are
// the layers embedded (a per-layer plot needs more than one); trainLayer
// is the layer of the per-pair change histogram.
func (e *Evaluation) Write(dir string, groups []Group, all []int, trainLayer int, w io.Writer) ([]PlotRef, error) {
	if err := WriteResultsCSV(filepath.Join(dir, "results.csv"), e.Rows); err != nil {
		return nil, err
	}
	if err := WriteSummaryJSON(filepath.Join(dir, "summary.json"), e.Summary); err != nil {
		return nil, err
	}
	if err := WriteEvalTable(w, e.Summary); err != nil {
		return nil, err
	}
	for _, n := range e.Summary.Notes {
		fmt.Fprintln(w, n)
	}
	var plots []PlotRef
	p := e.Summary.Pooling
	if len(all) > 1 {
		pre, err := ScanVectors(e.Before, groups[0].Name, p)
		if err != nil {
			return nil, err
		}
		post, err := ScanVectors(e.After, groups[0].Name, p)
		if err != nil {
			return nil, err
		}
		path := filepath.Join(dir, plotFile("layers_before_after"))
		if err := PlotLayerLines(path, pre, post, fmt.Sprintf("%s pairs by layer, before and after (%s pooling)", groups[0].Name, p)); err != nil {
			return nil, err
		}
		plots = append(plots, PlotRef{Title: "Per-layer cosine before and after training (dashed: mismatched baseline)", Path: path})
	}
	var changes []float64
	for _, row := range e.Rows {
		if row.Layer == trainLayer && row.Group == groups[0].Name {
			changes = append(changes, row.SimPost-row.SimPre)
		}
	}
	if len(changes) > 0 {
		path := filepath.Join(dir, plotFile("change_histogram"))
		if err := PlotHistogram(path, changes, 0, fmt.Sprintf("Per-pair change of cosine at layer %d (%s pairs)", trainLayer, groups[0].Name)); err != nil {
			return nil, err
		}
		plots = append(plots, PlotRef{Title: fmt.Sprintf("Per-pair change at layer %d", trainLayer), Path: path})
	}
	var at []GroupSummary
	for _, g := range e.Summary.Groups {
		if g.Layer == trainLayer {
			at = append(at, g)
		}
	}
	if len(at) > 0 {
		path := filepath.Join(dir, plotFile("means_before_after"))
		if err := PlotBeforeAfterBars(path, at, fmt.Sprintf("Mean cosine of translation pairs at layer %d, before and after training", trainLayer)); err != nil {
			return nil, err
		}
		plots = append(plots, PlotRef{Title: fmt.Sprintf("Trained and control pairs before and after training, layer %d (95%% CIs; rings: mismatched baseline)", trainLayer), Path: path})
	}
	return plots, nil
}

// PlotMaps draws the 2-D maps (methods: pca, tsne) of group's pairs at
// layer with pooling p, before and after training, into dir, with the
// published settings (MapOptions' defaults); see PlotMapsWith.
func PlotMaps(dir string, group Group, layer int, p Pooling, before, after GroupVectors, methods []string) ([]PlotRef, error) {
	return PlotMapsWith(dir, group, layer, p, before, after, methods, MapOptions{})
}

// PlotMapsWith draws the maps of PlotMaps with options o. The before and
// after maps of a method come from one fit on both (one PCA basis, one
// t-SNE embedding) and are drawn on the same axes, so that they can be
// compared point for point; after may be nil.
func PlotMapsWith(dir string, group Group, layer int, p Pooling, before, after GroupVectors, methods []string, o MapOptions) ([]PlotRef, error) {
	o = o.withDefaults()
	type side struct {
		name string
		v    PairVectors
	}
	var sides []side
	for _, st := range []struct {
		name string
		gv   GroupVectors
	}{{"before", before}, {"after", after}} {
		if st.gv == nil {
			continue
		}
		v, ok := st.gv.Get(p, layer, group.Name)
		if !ok {
			return nil, fmt.Errorf("no vectors at layer %d for the map", layer)
		}
		sides = append(sides, side{st.name, v})
	}
	var plots []PlotRef
	for _, method := range methods {
		idx := samplePairs(len(group.Pairs), len(group.Pairs), 0)
		labels, perp := o.Labels, 0.0
		if method == "tsne" {
			idx = samplePairs(len(group.Pairs), o.Sample, o.Seed)
			labels, perp = len(idx), o.Perplexity
		}
		pairs := make([]Pair, len(idx))
		for i, j := range idx {
			pairs[i] = group.Pairs[j]
		}
		var x [][]float64
		for _, sd := range sides {
			src, tgt := make([][]float32, len(idx)), make([][]float32, len(idx))
			for i, j := range idx {
				src[i], tgt[i] = sd.v.Src[j], sd.v.Tgt[j]
			}
			x = mapRows(x, src, tgt)
		}
		y, axes, err := embed2(x, method, perp)
		if err != nil {
			return nil, fmt.Errorf("map of layer %d: %w", layer, err)
		}
		lim := [4]float64{math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)}
		for _, pt := range y {
			lim[0], lim[1] = math.Min(lim[0], pt[0]), math.Max(lim[1], pt[0])
			lim[2], lim[3] = math.Min(lim[2], pt[1]), math.Max(lim[3], pt[1])
		}
		pad := [2]float64{0.04 * (lim[1] - lim[0]), 0.04 * (lim[3] - lim[2])}
		lim = [4]float64{lim[0] - pad[0], lim[1] + pad[0], lim[2] - pad[1], lim[3] + pad[1]}
		what := "every pair"
		if method == "tsne" {
			what = fmt.Sprintf("%d sampled pairs, perplexity %g", len(idx), perp)
		}
		for k, sd := range sides {
			path := filepath.Join(dir, plotFile(fmt.Sprintf("map_%s_%s_layer%d", method, sd.name, layer)))
			name := map[string]string{"pca": "PCA", "tsne": "t-SNE"}[method]
			title := fmt.Sprintf("%s of Swahili (blue) and English (orange) words, layer %d, %s training", name, layer, sd.name)
			n := 2 * len(idx)
			if err := drawPairMap(path, y[k*n:(k+1)*n], pairs, labels, title, axes, &lim); err != nil {
				return nil, err
			}
			plots = append(plots, PlotRef{Title: fmt.Sprintf("%s (%s; one fit, the same axes before and after)", title, what), Path: path})
		}
	}
	return plots, nil
}

// RunOptions are the inputs of Run. Groups holds the trained pairs first
// and the control pairs second.
type RunOptions struct {
	Train       TrainOptions // Train.OutDir is set by Run (Out/train)
	AutoLayer   bool         // train at the scan's best layer >= 1 by gap instead of Train.Layer
	ScanPooling Pooling      // pooling of the scan (Train.Pooling is training's)
	EvalPooling Pooling      // pooling of the evaluation
	// EvalScope is which layers the evaluation embeds after training:
	// EvalAll (every layer; reports the training layer and the last) or
	// EvalToTrain (layers 0..training layer; reports the training layer),
	// which stops the adapted model's pass at the training layer: at layer
	// 2 of a 32-layer model, a tenth of the pass. "" means EvalAll.
	EvalScope EvalScope
	Groups    []Group
	// InitAdapter and Resume are folders: a PEFT adapter to start from (its
	// r, alpha and target modules replace Train.LoRA's; dropout stays), and
	// a checkpoint of an earlier run to continue.
	InitAdapter, Resume string
	Out                 string // the folder Run writes scan/, train/, eval/, report.md into
	// OutName is how reports name Out (the folder it will be moved to when
	// Out is a temporary one); "" means Out.
	OutName          string
	Model, PairsName string // names shown in reports
	MapMethods       []string
	Maps             MapOptions // zero: the published settings
	Commands         []string   // shown in report.md
	// Base, when not nil, holds the base model's vectors of Groups at every
	// layer for ScanPooling and EvalPooling (a sweep computes them once);
	// otherwise Run embeds them.
	Base GroupVectors
	// EvalModel, when not nil, is the model the evaluation embeds with,
	// before and after merging the adapter (the published evaluation
	// loaded the model in FP4 while the scan and training used NF4); its
	// "before" vectors are then its own, not the scan's. nil: the model.
	EvalModel *llama.Model
	// Device, when not nil, holds the model's weights and runs the scan,
	// the training steps and the evaluation (not that of an EvalModel,
	// which runs on the CPU); nil: the CPU.
	Device Device
	// SkipScanFiles leaves out scan/ (a sweep writes the scan once, beside
	// its cells).
	SkipScanFiles bool
	Stdout        io.Writer // tables and section titles; nil: none
	// OnTrainStart is called once training is set up, with the resolved
	// options and the number of steps; OnStep after every step.
	OnTrainStart func(opts TrainOptions, steps int)
	OnStep       func(StepLog)
}

// RunResult is what Run produced.
type RunResult struct {
	Prov         *Provenance // written as run.json
	Steps        []StepLog
	Scan         *ScanResult
	Train        TrainOptions // as trained (layer chosen, the init adapter's LoRA config)
	Adapter      *lora.Adapter
	Eval         *Evaluation
	Plots        []PlotRef
	TrainSeconds float64
	Base         GroupVectors
}

// Run runs the method on a model holding every layer: scan every layer
// (or take o.Base), train at the chosen layer, evaluate the trained and
// control pairs before and after at the training layer and the last
// layer, and write report.md. Errors in the options are *OptionError
// naming the field. When ctx is cancelled during training, the error wraps
// ErrInterrupted and Out holds what was written, with train/checkpoint.
func Run(ctx context.Context, m *llama.Model, tok Encoder, o RunOptions) (*RunResult, error) {
	w := o.Stdout
	if w == nil {
		w = io.Discard
	}
	if len(o.Groups) == 0 || len(o.Groups[0].Pairs) < 2 {
		n := 0
		if len(o.Groups) > 0 {
			n = len(o.Groups[0].Pairs)
		}
		return nil, optErr("Groups", "has %d trained pairs; a run needs at least 2", n)
	}
	if o.EvalScope != "" {
		if _, err := ParseEvalScope(string(o.EvalScope)); err != nil {
			return nil, optErr("EvalScope", "%v", err)
		}
	}
	for _, f := range []struct {
		name string
		p    Pooling
	}{{"ScanPooling", o.ScanPooling}, {"EvalPooling", o.EvalPooling}} {
		if _, err := ParsePooling(string(f.p)); err != nil {
			return nil, optErr(f.name, "%q: %v", f.p, err)
		}
	}
	cfg := m.Config
	if len(m.Layers) != cfg.NumLayers {
		return nil, fmt.Errorf("tli: Run needs every layer of the model loaded (%d of %d are)", len(m.Layers), cfg.NumLayers)
	}
	res := &RunResult{Train: o.Train}
	res.Prov = NewProvenance(m, o.Model)
	if o.Device != nil {
		res.Prov.Device = o.Device.Name()
	}
	phase := time.Now()
	all := LayerRange(cfg.NumLayers)
	pools := []Pooling{o.ScanPooling}
	if o.EvalPooling != o.ScanPooling {
		pools = append(pools, o.EvalPooling)
	}

	// 1. Scan: every layer, both groups, every pooling needed, one pass.
	base := o.Base
	for _, p := range pools {
		if base == nil || base[p] == nil {
			fmt.Fprintf(w, "== scan: %d + %d pairs, layers 0..%d, %s pooling\n", len(o.Groups[0].Pairs), groupLen(o.Groups, 1), cfg.NumLayers, o.ScanPooling)
			var err error
			if base, err = EmbedGroups(embedder(m, o.Device, tok), o.Groups, all, pools); err != nil {
				return nil, err
			}
			break
		}
	}
	res.Base = base
	res.Prov.Seconds["scan"] = time.Since(phase).Seconds()
	stats, err := ScanVectors(base, o.Groups[0].Name, o.ScanPooling)
	if err != nil {
		return nil, err
	}
	res.Scan = &ScanResult{Model: o.Model, Pairs: o.PairsName, Pooling: o.ScanPooling, Layers: stats, Prov: res.Prov}
	scanDir := filepath.Join(o.Out, "scan")
	if !o.SkipScanFiles {
		if err := os.MkdirAll(scanDir, 0o755); err != nil {
			return nil, err
		}
		if err := WriteScan(scanDir, res.Scan, w); err != nil {
			return nil, err
		}
	}
	if o.AutoLayer {
		best, _ := res.Scan.BestTrainable()
		res.Train.Layer = best.Layer
		fmt.Fprintf(w, "layer auto: training at layer %d (largest gap among layers >= 1)\n", best.Layer)
	}

	// 2. Train at the chosen layer.
	fmt.Fprintf(w, "\n== train at layer %d\n", res.Train.Layer)
	res.Train.OutDir = filepath.Join(o.Out, "train")
	if err := os.MkdirAll(res.Train.OutDir, 0o755); err != nil {
		return nil, err
	}
	start := time.Now()
	onStep := func(l StepLog) {
		res.Steps = append(res.Steps, l)
		if o.OnStep != nil {
			o.OnStep(l)
		}
	}
	if o.Device != nil {
		res.Train.Device = o.Device
	}
	a, err := TrainPrepared(ctx, m, tok, o.Groups[0].Pairs, &res.Train, o.InitAdapter, o.Resume, o.OnTrainStart, onStep)
	res.TrainSeconds = time.Since(start).Seconds()
	res.Prov.Seconds["train"] = res.TrainSeconds
	if err != nil {
		return res, err
	}
	res.Adapter = a
	res.Prov.Settings = trainSettings(res.Train, o.ScanPooling, o.EvalPooling, cmpScope(o.EvalScope))
	var lossPlot []PlotRef
	if len(res.Steps) > 0 {
		path := filepath.Join(res.Train.OutDir, plotFile("loss"))
		if err := PlotLossCurve(path, res.Steps, fmt.Sprintf("Training at layer %d: loss and learning rate", res.Train.Layer)); err != nil {
			return res, err
		}
		lossPlot = []PlotRef{{Title: "Training loss and learning rate", Path: path}}
	}
	phase = time.Now()

	// 3. Evaluate: before = the scan's vectors; after = adapter merged.
	report := ReportLayers(res.Train.Layer, cfg.NumLayers)
	if o.EvalScope == EvalToTrain {
		all, report = LayerRange(res.Train.Layer), []int{res.Train.Layer}
	}
	fmt.Fprintf(w, "\n== eval at layers %v, %s pooling\n", report, o.EvalPooling)
	evalDir := filepath.Join(o.Out, "eval")
	if err := os.MkdirAll(evalDir, 0o755); err != nil {
		return res, err
	}
	em, edev, before := m, o.Device, base
	if o.EvalModel != nil {
		em, edev, before = o.EvalModel, nil, nil
		res.Prov.EvalNumerics = em.Numerics.String()
	}
	ev, err := Evaluate(em, edev, tok, a, o.Groups, all, report, o.EvalPooling, before)
	if err != nil {
		return res, err
	}
	res.Eval = ev
	ev.Summary.Prov = res.Prov
	outName := o.OutName
	if outName == "" {
		outName = o.Out
	}
	ev.Summary.Model, ev.Summary.Adapter = o.Model, filepath.Join(outName, "train", "final")
	plots, err := ev.Write(evalDir, o.Groups, all, res.Train.Layer, w)
	if err != nil {
		return res, err
	}
	maps, err := PlotMapsWith(evalDir, o.Groups[0], res.Train.Layer, o.EvalPooling, ev.Before, ev.After, o.MapMethods, o.Maps)
	if err != nil {
		return res, err
	}
	if !o.SkipScanFiles {
		plots = append([]PlotRef{{Title: "Alignment gap by layer (scan)", Path: filepath.Join(scanDir, plotFile("scan"))}}, plots...)
	}
	res.Plots = append(append(plots, maps...), lossPlot...)
	res.Prov.Seconds["eval"] = time.Since(phase).Seconds()

	// 4. Report: report.md, and run.json with the provenance.
	rep := Report{Title: "TLI run", Scan: res.Scan, Eval: ev.Summary, Plots: res.Plots, Commands: o.Commands, Run: res.Prov,
		Train: summarizeSteps(res.Train.Layer, res.Steps)}
	if err := writeJSON(filepath.Join(o.Out, "run.json"), map[string]any{"schema": SchemaVersion, "provenance": res.Prov, "train": rep.Train}); err != nil {
		return res, err
	}
	if err := WriteReportMarkdown(filepath.Join(o.Out, "report.md"), rep); err != nil {
		return res, err
	}
	return res, nil
}

// embedder embeds with m, on dev when not nil.
func embedder(m *llama.Model, dev Device, tok Encoder) *ModelEmbedder {
	e := &ModelEmbedder{Model: m, Tok: tok}
	if dev != nil {
		e.Device = dev
	}
	return e
}

// cmpScope is scope, EvalAll when unset.
func cmpScope(scope EvalScope) EvalScope {
	if scope == "" {
		return EvalAll
	}
	return scope
}

// TrainSummary is the training section of a report: steps and the first
// and last losses.
type TrainSummary struct {
	Layer     int     `json:"layer"`
	Steps     int     `json:"steps"`
	FirstLoss float64 `json:"first_loss"`
	LastLoss  float64 `json:"last_loss"`
}

func summarizeSteps(layer int, logs []StepLog) *TrainSummary {
	if len(logs) == 0 {
		return nil
	}
	return &TrainSummary{Layer: layer, Steps: logs[len(logs)-1].Step, FirstLoss: logs[0].Loss, LastLoss: logs[len(logs)-1].Loss}
}

func groupLen(groups []Group, i int) int {
	if i < len(groups) {
		return len(groups[i].Pairs)
	}
	return 0
}

// TrainPrepared is Train with the set-up the commands share: it loads
// initAdapter (a PEFT folder; its r, alpha and target modules replace
// opts.LoRA's, dropout and a set BaseModel stay) into opts, validates opts, calls onStart with
// the resolved options and the step count, and trains. opts is updated to
// what was trained.
func TrainPrepared(ctx context.Context, m *llama.Model, tok Encoder, pairs []Pair, opts *TrainOptions, initAdapter, resume string, onStart func(TrainOptions, int), onStep func(StepLog)) (*lora.Adapter, error) {
	if initAdapter != "" {
		a, err := lora.Load(initAdapter, m.Config)
		if err != nil {
			return nil, &OptionError{Field: "InitAdapter", Problem: err.Error()}
		}
		opts.InitAdapter = a
		dropout, base := opts.LoRA.Dropout, opts.LoRA.BaseModel
		opts.LoRA = a.Config
		opts.LoRA.Dropout = dropout
		if base != "" {
			opts.LoRA.BaseModel = base
		}
	}
	if err := opts.Validate(m.Config, len(pairs)); err != nil {
		return nil, err
	}
	if onStart != nil {
		onStart(*opts, opts.Steps(len(pairs)))
	}
	return Train(ctx, m, tok, pairs, *opts, resume, onStep)
}

// Steps is the number of optimiser steps a run on n pairs takes.
func (o *TrainOptions) Steps(n int) int {
	if o.MaxSteps > 0 {
		return o.MaxSteps
	}
	return (n + o.Batch - 1) / o.Batch * o.Epochs
}

// IsInterrupted reports whether err says training stopped on a cancelled
// context after writing its checkpoint.
func IsInterrupted(err error) bool { return errors.Is(err, ErrInterrupted) }
