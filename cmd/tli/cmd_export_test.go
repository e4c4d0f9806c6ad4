package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/gguf"
	"github.com/tli-project/tli/internal/peer"
	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/llama/tokenizer"
	"github.com/tli-project/tli/lora"
)

func runExportCmd(t *testing.T, args ...string) (stdout, stderr string, rc int) {
	t.Helper()
	var out, errs bytes.Buffer
	exportOut = &out
	defer func() { exportOut = os.Stdout }()
	rc = runMain(append([]string{"export"}, args...), &errs)
	return out.String(), errs.String(), rc
}

// TestExportRefuses checks export's one-line refusals: a family not
// exported (BLOOM) or that llama.cpp would compute differently (Qwen2 with
// a sliding window), an
// existing --out without --force, an unknown format or dtype.
func TestExportRefuses(t *testing.T) {
	dir := t.TempDir()
	ck, qwen, bloom := filepath.Join(dir, "ck"), filepath.Join(dir, "qwen"), filepath.Join(dir, "bloom")
	if err := llama.Synth(ck, llama.SynthOptions{Layers: 1, Seed: 2}); err != nil {
		t.Fatal(err)
	}
	if err := llama.Synth(qwen, llama.SynthOptions{Shape: "tiny-qwen2", Layers: 2, Seed: 2}); err != nil {
		t.Fatal(err)
	}
	if err := llama.Synth(bloom, llama.SynthOptions{Shape: "tiny-bloom", Layers: 1, Seed: 2}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "m.gguf")
	if _, stderr, rc := runExportCmd(t, "--model", ck, "--out", out, "--progress", "none"); rc != 0 {
		t.Fatalf("rc %d: %s", rc, stderr)
	}
	if _, err := gguf.Open(out); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--model", bloom, "--out", filepath.Join(dir, "q.gguf")}, `model_type "bloom"`},
		{[]string{"--model", qwen, "--out", filepath.Join(dir, "q.gguf")}, `sliding window`},
		{[]string{"--model", ck, "--out", out}, "already exists"},
		{[]string{"--model", ck, "--out", out, "--force", "--format", "onnx"}, "--format"},
		{[]string{"--model", ck, "--out", out, "--force", "--dtype", "q4"}, "--dtype"},
		{[]string{"--model", ck, "--out", filepath.Join(ck, "in.gguf")}, "inside --model"},
		{[]string{"--model", ck}, "--out"},
		{[]string{"--model", ck, "--out", filepath.Join(dir, "l.gguf"), "--lora-only"}, "--lora-only needs --adapter"},
	} {
		_, stderr, rc := runExportCmd(t, c.args...)
		if rc == 0 || !strings.Contains(stderr, c.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
			t.Errorf("export %v: rc %d, stderr %q (want one line with %q)", c.args, rc, stderr, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "q.gguf")); err == nil {
		t.Error("a refused export left a file")
	}

	// --model as a repo id in the Hugging Face cache; general.name is the id.
	for _, k := range []string{"HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"} {
		t.Setenv(k, "")
	}
	t.Setenv("HF_HUB_CACHE", fakeHubCache(t, ck, "tiny-org/tiny-llama"))
	hub := filepath.Join(dir, "hub.gguf")
	if _, stderr, rc := runExportCmd(t, "--model", "tiny-org/tiny-llama", "--out", hub, "--progress", "none"); rc != 0 {
		t.Fatalf("export of a repo id: rc %d: %s", rc, stderr)
	}
	f, err := gguf.Open(hub)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := f.Get("general.name"); v != "tiny-org/tiny-llama" {
		t.Errorf("general.name %v", v)
	}
}

// TestExportLlamaCpp checks that llama.cpp's greedy continuation of a
// prompt on tli export's f32 file equals tli probe --temperature 0, and,
// with --adapter, equals tli probe --adapter.
func TestExportLlamaCpp(t *testing.T) {
	node, modules := peer.LlamaCpp(t)
	dir := t.TempDir()
	ck := filepath.Join(dir, "ck")
	if err := llama.Synth(ck, llama.SynthOptions{Layers: 2, Seed: 8}); err != nil {
		t.Fatal(err)
	}
	cfg, err := llama.LoadConfig(filepath.Join(ck, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := lora.New(lora.Config{R: 4, Alpha: 8, TargetModules: cfg.LoRAModules()}, cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range a.Params() {
		if strings.Contains(p.Name, "lora_B") {
			for i := range p.Data {
				p.Data[i] = float32((i%7)-3) * 0.1
			}
		}
	}
	ad := filepath.Join(dir, "adapter")
	if err := a.Save(ad); err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.LoadDir(ck)
	if err != nil {
		t.Fatal(err)
	}
	const prompt, n = "mama na mtoto wa", 16
	promptIDs := tok.Encode(prompt, true)
	probe := func(extra ...string) []int {
		var buf, stderr bytes.Buffer
		probeOut = &buf
		defer func() { probeOut = os.Stdout }()
		args := append([]string{"probe", "--model", ck, "--prompt", prompt, "--max-new-tokens", strconv.Itoa(n), "--dtype", "f32", "--temperature", "0", "--ids"}, extra...)
		if rc := runMain(args, &stderr); rc != 0 {
			t.Fatalf("probe %v: rc %d: %s", extra, rc, stderr.String())
		}
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		var ids []int
		for _, f := range strings.Fields(strings.Trim(lines[len(lines)-1], "[]")) {
			id, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("probe output %q", buf.String())
			}
			ids = append(ids, id)
		}
		return ids
	}
	llamaCpp := func(model, lora string) []int {
		gen := map[string]any{"tokens": promptIDs, "n": n}
		if lora != "" {
			gen["lora"] = lora
		}
		req, _ := json.Marshal(map[string]any{"model": model, "generate": []map[string]any{gen}})
		cmd := exec.Command(node, filepath.Join(peer.Root(), "gguf", "testdata", "llamacpp.mjs"), modules)
		cmd.Stdin = bytes.NewReader(req)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("llama.cpp: %v\n%s", err, stderr.String())
		}
		var rep struct{ Generated [][]int }
		if err := json.Unmarshal(out, &rep); err != nil {
			t.Fatalf("llama.cpp reply %q: %v", out, err)
		}
		return rep.Generated[0]
	}
	var seen [][]int
	for _, c := range []struct {
		name  string
		extra []string
	}{{"base", nil}, {"adapter", []string{"--adapter", ad}}} {
		out := filepath.Join(dir, c.name+".gguf")
		args := append([]string{"--model", ck, "--out", out, "--dtype", "f32", "--progress", "none"}, c.extra...)
		if _, stderr, rc := runExportCmd(t, args...); rc != 0 {
			t.Fatalf("export %v: rc %d: %s", args, rc, stderr)
		}
		want, got := probe(c.extra...), llamaCpp(out, "")
		seen = append(seen, want)
		if len(got) < len(want) || !slices.Equal(want, got[:len(want)]) {
			t.Errorf("%s: llama.cpp's greedy continuation differs from tli probe's:\n tli       %v\n llama.cpp %v", c.name, want, got)
		}
	}
	// The adapter alone (--lora-only), applied by llama.cpp to the base
	// model's export.
	loraOut := filepath.Join(dir, "lora.gguf")
	if _, stderr, rc := runExportCmd(t, "--model", ck, "--adapter", ad, "--lora-only", "--out", loraOut); rc != 0 {
		t.Fatalf("export --lora-only: rc %d: %s", rc, stderr)
	}
	if got := llamaCpp(filepath.Join(dir, "base.gguf"), loraOut); len(got) < len(seen[1]) || !slices.Equal(seen[1], got[:len(seen[1])]) {
		t.Errorf("llama.cpp with the --lora-only adapter differs from tli probe --adapter:\n tli       %v\n llama.cpp %v", seen[1], got)
	}
	if slices.Equal(seen[0], seen[1]) {
		t.Errorf("the adapter does not change tli probe's continuation %v: the test would not see it", seen[0])
	}
}

// TestExportAutoDType checks --dtype auto on a bf16 checkpoint: a bf16 file
// holding the checkpoint's bf16 values bit for bit; --dtype q8_0 gives
// file_type 7.
func TestExportAutoDType(t *testing.T) {
	dir := t.TempDir()
	ck := filepath.Join(dir, "ck")
	if err := llama.Synth(ck, llama.SynthOptions{Layers: 1, Seed: 4, DType: engine.BF16}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "m.gguf")
	if _, stderr, rc := runExportCmd(t, "--model", ck, "--out", out, "--progress", "none"); rc != 0 {
		t.Fatalf("rc %d: %s", rc, stderr)
	}
	f, err := gguf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := f.Get("general.file_type"); v != uint32(32) {
		t.Errorf("general.file_type %v, want 32 (bf16)", v)
	}
	m, err := llama.Load(ck, llama.LoadOptions{DType: engine.BF16, MaxLayer: llama.AllLayers})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ti, _ := f.Tensor("blk.0.ffn_up.weight")
	b, err := gguf.ReadTensor(out, ti)
	if err != nil {
		t.Fatal(err)
	}
	want := m.Layers[0].Up
	for i, h := range want.Half {
		if got := uint16(b[2*i]) | uint16(b[2*i+1])<<8; got != h {
			t.Fatalf("ffn_up element %d: %#x, checkpoint %#x", i, got, h)
		}
	}
	if _, stderr, rc := runExportCmd(t, "--model", ck, "--out", out, "--force", "--dtype", "q8_0", "--progress", "none"); rc != 0 {
		t.Fatalf("q8_0: rc %d: %s", rc, stderr)
	}
	if f, err = gguf.Open(out); err != nil {
		t.Fatal(err)
	}
	if v, _ := f.Get("general.file_type"); v != uint32(7) {
		t.Errorf("q8_0: general.file_type %v, want 7", v)
	}
}
