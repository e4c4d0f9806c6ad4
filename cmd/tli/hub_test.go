package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/lora"
	"github.com/tli-project/tli/tli"
)

// fakeHubCache puts the checkpoint in model into a Hugging Face cache
// under a new folder as huggingface_hub lays it out: the files in blobs/,
// snapshots/HASH/ linking to them, refs/main holding HASH. It returns the
// cache folder.
func fakeHubCache(t *testing.T, model, repo string) string {
	t.Helper()
	const hash = "4f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c"
	cache := t.TempDir()
	repoDir := filepath.Join(cache, "models--"+strings.ReplaceAll(repo, "/", "--"))
	snap := filepath.Join(repoDir, "snapshots", hash)
	for _, d := range []string{filepath.Join(repoDir, "blobs"), filepath.Join(repoDir, "refs"), snap} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(model)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range entries {
		b, err := os.ReadFile(filepath.Join(model, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		blob := filepath.Join(repoDir, "blobs", strings.Repeat(string(rune('a'+i)), 8))
		if err := os.WriteFile(blob, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..", "..", "blobs", filepath.Base(blob)), filepath.Join(snap, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(repoDir, "refs", "main"), []byte(hash), 0o644); err != nil {
		t.Fatal(err)
	}
	return cache
}

// adapterBase reads base_model_name_or_path of an adapter folder.
func adapterBase(t *testing.T, dir string) any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, lora.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	v, ok := cfg["base_model_name_or_path"]
	if !ok {
		t.Fatalf("%s: no base_model_name_or_path", dir)
	}
	return v
}

// TestHubModel: --model org/name reads the checkpoint from the Hugging
// Face cache (HF_HUB_CACHE, HF_HOME/hub) in every command, the adapters
// trained name it as base_model_name_or_path (else the folder's name, or
// --base-model-id), and merge shards its output and keeps the base's dtype.
func TestHubModel(t *testing.T) {
	model := testModel(t)
	cache := fakeHubCache(t, model, "tiny-org/tiny-llama")
	for _, k := range []string{"HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"} {
		t.Setenv(k, "")
	}
	t.Setenv("HF_HUB_CACHE", cache)
	dir := t.TempDir()
	pf := writePairs(t, dir, tli.DefaultTrainPairs()[:12])
	train := func(out, model string, extra ...string) {
		t.Helper()
		mustRun(t, append([]string{"train", "--model", model, "--pairs", pf, "--out", out, "--max-steps", "2", "--batch", "6", "--warmup", "1"}, extra...)...)
	}

	// train: base_model_name_or_path is the repo id, the folder's name, or
	// --base-model-id; an --init-adapter's own is replaced.
	hub := filepath.Join(dir, "hub")
	train(hub, "tiny-org/tiny-llama")
	local := filepath.Join(dir, "local")
	train(local, model)
	named := filepath.Join(dir, "named")
	train(named, model, "--base-model-id", "meta-llama/Llama-3.2-1B")
	cont := filepath.Join(dir, "cont")
	train(cont, "tiny-org/tiny-llama@main", "--init-adapter", filepath.Join(named, "final"))
	for _, c := range []struct{ dir, want string }{
		{filepath.Join(hub, "final"), "tiny-org/tiny-llama"},
		{filepath.Join(hub, "epoch_1"), "tiny-org/tiny-llama"},
		{filepath.Join(local, "final"), filepath.Base(model)},
		{filepath.Join(named, "final"), "meta-llama/Llama-3.2-1B"},
		{filepath.Join(cont, "final"), "tiny-org/tiny-llama"},
	} {
		if _, err := os.Stat(c.dir); os.IsNotExist(err) && !strings.HasSuffix(c.dir, "final") {
			continue // the run ended before an epoch did
		}
		if got := adapterBase(t, c.dir); got != c.want {
			t.Errorf("%s: base_model_name_or_path %v, want %q", c.dir, got, c.want)
		}
	}
	// run and sweep: the repo id, or --base-model-id.
	run := filepath.Join(dir, "run")
	mustRun(t, "run", "--model", "tiny-org/tiny-llama", "--pairs", pf, "--control", pf, "--out", run, "--layer", "1", "--max-steps", "1",
		"--batch", "6", "--warmup", "1", "--eval-layers", "train", "--base-model-id", "org/published-name")
	if got := adapterBase(t, filepath.Join(run, "train", "final")); got != "org/published-name" {
		t.Errorf("run --base-model-id: base_model_name_or_path %v", got)
	}
	sweep := filepath.Join(dir, "sweep")
	mustRun(t, "sweep", "--model", "tiny-org/tiny-llama", "--pairs", pf, "--control", pf, "--out", sweep, "--layer", "1", "--seed", "1,2",
		"--max-steps", "1", "--batch", "6", "--warmup", "1")
	cells, _ := filepath.Glob(filepath.Join(sweep, "cells", "*", "train", "final"))
	if len(cells) != 2 {
		t.Errorf("sweep: adapters %v, want 2", cells)
	}
	for _, c := range cells {
		if got := adapterBase(t, c); got != "tiny-org/tiny-llama" {
			t.Errorf("%s: base_model_name_or_path %v", c, got)
		}
	}

	a, err := os.ReadFile(filepath.Join(hub, "final", lora.WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(local, "final", lora.WeightsFile)); !bytes.Equal(a, b) {
		t.Error("training on the cached repo and on its folder gave different adapters")
	}

	// HF_HOME/hub is the cache when HF_HUB_CACHE is not set.
	home := t.TempDir()
	if err := os.Symlink(cache, filepath.Join(home, "hub")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HF_HUB_CACHE", "")
	t.Setenv("HF_HOME", home)
	var buf bytes.Buffer
	probeOut = &buf
	mustRun(t, "probe", "--model", "tiny-org/tiny-llama", "--prompt", "maji ni", "--max-new-tokens", "4", "--ids")
	viaHub := buf.String()
	buf.Reset()
	mustRun(t, "probe", "--model", model, "--prompt", "maji ni", "--max-new-tokens", "4", "--ids")
	probeOut = os.Stdout
	if viaHub == "" || viaHub != buf.String() {
		t.Errorf("probe via the cache printed %q, via the folder %q", viaHub, buf.String())
	}
	var tokOut bytes.Buffer
	tokenizeOut = &tokOut
	mustRun(t, "tokenize", "--model", "tiny-org/tiny-llama", "--text", "maji")
	tokenizeOut = os.Stdout
	if !strings.Contains(tokOut.String(), "[") {
		t.Errorf("tokenize via the cache printed %q", tokOut.String())
	}

	// merge: from the cache, no --dtype (the base is f32), shards of at
	// most 40000 bytes with an index; the merged folder loads with the
	// adapter's weights merged.
	merged := filepath.Join(dir, "merged")
	mustRun(t, "merge", "--model", "tiny-org/tiny-llama", "--adapter", filepath.Join(hub, "final"), "--out", merged, "--shard-bytes", "40000")
	var idx struct {
		Metadata  map[string]int64  `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}
	b, err := os.ReadFile(filepath.Join(merged, llama.IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &idx); err != nil || idx.Metadata["total_size"] <= 0 || len(idx.WeightMap) == 0 {
		t.Fatalf("index %s: %v", b, err)
	}
	shards := map[string]bool{}
	for _, f := range idx.WeightMap {
		shards[f] = true
	}
	if len(shards) < 2 {
		t.Errorf("%d shards at a 40000-byte limit", len(shards))
	}
	for i := 1; i <= len(shards); i++ {
		if name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i, len(shards)); !shards[name] {
			t.Errorf("no %s among %v", name, shards)
		}
	}
	if d, err := llama.CheckpointDType(merged); err != nil || d != engine.F32 {
		t.Errorf("merged dtype %v (%v), want the base's f32", d, err)
	}
	got, err := llama.Load(merged, llama.LoadOptions{DType: engine.F32, MaxLayer: llama.AllLayers})
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	want, err := llama.Load(model, llama.LoadOptions{DType: engine.F32, MaxLayer: llama.AllLayers})
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	ad, err := lora.Load(filepath.Join(hub, "final"), want.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := ad.Merge(want); err != nil {
		t.Fatal(err)
	}
	gw, ww := got.Weights(), want.Weights()
	if len(gw) != len(ww) {
		t.Fatalf("%d weights, want %d", len(gw), len(ww))
	}
	for i := range ww {
		if gw[i].Name != ww[i].Name || !slices.Equal(gw[i].Tensor.Bytes(), ww[i].Tensor.Bytes()) {
			t.Errorf("merged %s differs from the in-memory merge", ww[i].Name)
		}
	}
}

// TestModelNotACheckpoint: a GGUF file, a folder without config.json, an
// adapter folder or a repo id missing from the cache is refused with one
// line saying what --model wants.
func TestModelNotACheckpoint(t *testing.T) {
	t.Setenv("HF_HUB_CACHE", t.TempDir())
	dir := t.TempDir()
	gguf := filepath.Join(dir, "llama-3.2-1b.Q8_0.gguf")
	os.WriteFile(gguf, []byte("GGUF\x03\x00\x00\x00"), 0o644)
	empty := filepath.Join(dir, "empty")
	os.MkdirAll(empty, 0o755)
	adapter := filepath.Join(dir, "adapter")
	os.MkdirAll(adapter, 0o755)
	os.WriteFile(filepath.Join(adapter, lora.ConfigFile), []byte(`{}`), 0o644)
	out := filepath.Join(dir, "out")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"probe", "--model", gguf, "--prompt", "x"}, "GGUF file"},
		{[]string{"scan", "--model", gguf, "--out", out}, "GGUF file"},
		{[]string{"train", "--model", empty, "--out", out}, "has no config.json"},
		{[]string{"eval", "--model", adapter, "--adapter", adapter, "--out", out}, "PEFT adapter folder"},
		{[]string{"merge", "--model", gguf, "--adapter", adapter, "--out", out}, "GGUF file"},
		{[]string{"embed", "--model", "no-org/no-model", "--words", gguf, "--out", out}, "not in the Hugging Face cache"},
		{[]string{"tokenize", "--model", "no-org/no-model", "--text", "x"}, "not in the Hugging Face cache"},
		{[]string{"sweep", "--model", empty, "--out", out}, "has no config.json"},
		{[]string{"run", "--model", gguf, "--out", out}, "GGUF file"},
	} {
		code, stderr := tliRun(t, c.args...)
		says := strings.Contains(stderr, "config.json") || strings.Contains(c.want, "cache") // what a checkpoint is, or where it was looked for
		if code != 2 || !strings.Contains(stderr, c.want) || !says || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
			t.Errorf("tli %s: exit %d, %q; want exit 2 and one line with %q and what a checkpoint is", strings.Join(c.args, " "), code, stderr, c.want)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a refused command left --out")
	}
}
