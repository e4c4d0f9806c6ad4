package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/lora"
	"github.com/tli-project/tli/tli"
)

// The tests here check that tli never destroys a user's files: outputs are
// refused where they would overwrite something, failures leave nothing that
// looks like a result, and a command killed at any moment leaves its output
// folder in its previous complete state or its new complete one.

// TestMain lets the test binary act as the tli command for the tests that
// need a real process to kill (TLI_TEST_AS_TLI=1).
func TestMain(m *testing.M) {
	if os.Getenv("TLI_TEST_AS_TLI") == "1" {
		os.Exit(runMain(os.Args[1:], os.Stderr))
	}
	os.Exit(m.Run())
}

// treeHash returns a digest of every file's path and bytes under dir (""
// when dir does not exist), so a test can tell whether a folder changed.
// Matches of mask in the files (paths that a report quotes) are blanked.
func treeHash(t *testing.T, dir string, mask ...*regexp.Regexp) string {
	t.Helper()
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		return ""
	}
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(h, "%s\x00", rel)
		if !d.IsDir() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, re := range mask {
				b = re.ReplaceAll(b, []byte("OUT"))
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// hidden lists the entries of dir whose names start with a dot (the
// temporary names of half-built outputs).
func hidden(t *testing.T, dir string) []string {
	t.Helper()
	es, _ := os.ReadDir(dir)
	var out []string
	for _, e := range es {
		if strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out
}

// trainTiny trains a short run into out (the shared flags of these tests).
func trainArgs(model, pairs, out string, extra ...string) []string {
	return append([]string{"train", "--model", model, "--pairs", pairs, "--out", out, "--epochs", "3", "--batch", "6", "--warmup", "1", "--threads", "1"}, extra...)
}

func TestOverwritesRefused(t *testing.T) {
	model := testModel(t)
	dir := t.TempDir()
	pf := writePairs(t, dir, tli.DefaultTrainPairs()[:12])
	adapter := filepath.Join(dir, "ad")
	mustRun(t, trainArgs(model, pf, adapter, "--max-steps", "2")...)
	words := filepath.Join(dir, "words.json")
	os.WriteFile(words, []byte(`["maji","water"]`), 0o644)
	keep := filepath.Join(dir, "keep.txt")
	os.WriteFile(keep, []byte("keep me"), 0o644)
	userDir := filepath.Join(dir, "user")
	os.MkdirAll(userDir, 0o755)
	os.WriteFile(filepath.Join(userDir, "thesis.tex"), []byte("keep me too"), 0o644)
	merged := filepath.Join(dir, "merged")
	mustRun(t, "merge", "--model", model, "--adapter", filepath.Join(adapter, "final"), "--out", merged)

	before := map[string]string{}
	for _, p := range []string{model, adapter, keep, userDir, merged, pf} {
		before[p] = treeHash(t, p)
	}
	cases := []struct {
		args []string
		want string
	}{
		// merge: never into or around an input, never over a folder that is
		// not a checkpoint, never over an existing one without --force.
		{[]string{"merge", "--model", model, "--adapter", filepath.Join(adapter, "final"), "--out", model, "--force"}, "is the same path as --model"},
		{[]string{"merge", "--model", model, "--adapter", filepath.Join(adapter, "final"), "--out", filepath.Join(model, "sub"), "--force"}, "lies inside --model"},
		{[]string{"merge", "--model", model, "--adapter", filepath.Join(adapter, "final"), "--out", adapter, "--force"}, "contains --adapter"},
		{[]string{"merge", "--model", model, "--adapter", filepath.Join(adapter, "final"), "--out", userDir, "--force"}, "without config.json"},
		{[]string{"merge", "--model", model, "--adapter", filepath.Join(adapter, "final"), "--out", merged}, "--force"},
		// single files: never replaced without --force, never inside an input.
		{[]string{"embed", "--model", model, "--words", words, "--out", keep}, "already exists"},
		{[]string{"embed", "--model", model, "--words", words, "--out", filepath.Join(model, "model.safetensors"), "--force"}, "lies inside --model"},
		{[]string{"embed", "--model", model, "--words", words, "--out", words, "--force"}, "same path as --words"},
		{[]string{"pairs", "--builtin", "train", "--out", keep}, "already exists"},
		{[]string{"pairs", "--pairs", pf, "--out", pf, "--force"}, "same path as --pairs"},
		// synth: never over an existing folder without --force, never over a
		// folder that is not a checkpoint.
		{[]string{"synth", "--out", merged}, "--force"},
		{[]string{"synth", "--out", userDir, "--force"}, "without config.json"},
		{[]string{"synth", "--out", keep}, "is a file"},
		// folders of results: never the model's own folder.
		{[]string{"scan", "--model", model, "--out", model, "--force"}, "same path as --model"},
		{[]string{"run", "--model", model, "--out", filepath.Join(model, "run")}, "lies inside --model"},
	}
	for _, c := range cases {
		code, stderr := tliRun(t, c.args...)
		if code == 0 || !strings.Contains(stderr, c.want) {
			t.Errorf("tli %s: exit %d, stderr %q; want non-zero and %q", strings.Join(c.args, " "), code, stderr, c.want)
		}
	}
	for p, h := range before {
		if got := treeHash(t, p); got != h {
			t.Errorf("%s changed", p)
		}
	}

	// --force replaces a checkpoint only once the new one is complete: a
	// merge that fails (an adapter for another model) keeps the old one.
	other := filepath.Join(dir, "other")
	if err := llama.Synth(other, llama.SynthOptions{Shape: "tiny", Seed: 1, Hidden: 32, Heads: 2, KVHeads: 1, Words: []string{"a", "b"}}); err != nil {
		t.Fatal(err)
	}
	code, stderr := tliRun(t, "merge", "--model", other, "--adapter", filepath.Join(adapter, "final"), "--out", merged, "--force")
	if code == 0 {
		t.Fatal("merging an adapter into a model of another shape succeeded")
	}
	if got := treeHash(t, merged); got != before[merged] {
		t.Errorf("a failed merge --force changed the previous output (%s)", stderr)
	}
	if h := hidden(t, dir); len(h) != 0 {
		t.Errorf("a failed merge left %v", h)
	}
	// And a merge that succeeds replaces it.
	mustRun(t, "merge", "--model", model, "--adapter", filepath.Join(adapter, "final"), "--out", merged, "--force", "--dtype", "bf16")
	cfg, err := llama.LoadConfig(filepath.Join(merged, "config.json"))
	if err != nil || cfg.TorchDType != "bfloat16" {
		t.Errorf("merge --force did not replace the output: %v %q", err, cfg.TorchDType)
	}
	// synth --force replaces a checkpoint with a complete new one.
	mustRun(t, "synth", "--out", merged, "--force", "--layers", "1")
	if cfg, err := llama.LoadConfig(filepath.Join(merged, "config.json")); err != nil || cfg.NumLayers != 1 {
		t.Errorf("synth --force: %v, %d layers", err, cfg.NumLayers)
	}
}

// A command that fails leaves nothing that looks like a result: no empty
// --out, no empty log, no half-written folder.
func TestFailuresLeaveNothing(t *testing.T) {
	model := testModel(t)
	dir := t.TempDir()
	pf := writePairs(t, dir, tli.DefaultTrainPairs()[:12])
	// A checkpoint whose weights file is cut short: every command gets past
	// its flag checks and fails while loading.
	broken := filepath.Join(t.TempDir(), "broken")
	if err := exec.Command("cp", "-r", model, broken).Run(); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(broken, "model.safetensors"), 100); err != nil {
		t.Fatal(err)
	}
	ad := filepath.Join(t.TempDir(), "ad")
	mustRun(t, trainArgs(model, pf, ad, "--max-steps", "1")...)
	cases := [][]string{
		trainArgs(model, pf, filepath.Join(dir, "t-lr"), "--lr", "Inf"),
		trainArgs(model, pf, filepath.Join(dir, "t-margin"), "--margin", "NaN"),
		trainArgs(broken, pf, filepath.Join(dir, "t-broken")),
		{"scan", "--model", broken, "--pairs", pf, "--out", filepath.Join(dir, "s")},
		{"eval", "--model", broken, "--adapter", filepath.Join(ad, "final"), "--out", filepath.Join(dir, "e")},
		{"eval", "--model", model, "--adapter", filepath.Join(dir, "nosuch"), "--out", filepath.Join(dir, "e2")},
		{"run", "--model", broken, "--pairs", pf, "--out", filepath.Join(dir, "r")},
		{"merge", "--model", broken, "--adapter", filepath.Join(ad, "final"), "--out", filepath.Join(dir, "m")},
		{"embed", "--model", broken, "--words", pf, "--out", filepath.Join(dir, "emb.safetensors")},
		{"synth", "--out", filepath.Join(dir, "syn"), "--shape", "nosuch"},
	}
	for _, args := range cases {
		if code, _ := tliRun(t, args...); code == 0 {
			t.Errorf("tli %s succeeded", strings.Join(args, " "))
		}
	}
	es, _ := os.ReadDir(dir)
	for _, e := range es {
		if e.Name() != "pairs.json" {
			t.Errorf("failed commands left %s in the parent folder", e.Name())
		}
	}
}

func TestFlagValuesChecked(t *testing.T) {
	model := testModel(t)
	dir := t.TempDir()
	pf := writePairs(t, dir, tli.DefaultTrainPairs()[:12])
	ad := filepath.Join(dir, "ad")
	mustRun(t, trainArgs(model, pf, ad, "--max-steps", "1")...)
	out := filepath.Join(dir, "o")
	cases := []struct {
		args []string
		want string
	}{
		{trainArgs(model, pf, out, "--margin", "NaN"), "--margin NaN must be in [0, 2]"},
		{trainArgs(model, pf, out, "--margin", "-1"), "--margin -1 must be in [0, 2]"},
		{trainArgs(model, pf, out, "--lr", "Inf"), "--lr +Inf must be a positive finite number"},
		{trainArgs(model, pf, out, "--threads", "100000"), "--threads 100000 must be in [0,"},
		{trainArgs(model, pf, out, "--paper-compat", "--pooling", "last"), "--paper-compat sets the pooling"},
		{trainArgs(model, pf, out, "--init-adapter", filepath.Join(ad, "final"), "--rank", "4"), "--rank cannot be combined with --init-adapter"},
		{trainArgs(model, pf, out, "--epochs", "1000000000"), "--epochs 1000000000 is more than"},
		{[]string{"scan", "--model", model, "--paper-compat", "--pooling", "last", "--out", out}, "--paper-compat sets the pooling"},
		{[]string{"probe", "--model", model, "--prompt", "maji", "--top-p", "NaN"}, "--top-p NaN must be in (0, 1]"},
		{[]string{"probe", "--model", model, "--prompt", "maji", "--temperature", "Inf"}, "--temperature +Inf must be a finite number"},
		{[]string{"probe", "--model", model, "--prompt", "ma\xffji"}, "--prompt is not valid UTF-8 (byte 2 is 0xff)"},
		{[]string{"probe", "--model", model, "--prompt", "maji", "--max-new-tokens", "100000000"}, "exceed the model's context of"},
		{[]string{"synth", "--out", out, "--layers", "-1"}, "--layers -1 must be >= 0"},
	}
	for _, c := range cases {
		code, stderr := tliRun(t, c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("tli %s: exit %d, stderr %q; want exit 2 and %q", strings.Join(c.args, " "), code, stderr, c.want)
		}
	}
	// Bad input files: one line naming the file and the limit.
	longWord := filepath.Join(dir, "long.json")
	os.WriteFile(longWord, []byte(`["maji", "`+strings.Repeat("a", tli.MaxWordBytes+1)+`"]`), 0o644)
	longPairs := filepath.Join(dir, "long.tsv")
	os.WriteFile(longPairs, []byte("swahili\tenglish\nmaji\t"+strings.Repeat("a", tli.MaxWordBytes+1)+"\n"), 0o644)
	emb := filepath.Join(dir, "emb.safetensors")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"embed", "--model", model, "--words", longWord, "--out", emb}, longWord + ": word 1 is 1025 bytes long, over the limit of 1024 bytes (tli.MaxWordBytes)"},
		{[]string{"embed", "--model", model, "--words", "/dev/zero", "--out", emb}, "/dev/zero: larger than 64 MiB"},
		{[]string{"scan", "--model", model, "--pairs", longPairs, "--out", out}, longPairs + ": line 2: English side"},
		{[]string{"scan", "--model", model, "--pairs", "/dev/zero", "--out", out}, "larger than 64 MiB (tli.MaxPairsFileBytes)"},
	} {
		code, stderr := tliRun(t, c.args...)
		if code != 1 || !strings.Contains(stderr, c.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
			t.Errorf("tli %s: exit %d, stderr %q; want exit 1 and one line with %q", strings.Join(c.args, " "), code, stderr, c.want)
		}
	}
	for _, p := range []string{out, emb} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("refused commands created %s", p)
		}
	}
	// A training run refused for an existing --out says what is there.
	code, stderr := tliRun(t, trainArgs(model, pf, ad)...)
	if want := "already holds a finished training run"; code != 2 || !strings.Contains(stderr, want) {
		t.Errorf("train into a finished run: exit %d, %q; want %q", code, stderr, want)
	}
	partial := filepath.Join(dir, "partial")
	os.MkdirAll(partial, 0o755)
	exec.Command("cp", "-r", filepath.Join(ad, "final"), filepath.Join(partial, "epoch_2")).Run()
	code, stderr = tliRun(t, trainArgs(model, pf, partial)...)
	if want := "continue it with --resume " + filepath.Join(partial, "epoch_2"); code != 2 || !strings.Contains(stderr, want) {
		t.Errorf("train into an unfinished run: exit %d, %q; want %q", code, stderr, want)
	}
	// --init-adapter (r 4 here): the banner says the adapter's rank.
	ad4 := filepath.Join(dir, "ad4")
	mustRun(t, trainArgs(model, pf, ad4, "--max-steps", "1", "--rank", "4", "--alpha", "8")...)
	cmd := tliProcess(trainArgs(model, pf, filepath.Join(dir, "init"), "--init-adapter", filepath.Join(ad4, "final"), "--max-steps", "1")...)
	if err := cmd.Run(); err != nil || !strings.Contains(fmt.Sprint(cmd.Stdout), "LoRA r=4 alpha=8") {
		t.Errorf("train --init-adapter: %v, output %q; want the adapter's r=4 alpha=8 in the banner", err, cmd.Stdout)
	}
}

// readLog returns the step records of a train_log.jsonl.
func readLog(t *testing.T, path string) []tli.StepLog {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []tli.StepLog
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r tli.StepLog
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		r.StepSeconds = 0
		out = append(out, r)
	}
	return out
}

// checkLog checks that a log holds steps 1..n once each, in order, with the
// uninterrupted run's values.
func checkLog(t *testing.T, what string, got, want []tli.StepLog) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d log lines, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: log line %d is %+v, want %+v", what, i+1, got[i], want[i])
		}
	}
}

// checkCheckpoints checks that every checkpoint folder of a training run
// is complete: adapter, optimizer state and trainer state, all readable.
func checkCheckpoints(t *testing.T, model, out string) {
	t.Helper()
	cfg, err := llama.LoadConfig(filepath.Join(model, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	es, _ := os.ReadDir(out)
	for _, e := range es {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		ck := filepath.Join(out, e.Name())
		for _, f := range []string{"adapter_config.json", "adapter_model.safetensors", "optimizer.safetensors", "trainer_state.json"} {
			if _, err := os.Stat(filepath.Join(ck, f)); err != nil {
				t.Fatalf("%s is incomplete: %v", ck, err)
			}
		}
		if _, err := lora.Load(ck, cfg); err != nil {
			t.Fatalf("%s: %v", ck, err)
		}
	}
}

// Resuming after a kill that came after the checkpoint: the log is cut back
// to the checkpoint's step, and the run ends bit-identical to the
// uninterrupted one.
func TestResumeCutsLog(t *testing.T) {
	model := testModel(t)
	dir := t.TempDir()
	pf := writePairs(t, dir, tli.DefaultTrainPairs()[:24])
	ref := filepath.Join(dir, "ref")
	mustRun(t, trainArgs(model, pf, ref)...)
	want := readLog(t, filepath.Join(ref, "train_log.jsonl"))
	// A run killed after epoch 2 finished: epoch_1 and epoch_2 exist, the
	// log holds every step. Resuming from epoch_1 must not log twice.
	res := filepath.Join(dir, "res")
	os.MkdirAll(res, 0o755)
	for _, name := range []string{"epoch_1", "train_log.jsonl"} {
		if err := exec.Command("cp", "-r", filepath.Join(ref, name), res).Run(); err != nil {
			t.Fatal(err)
		}
	}
	// With a torn last line, as a kill mid-write leaves.
	f, _ := os.OpenFile(filepath.Join(res, "train_log.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"epoch":3,"step":`)
	f.Close()
	mustRun(t, trainArgs(model, pf, res, "--resume", filepath.Join(res, "epoch_1"))...)
	checkLog(t, "resumed log", readLog(t, filepath.Join(res, "train_log.jsonl")), want)
	for _, name := range []string{"final", "epoch_3"} {
		if treeHash(t, filepath.Join(res, name)) != treeHash(t, filepath.Join(ref, name)) {
			t.Errorf("resumed %s differs from the uninterrupted run's", name)
		}
	}
}

// tliProcess starts the test binary as tli with args.
func tliProcess(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "TLI_TEST_AS_TLI=1")
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	return cmd
}

// runKilled runs args and kills the process with SIGKILL after delay (or
// lets it finish if it is faster); it reports whether the process finished
// on its own.
func runKilled(t *testing.T, delay time.Duration, args ...string) bool {
	t.Helper()
	cmd := tliProcess(args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("tli %s: %v\n%s", strings.Join(args, " "), err, cmd.Stdout)
		}
		return true
	case <-time.After(delay):
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
		return false
	}
}

// timed runs args to the end and returns how long it took.
func timed(t *testing.T, args ...string) time.Duration {
	t.Helper()
	start := time.Now()
	cmd := tliProcess(args...)
	if err := cmd.Run(); err != nil {
		t.Fatalf("tli %s: %v\n%s", strings.Join(args, " "), err, cmd.Stdout)
	}
	return time.Since(start)
}

// Kill train, merge, eval and run with SIGKILL at random moments: the
// output always holds the previous complete state or the new complete one,
// and a killed training resumed from its latest checkpoint ends
// bit-identical to the uninterrupted run, with the same log.
func TestKillAnywhere(t *testing.T) {
	if testing.Short() {
		t.Skip("kills dozens of processes")
	}
	model := testModel(t)
	dir := t.TempDir()
	pf := writePairs(t, dir, tli.DefaultTrainPairs()[:24])
	rng := rand.New(rand.NewPCG(1, 2))
	kills := 10

	// train
	ref := filepath.Join(dir, "ref")
	full := timed(t, trainArgs(model, pf, ref)...)
	want := readLog(t, filepath.Join(ref, "train_log.jsonl"))
	killed := 0
	for i := 0; i < kills; i++ {
		out := filepath.Join(dir, fmt.Sprintf("train%d", i))
		finished := runKilled(t, time.Duration(rng.Float64()*float64(full)), trainArgs(model, pf, out)...)
		for !finished {
			killed++
			checkCheckpoints(t, model, out)
			ck := latestCheckpoint(out)
			args := trainArgs(model, pf, out)
			if ck != "" {
				args = append(args, "--resume", ck)
			} else {
				args = append(args, "--force")
			}
			finished = runKilled(t, time.Duration(rng.Float64()*float64(full)), args...)
		}
		checkCheckpoints(t, model, out)
		checkLog(t, out, readLog(t, filepath.Join(out, "train_log.jsonl")), want)
		if treeHash(t, filepath.Join(out, "final")) != treeHash(t, filepath.Join(ref, "final")) {
			t.Fatalf("%s/final differs from the uninterrupted run's", out)
		}
	}

	t.Logf("train: %d runs, killed %d times in all, each resumed to the uninterrupted result", kills, killed)
	if killed == 0 {
		t.Fatal("no training run was killed: the kill delays are too long to test anything")
	}

	// merge --force over an earlier merge, and eval --force over an earlier
	// evaluation: the output is the old one or the new one, whole.
	for _, c := range []struct {
		name       string
		first, sec []string
	}{
		{"merge",
			[]string{"merge", "--model", model, "--adapter", filepath.Join(ref, "epoch_1"), "--dtype", "bf16"},
			[]string{"merge", "--model", model, "--adapter", filepath.Join(ref, "final"), "--force"}},
		{"eval",
			[]string{"eval", "--model", model, "--adapter", filepath.Join(ref, "epoch_1"), "--pairs", pf},
			[]string{"eval", "--model", model, "--adapter", filepath.Join(ref, "final"), "--pairs", pf, "--force"}},
	} {
		oldOut, newOut := filepath.Join(dir, c.name+"-old"), filepath.Join(dir, c.name+"-new")
		timed(t, append(c.first, "--out", oldOut)...)
		full := timed(t, append(c.sec, "--out", newOut)...)
		path := regexp.MustCompile(regexp.QuoteMeta(filepath.Join(dir, c.name)) + `[-a-z0-9]*`)
		// What differs between two runs of the same command: the
		// provenance's phase times and date.
		volatile := regexp.MustCompile(`"date": "[^"]*"|"(scan|train|eval)": [0-9.eE+-]+|- time:[^\n]*|- finished [^\n]*`)
		hash := func(dir string) string { return treeHash(t, dir, path, volatile) }
		states := map[string]string{hash(oldOut): "old", hash(newOut): "new"}
		seen := map[string]int{}
		for i := 0; i < kills; i++ {
			out := filepath.Join(dir, fmt.Sprintf("%s%d", c.name, i))
			if err := exec.Command("cp", "-r", oldOut, out).Run(); err != nil {
				t.Fatal(err)
			}
			runKilled(t, time.Duration(rng.Float64()*float64(full)*1.5), append(c.sec, "--out", out)...)
			state, ok := states[hash(out)]
			if !ok {
				t.Fatalf("%s killed: %s is neither the old output nor the new one", c.name, out)
			}
			seen[state]++
			// The next run to the same --out completes it and removes what
			// the killed one left beside it.
			timed(t, append(c.sec, "--out", out)...)
			if hash(out) != hash(newOut) {
				t.Fatalf("%s rerun after a kill: %s is not the new output", c.name, out)
			}
			for _, h := range hidden(t, dir) {
				if strings.HasPrefix(h, "."+filepath.Base(out)+".") {
					t.Fatalf("%s rerun after a kill left %s", c.name, h)
				}
			}
		}
		t.Logf("%s: killed %d times; left the old output %d times, the new one %d times", c.name, kills, seen["old"], seen["new"])
	}
}
