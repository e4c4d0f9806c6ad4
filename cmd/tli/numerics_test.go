package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/tli"
)

// TestPaperCompatRun runs the whole method in the published setting: the
// report and run.json name the numerics, and the evaluation's "before"
// cosines are those of the model loaded in FP4 with fp16 activations
// (content pooling), computed independently; the scan's are those of NF4
// (mean pooling with BOS).
func TestPaperCompatRun(t *testing.T) {
	model := testModel(t)
	dir := t.TempDir()
	pairs := tli.DefaultTrainPairs()[:24]
	pf := writePairs(t, dir, pairs)
	ctrl := writePairs(t, t.TempDir(), tli.DefaultControlPairs()[:8])
	run := filepath.Join(dir, "run")
	mustRun(t, "run", "--model", model, "--pairs", pf, "--control", ctrl, "--out", run, "--epochs", "1", "--paper-compat")
	rep, err := os.ReadFile(filepath.Join(run, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(rep), "numerics: nf4 weights, fp16 activations; evaluation: fp4 weights, fp16 activations") {
		t.Errorf("report.md does not name the published numerics")
	}
	rj, _ := os.ReadFile(filepath.Join(run, "run.json"))
	if !strings.Contains(string(rj), `"eval_numerics": "fp4 weights, fp16 activations"`) {
		t.Errorf("run.json does not name the evaluation's numerics")
	}
	rows := readCSV(t, filepath.Join(run, "eval", "results.csv"))
	ref := refCosinesWith(t, model, pairs, 2, tli.PaperEvalNumerics)
	f32 := refCosines(t, model, pairs, 2)
	moved := 0
	for i, p := range pairs {
		r := rows[1+i]
		if r[0] != p.Source || r[4] != "trained" || r[5] != "2" {
			t.Fatalf("row %d = %v", i, r)
		}
		pre, _ := strconv.ParseFloat(r[2], 64)
		if math.Abs(pre-ref[i]) > 2e-4 {
			t.Errorf("pair %d: sim_pre %v, FP4 + fp16 reference %v", i, pre, ref[i])
		}
		if math.Abs(ref[i]-f32[i]) > 1e-3 {
			moved++
		}
	}
	if moved == 0 {
		t.Error("FP4 + fp16 moved no cosine: the test would not see f32 numbers")
	}
}

// TestNumericFlags checks the numeric flags' refusals (one line each) and
// that a checkpoint written by tli quantize embeds exactly as quantising
// at load.
func TestNumericFlags(t *testing.T) {
	model := testModel(t)
	dir := t.TempDir()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"scan", "--model", model, "--paper-compat", "--quant", "fp4", "--out", filepath.Join(dir, "o1")}, "--paper-compat sets the numerics"},
		{[]string{"run", "--model", model, "--paper-compat", "--dtype", "bf16", "--out", filepath.Join(dir, "o2")}, "--paper-compat sets the numerics"},
		{[]string{"scan", "--model", model, "--double-quant", "--out", filepath.Join(dir, "o3")}, "--double-quant needs --quant"},
		{[]string{"scan", "--model", model, "--activations", "fp8", "--out", filepath.Join(dir, "o4")}, "--activations \"fp8\""},
		{[]string{"scan", "--model", model, "--quant", "int4", "--out", filepath.Join(dir, "o5")}, "--quant \"int4\""},
		{[]string{"scan", "--model", model, "--activations", "fp16", "--fast", "--dtype", "bf16", "--out", filepath.Join(dir, "o6")}, "drop --dtype and --fast"},
		{[]string{"quantize", "--model", model, "--quant", "q8", "--out", filepath.Join(dir, "o7")}, "--quant \"q8\""},
		{[]string{"synth", "--quant", "nf3", "--out", filepath.Join(dir, "o8")}, "--quant \"nf3\""},
	}
	for _, c := range cases {
		code, stderr := tliRun(t, c.args...)
		if code == 0 || !strings.Contains(stderr, c.want) {
			t.Errorf("tli %s: exit %d, stderr %q; want non-zero and %q", strings.Join(c.args, " "), code, stderr, c.want)
		}
		if strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
			t.Errorf("tli %s: want one line of error, got %q", strings.Join(c.args, " "), stderr)
		}
		if _, err := os.Stat(filepath.Join(dir, filepath.Base(c.args[len(c.args)-1]))); err == nil {
			t.Errorf("tli %s left %s behind", strings.Join(c.args, " "), c.args[len(c.args)-1])
		}
	}
	q := filepath.Join(dir, "q")
	mustRun(t, "quantize", "--model", model, "--quant", "nf4", "--out", q)
	words := filepath.Join(dir, "w.txt")
	os.WriteFile(words, []byte("maji\nwater\nkitabu\n"), 0o644)
	a, b := filepath.Join(dir, "a.safetensors"), filepath.Join(dir, "b.safetensors")
	mustRun(t, "embed", "--model", model, "--quant", "nf4", "--activations", "fp16", "--words", words, "--layers", "all", "--out", a)
	mustRun(t, "embed", "--model", q, "--activations", "fp16", "--words", words, "--layers", "all", "--out", b)
	ta, _, err := llama.ReadSafetensors(a)
	if err != nil {
		t.Fatal(err)
	}
	tb, _, err := llama.ReadSafetensors(b)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for name, x := range ta {
		y := tb[name]
		if y == nil || len(y.F32) != len(x.F32) {
			t.Fatalf("%s: missing or of another size in the 4-bit checkpoint's embedding", name)
		}
		for i := range x.F32 {
			if x.F32[i] != y.F32[i] {
				t.Fatalf("%s[%d]: %v quantised at load, %v from tli quantize's checkpoint", name, i, x.F32[i], y.F32[i])
			}
		}
		n++
	}
	if n == 0 {
		t.Fatal("no vectors compared")
	}
}

// TestRunEvalPooling runs the published pooling split with exact numerics
// (--pooling mean --eval-pooling content): run.json records it, the
// evaluation's sim_pre are the f32 content-pooled cosines, and beside
// --paper-compat (which sets the split) --eval-pooling is refused.
func TestRunEvalPooling(t *testing.T) {
	model := testModel(t)
	dir := t.TempDir()
	pairs := tli.DefaultTrainPairs()[:24]
	pf := writePairs(t, dir, pairs)
	ctrl := writePairs(t, t.TempDir(), tli.DefaultControlPairs()[:8])
	run := filepath.Join(dir, "run")
	mustRun(t, "run", "--model", model, "--pairs", pf, "--control", ctrl, "--out", run, "--epochs", "1", "--layer", "2", "--pooling", "mean", "--eval-pooling", "content", "--eval-layers", "train")
	var doc struct {
		Provenance tli.Provenance
	}
	rj, err := os.ReadFile(filepath.Join(run, "run.json"))
	if err != nil || json.Unmarshal(rj, &doc) != nil {
		t.Fatalf("run.json: %v", err)
	}
	st := doc.Provenance.Settings
	if st["pooling"] != "mean" || st["scan_pooling"] != "mean" || st["eval_pooling"] != "content" {
		t.Errorf("run.json settings: pooling %v, scan_pooling %v, eval_pooling %v; want mean, mean, content", st["pooling"], st["scan_pooling"], st["eval_pooling"])
	}
	rows := readCSV(t, filepath.Join(run, "eval", "results.csv"))
	ref := refCosines(t, model, pairs, 2)
	for i := range pairs {
		pre, _ := strconv.ParseFloat(rows[1+i][2], 64)
		if math.Abs(pre-ref[i]) > 1e-5 {
			t.Errorf("pair %d: sim_pre %v, content-pooled f32 reference %v", i, pre, ref[i])
		}
	}
	code, stderr := tliRun(t, "run", "--model", model, "--pairs", pf, "--out", filepath.Join(dir, "p"), "--paper-compat", "--eval-pooling", "mean")
	if code != 2 || !strings.Contains(stderr, "--paper-compat sets the pooling") || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
		t.Errorf("--paper-compat --eval-pooling: exit %d, %q", code, stderr)
	}
}
