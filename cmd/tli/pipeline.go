package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/lora"
	"github.com/tli-project/tli/tli"
)

// This file holds the steps that scan, eval, plot and run share: each
// takes a loaded model and writes its files into a folder.

// bestLayers returns the layer with the largest gap (matched minus
// mismatched cosine) and the one with the largest raw mean.
func bestLayers(res *tli.ScanResult) (byGap, byMean tli.LayerStats) {
	byGap, _ = res.Best()
	for i, l := range res.Layers {
		if i == 0 || l.Mean > byMean.Mean {
			byMean = l
		}
	}
	return byGap, byMean
}

// writeScan writes scan.csv, scan.json and scan.png into dir and prints the
// table and the best layers.
func writeScan(dir string, res *tli.ScanResult) error {
	if err := tli.WriteScanCSV(filepath.Join(dir, "scan.csv"), res); err != nil {
		return err
	}
	if err := tli.WriteScanJSON(filepath.Join(dir, "scan.json"), res); err != nil {
		return err
	}
	byGap, byMean := bestLayers(res)
	layers := make([]int, len(res.Layers))
	gaps := make([]float64, len(res.Layers))
	for i, l := range res.Layers {
		layers[i], gaps[i] = l.Layer, l.Gap
	}
	title := fmt.Sprintf("Swahili-English alignment by layer (%s pooling)", res.Pooling)
	if err := tli.PlotLayerBars(filepath.Join(dir, "scan.png"), layers, gaps, byGap.Layer, title, "gap: matched - mismatched cosine"); err != nil {
		return err
	}
	if err := tli.WriteScanTable(os.Stdout, res); err != nil {
		return err
	}
	fmt.Printf("best layer by gap: %d (mean %.4f, mismatched %.4f, gap %.4f, P@1 %.3f)\n",
		byGap.Layer, byGap.Mean, byGap.MismatchedMean, byGap.Gap, byGap.PrecisionAt1)
	fmt.Printf("best layer by raw mean: %d (mean %.4f, mismatched %.4f)%s\n", byMean.Layer, byMean.Mean, byMean.MismatchedMean,
		map[bool]string{true: "  <- the raw mean is not alignment: see the mismatched baseline", false: ""}[byMean.Layer != byGap.Layer])
	return nil
}

// evalResult is what an evaluation produced.
type evalResult struct {
	summary *tli.EvalSummary
	rows    []tli.PairResult
	before  tli.GroupVectors // base model, every layer in layers
	after   tli.GroupVectors // adapter merged
}

// evaluate embeds the groups with the base model (unless before already
// holds them for this pooling) and with the adapter merged, at every layer
// of all, and summarises the layers of report.
func evaluate(m *llama.Model, tok tli.Encoder, a *lora.Adapter, groups []tli.Group, all, report []int, p tli.Pooling, before tli.GroupVectors) (*evalResult, error) {
	if before == nil || before[p] == nil {
		var err error
		before, err = tli.EmbedGroups(&tli.ModelEmbedder{Model: m, Tok: tok}, groups, all, []tli.Pooling{p})
		if err != nil {
			return nil, fmt.Errorf("base model: %w", err)
		}
	}
	after, err := tli.EmbedAdapted(m, tok, a, groups, all, []tli.Pooling{p})
	if err != nil {
		return nil, fmt.Errorf("adapted model: %w", err)
	}
	sums, rows, err := tli.Compare(before, after, groups, report, p)
	if err != nil {
		return nil, err
	}
	return &evalResult{summary: &tli.EvalSummary{Pooling: p, Groups: sums, Notes: collapseNotes(sums)}, rows: rows, before: before, after: after}, nil
}

// collapseNotes warns where the mean cosine rose but the gap to the
// mismatched baseline did not: the adapter pulled every word together
// instead of aligning translations, and the raw mean overstates the effect.
func collapseNotes(sums []tli.GroupSummary) []string {
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

// writeEval writes results.csv, summary.json and the plots of an
// evaluation into dir, prints the table, and returns the plots made.
func writeEval(dir string, r *evalResult, groups []tli.Group, all []int, trainLayer int) ([]tli.PlotRef, error) {
	if err := tli.WriteResultsCSV(filepath.Join(dir, "results.csv"), r.rows); err != nil {
		return nil, err
	}
	if err := tli.WriteSummaryJSON(filepath.Join(dir, "summary.json"), r.summary); err != nil {
		return nil, err
	}
	if err := tli.WriteEvalTable(os.Stdout, r.summary); err != nil {
		return nil, err
	}
	for _, n := range r.summary.Notes {
		fmt.Println(n)
	}
	var plots []tli.PlotRef
	p := r.summary.Pooling
	// Per-layer cosine before and after, with the mismatched baselines.
	if len(all) > 1 {
		pre, err := tli.ScanVectors(r.before, groups[0].Name, p)
		if err != nil {
			return nil, err
		}
		post, err := tli.ScanVectors(r.after, groups[0].Name, p)
		if err != nil {
			return nil, err
		}
		path := filepath.Join(dir, "layers_before_after.png")
		if err := tli.PlotLayerLines(path, pre, post, fmt.Sprintf("%s pairs by layer, before and after (%s pooling)", groups[0].Name, p)); err != nil {
			return nil, err
		}
		plots = append(plots, tli.PlotRef{Title: "Per-layer cosine before and after training (dashed: mismatched baseline)", Path: path})
	}
	// Histogram of per-pair change at the training layer.
	var changes []float64
	for _, row := range r.rows {
		if row.Layer == trainLayer && row.Group == groups[0].Name {
			changes = append(changes, row.SimPost-row.SimPre)
		}
	}
	if len(changes) > 0 {
		path := filepath.Join(dir, "change_histogram.png")
		if err := tli.PlotHistogram(path, changes, 0, fmt.Sprintf("Per-pair change of cosine at layer %d (%s pairs)", trainLayer, groups[0].Name)); err != nil {
			return nil, err
		}
		plots = append(plots, tli.PlotRef{Title: fmt.Sprintf("Per-pair change at layer %d", trainLayer), Path: path})
	}
	return plots, nil
}

// plotMaps draws the 2-D maps of the first group at layer before (and
// after, when after is not nil) training with each method.
func plotMaps(dir string, group tli.Group, layer int, p tli.Pooling, before, after tli.GroupVectors, methods []string) ([]tli.PlotRef, error) {
	var plots []tli.PlotRef
	for _, method := range methods {
		for _, st := range []struct {
			name string
			gv   tli.GroupVectors
		}{{"before", before}, {"after", after}} {
			if st.gv == nil {
				continue
			}
			v, ok := st.gv.Get(p, layer, group.Name)
			if !ok {
				return nil, fmt.Errorf("no vectors at layer %d for the map", layer)
			}
			path := filepath.Join(dir, fmt.Sprintf("map_%s_%s_layer%d.png", method, st.name, layer))
			title := fmt.Sprintf("%s of Swahili (blue) and English (orange) words, layer %d, %s training", strings.ToUpper(method), layer, st.name)
			if err := tli.PlotPairMap(path, v.Src, v.Tgt, group.Pairs, method, 25, title); err != nil {
				return nil, err
			}
			plots = append(plots, tli.PlotRef{Title: title, Path: path})
		}
	}
	return plots, nil
}

// layerRange is 0..n.
func layerRange(n int) []int {
	out := make([]int, n+1)
	for i := range out {
		out[i] = i
	}
	return out
}
