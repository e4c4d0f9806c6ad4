package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tli-project/tli/internal/atomicfs"
	"github.com/tli-project/tli/tli"
)

func init() {
	register("run", "the whole method: scan -> train -> eval -> report.md with plots", runRun)
}

// runOptions are the inputs of the whole pipeline.
type runOptions struct {
	mf          modelFlags
	tf          trainFlags
	set         map[string]bool
	control     string
	out         string
	force       bool
	mapMethods  []string
	commandLine string
}

func runRun(args []string) error {
	fs := newFlagSet("run", "")
	mf := addModelFlags(fs)
	tf := addTrainFlags(fs)
	control := fs.String("control", "", "held-out control pairs (default: the embedded control list)")
	out := fs.String("out", "", "output folder: scan/, train/, eval/, report.md")
	force := fs.Bool("force", false, "write into an existing, non-empty --out")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	return pipeline(runOptions{mf: mf, tf: tf, set: setFlagNames(fs), control: *control, out: *out, force: *force,
		mapMethods: []string{"pca", "tsne"}, commandLine: commandLine()})
}

// pipeline runs scan -> train -> eval and writes report.md. The base
// model's vectors from the scan pass are reused as the "before" numbers.
// Everything is built beside --out and moved into it at the end (report.md
// last), so a failed or killed run leaves --out as it was; an interrupted
// one (SIGINT/SIGTERM during training) moves what it has, with the training
// checkpoint and without report.md.
func pipeline(o runOptions) error {
	opts, err := o.tf.options(o.set)
	if err != nil {
		return err
	}
	// Pooling of each stage: one choice for all, or the published ones.
	scanPool, evalPool := opts.Pooling, opts.Pooling
	if *o.tf.paperCompat {
		scanPool, evalPool = tli.PoolMean, tli.PoolContent
	}
	groups, err := groupsFrom(*o.tf.pairs, o.control)
	if err != nil {
		return err
	}
	if len(groups[0].Pairs) < 2 {
		return usageErrorf("--pairs: need at least 2 pairs, got %d", len(groups[0].Pairs))
	}
	st, err := stageOut(o.out, o.force, atomicfs.Input{Flag: "--model", Path: *o.mf.dir},
		atomicfs.Input{Flag: "--pairs", Path: *o.tf.pairs}, atomicfs.Input{Flag: "--control", Path: o.control})
	if err != nil {
		return err
	}
	defer st.Abort()
	out := st.Path()
	cfg, err := peekConfig(*o.mf.dir)
	if err != nil {
		return err
	}
	m, tok, err := o.mf.load(cfg.NumLayers)
	if err != nil {
		return err
	}
	defer m.Close()
	for _, g := range groups {
		if err := checkPairsTokenize("--"+map[string]string{"trained": "pairs", "control": "control"}[g.Name], g.Pairs, tok); err != nil {
			return err
		}
	}

	// 1. Scan: every layer, both groups, every pooling needed, one pass.
	all := layerRange(cfg.NumLayers)
	fmt.Printf("== scan: %d + %d pairs, layers 0..%d, %s pooling\n", len(groups[0].Pairs), len(groups[1].Pairs), cfg.NumLayers, scanPool)
	pools := []tli.Pooling{scanPool}
	if evalPool != scanPool {
		pools = append(pools, evalPool)
	}
	base, err := tli.EmbedGroups(&tli.ModelEmbedder{Model: m, Tok: tok}, groups, all, pools)
	if err != nil {
		return err
	}
	stats, err := tli.ScanVectors(base, "trained", scanPool)
	if err != nil {
		return err
	}
	scan := &tli.ScanResult{Model: *o.mf.dir, Pairs: pairsName(*o.tf.pairs, "embedded training list"), Pooling: scanPool, Layers: stats}
	scanDir := filepath.Join(out, "scan")
	if err := os.MkdirAll(scanDir, 0o755); err != nil {
		return err
	}
	if err := writeScan(scanDir, scan); err != nil {
		return err
	}
	if *o.tf.layer == "auto" {
		best, _ := scan.Best()
		if best.Layer == 0 {
			// Layer 0 is the embedding table: LoRA on attention cannot move it.
			best = scan.Layers[1]
			for _, l := range scan.Layers[1:] {
				if l.Gap > best.Gap {
					best = l
				}
			}
		}
		opts.Layer = best.Layer
		fmt.Printf("--layer auto: training at layer %d (largest gap among layers >= 1)\n", opts.Layer)
	}

	// 2. Train at the chosen layer.
	fmt.Printf("\n== train at layer %d\n", opts.Layer)
	opts.OutDir = filepath.Join(out, "train")
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return err
	}
	if err := opts.Validate(m.Config, len(groups[0].Pairs)); err != nil {
		return usageErrorf("%v", err)
	}
	a, err := trainLoaded(m, tok, o.tf, opts, groups[0].Pairs, filepath.Join(o.out, "train"))
	if errors.Is(err, errInterrupted) {
		if cerr := st.CommitInto(); cerr != nil {
			return fmt.Errorf("%v; moving the partial run into --out failed: %w", err, cerr)
		}
		return err
	}
	if err != nil {
		return err
	}

	// 3. Evaluate: before = the scan's vectors; after = adapter merged.
	report := []int{opts.Layer}
	if cfg.NumLayers != opts.Layer {
		report = append(report, cfg.NumLayers)
	}
	fmt.Printf("\n== eval at layers %v, %s pooling\n", report, evalPool)
	evalDir := filepath.Join(out, "eval")
	if err := os.MkdirAll(evalDir, 0o755); err != nil {
		return err
	}
	r, err := evaluate(m, tok, a, groups, all, report, evalPool, base)
	if err != nil {
		return err
	}
	r.summary.Model, r.summary.Adapter = *o.mf.dir, filepath.Join(o.out, "train", "final")
	plots, err := writeEval(evalDir, r, groups, all, opts.Layer)
	if err != nil {
		return err
	}
	maps, err := plotMaps(evalDir, groups[0], opts.Layer, evalPool, r.before, r.after, o.mapMethods)
	if err != nil {
		return err
	}
	plots = append([]tli.PlotRef{{Title: "Alignment gap by layer (scan)", Path: filepath.Join(scanDir, "scan.png")}}, plots...)
	plots = append(plots, maps...)

	// 4. Report.
	if err := tli.WriteReportMarkdown(filepath.Join(out, "report.md"), tli.Report{Title: "TLI run", Scan: scan, Eval: r.summary, Plots: plots, Commands: []string{o.commandLine}}); err != nil {
		return err
	}
	if err := st.CommitInto("report.md"); err != nil {
		return err
	}
	fmt.Printf("\nreport: %s\n", absPath(filepath.Join(o.out, "report.md")))
	return nil
}
