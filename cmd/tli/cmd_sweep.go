package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/tli-project/tli/internal/atomicfs"
	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/llama/tokenizer"
	"github.com/tli-project/tli/tli"
)

func init() {
	register("sweep", "run a grid of training settings (comma lists are axes), sharded for Slurm arrays and Kubernetes Indexed Jobs", runSweep)
	register("gather", "collect a sweep's cells into sweep.csv, sweep.json and sweep.md", runGather)
}

func runSweep(args []string) error {
	fs := newFlagSet("sweep", "--model DIR --out DIR [--layer 2,10,31] [--rank 4,16,64] [--seed 1,2,3] [...] [--shard I/N | --shards N]")
	pf := addPlotFlags(fs)
	mf := addModelFlags(fs, "f32")
	out := fs.String("out", "", "sweep folder, shared by every shard: sweep-spec.json, scan-POOLING/, cells/NAME/, then sweep.csv")
	pairs := fs.String("pairs", "", "training pairs (default: the embedded list of 623 pairs)")
	control := fs.String("control", "", "held-out control pairs (default: the embedded control list)")
	base := tli.CellSettings{Train: tli.PaperTrainOptions()}
	base.Train.LoRA.TargetModules = nil // the model family's default
	base.Train.Pooling = tli.PoolContent
	axes := map[string]*string{}
	for _, a := range tli.SweepAxes {
		sep := ","
		if a.Sep != "" {
			sep = a.Sep
		}
		axes[a.Name] = fs.String(a.Name, a.Get(base), a.Usage+"; a list separated by '"+sep+"' is an axis of the grid")
	}
	batch := fs.Int("batch", base.Train.Batch, "pairs per step")
	warmup := fs.Int("warmup", base.Train.Warmup, "linear warm-up steps")
	dropout := fs.Float64("dropout", base.Train.LoRA.Dropout, "LoRA dropout")
	maxSteps := fs.Int("max-steps", 0, "stop each cell after N optimiser steps")
	shuffle := fs.Bool("shuffle", true, "shuffle the pairs every epoch")
	shardFlag := fs.String("shard", "", "run only the cells with index mod N = I (I/N); default: from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT, or JOB_COMPLETION_INDEX with --shards, or every cell")
	shards := fs.Int("shards", 0, "number of shards when the index comes from JOB_COMPLETION_INDEX (Kubernetes Indexed Jobs: the completions)")
	asJSON := fs.Bool("json", false, "print sweep.json (or, for one shard, the cells it ran and skipped) on stdout")
	prepare := fs.Bool("prepare", false, "only compute the base model's vectors and scans into --out (a job the shards can depend on, so that they do not all compute them), then exit")
	evalLayers := fs.String("eval-layers", string(tli.EvalToTrain), "layers each cell evaluates after training: train (0..the cell's training layer, where sweep.csv reads it: the adapted pass stops there) or all (every layer, also the last, in each cell's report)")
	baseModelID := fs.String("base-model-id", "", baseModelIDUsage)
	preset := fs.String("preset", "", "run a named set of grids, each in OUT/NAME: paper-ablations (layer 2,10,31; rank 4,16,64; train on word class n or v, evaluate on n or v)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := pf.apply(); err != nil {
		return err
	}
	if *out == "" {
		return usageErrorf("--out is required")
	}
	if err := mf.resolve(); err != nil {
		return err
	}
	scope, err := tli.ParseEvalScope(*evalLayers)
	if err != nil {
		return usageErrorf("--eval-layers: %v", err)
	}
	bt := &base.Train
	bt.Batch, bt.Warmup, bt.LoRA.Dropout, bt.MaxSteps, bt.Shuffle = *batch, *warmup, *dropout, *maxSteps, *shuffle
	bt.LoRA.BaseModel = mf.baseModelID(*baseModelID)
	spec := tli.SweepSpec{Base: base}
	for _, a := range tli.SweepAxes {
		vals := tli.SplitAxis(a.Name, *axes[a.Name])
		switch {
		case len(vals) == 0 && a.Get(base) == "":
			// an optional setting left empty (a category)
		case len(vals) == 0:
			return usageErrorf("--%s: no value", a.Name)
		case len(vals) == 1:
			if err := a.Set(&spec.Base, vals[0]); err != nil {
				return usageErrorf("--%s %q: %v", a.Name, vals[0], err)
			}
		default:
			spec.Axes = append(spec.Axes, tli.AxisValues{Name: a.Name, Values: vals})
		}
	}
	// The grids to run: the one the flags describe, or a preset's, each in
	// its own folder.
	type part struct {
		name, out string
		spec      tli.SweepSpec
		cells     []tli.Cell
	}
	var parts []part
	if *preset != "" {
		ps, ok := tli.SweepPresets[*preset]
		if !ok {
			var names []string
			for n := range tli.SweepPresets {
				names = append(names, n)
			}
			sort.Strings(names)
			return usageErrorf("--preset %q: want one of %s", *preset, strings.Join(names, ", "))
		}
		if len(spec.Axes) > 0 {
			return usageErrorf("--preset %s sets the axes; give --%s a single value", *preset, spec.Axes[0].Name)
		}
		for _, p := range ps {
			parts = append(parts, part{name: p.Name, out: filepath.Join(*out, p.Name), spec: tli.SweepSpec{Base: spec.Base, Axes: p.Axes}})
		}
	} else {
		parts = []part{{out: *out, spec: spec}}
	}
	groups, err := groupsFrom(*pairs, *control, "", "")
	if err != nil {
		return err
	}
	for i := range parts {
		if parts[i].cells, err = parts[i].spec.Cells(); err != nil {
			return optionError(err)
		}
		for _, c := range parts[i].cells {
			if _, _, err := c.Select(groups); err != nil {
				return usageErrorf("cell %s: %v", c.Name, err)
			}
		}
	}
	shard, source := tli.All, "every cell"
	switch {
	case *shardFlag != "":
		if shard, err = tli.ParseShard(*shardFlag); err != nil {
			return usageErrorf("--shard %v", err)
		}
		source = "--shard"
	default:
		s, src, ok, err := tli.ShardFromEnv(os.Getenv, *shards)
		if err != nil {
			return usageErrorf("%v", err)
		}
		if ok {
			shard, source = s, src
		} else if *shards > 0 {
			return usageErrorf("--shards %d without JOB_COMPLETION_INDEX: give --shard I/N to run one shard by hand", *shards)
		}
	}
	if _, err := mf.check(); err != nil {
		return err
	}
	if err := atomicfs.CheckDisjoint("--out", *out, atomicfs.Input{Flag: "--model", Path: *mf.dir},
		atomicfs.Input{Flag: "--pairs", Path: *pairs}, atomicfs.Input{Flag: "--control", Path: *control}); err != nil {
		return usageErrorf("%v", err)
	}
	cfg, err := peekConfig(*mf.dir)
	if err != nil {
		return err
	}
	m, tok, err := mf.load(cfg.NumLayers)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := checkGroupsTokenize(groups, tok); err != nil {
		return err
	}
	dev, closeDev, err := mf.openDevice(m)
	if err != nil {
		return err
	}
	defer closeDev()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	say := textOut(*asJSON)
	results := map[string]json.RawMessage{}
	for _, p := range parts {
		if p.name != "" {
			fmt.Fprintf(say, "\n== %s: %s\n", *preset, p.name)
		}
		if *prepare {
			if _, _, err := tli.Sweep(ctx, m, tok, tli.SweepOptions{Spec: p.spec, Groups: groups, Out: p.out, Model: mf.name(), Stdout: say, Prepare: true, EvalScope: scope, Device: dev,
				Pairs: pairsName(*pairs, "embedded training list") + " / " + pairsName(*control, "embedded control list")}); err != nil {
				return optionError(err)
			}
			fmt.Fprintf(say, "prepared %s: the shards read the base model's vectors from there\n", p.out)
			results[p.name] = json.RawMessage(`{"prepared":true}`)
			continue
		}
		res, err := sweepPart(ctx, m, dev, tok, p.spec, p.cells, groups, p.out, shard, source, scope, mf.name(),
			pairsName(*pairs, "embedded training list")+" / "+pairsName(*control, "embedded control list"), say)
		if err != nil {
			return err
		}
		results[p.name] = res
	}
	if !*asJSON {
		return nil
	}
	if *preset == "" {
		_, err := os.Stdout.Write(results[""])
		return err
	}
	return printJSON(os.Stdout, results)
}

// sweepPart runs this process's shard of one grid and, when it ran every
// cell, gathers it. It returns the JSON --json prints: sweep.json, or the
// cells the shard ran and skipped.
func sweepPart(ctx context.Context, m *llama.Model, dev tli.Device, tok *tokenizer.Tokenizer, spec tli.SweepSpec, cells []tli.Cell, groups []tli.Group,
	out string, shard tli.Shard, source string, scope tli.EvalScope, model, pairs string, say io.Writer) (json.RawMessage, error) {
	mine := 0
	for _, c := range cells {
		if shard.Has(c.Index) {
			mine++
		}
	}
	fmt.Fprintf(say, "sweep: %d cells; shard %s (%s) runs %d of them\n", len(cells), shard, source, mine)
	var prog *progress
	cellsProg := newPhase(os.Stderr, "sweep", "cell", mine)
	n := 0
	ran, skipped, err := tli.Sweep(ctx, m, tok, tli.SweepOptions{
		Spec: spec, Groups: groups, Out: out, Shard: shard, Model: model, Stdout: say, Pairs: pairs, EvalScope: scope, Device: dev,
		OnCell: func(c tli.Cell, done bool) {
			if done {
				if prog != nil {
					prog.done()
				}
				fmt.Fprintf(say, "cell %s done\n", c.Name)
				cellsProg.update(n, c.Name, map[string]any{"cell": c.Name, "index": c.Index})
				return
			}
			n++
			fmt.Fprintf(say, "cell %d/%d (grid index %d): %s\n", n, mine, c.Index, c.Name)
			sel, _, _ := c.Select(groups)
			prog = newProgress(os.Stderr, c.Train.Steps(len(sel[0].Pairs)), c.Name)
		},
		OnStep: func(l tli.StepLog) {
			if prog != nil {
				prog.step(l)
			}
		},
	})
	if tli.IsInterrupted(err) {
		return nil, fmt.Errorf("%w: %d cells done in this run; rerun the same command to continue (a cell that was running starts again)", errInterrupted, len(ran))
	}
	if err != nil {
		return nil, optionError(err)
	}
	fmt.Fprintf(say, "shard %s: ran %d cells, %d were already complete\n", shard, len(ran), len(skipped))
	if shard != tli.All {
		fmt.Fprintf(say, "when every shard is done: tli gather %s\n", out)
		names := func(cs []tli.Cell) []string {
			out := []string{}
			for _, c := range cs {
				out = append(out, c.Name)
			}
			return out
		}
		return json.Marshal(map[string]any{"shard": shard.String(), "source": source, "cells": len(cells), "ran": names(ran), "skipped": names(skipped)})
	}
	if err := gather(out, say != os.Stdout); err != nil {
		return nil, err
	}
	return os.ReadFile(filepath.Join(out, "sweep.json"))
}

func runGather(args []string) error {
	fs := newFlagSet("gather", "DIR")
	pf := addPlotFlags(fs)
	asJSON := fs.Bool("json", false, "print sweep.json on stdout")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Println("usage: tli gather [--json] DIR\n\nreads DIR/cells/*/cell.json of a finished sweep and writes DIR/sweep.csv, sweep.json, sweep.md and timing.csv; names the cells that are missing")
			return errHelpShown
		}
		return usageErrorf("%v", err)
	}
	if fs.NArg() != 1 {
		return usageErrorf("gather takes one argument, the sweep folder (tli gather DIR)")
	}
	if err := pf.apply(); err != nil {
		return err
	}
	if err := gather(fs.Arg(0), *asJSON); err != nil || !*asJSON {
		return err
	}
	return printFile(filepath.Join(fs.Arg(0), "sweep.json"))
}

// gather collects dir's cells; quiet (--json in sweep) prints nothing,
// asJSON in gather prints sweep.json.
func gather(dir string, asJSON bool) error {
	t, err := tli.Gather(dir)
	if err != nil {
		return err
	}
	if asJSON {
		return nil
	}
	fmt.Printf("gathered %d cells: %s (and sweep.json, sweep.md, timing.csv)\n", len(t.Cells), absPath(filepath.Join(dir, "sweep.csv")))
	return nil
}
