//go:build vulkan

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tli-project/tli/lora"
	"github.com/tli-project/tli/tli"
	"github.com/tli-project/tli/vulkan"
)

// needVulkan skips the test without a Vulkan device (fails it under
// TLI_REQUIRE_PEERS).
func needVulkan(t *testing.T) {
	t.Helper()
	if _, err := vulkan.Select("vulkan"); err != nil {
		if os.Getenv("TLI_REQUIRE_PEERS") != "" {
			t.Fatalf("no Vulkan device: %v", err)
		}
		t.Skipf("no Vulkan device: %v", err)
	}
}

// TestDevicesVulkanScan runs tli scan and probe on the Vulkan device
// (lavapipe in CI) and checks their results against the CPU's: every
// scan statistic within 1e-5, the same generated tokens.
func TestDevicesVulkanScan(t *testing.T) {
	needVulkan(t)
	model := testModel(t)
	dir := t.TempDir()
	pf := writePairs(t, dir, tli.DefaultTrainPairs()[:30])
	scan := func(out string, args ...string) *tli.ScanResult {
		mustRun(t, append([]string{"scan", "--model", model, "--pairs", pf, "--out", out}, args...)...)
		data, err := os.ReadFile(filepath.Join(out, "scan.json"))
		if err != nil {
			t.Fatal(err)
		}
		var r tli.ScanResult
		if err := json.Unmarshal(data, &r); err != nil {
			t.Fatal(err)
		}
		return &r
	}
	cpu, gpu := scan(filepath.Join(dir, "cpu")), scan(filepath.Join(dir, "gpu"), "--device", "vulkan")
	device := func(out string) string {
		var doc struct{ Provenance tli.Provenance }
		data, _ := os.ReadFile(filepath.Join(out, "scan.json"))
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatal(err)
		}
		return doc.Provenance.Device
	}
	if c, g := device(filepath.Join(dir, "cpu")), device(filepath.Join(dir, "gpu")); c != "" || !strings.HasPrefix(g, "vulkan:") {
		t.Errorf("scan.json provenance: device %q on the CPU, %q on Vulkan", c, g)
	}
	if len(cpu.Layers) != len(gpu.Layers) || len(cpu.Layers) == 0 {
		t.Fatalf("%d layers on the CPU, %d on Vulkan", len(cpu.Layers), len(gpu.Layers))
	}
	for i, c := range cpu.Layers {
		g := gpu.Layers[i]
		for _, v := range [][2]float64{{c.Mean, g.Mean}, {c.Std, g.Std}, {c.MismatchedMean, g.MismatchedMean}} {
			if math.Abs(v[0]-v[1]) > 1e-5 {
				t.Errorf("layer %d: %v on the CPU, %v on Vulkan", c.Layer, v[0], v[1])
			}
		}
	}
	// probe: the same tokens, greedy and sampled.
	for _, args := range [][]string{nil, {"--temperature", "0.7", "--seed", "5"}} {
		probe := func(dev string) string {
			var buf bytes.Buffer
			probeOut = &buf
			defer func() { probeOut = os.Stdout }()
			mustRun(t, append([]string{"probe", "--model", model, "--prompt", "maji ya moto", "--max-new-tokens", "8", "--json", "--device", dev}, args...)...)
			var r struct {
				GeneratedIDs []int `json:"generated_ids"`
			}
			if err := json.Unmarshal(buf.Bytes(), &r); err != nil || len(r.GeneratedIDs) == 0 {
				t.Fatalf("probe --json: %q: %v", buf.String(), err)
			}
			return fmt.Sprint(r.GeneratedIDs)
		}
		if c, g := probe("cpu"), probe("vulkan"); c != g {
			t.Errorf("probe %v: %s on the CPU, %s on Vulkan", args, c, g)
		}
	}
}

// TestDevicesVulkanTrainRun trains on the Vulkan device and on the CPU
// with the same seed (dropout on): every step's loss within 1e-3
// (relative) and the adapters within 1e-3 of their RMS; then tli run
// (scan, training and the evaluation with the adapter merged) on both:
// the evaluation's means within 1e-4.
func TestDevicesVulkanTrainRun(t *testing.T) {
	needVulkan(t)
	model := testModel(t)
	dir := t.TempDir()
	pf := writePairs(t, dir, tli.DefaultTrainPairs()[:32])
	train := func(out string, args ...string) []tli.StepLog {
		mustRun(t, append([]string{"train", "--model", model, "--pairs", pf, "--out", out, "--layer", "2", "--max-steps", "8", "--lr", "1e-3", "--seed", "7"}, args...)...)
		data, err := os.ReadFile(filepath.Join(out, "train_log.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		var logs []tli.StepLog
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var l tli.StepLog
			if err := json.Unmarshal([]byte(line), &l); err != nil {
				t.Fatal(err)
			}
			logs = append(logs, l)
		}
		return logs
	}
	cpu, gpu := train(filepath.Join(dir, "cpu")), train(filepath.Join(dir, "gpu"), "--device", "vulkan")
	if len(cpu) != 8 || len(gpu) != 8 {
		t.Fatalf("%d steps on the CPU, %d on Vulkan, want 8", len(cpu), len(gpu))
	}
	worst := 0.0
	for i, c := range cpu {
		e := math.Abs(gpu[i].Loss-c.Loss) / math.Abs(c.Loss)
		worst = max(worst, e)
		if e > 1e-3 || c.Loss == 0 {
			t.Errorf("step %d: loss %v on Vulkan, %v on the CPU (relative error %.3g)", c.Step, gpu[i].Loss, c.Loss, e)
		}
	}
	if cpu[0].Loss == cpu[7].Loss {
		t.Errorf("the loss did not move in 8 steps (%v): the test checks little", cpu[0].Loss)
	}
	cfg, err := peekConfig(model)
	if err != nil {
		t.Fatal(err)
	}
	ac, err := lora.Load(filepath.Join(dir, "cpu", "final"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ag, err := lora.Load(filepath.Join(dir, "gpu", "final"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range ac.Params() {
		if e := relErrF32(ag.Params()[i].Data, p.Data); e > 1e-3 {
			t.Errorf("%s: trained on Vulkan, max error / RMS %.3g against the CPU's", p.Name, e)
		}
	}
	t.Logf("8 steps: worst relative loss error %.2e", worst)

	run := func(out string, args ...string) map[string]any {
		mustRun(t, append([]string{"run", "--model", model, "--pairs", pf, "--out", out, "--layer", "2", "--max-steps", "4", "--seed", "7", "--eval-layers", "train"}, args...)...)
		data, err := os.ReadFile(filepath.Join(out, "eval", "summary.json"))
		if err != nil {
			t.Fatal(err)
		}
		var s map[string]any
		if err := json.Unmarshal(data, &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	rc, rg := run(filepath.Join(dir, "run-cpu")), run(filepath.Join(dir, "run-gpu"), "--device", "vulkan")
	// Provenance says where the run computed.
	for _, c := range []struct{ dir, want string }{{"run-cpu", ""}, {"run-gpu", "vulkan:"}} {
		var doc struct{ Provenance tli.Provenance }
		data, _ := os.ReadFile(filepath.Join(dir, c.dir, "run.json"))
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatal(err)
		}
		rep, _ := os.ReadFile(filepath.Join(dir, c.dir, "report.md"))
		if got := doc.Provenance.Device; (c.want == "") != (got == "") || !strings.HasPrefix(got, c.want) || strings.Contains(string(rep), "computed on") != (c.want != "") {
			t.Errorf("%s: run.json device %q (report.md names it: %v), want prefix %q", c.dir, got, strings.Contains(string(rep), "computed on"), c.want)
		}
	}
	gc, gg := rc["groups"].([]any), rg["groups"].([]any)
	if len(gc) == 0 || len(gc) != len(gg) {
		t.Fatalf("%d groups on the CPU, %d on Vulkan", len(gc), len(gg))
	}
	for i := range gc {
		c, g := gc[i].(map[string]any), gg[i].(map[string]any)
		for _, k := range []string{"mean_pre", "mean_post"} {
			if math.Abs(c[k].(float64)-g[k].(float64)) > 1e-4 {
				t.Errorf("run: %s layer %v %s: %v on the CPU, %v on Vulkan", c["group"], c["layer"], k, c[k], g[k])
			}
		}
	}
}

func relErrF32(got, want []float32) float64 {
	var ss, worst float64
	for i, w := range want {
		ss += float64(w) * float64(w)
		worst = max(worst, math.Abs(float64(got[i])-float64(w)))
	}
	return worst / math.Sqrt(ss/float64(len(want)))
}
