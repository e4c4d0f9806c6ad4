package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/tli-project/tli/internal/atomicfs"
	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/tli"
)

func init() {
	register("run", "the whole method: scan -> train -> eval -> report.md with plots", runRun)
}

// runOptions are the inputs of the whole pipeline: the model flags, the
// library's options and where the result goes.
type runOptions struct {
	mf     modelFlags
	run    tli.RunOptions
	inputs []atomicfs.Input // flags naming files --out may not touch
	out    string
	force  bool
	// evalNumerics, when not nil, loads a second model in this setting for
	// the evaluation (--paper-compat: FP4).
	evalNumerics *llama.Numerics
}

func runRun(args []string) error {
	fs := newFlagSet("run", "")
	pf := addPlotFlags(fs)
	mf := addModelFlags(fs, "f32")
	tf := addTrainFlags(fs)
	control := fs.String("control", "", "held-out control pairs (default: the embedded control list)")
	out := fs.String("out", "", "output folder: scan/, train/, eval/, report.md")
	force := fs.Bool("force", false, "write into an existing, non-empty --out")
	controlCat := fs.String("control-category", "", "evaluate only the control pairs of this word class (with --train-category: train on one class, test on another)")
	mapf := addMapFlags(fs)
	evalPooling := fs.String("eval-pooling", "", "pooling of the evaluation (default: --pooling's): with --pooling mean --eval-pooling content, training pools with BOS and the evaluation without, as the published run (--paper-compat) does")
	evalLayers := fs.String("eval-layers", string(tli.EvalAll), "layers the evaluation embeds after training: all (every layer; reports the training layer and the last) or train (0..the training layer only, a shorter pass)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := pf.apply(); err != nil {
		return err
	}
	scope, err := tli.ParseEvalScope(*evalLayers)
	if err != nil {
		return usageErrorf("--eval-layers: %v", err)
	}
	mapOpts, err := mapf.options()
	if err != nil {
		return err
	}
	opts, err := tf.options(setFlagNames(fs))
	if err != nil {
		return err
	}
	// Pooling of each stage: one choice for all, or the published ones.
	scanPool, evalPool := opts.Pooling, opts.Pooling
	var evalNum *llama.Numerics
	if *evalPooling != "" {
		if *tf.paperCompat {
			return errPaperPooling
		}
		if evalPool, err = tli.ParsePooling(*evalPooling); err != nil {
			return usageErrorf("--eval-pooling: %v", err)
		}
	}
	if *tf.paperCompat {
		scanPool, evalPool = tli.PoolMean, tli.PoolContent
		evalNum = &tli.PaperEvalNumerics
		if err := mf.usePaper(tli.PaperScanNumerics, "run"); err != nil {
			return err
		}
	}
	groups, err := groupsFrom(*tf.pairs, *control, *tf.trainCategory, *controlCat)
	if err != nil {
		return err
	}
	return pipeline(runOptions{mf: mf, out: *out, force: *force, evalNumerics: evalNum,
		inputs: []atomicfs.Input{{Flag: "--pairs", Path: *tf.pairs}, {Flag: "--control", Path: *control}},
		run: tli.RunOptions{Train: opts, AutoLayer: *tf.layer == "auto", ScanPooling: scanPool, EvalPooling: evalPool, EvalScope: scope,
			Groups: groups, InitAdapter: *tf.initAdapter, Resume: *tf.resume, PairsName: pairsName(*tf.pairs, "embedded training list"),
			MapMethods: []string{"pca", "tsne"}, Maps: mapOpts, Commands: []string{commandLine()}}})
}

// pipeline maps the flags to tli.RunOptions and runs tli.Run. Everything
// is built beside --out and moved into it at the end (report.md last), so a
// failed or killed run leaves --out as it was; an interrupted one
// (SIGINT/SIGTERM during training) moves what it has, with the training
// checkpoint and without report.md.
func pipeline(o runOptions) error {
	if len(o.run.Groups) == 0 || len(o.run.Groups[0].Pairs) < 2 {
		return optionError(&tli.OptionError{Field: "Groups", Problem: "needs at least 2 pairs"})
	}
	if _, err := o.mf.check(); err != nil {
		return err
	}
	// The adapters' base_model_name_or_path: --base-model-id, else the
	// repo id or folder name --model gave.
	o.run.Train.LoRA.BaseModel = o.mf.baseModelID(o.run.Train.LoRA.BaseModel)
	st, err := stageOut(o.out, o.force, append([]atomicfs.Input{{Flag: "--model", Path: *o.mf.dir}}, o.inputs...)...)
	if err != nil {
		return err
	}
	defer st.Abort()
	cfg, err := peekConfig(*o.mf.dir)
	if err != nil {
		return err
	}
	m, tok, err := o.mf.load(cfg.NumLayers)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := checkGroupsTokenize(o.run.Groups, tok); err != nil {
		return err
	}
	if o.evalNumerics != nil {
		dt, _ := o.mf.check()
		em, err := o.mf.loadModel(dt, cfg.NumLayers, *o.evalNumerics)
		if err != nil {
			return err
		}
		defer em.Close()
		layerProgress(em)
		o.run.EvalModel = em
	}
	dev, closeDev, err := o.mf.openDevice(m)
	if err != nil {
		return err
	}
	defer closeDev()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tr := newTrainReporter(filepath.Join(o.out, "train"))
	ro := o.run
	if dev != nil {
		ro.Device = dev
	}
	ro.Out, ro.OutName, ro.Model, ro.Stdout, ro.OnTrainStart, ro.OnStep = st.Path(), o.out, o.mf.name(), os.Stdout, tr.start, tr.step
	_, err = tli.Run(ctx, m, tok, ro)
	err = tr.finish(err)
	if errors.Is(err, errInterrupted) {
		if cerr := st.CommitInto(); cerr != nil {
			return fmt.Errorf("%v; moving the partial run into --out failed: %w", err, cerr)
		}
		return err
	}
	if err != nil {
		return err
	}
	if err := st.CommitInto("report.md"); err != nil {
		return err
	}
	fmt.Printf("\nreport: %s\n", absPath(filepath.Join(o.out, "report.md")))
	return nil
}
