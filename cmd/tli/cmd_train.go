package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/tli-project/tli/internal/atomicfs"
	"github.com/tli-project/tli/lora"
	"github.com/tli-project/tli/tli"
)

func init() {
	register("train", "train LoRA adapters with the TLI triplet loss at one layer", runTrain)
}

// trainFlags are the training settings, shared by train and run.
type trainFlags struct {
	pairs, initAdapter, resume, targets, pooling, layer *string
	trainCategory                                       *string
	epochs, batch, warmup, rank, maxSteps               *int
	lr, margin, alpha, dropout                          *float64
	seed                                                *uint64
	shuffle                                             *bool
	paperCompat                                         *bool
	baseModelID                                         *string
}

func addTrainFlags(fs *flag.FlagSet) trainFlags {
	p := tli.PaperTrainOptions()
	return trainFlags{
		pairs:         fs.String("pairs", "", "training pairs: JSON list of {swahili,english} or {source,target}, or TSV/CSV with a header (default: the embedded list of 623 pairs)"),
		layer:         fs.String("layer", strconv.Itoa(p.Layer), "target layer (HF hidden_states index; the forward stops there); run also takes auto (best layer of the scan by gap)"),
		epochs:        fs.Int("epochs", p.Epochs, "epochs"),
		batch:         fs.Int("batch", p.Batch, "pairs per step (the other pairs of the batch are the negatives)"),
		lr:            fs.Float64("lr", p.LR, "peak AdamW learning rate"),
		warmup:        fs.Int("warmup", p.Warmup, "linear warm-up steps (then linear decay to 0)"),
		margin:        fs.Float64("margin", p.Margin, "triplet margin"),
		rank:          fs.Int("rank", p.LoRA.R, "LoRA rank r"),
		alpha:         fs.Float64("alpha", p.LoRA.Alpha, "LoRA alpha (scale alpha/r)"),
		dropout:       fs.Float64("dropout", p.LoRA.Dropout, "LoRA dropout"),
		targets:       fs.String("targets", tli.DefaultTargetsName, "LoRA target modules, comma-separated (Llama family: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj; BLOOM: query_key_value,dense,dense_h_to_4h,dense_4h_to_h), or default: PEFT's default for the model family (q_proj,v_proj, as the paper; BLOOM: query_key_value)"),
		pooling:       fs.String("pooling", string(tli.PoolContent), "pooling of a word's tokens: content (BOS/EOS left out), mean (all tokens) or last"),
		seed:          fs.Uint64("seed", p.Seed, "seed of adapter init, shuffling and dropout"),
		shuffle:       fs.Bool("shuffle", true, "shuffle the pairs every epoch (false: file order)"),
		initAdapter:   fs.String("init-adapter", "", "start from this PEFT adapter folder instead of a fresh init"),
		maxSteps:      fs.Int("max-steps", 0, "stop after N optimiser steps and make N the schedule's total"),
		resume:        fs.String("resume", "", "continue a run from its checkpoint folder (OUT/checkpoint or OUT/epoch_K)"),
		paperCompat:   fs.Bool("paper-compat", false, "the published setting: mean pooling with BOS included, NF4 weights and fp16 activations (run: the evaluation in FP4, content pooling)"),
		trainCategory: fs.String("train-category", "", "train only on the pairs of this word class (the list's category column; tli pairs --freedict fills it: n, v, adj, ...)"),
		baseModelID:   fs.String("base-model-id", "", baseModelIDUsage),
	}
}

// baseModelIDUsage is --base-model-id's help.
const baseModelIDUsage = "base_model_name_or_path of the adapters' adapter_config.json, which PEFT's AutoPeftModel and llama.cpp's converter load the base model by (default: the repo id --model gave, else the model folder's name)"

// errPaperPooling refuses --pooling beside --paper-compat, which sets it.
var errPaperPooling = usageErrorf("--paper-compat sets the pooling (scan and training: mean with BOS, evaluation: content); drop --pooling, --eval-pooling or --paper-compat")

// options turns the flags into TrainOptions; setFlags says which flags the
// user gave.
func (f trainFlags) options(setFlags map[string]bool) (tli.TrainOptions, error) {
	o := tli.PaperTrainOptions()
	o.Epochs, o.Batch, o.LR, o.Warmup, o.Margin = *f.epochs, *f.batch, *f.lr, *f.warmup, *f.margin
	if *f.layer != "auto" {
		k, err := strconv.Atoi(*f.layer)
		if err != nil {
			return o, usageErrorf("--layer %q: want a layer number", *f.layer)
		}
		o.Layer = k
	}
	o.Seed, o.Shuffle, o.MaxSteps = *f.seed, *f.shuffle, *f.maxSteps
	pool := *f.pooling
	if *f.paperCompat {
		if setFlags["pooling"] {
			return o, errPaperPooling
		}
		pool = string(tli.PoolMean)
	}
	p, err := tli.ParsePooling(pool)
	if err != nil {
		return o, usageErrorf("--pooling: %v", err)
	}
	o.Pooling = p
	o.LoRA.R, o.LoRA.Alpha, o.LoRA.Dropout = *f.rank, *f.alpha, *f.dropout
	o.LoRA.TargetModules = tli.ParseTargets(*f.targets)
	o.LoRA.BaseModel = *f.baseModelID
	if *f.maxSteps < 0 {
		return o, usageErrorf("--max-steps %d must be >= 0", *f.maxSteps)
	}
	if *f.initAdapter != "" {
		for _, name := range []string{"rank", "alpha", "targets"} {
			if setFlags[name] {
				return o, usageErrorf("--%s cannot be combined with --init-adapter: the adapter's own r, alpha and target modules are used (see its adapter_config.json)", name)
			}
		}
	}
	return o, nil
}

func setFlagNames(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// errInterrupted marks a command stopped by SIGINT/SIGTERM after it saved
// what it needs to continue.
var errInterrupted = errors.New("interrupted")

func runTrain(args []string) error {
	fs := newFlagSet("train", "")
	mf := addModelFlags(fs, "f32")
	tf := addTrainFlags(fs)
	out := fs.String("out", "", "output folder: epoch_K/ and final/ adapters (PEFT format), checkpoint/, train_log.jsonl")
	force := fs.Bool("force", false, "write into an existing, non-empty --out")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *tf.layer == "auto" {
		return usageErrorf("--layer auto needs a scan: use tli run")
	}
	opts, err := tf.options(setFlagNames(fs))
	if err != nil {
		return err
	}
	pairs, err := readPairs("--pairs", *tf.pairs, tli.DefaultTrainPairs())
	if err != nil {
		return err
	}
	if pairs, err = tli.SelectCategory(pairs, *tf.trainCategory); err != nil {
		return usageErrorf("--train-category: --pairs: %v", err)
	}
	if err := mf.resolve(); err != nil {
		return err
	}
	opts.LoRA.BaseModel = mf.baseModelID(opts.LoRA.BaseModel)
	if err := checkOutDir(*out, *force, *tf.resume != "", atomicfs.Input{Flag: "--model", Path: *mf.dir}, atomicfs.Input{Flag: "--pairs", Path: *tf.pairs}); err != nil {
		if errors.Is(err, errUsage) && !*force && *tf.resume == "" {
			if fi, err := os.Stat(filepath.Join(*out, "final")); err == nil && fi.IsDir() {
				return usageErrorf("--out %s already holds a finished training run (final/); use --force to train anew there", *out)
			}
			if ck := latestCheckpoint(*out); ck != "" {
				return usageErrorf("--out %s already holds a training run; continue it with --resume %s, or train anew with --force", *out, ck)
			}
		}
		return err
	}
	// Training writes into --out as it goes (every checkpoint folder is
	// complete or absent); a run that fails before writing anything leaves
	// no empty --out behind.
	_, statErr := os.Stat(*out)
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	opts.OutDir = *out
	if *tf.paperCompat {
		if err := mf.usePaper(tli.PaperScanNumerics, "train"); err != nil {
			os.Remove(*out) // only removes it if still empty
			return err
		}
	}
	_, err = trainModel(mf, tf, opts, pairs)
	if err != nil && os.IsNotExist(statErr) {
		os.Remove(*out) // only removes it if still empty
	}
	return err
}

// latestCheckpoint returns the folder of dir a run would best resume from:
// checkpoint (written on interruption) or the highest epoch_K, or "".
func latestCheckpoint(dir string) string {
	best, bestK := "", 0
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if k, err := strconv.Atoi(strings.TrimPrefix(e.Name(), "epoch_")); err == nil && strings.HasPrefix(e.Name(), "epoch_") && k > bestK {
			best, bestK = filepath.Join(dir, e.Name()), k
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "checkpoint")); err == nil && fi.IsDir() {
		return filepath.Join(dir, "checkpoint")
	}
	return best
}

// trainModel loads what training needs (the layers below the target), runs
// it with Ctrl-C handling and progress, and returns the adapter.
func trainModel(mf modelFlags, tf trainFlags, opts tli.TrainOptions, pairs []tli.Pair) (*lora.Adapter, error) {
	m, tok, err := mf.load(max(opts.Layer, 0))
	if err != nil {
		return nil, err
	}
	defer m.Close()
	if err := checkPairsTokenize("--pairs", pairs, tok); err != nil {
		return nil, err
	}
	dev, closeDev, err := mf.openDevice(m)
	if err != nil {
		return nil, err
	}
	defer closeDev()
	if dev != nil {
		opts.Device = dev
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tr := newTrainReporter(opts.OutDir)
	a, err := tli.TrainPrepared(ctx, m, tok, pairs, &opts, *tf.initAdapter, *tf.resume, tr.start, tr.step)
	return a, tr.finish(err)
}

// trainReporter prints training's banner and progress and words its
// errors for the command line; out is where the run's folder will be when
// the command is done (for messages).
type trainReporter struct {
	out  string
	prog *progress
}

func newTrainReporter(out string) *trainReporter { return &trainReporter{out: out} }

func (r *trainReporter) start(opts tli.TrainOptions, steps int) {
	fmt.Fprintf(os.Stderr, "training: layer %d, %s pooling, %d steps, LoRA r=%d alpha=%g on %s\n",
		opts.Layer, opts.Pooling, steps, opts.LoRA.R, opts.LoRA.Alpha, strings.Join(opts.LoRA.TargetModules, ","))
	r.prog = newProgress(os.Stderr, steps, "training")
}

func (r *trainReporter) step(l tli.StepLog) {
	if r.prog != nil {
		r.prog.step(l)
	}
}

// finish ends the progress bar and turns err into the command's error.
func (r *trainReporter) finish(err error) error {
	if r.prog != nil {
		r.prog.done()
	}
	switch {
	case tli.IsInterrupted(err):
		ck := absPath(filepath.Join(r.out, "checkpoint"))
		return fmt.Errorf("%w: checkpoint written to %s; continue with tli train --resume %s --out %s", errInterrupted, ck, ck, absPath(r.out))
	case err != nil:
		return optionError(err)
	case r.prog != nil:
		fmt.Fprintf(os.Stderr, "adapter written to %s\n", absPath(filepath.Join(r.out, "final")))
	}
	return nil
}

// optionFlags maps the fields of tli's options to the flags that set them.
var optionFlags = map[string]string{
	"Layer": "--layer", "Batch": "--batch", "Pairs": "--pairs", "Groups": "--pairs", "Epochs": "--epochs",
	"LR": "--lr", "Warmup": "--warmup", "Margin": "--margin", "MaxSteps": "--max-steps", "Pooling": "--pooling",
	"ScanPooling": "--pooling", "EvalPooling": "--eval-pooling", "InitAdapter": "--init-adapter",
	"LoRA.R": "--rank", "LoRA.Alpha": "--alpha", "LoRA.TargetModules": "--targets", "Seed": "--seed", "Axes": "the sweep's axes",
	"TrainCategory": "--train-category", "ControlCategory": "--control-category",
}

// optionError words a *tli.OptionError with the flag's name, as a usage
// error; other errors are returned as they are.
func optionError(err error) error {
	var oe *tli.OptionError
	if !errors.As(err, &oe) {
		return err
	}
	name, ok := optionFlags[oe.Field]
	if !ok {
		name = oe.Field
	}
	if oe.Field == "InitAdapter" {
		return fmt.Errorf("%s: %s", name, oe.Problem)
	}
	return usageErrorf("%s %s", name, oe.Problem)
}
