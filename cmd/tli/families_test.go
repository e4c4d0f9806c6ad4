package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/tli"
	"github.com/tli-project/tli/vulkan"
)

// The commands that load a model work on every family: train writes PEFT
// keys with the family's module names (and its default targets), merge
// writes a checkpoint that reads as the same family, embed writes vectors.
func TestFamiliesCLI(t *testing.T) {
	for _, c := range []struct {
		fam, key string
	}{
		{"qwen3", "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"},
		{"bloom", "base_model.model.transformer.h.0.self_attention.query_key_value.lora_A.weight"},
	} {
		t.Run(c.fam, func(t *testing.T) {
			dir := t.TempDir()
			model := filepath.Join(dir, "model")
			mustRun(t, "synth", "--shape", "tiny-"+c.fam, "--out", model, "--layers", "3")
			pf := writePairs(t, dir, tli.DefaultTrainPairs()[:16])
			train := filepath.Join(dir, "train")
			mustRun(t, "train", "--model", model, "--pairs", pf, "--out", train, "--max-steps", "3", "--layer", "2")
			ts, _, err := llama.ReadSafetensors(filepath.Join(train, "final", "adapter_model.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			if ts[c.key] == nil {
				var names []string
				for n := range ts {
					names = append(names, n)
				}
				t.Fatalf("adapter lacks %s (has %s)", c.key, strings.Join(names, ", "))
			}
			merged := filepath.Join(dir, "merged")
			mustRun(t, "merge", "--model", model, "--adapter", filepath.Join(train, "final"), "--out", merged)
			cfg, err := llama.LoadConfig(filepath.Join(merged, "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Arch.Name != c.fam {
				t.Errorf("merged checkpoint reads as %s, want %s", cfg.Arch.Name, c.fam)
			}
			words := filepath.Join(dir, "words.json")
			if err := os.WriteFile(words, []byte(`["maji", "water", "nyumba"]`), 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "e.safetensors")
			mustRun(t, "embed", "--model", merged, "--words", words, "--layers", "2", "--out", out)
			es, _, err := llama.ReadSafetensors(out)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, x := range es {
				if len(x.Shape) == 2 && x.Shape[0] == 3 && x.Shape[1] == cfg.HiddenSize {
					found = true
				}
			}
			if !found {
				t.Errorf("embed output holds no [3 × %d] tensor", cfg.HiddenSize)
			}
		})
	}
	if code, stderr := tliRun(t, "demo", "--arch", "falcon", "--out", t.TempDir()); code == 0 || !strings.Contains(stderr, `--arch "falcon"`) {
		t.Errorf("demo --arch falcon: exit %d, %s", code, stderr)
	}
}

// --plot-format and --dpi choose the plots' files; every plotting command
// resets them, so one command's choice does not leak into the next.
func TestPlotFormatFlags(t *testing.T) {
	model := testModel(t)
	out := filepath.Join(t.TempDir(), "scan")
	mustRun(t, "scan", "--model", model, "--out", out, "--plot-format", "pdf")
	if _, err := os.Stat(filepath.Join(out, "scan.pdf")); err != nil {
		t.Fatal(err)
	}
	out2 := filepath.Join(t.TempDir(), "scan")
	mustRun(t, "scan", "--model", model, "--out", out2)
	if _, err := os.Stat(filepath.Join(out2, "scan.png")); err != nil {
		t.Fatal(err)
	}
	if code, stderr := tliRun(t, "scan", "--model", model, "--out", t.TempDir(), "--dpi", "9"); code != 2 || !strings.Contains(stderr, "9 dpi") {
		t.Errorf("--dpi 9: exit %d, %s", code, stderr)
	}
}

// Short and PEFT/transformers-style aliases set the same flags, and help
// shows --flag with its aliases.
func TestFlagAliases(t *testing.T) {
	model := testModel(t)
	dir := t.TempDir()
	pf := writePairs(t, dir, tli.DefaultTrainPairs()[:16])
	out := filepath.Join(dir, "t")
	mustRun(t, "train", "-m", model, "-o", out, "--pairs", pf, "-t", "1", "--learning-rate", "1e-3", "--num-train-epochs", "1",
		"--per-device-train-batch-size", "4", "--lora-r", "4", "--lora-alpha", "8", "--lora-dropout", "0", "--target-modules", "q_proj,k_proj", "--warmup-steps", "1")
	b, err := os.ReadFile(filepath.Join(out, "final", "adapter_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"r": 4`, `"lora_alpha": 8`, `"k_proj"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("adapter_config.json lacks %s: %s", want, b)
		}
	}
	log, _ := os.ReadFile(filepath.Join(out, "train_log.jsonl"))
	if n := strings.Count(string(log), "\n"); n != 4 { // 16 pairs, batch 4, 1 epoch
		t.Errorf("%d steps, want 4", n)
	}
	var help bytes.Buffer
	printFlagHelp(&help, func() *flag.FlagSet {
		fs := newFlagSet("train", "")
		addModelFlags(fs, "f32")
		fs.String("out", "", "output")
		addAliases(fs)
		return fs
	}())
	for _, want := range []string{"--model, -m", "--threads, -t", "--out, -o"} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, help.String())
		}
	}
}

// tli plot --sample/--perplexity draw a t-SNE map of that many pairs.
func TestMapFlags(t *testing.T) {
	model := testModel(t)
	out := filepath.Join(t.TempDir(), "maps")
	mustRun(t, "plot", "--model", model, "--out", out, "--methods", "tsne", "--sample", "12", "--perplexity", "4")
	rep, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		if _, serr := os.Stat(filepath.Join(out, "map_tsne_before_layer2.png")); serr != nil {
			t.Fatal(serr)
		}
	} else if !strings.Contains(string(rep), "12 sampled pairs, perplexity 4") {
		t.Errorf("report lacks the map settings: %s", rep)
	}
	if code, stderr := tliRun(t, "plot", "--model", model, "--out", t.TempDir(), "--sample", "1"); code != 2 || !strings.Contains(stderr, "--sample 1") {
		t.Errorf("--sample 1: exit %d, %s", code, stderr)
	}
}

// scan.json and an evaluation's summary.json say how they were made.
func TestJSONProvenance(t *testing.T) {
	model := testModel(t)
	dir := t.TempDir()
	mustRun(t, "scan", "--model", model, "--out", filepath.Join(dir, "scan"), "--layers", "0,2")
	pf := writePairs(t, dir, tli.DefaultTrainPairs()[:16])
	mustRun(t, "train", "--model", model, "--pairs", pf, "--out", filepath.Join(dir, "train"), "--max-steps", "2")
	mustRun(t, "eval", "--model", model, "--adapter", filepath.Join(dir, "train", "final"), "--pairs", pf, "--out", filepath.Join(dir, "eval"))
	for _, c := range []struct {
		file string
		keys []string
	}{
		{filepath.Join(dir, "scan", "scan.json"), []string{"pooling", "layers", "pairs"}},
		{filepath.Join(dir, "eval", "summary.json"), []string{"pooling", "layers", "adapter", "rank", "alpha", "targets"}},
	} {
		var doc struct {
			Schema     int
			Provenance tli.Provenance
		}
		b, err := os.ReadFile(c.file)
		if err != nil || json.Unmarshal(b, &doc) != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		pv := doc.Provenance
		if doc.Schema != tli.SchemaVersion || pv.Model != model || pv.Family != "llama" || pv.DType != "f32" || pv.Build.Version == "" || len(pv.Seconds) != 1 {
			t.Errorf("%s: %+v", c.file, doc)
		}
		for _, k := range c.keys {
			if _, ok := pv.Settings[k]; !ok {
				t.Errorf("%s: settings lack %q: %v", c.file, k, pv.Settings)
			}
		}
	}
	rep, _ := os.ReadFile(filepath.Join(dir, "eval", "report.md"))
	if !strings.Contains(string(rep), "## Run") {
		t.Error("the evaluation's report.md has no Run section")
	}
}

// tli devices lists the CPU and says why there is no Vulkan device in a
// build without the tag; --device takes cpu and refuses the rest in one line.
func TestDevicesAndDeviceFlag(t *testing.T) {
	var out bytes.Buffer
	devicesOut = &out
	defer func() { devicesOut = os.Stdout }()
	if code, stderr := tliRun(t, "devices"); code != 0 {
		t.Fatalf("devices: exit %d: %s", code, stderr)
	}
	if !strings.HasPrefix(out.String(), "cpu ") || (!vulkan.Built && !strings.Contains(out.String(), "-tags vulkan")) {
		t.Errorf("devices printed %q", out.String())
	}
	model := testModel(t)
	mustRun(t, "scan", "--model", model, "--out", filepath.Join(t.TempDir(), "s"), "--layers", "1", "--device", "cpu")
	// Without -tags vulkan, --device vulkan says how to get that build
	// (with it, every model command runs there: device_vulkan_test.go).
	cases := []struct{ dev, want string }{{"gpu", `want cpu, vulkan or vulkan:N`}}
	if !vulkan.Built {
		cases = append(cases, struct{ dev, want string }{"vulkan", "-tags vulkan"})
	}
	for _, c := range cases {
		if code, stderr := tliRun(t, "probe", "--model", model, "--prompt", "maji", "--device", c.dev); code != 2 || !strings.Contains(stderr, c.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("--device %s: exit %d, %q", c.dev, code, stderr)
		}
	}
}
