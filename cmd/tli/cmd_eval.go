package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/tli-project/tli/internal/atomicfs"
	"github.com/tli-project/tli/lora"
	"github.com/tli-project/tli/tli"
)

func init() {
	register("eval", "compare pair cosines before and after an adapter, with statistics", runEval)
}

// groupsFrom builds the trained and control groups from flags, keeping
// the pairs of the given categories ("": all).
func groupsFrom(pairsPath, controlPath, trainCat, controlCat string) ([]tli.Group, error) {
	trained, err := readPairs("--pairs", pairsPath, tli.DefaultTrainPairs())
	if err != nil {
		return nil, err
	}
	if trained, err = tli.SelectCategory(trained, trainCat); err != nil {
		return nil, usageErrorf("--train-category: --pairs: %v", err)
	}
	control, err := readPairs("--control", controlPath, tli.DefaultControlPairs())
	if err != nil {
		return nil, err
	}
	if control, err = tli.SelectCategory(control, controlCat); err != nil {
		return nil, usageErrorf("--control-category: --control: %v", err)
	}
	return []tli.Group{{Name: "trained", Pairs: trained}, {Name: "control", Pairs: control}}, nil
}

func runEval(args []string) error {
	fs := newFlagSet("eval", "")
	pf := addPlotFlags(fs)
	mf := addModelFlags(fs, "f32")
	adapterDir := fs.String("adapter", "", "PEFT adapter folder (e.g. OUT/final of tli train)")
	pairsFlag := fs.String("pairs", "", "trained pairs (default: the embedded training list)")
	controlFlag := fs.String("control", "", "held-out control pairs (default: the embedded control list)")
	layersFlag := fs.String("layers", "", "layers to report, K,K,... (default: the adapter's training layer and the final layer)")
	pooling := fs.String("pooling", string(tli.PoolContent), "pooling: content (BOS/EOS left out), mean or last")
	paper := fs.Bool("paper-compat", false, "the published evaluation: content pooling (BOS/EOS left out), FP4 weights and fp16 activations, the adapter merged into the 4-bit weights")
	out := fs.String("out", "", "output folder: results.csv, summary.json, plots")
	force := fs.Bool("force", false, "write into an existing, non-empty --out")
	trainCat := fs.String("train-category", "", "evaluate only the trained pairs of this word class (the list's category column)")
	controlCat := fs.String("control-category", "", "evaluate only the control pairs of this word class")
	asJSON := fs.Bool("json", false, "print summary.json on stdout instead of the table")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := pf.apply(); err != nil {
		return err
	}
	if *adapterDir == "" {
		return usageErrorf("--adapter is required")
	}
	p, err := poolingFlag(*pooling, setFlagNames(fs), *paper, tli.PoolContent)
	if err != nil {
		return err
	}
	if *paper {
		if err := mf.usePaper(tli.PaperEvalNumerics, "eval"); err != nil {
			return err
		}
	}
	groups, err := groupsFrom(*pairsFlag, *controlFlag, *trainCat, *controlCat)
	if err != nil {
		return err
	}
	if err := mf.resolve(); err != nil {
		return err
	}
	st, err := stageOut(*out, *force, atomicfs.Input{Flag: "--model", Path: *mf.dir}, atomicfs.Input{Flag: "--adapter", Path: *adapterDir},
		atomicfs.Input{Flag: "--pairs", Path: *pairsFlag}, atomicfs.Input{Flag: "--control", Path: *controlFlag})
	if err != nil {
		return err
	}
	defer st.Abort()
	cfg, err := peekConfig(*mf.dir)
	if err != nil {
		return err
	}
	info, hasInfo, err := tli.ReadAdapterInfo(*adapterDir)
	if err != nil {
		return fmt.Errorf("--adapter: %w", err)
	}
	trainLayer := 2
	if hasInfo {
		if info.Layer > cfg.NumLayers {
			return fmt.Errorf("--adapter: %s/trainer_state.json says layer %d, but the model has layers 0..%d: was it trained on another model?", *adapterDir, info.Layer, cfg.NumLayers)
		}
		trainLayer = info.Layer
	} else if *layersFlag == "" {
		fmt.Fprintf(os.Stderr, "tli eval: %s has no trainer_state.json (not written by tli train): reporting layer 2, the published training layer, and the final layer (--layers to choose)\n", *adapterDir)
	}
	var report []int
	if *layersFlag == "" {
		report = tli.ReportLayers(trainLayer, cfg.NumLayers)
	} else if report, err = parseLayers("--layers", *layersFlag, cfg.NumLayers); err != nil {
		return err
	}
	m, tok, err := mf.load(maxOf(report))
	if err != nil {
		return err
	}
	defer m.Close()
	a, err := lora.Load(*adapterDir, m.Config)
	if err != nil {
		return fmt.Errorf("--adapter: %w", err)
	}
	if err := checkGroupsTokenize(groups, tok); err != nil {
		return err
	}
	dev, closeDev, err := mf.openDevice(m)
	if err != nil {
		return err
	}
	defer closeDev()
	start := time.Now()
	r, err := tli.Evaluate(m, dev, tok, a, groups, report, report, p, nil)
	if err != nil {
		return err
	}
	r.Summary.Model, r.Summary.Adapter = mf.name(), *adapterDir
	prov := tli.NewProvenance(m, mf.name())
	if dev != nil {
		prov.Device = dev.Name()
	}
	prov.Settings = map[string]any{"pooling": string(p), "layers": report, "adapter": *adapterDir,
		"rank": a.Config.R, "alpha": a.Config.Alpha, "targets": a.Config.TargetModules}
	prov.Seconds["eval"] = time.Since(start).Seconds()
	r.Summary.Prov = prov
	plots, err := r.Write(st.Path(), groups, report, trainLayer, textOut(*asJSON))
	if err != nil {
		return err
	}
	if err := tli.WriteReportMarkdown(filepath.Join(st.Path(), "report.md"), tli.Report{Title: "TLI evaluation", Eval: r.Summary, Plots: plots, Commands: []string{commandLine()}, Run: prov}); err != nil {
		return err
	}
	if err := st.CommitInto("report.md"); err != nil {
		return err
	}
	if *asJSON {
		return printFile(filepath.Join(*out, "summary.json"))
	}
	fmt.Printf("wrote %s/results.csv, summary.json, report.md\n", absPath(*out))
	return nil
}

// commandLine is the invocation, for reports.
func commandLine() string {
	s := "tli"
	for _, a := range os.Args[1:] {
		s += " " + a
	}
	return s
}
