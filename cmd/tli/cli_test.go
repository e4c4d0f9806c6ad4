package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/internal/peer"
	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/llama/tokenizer"
	"github.com/tli-project/tli/tli"
)

// The tests here run the tli commands end to end on a synthetic checkpoint
// and check the numbers they write against independent computations.

var (
	modelOnce sync.Once
	modelDir  string
	modelErr  error
)

// testModel synthesises (once) a tiny checkpoint whose tokenizer is learned
// from the embedded lists.
func testModel(t *testing.T) string {
	t.Helper()
	modelOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tli-cli-model")
		if err != nil {
			modelErr = err
			return
		}
		var words []string
		for _, p := range append(tli.DefaultTrainPairs(), tli.DefaultControlPairs()...) {
			words = append(words, p.Source, p.Target)
		}
		modelDir = filepath.Join(dir, "model")
		modelErr = llama.Synth(modelDir, llama.SynthOptions{Shape: "tiny", Seed: 3, Words: words})
	})
	if modelErr != nil {
		t.Fatal(modelErr)
	}
	return modelDir
}

// tli runs one command in-process and returns its exit status and stderr.
func tliRun(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var stderr bytes.Buffer
	stdout := os.Stdout
	null, _ := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	os.Stdout = null
	defer func() { os.Stdout = stdout; null.Close() }()
	code := runMain(args, &stderr)
	return code, stderr.String()
}

func mustRun(t *testing.T, args ...string) {
	t.Helper()
	if code, stderr := tliRun(t, args...); code != 0 {
		t.Fatalf("tli %s: exit %d: %s", strings.Join(args, " "), code, stderr)
	}
}

// writePairs writes the first n embedded training pairs to a file.
func writePairs(t *testing.T, dir string, pairs []tli.Pair) string {
	t.Helper()
	path := filepath.Join(dir, "pairs.json")
	if err := tli.WritePairs(path, pairs); err != nil {
		t.Fatal(err)
	}
	return path
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// refCosines computes, independently of the tli package's pooling, the
// cosine of each pair at layer k with content pooling, in float64.
func refCosines(t *testing.T, model string, pairs []tli.Pair, k int) []float64 {
	t.Helper()
	return refCosinesWith(t, model, pairs, k, llama.Numerics{})
}

// refCosinesWith is refCosines with the model loaded in numeric setting num.
func refCosinesWith(t *testing.T, model string, pairs []tli.Pair, k int, num llama.Numerics) []float64 {
	t.Helper()
	m, err := llama.Load(model, llama.LoadOptions{DType: engine.F32, MaxLayer: k, Numerics: num})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tok, err := tokenizer.LoadDir(model)
	if err != nil {
		t.Fatal(err)
	}
	d := m.Config.HiddenSize
	embed := func(w string) []float64 {
		ids := tok.Encode(w, true)
		hs, err := m.HiddenStates(llama.NewBatch([][]int{ids}), []int{k})
		if err != nil {
			t.Fatal(err)
		}
		v := make([]float64, d)
		n := 0
		for i, id := range ids {
			if tok.IsSpecial(id) {
				continue
			}
			for j := 0; j < d; j++ {
				v[j] += float64(hs[k][i*d+j])
			}
			n++
		}
		return v
	}
	out := make([]float64, len(pairs))
	for i, p := range pairs {
		a, b := embed(p.Source), embed(p.Target)
		var ab, aa, bb float64
		for j := range a {
			ab += a[j] * b[j]
			aa += a[j] * a[j]
			bb += b[j] * b[j]
		}
		out[i] = ab / math.Sqrt(aa*bb)
	}
	return out
}

func TestScanMatchesReference(t *testing.T) {
	model := testModel(t)
	dir := t.TempDir()
	pairs := tli.DefaultTrainPairs()[:30]
	pf := writePairs(t, dir, pairs)
	out := filepath.Join(dir, "scan")
	mustRun(t, "scan", "--model", model, "--pairs", pf, "--out", out)
	rows := readCSV(t, filepath.Join(out, "scan.csv"))
	cfg, _ := llama.LoadConfig(filepath.Join(model, "config.json"))
	if len(rows) != cfg.NumLayers+2 {
		t.Fatalf("scan.csv has %d rows, want header + %d layers", len(rows), cfg.NumLayers+1)
	}
	// Packed batch of all words vs one word at a time, float64 pooling.
	for _, k := range []int{1, 2, cfg.NumLayers} {
		ref := refCosines(t, model, pairs, k)
		want := tli.Mean(ref)
		got, _ := strconv.ParseFloat(rows[k+1][1], 64)
		if math.Abs(got-want) > 2e-5 {
			t.Errorf("layer %d: scan mean %v, reference %v", k, got, want)
		}
		// The mismatched baseline is below 1 and the gap is mean - mismatched.
		mis, _ := strconv.ParseFloat(rows[k+1][3], 64)
		gap, _ := strconv.ParseFloat(rows[k+1][4], 64)
		if math.Abs(gap-(got-mis)) > 1e-9 {
			t.Errorf("layer %d: gap %v != mean %v - mismatched %v", k, gap, got, mis)
		}
	}
	for _, f := range []string{"scan.json", "scan.png"} {
		if fi, err := os.Stat(filepath.Join(out, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s missing or empty", f)
		}
	}
	// BOS-included pooling makes everything alike: its mismatched baseline
	// is far above the content-pooled one (the published scan's trap).
	out2 := filepath.Join(dir, "scan-paper")
	mustRun(t, "scan", "--model", model, "--pairs", pf, "--out", out2, "--paper-compat")
	rows2 := readCSV(t, filepath.Join(out2, "scan.csv"))
	misContent, _ := strconv.ParseFloat(rows[3][3], 64)
	misMean, _ := strconv.ParseFloat(rows2[3][3], 64)
	if !(misMean > misContent) {
		t.Errorf("layer 2 mismatched baseline: mean pooling %v should exceed content pooling %v", misMean, misContent)
	}
}

func TestTrainEvalMergeRun(t *testing.T) {
	model := testModel(t)
	dir := t.TempDir()
	pairs := tli.DefaultTrainPairs()[:40]
	pf := writePairs(t, dir, pairs)
	train := filepath.Join(dir, "train")
	mustRun(t, "train", "--model", model, "--pairs", pf, "--out", train, "--epochs", "2", "--warmup", "2", "--lr", "1e-3")
	// 40 pairs in batches of 8: 5 steps per epoch.
	log, err := os.ReadFile(filepath.Join(train, "train_log.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	if len(lines) != 10 {
		t.Fatalf("train_log.jsonl has %d lines, want 10", len(lines))
	}
	var first, last tli.StepLog
	json.Unmarshal([]byte(lines[0]), &first)
	json.Unmarshal([]byte(lines[9]), &last)
	if first.LR != 0 || first.Step != 1 || last.Step != 10 || last.Epoch != 2 {
		t.Errorf("log: first %+v, last %+v", first, last)
	}
	if want := 1e-3 * float64(10-9) / float64(10-2); math.Abs(last.LR-want) > 1e-12 {
		t.Errorf("last lr %v, want %v (linear decay)", last.LR, want)
	}
	for _, d := range []string{"epoch_1", "epoch_2", "final"} {
		if _, err := os.Stat(filepath.Join(train, d, "adapter_model.safetensors")); err != nil {
			t.Errorf("%s: %v", d, err)
		}
	}

	// Eval: layer 2 and the final layer, trained and control groups.
	eval := filepath.Join(dir, "eval")
	ctrl := writePairs(t, t.TempDir(), tli.DefaultControlPairs()[:12])
	mustRun(t, "eval", "--model", model, "--adapter", filepath.Join(train, "final"), "--pairs", pf, "--control", ctrl, "--out", eval)
	rows := readCSV(t, filepath.Join(eval, "results.csv"))
	if len(rows) != 1+2*(40+12) {
		t.Fatalf("results.csv: %d rows, want %d", len(rows), 1+2*(40+12))
	}
	// sim_pre at layer 2 is the base model's cosine.
	ref := refCosines(t, model, pairs, 2)
	for i, p := range pairs {
		r := rows[1+i]
		if r[0] != p.Source || r[4] != "trained" || r[5] != "2" {
			t.Fatalf("row %d = %v", i, r)
		}
		pre, _ := strconv.ParseFloat(r[2], 64)
		if math.Abs(pre-ref[i]) > 2e-5 {
			t.Errorf("pair %d: sim_pre %v, reference %v", i, pre, ref[i])
		}
	}
	// sim_post equals the cosine of the merged checkpoint written by merge.
	merged := filepath.Join(dir, "merged")
	mustRun(t, "merge", "--model", model, "--adapter", filepath.Join(train, "final"), "--out", merged)
	post := refCosines(t, merged, pairs, 2)
	changed := 0
	for i := range pairs {
		got, _ := strconv.ParseFloat(rows[1+i][3], 64)
		if math.Abs(got-post[i]) > 2e-5 {
			t.Errorf("pair %d: sim_post %v, merged checkpoint %v", i, got, post[i])
		}
		if math.Abs(post[i]-ref[i]) > 1e-4 {
			changed++
		}
	}
	if changed == 0 {
		t.Error("training changed no pair's cosine")
	}
	// probe --adapter generates what the merged checkpoint generates.
	probe := func(args ...string) string {
		var buf bytes.Buffer
		probeOut = &buf
		defer func() { probeOut = os.Stdout }()
		mustRun(t, append([]string{"probe", "--prompt", "maji ni", "--max-new-tokens", "6", "--dtype", "f32", "--ids"}, args...)...)
		return buf.String()
	}
	if a, b := probe("--model", model, "--adapter", filepath.Join(train, "final")), probe("--model", merged); a != b || a == "" {
		t.Errorf("probe --adapter printed %q, merged checkpoint %q", a, b)
	}
	var sum map[string]any
	data, _ := os.ReadFile(filepath.Join(eval, "summary.json"))
	if err := json.Unmarshal(data, &sum); err != nil {
		t.Fatalf("summary.json: %v", err)
	}

	// run: the same pipeline in one command; report.md and plots exist.
	run := filepath.Join(dir, "run")
	mustRun(t, "run", "--model", model, "--pairs", pf, "--control", ctrl, "--out", run, "--epochs", "1", "--layer", "auto")
	rep, err := os.ReadFile(filepath.Join(run, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Layer scan", "Before/after evaluation", "mismatched", "scan.png", "map_tsne_before"} {
		if !bytes.Contains(rep, []byte(want)) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	// run's "before" numbers come from its scan pass and equal eval's.
	runRows := readCSV(t, filepath.Join(run, "eval", "results.csv"))
	evalPre := map[string]string{}
	for _, r := range rows[1:] {
		evalPre[r[0]+"|"+r[4]+"|"+r[5]] = r[2]
	}
	for _, r := range runRows[1:] {
		if want, ok := evalPre[r[0]+"|"+r[4]+"|"+r[5]]; ok && want != r[2] {
			a, _ := strconv.ParseFloat(want, 64)
			b, _ := strconv.ParseFloat(r[2], 64)
			if math.Abs(a-b) > 1e-6 {
				t.Errorf("%v: run sim_pre %s, eval sim_pre %s", r[:2], r[2], want)
			}
		}
	}

	// plot: PNG maps before and after.
	plot := filepath.Join(dir, "plot")
	mustRun(t, "plot", "--model", model, "--adapter", filepath.Join(train, "final"), "--pairs", pf, "--layer", "2", "--out", plot, "--methods", "pca")
	for _, f := range []string{"map_pca_before_layer2.png", "map_pca_after_layer2.png"} {
		b, err := os.ReadFile(filepath.Join(plot, f))
		if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
			t.Errorf("%s: not a PNG (%v)", f, err)
		}
	}
}

// Same seed, same inputs: byte-identical adapters on 1 and 2 threads, and a
// run resumed from its epoch-1 checkpoint ends where the uninterrupted one does.
func TestDeterminismAndResume(t *testing.T) {
	model := testModel(t)
	dir := t.TempDir()
	pf := writePairs(t, dir, tli.DefaultTrainPairs()[:24])
	args := func(out string, threads string) []string {
		return []string{"train", "--model", model, "--pairs", pf, "--out", out, "--epochs", "2", "--batch", "6", "--threads", threads, "--warmup", "1"}
	}
	mustRun(t, args(filepath.Join(dir, "t1"), "1")...)
	mustRun(t, args(filepath.Join(dir, "t2"), "2")...)
	resumed := filepath.Join(dir, "t3")
	mustRun(t, append(args(resumed, "2"), "--resume", filepath.Join(dir, "t1", "epoch_1"))...)
	defer engine.SetThreads(0)
	a, _ := os.ReadFile(filepath.Join(dir, "t1", "final", "adapter_model.safetensors"))
	for _, other := range []string{"t2", "t3"} {
		b, err := os.ReadFile(filepath.Join(dir, other, "final", "adapter_model.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s/final differs from t1/final (1 thread, uninterrupted)", other)
		}
	}
}

func TestBadInputs(t *testing.T) {
	model := testModel(t)
	dir := t.TempDir()
	one := writePairs(t, dir, tli.DefaultTrainPairs()[:1])
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"not": "a list"`), 0o644)
	exists := filepath.Join(dir, "exists")
	os.MkdirAll(exists, 0o755)
	os.WriteFile(filepath.Join(exists, "x"), []byte("keep me"), 0o644)
	other := filepath.Join(dir, "other-model")
	if err := llama.Synth(other, llama.SynthOptions{Shape: "tiny", Seed: 1, Hidden: 32, Heads: 2, KVHeads: 1, Words: []string{"a", "b"}}); err != nil {
		t.Fatal(err)
	}
	trained := filepath.Join(dir, "trained")
	mustRun(t, "train", "--model", other, "--out", trained, "--max-steps", "1", "--pairs", writePairs(t, t.TempDir(), []tli.Pair{{Source: "a", Target: "b"}, {Source: "b", Target: "a"}}))
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"nosuch"}, "unknown command"},
		{[]string{"scan", "--model", filepath.Join(dir, "missing"), "--out", filepath.Join(dir, "o1")}, "config.json"},
		{[]string{"scan", "--model", model, "--pairs", bad, "--out", filepath.Join(dir, "o2")}, "bad.json"},
		{[]string{"scan", "--model", model, "--pairs", filepath.Join(dir, "nope.json"), "--out", filepath.Join(dir, "o3")}, "nope.json"},
		{[]string{"scan", "--model", model, "--layers", "99", "--out", filepath.Join(dir, "o4")}, "outside [0,"},
		{[]string{"scan", "--model", model, "--out", exists}, "--force"},
		{[]string{"train", "--model", model, "--pairs", one, "--out", filepath.Join(dir, "o5")}, "at least 2"},
		{[]string{"train", "--model", model, "--batch", "1", "--out", filepath.Join(dir, "o6")}, "--batch 1"},
		{[]string{"train", "--model", model, "--layer", "9", "--out", filepath.Join(dir, "o7")}, "--layer 9"},
		{[]string{"train", "--model", model, "--pooling", "max", "--out", filepath.Join(dir, "o8")}, "pooling"},
		{[]string{"eval", "--model", model, "--adapter", filepath.Join(trained, "final"), "--out", filepath.Join(dir, "o9")}, "adapter"},
		{[]string{"train", "--model", model, "stray"}, "unexpected argument"},
	}
	for _, c := range cases {
		code, stderr := tliRun(t, c.args...)
		if code == 0 || !strings.Contains(stderr, c.want) {
			t.Errorf("tli %s: exit %d, stderr %q; want non-zero and %q", strings.Join(c.args, " "), code, stderr, c.want)
		}
		if strings.Count(strings.TrimSpace(stderr), "\n") > 0 && c.args[0] != "nosuch" {
			t.Errorf("tli %s: want one line of error, got %q", strings.Join(c.args, " "), stderr)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(exists, "x")); string(b) != "keep me" {
		t.Error("an existing --out was modified")
	}
}

// The published lists, in their own format, go through scan and eval.
func TestPaperFiles(t *testing.T) {
	data := peer.PaperData()
	if data == "" {
		t.Skip("../shared/data/tli-paper not present (optional data)")
	}
	model := testModel(t)
	dir := t.TempDir()
	pairs, rep, err := tli.ReadPairs(filepath.Join(data, "word_pairs.json"))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != 623 {
		t.Errorf("word_pairs.json: %d entries, want 623", rep.Entries)
	}
	mustRun(t, "scan", "--model", model, "--pairs", filepath.Join(data, "word_pairs.json"), "--layers", "0,2", "--out", filepath.Join(dir, "scan"))
	rows := readCSV(t, filepath.Join(dir, "scan", "scan.csv"))
	if len(rows) != 3 {
		t.Errorf("scan.csv: %d rows", len(rows))
	}
	_ = pairs
	// The published per-pair results reproduce the published means.
	res, err := tli.ReadResultsCSV(filepath.Join(data, "quantitative_results.csv"), 2)
	if err != nil {
		t.Fatal(err)
	}
	sums, err := tli.SummarizeResults(res)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sums {
		for _, p := range tli.Published {
			if p.Group == s.Group && (math.Abs(s.MeanPre-p.MeanPre) > 5e-5 || math.Abs(s.MeanPost-p.MeanPost) > 5e-5) {
				t.Errorf("%s: %v -> %v, published %v -> %v", s.Group, s.MeanPre, s.MeanPost, p.MeanPre, p.MeanPost)
			}
		}
	}
}
