package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/tli"
)

// sweepArgs is a 2×2 grid (layer × seed) of short training runs.
func sweepArgs(model, pairs, out string, extra ...string) []string {
	return append([]string{"sweep", "--model", model, "--pairs", pairs, "--out", out,
		"--layer", "1,2", "--seed", "1,2", "--max-steps", "4", "--batch", "4", "--warmup", "1"}, extra...)
}

var gathered = []string{"sweep.csv", "sweep.json", "sweep.md"}

// sameSweep checks that two gathered sweeps have byte-identical tables.
func sameSweep(t *testing.T, what, a, b string) {
	t.Helper()
	for _, f := range gathered {
		x, err1 := os.ReadFile(filepath.Join(a, f))
		y, err2 := os.ReadFile(filepath.Join(b, f))
		if err1 != nil || err2 != nil || !bytes.Equal(x, y) {
			t.Errorf("%s: %s differs from the single-process sweep (%v, %v)", what, f, err1, err2)
		}
	}
}

// runOut runs tli as a process with extra environment and returns its exit
// status and output.
func runOut(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := tliProcess(args...)
	cmd.Env = append(cmd.Env, env...)
	err := cmd.Run()
	code := 0
	if err != nil {
		code = cmd.ProcessState.ExitCode()
	}
	return code, fmt.Sprint(cmd.Stdout)
}

// TestSweepShards: the whole grid in one process, three --shard processes,
// a Slurm array (SLURM_ARRAY_TASK_ID) and a Kubernetes Indexed Job
// (JOB_COMPLETION_INDEX) give byte-identical sweep tables; a rerun trains
// nothing; gather names missing cells; a folder of another sweep is
// refused.
func TestSweepShards(t *testing.T) {
	model := testModel(t)
	dir := t.TempDir()
	pf := writePairs(t, dir, tli.DefaultTrainPairs()[:16])
	whole := filepath.Join(dir, "whole")
	code, out := runOut(t, nil, sweepArgs(model, pf, whole)...)
	if code != 0 || !strings.Contains(out, "ran 4 cells, 0 were already complete") {
		t.Fatalf("whole sweep: exit %d\n%s", code, out)
	}
	rows := readCSV(t, filepath.Join(whole, "sweep.csv"))
	if len(rows) != 5 || rows[0][0] != "layer" || rows[0][1] != "seed" || rows[1][0] != "1" || rows[1][1] != "1" || rows[2][1] != "2" || rows[3][0] != "2" {
		t.Errorf("sweep.csv grid order: %v", rows)
	}
	// Each cell's row agrees with its own eval summary.
	sum, err := os.ReadFile(filepath.Join(whole, "cells", "layer-2_seed-1", "eval", "summary.json"))
	if err != nil || !strings.Contains(string(sum), `"mean_post": `+rows[3][5]) {
		t.Errorf("cell layer-2_seed-1: summary.json does not hold trained_mean_post %s (%v)", rows[3][5], err)
	}

	for _, f := range []string{"gain_vs_layer.png", "trained_vs_control.png", "timing.csv"} {
		if fi, err := os.Stat(filepath.Join(whole, f)); err != nil || fi.Size() < 100 {
			t.Errorf("gather did not write %s: %v", f, err)
		}
	}
	if md, _ := os.ReadFile(filepath.Join(whole, "sweep.md")); !strings.Contains(string(md), "![gain_vs_layer](gain_vs_layer.png)") {
		t.Errorf("sweep.md does not show the gain plot")
	}

	// A rerun trains nothing.
	if code, out := runOut(t, nil, sweepArgs(model, pf, whole)...); code != 0 || !strings.Contains(out, "ran 0 cells, 4 were already complete") {
		t.Errorf("rerun: exit %d\n%s", code, out)
	}

	// Three shards by hand after a --prepare job; gather names what is
	// missing until all ran.
	sharded := filepath.Join(dir, "sharded")
	if code, out := runOut(t, nil, sweepArgs(model, pf, sharded, "--prepare")...); code != 0 || !strings.Contains(out, "prepared "+sharded) {
		t.Fatalf("--prepare: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(sharded, "base-content.safetensors")); err != nil {
		t.Errorf("--prepare wrote no base vectors: %v", err)
	}
	for i := 0; i < 3; i++ {
		code, out := runOut(t, nil, sweepArgs(model, pf, sharded, "--shard", fmt.Sprintf("%d/3", i))...)
		if code != 0 {
			t.Fatalf("shard %d/3: exit %d\n%s", i, code, out)
		}
		// --prepare computed the base model's vectors; every shard reads them.
		if from := strings.Contains(out, "(content pooling) from "+filepath.Join(sharded, "base-content.safetensors")); !from {
			t.Errorf("shard %d/3: base vectors read from the sweep folder: %v\n%s", i, from, out)
		}
		if i == 0 {
			code, stderr := tliRun(t, "gather", sharded)
			if want := "2 of 4 cells are not complete: layer-1_seed-2, layer-2_seed-1"; code != 1 || !strings.Contains(stderr, want) {
				t.Errorf("gather of an incomplete sweep: exit %d, %q; want exit 1 and %q", code, stderr, want)
			}
			if _, err := os.Stat(filepath.Join(sharded, "sweep.csv")); err == nil {
				t.Errorf("gather of an incomplete sweep wrote sweep.csv")
			}
		}
	}
	mustRun(t, "gather", sharded)
	sameSweep(t, "--shard I/3", whole, sharded)

	// A Slurm array of 2 tasks, and an Indexed Job of 3 completions.
	slurm := filepath.Join(dir, "slurm")
	for i := 0; i < 2; i++ {
		env := []string{fmt.Sprintf("SLURM_ARRAY_TASK_ID=%d", i), "SLURM_ARRAY_TASK_COUNT=2", "SLURM_ARRAY_TASK_MIN=0"}
		if code, out := runOut(t, env, sweepArgs(model, pf, slurm)...); code != 0 || !strings.Contains(out, fmt.Sprintf("shard %d/2 (Slurm array) runs 2", i)) {
			t.Fatalf("Slurm task %d: exit %d\n%s", i, code, out)
		}
	}
	mustRun(t, "gather", slurm)
	sameSweep(t, "Slurm array", whole, slurm)
	k8s := filepath.Join(dir, "k8s")
	for i := 0; i < 3; i++ {
		env := []string{fmt.Sprintf("JOB_COMPLETION_INDEX=%d", i)}
		if code, out := runOut(t, env, sweepArgs(model, pf, k8s, "--shards", "3")...); code != 0 || !strings.Contains(out, fmt.Sprintf("shard %d/3 (Kubernetes Indexed Job)", i)) {
			t.Fatalf("Indexed Job index %d: exit %d\n%s", i, code, out)
		}
	}
	mustRun(t, "gather", k8s)
	sameSweep(t, "Indexed Job", whole, k8s)

	// Another grid in the same folder is refused; so are bad axes.
	for _, c := range []struct {
		args []string
		want string
	}{
		{sweepArgs(model, pf, whole, "--rank", "4,8"), "describes another sweep"},
		{sweepArgs(model, pf, filepath.Join(dir, "x"), "--rank", "4,4"), `--rank lists "4" twice`},
		{sweepArgs(model, pf, filepath.Join(dir, "x"), "--layer", "1,9"), "--layer 9 is outside [1, 4]"},
		{sweepArgs(model, pf, filepath.Join(dir, "x"), "--shard", "3/3"), `--shard "3/3": want I/N with 0 <= I < N`},
		{sweepArgs(model, pf, filepath.Join(dir, "x"), "--shards", "3"), "--shards 3 without JOB_COMPLETION_INDEX"},
		{[]string{"gather", dir}, "not a sweep folder"},
	} {
		code, stderr := tliRun(t, c.args...)
		if code == 0 || !strings.Contains(stderr, c.want) {
			t.Errorf("tli %s: exit %d, %q; want an error with %q", strings.Join(c.args, " "), code, stderr, c.want)
		}
	}
}

// TestSweepKilled: a sweep killed with SIGKILL at random moments and rerun
// ends with the same tables as one never interrupted, and a killed cell
// never looks complete.
func TestSweepKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("kills processes")
	}
	model := testModel(t)
	dir := t.TempDir()
	pf := writePairs(t, dir, tli.DefaultTrainPairs()[:16])
	ref := filepath.Join(dir, "ref")
	full := timed(t, sweepArgs(model, pf, ref)...)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 4; i++ {
		out := filepath.Join(dir, fmt.Sprintf("s%d", i))
		for kills := 0; ; kills++ {
			if runKilled(t, time.Duration(rng.Float64()*float64(full)), sweepArgs(model, pf, out)...) {
				break
			}
			entries, _ := os.ReadDir(filepath.Join(out, "cells"))
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), ".") {
					continue // a temporary folder of the killed cell
				}
				if _, err := os.Stat(filepath.Join(out, "cells", e.Name(), "cell.json")); err != nil {
					t.Errorf("after a kill, cell %s is there without cell.json", e.Name())
				}
			}
			if kills > 20 {
				t.Fatalf("sweep did not finish after %d kills", kills)
			}
		}
		sameSweep(t, fmt.Sprintf("killed sweep %d", i), ref, out)
	}
}

// TestHelpAndVersion: tli help CMD is CMD -h (exit 0), tli version prints
// the build.
func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"help", "sweep"}, {"sweep", "-h"}, {"help", "gather"}, {"version"}} {
		code, out := runOut(t, nil, args...)
		want := map[string]string{"sweep": "-shard string", "gather": "usage: tli gather [--json] DIR", "version": "tli "}[args[len(args)-1]]
		if args[0] == "sweep" {
			want = "-shard string"
		}
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("tli %s: exit %d, %q; want exit 0 and %q", strings.Join(args, " "), code, out, want)
		}
	}
}

// TestSweepCategories: --train-category and --control-category select word
// classes from the lists (the zero-control test: train on one class,
// evaluate on another), also as sweep axes.
func TestSweepCategories(t *testing.T) {
	model := testModel(t)
	dir := t.TempDir()
	pairs := append([]tli.Pair(nil), tli.DefaultTrainPairs()[:20]...)
	for i := range pairs {
		pairs[i].Category = []string{"v", "n"}[i%2]
	}
	pf := filepath.Join(dir, "pairs.tsv")
	if err := tli.WritePairs(pf, pairs); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "sweep")
	code, stdout := runOut(t, nil, "sweep", "--model", model, "--pairs", pf, "--control", pf, "--out", out,
		"--train-category", "v,n", "--control-category", "n", "--max-steps", "2", "--batch", "4", "--warmup", "1")
	if code != 0 {
		t.Fatalf("sweep: exit %d\n%s", code, stdout)
	}
	rows := readCSV(t, filepath.Join(out, "sweep.csv"))
	if len(rows) != 3 || rows[0][0] != "train-category" || rows[1][0] != "v" || rows[2][0] != "n" {
		t.Fatalf("sweep.csv: %v", rows)
	}
	for _, c := range []string{"v", "n"} {
		sum, err := os.ReadFile(filepath.Join(out, "cells", "train-category-"+c, "eval", "summary.json"))
		if err != nil || strings.Count(string(sum), `"n": 10,`) < 2 {
			t.Errorf("cell train-category-%s: want 10 trained and 10 control pairs in summary.json (%v)", c, err)
		}
	}
	code, stderr := tliRun(t, "train", "--model", model, "--pairs", pf, "--out", filepath.Join(dir, "t"), "--train-category", "adj")
	if want := `--train-category: --pairs: no pair has category "adj" (the list has n: 10, v: 10)`; code != 2 || !strings.Contains(stderr, want) {
		t.Errorf("train --train-category adj: exit %d, %q; want %q", code, stderr, want)
	}
}

// TestProgressJSONL: --progress jsonl reports training steps and forward
// passes as one JSON object per line on stderr.
func TestProgressJSONL(t *testing.T) {
	model := testModel(t)
	dir := t.TempDir()
	pf := writePairs(t, dir, tli.DefaultTrainPairs()[:16])
	cmd := tliProcess("run", "--model", model, "--pairs", pf, "--out", filepath.Join(dir, "run"), "--max-steps", "3", "--batch", "4", "--progress", "jsonl")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	phases := map[string]int{}
	for _, line := range strings.Split(stderr.String(), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var obj map[string]any
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		phase, _ := obj["phase"].(string)
		phases[phase]++
		if obj["done"] == nil || obj["total"] == nil || obj["eta_s"] == nil {
			t.Errorf("progress line without done, total or eta_s: %q", line)
		}
	}
	if phases["training"] != 3 || phases["forward pass"] < 4 {
		t.Errorf("progress lines by phase: %v; want 3 training steps and the layers of the forward passes", phases)
	}
	if code, stderr := tliRun(t, "scan", "--model", model, "--out", filepath.Join(dir, "s"), "--progress", "xml"); code != 2 || !strings.Contains(stderr, `--progress "xml": want one of auto, bar, plain, jsonl, none`) {
		t.Errorf("--progress xml: exit %d, %q", code, stderr)
	}
}

// TestJSONOutput: --json prints only the machine-readable result on stdout.
func TestJSONOutput(t *testing.T) {
	model := testModel(t)
	dir := t.TempDir()
	pf := writePairs(t, dir, tli.DefaultTrainPairs()[:16])
	stdoutOf := func(args ...string) map[string]any {
		t.Helper()
		cmd := tliProcess(args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("tli %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		var obj map[string]any
		if err := json.Unmarshal(stdout.Bytes(), &obj); err != nil {
			t.Fatalf("tli %s: stdout is not one JSON object: %v\n%s", strings.Join(args, " "), err, stdout.String())
		}
		return obj
	}
	if obj := stdoutOf("env", "--json"); obj["cores"] == nil || obj["kernels"] == nil {
		t.Errorf("env --json: %v", obj)
	}
	if obj := stdoutOf("scan", "--model", model, "--pairs", pf, "--out", filepath.Join(dir, "scan"), "--json"); obj["best_layer_by_gap"] == nil {
		t.Errorf("scan --json: %v", obj)
	}
	sw := filepath.Join(dir, "sweep")
	if obj := stdoutOf(sweepArgs(model, pf, sw, "--shard", "0/2", "--json")...); obj["shard"] != "0/2" || len(obj["ran"].([]any)) != 2 {
		t.Errorf("sweep --shard 0/2 --json: %v", obj)
	}
	if obj := stdoutOf(sweepArgs(model, pf, sw, "--json")...); len(obj["cells"].([]any)) != 4 {
		t.Errorf("sweep --json: %v", obj)
	}
	if obj := stdoutOf("gather", "--json", sw); len(obj["columns"].([]any)) < 10 {
		t.Errorf("gather --json: %v", obj)
	}
	ad := filepath.Join(sw, "cells", "layer-1_seed-1", "train", "final")
	if obj := stdoutOf("eval", "--model", model, "--adapter", ad, "--pairs", pf, "--out", filepath.Join(dir, "eval"), "--json"); obj["groups"] == nil {
		t.Errorf("eval --json: %v", obj)
	}
}

// TestSweepPreset: --preset paper-ablations runs the paper's three grids
// (layer, rank, word class) in their own folders, each gathered.
func TestSweepPreset(t *testing.T) {
	dir := t.TempDir()
	var words []string
	for _, p := range append(tli.DefaultTrainPairs(), tli.DefaultControlPairs()...) {
		words = append(words, p.Source, p.Target)
	}
	model := filepath.Join(dir, "model32")
	if err := llama.Synth(model, llama.SynthOptions{Shape: "tiny", Seed: 5, Layers: 32, Words: words}); err != nil {
		t.Fatal(err)
	}
	pairs := append([]tli.Pair(nil), tli.DefaultTrainPairs()[:16]...)
	for i := range pairs {
		pairs[i].Category = []string{"v", "n"}[i%2]
	}
	pf := filepath.Join(dir, "pairs.tsv")
	if err := tli.WritePairs(pf, pairs); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "ablations")
	args := []string{"sweep", "--model", model, "--pairs", pf, "--control", pf, "--out", out, "--preset", "paper-ablations",
		"--max-steps", "2", "--batch", "4", "--warmup", "1", "--json"}
	cmd := tliProcess(args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("sweep --preset: %v\n%s", err, stderr.String())
	}
	var res map[string]map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("--json: %v\n%s", err, stdout.String())
	}
	for part, cells := range map[string]int{"layer": 3, "rank": 3, "word-class": 4} {
		if got := len(res[part]["cells"].([]any)); got != cells {
			t.Errorf("%s: %d cells, want %d", part, got, cells)
		}
		if rows := readCSV(t, filepath.Join(out, part, "sweep.csv")); len(rows) != cells+1 {
			t.Errorf("%s/sweep.csv: %d rows", part, len(rows))
		}
	}
	// The embedded lists have no word classes: refused before any training.
	code, msg := tliRun(t, "sweep", "--model", model, "--out", filepath.Join(dir, "x"), "--preset", "paper-ablations")
	if want := `cell train-category-n_control-category-n: trained pairs: no pair has category "n" (the list has (none): 623)`; code != 2 || !strings.Contains(msg, want) {
		t.Errorf("preset on lists without categories: exit %d, %q; want %q", code, msg, want)
	}
	if code, msg := tliRun(t, "sweep", "--model", model, "--out", filepath.Join(dir, "x"), "--preset", "nope"); code != 2 || !strings.Contains(msg, `--preset "nope": want one of paper-ablations`) {
		t.Errorf("--preset nope: exit %d, %q", code, msg)
	}
}

// TestBarLine: the live progress bar's line.
func TestBarLine(t *testing.T) {
	got := barLine("training", "loss 0.41", 5, 20, 10*time.Second, 30*time.Second)
	if want := "training [=====               ] 5/20  25% 10s<30s loss 0.41"; got != want {
		t.Errorf("barLine = %q, want %q", got, want)
	}
}

// TestNoNet: nothing tli links may pull in package net (a plain go build
// with a C toolchain present would then link libc dynamically).
func TestNoNet(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p == "net" || p == "os/user" || p == "plugin" {
			t.Errorf("cmd/tli depends on %s", p)
		}
	}
}
