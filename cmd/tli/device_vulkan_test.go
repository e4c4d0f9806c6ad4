//go:build vulkan

package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tli-project/tli/tli"
	"github.com/tli-project/tli/vulkan"
)

// TestDevicesVulkanScan runs tli scan and embed on the Vulkan device
// (lavapipe in CI) and checks their numbers against the CPU's: every
// scan statistic within 1e-5, every embedded vector within 1e-5 of its
// RMS; a command without a Vulkan path refuses --device vulkan in one line.
func TestDevicesVulkanScan(t *testing.T) {
	if _, err := vulkan.Select("vulkan"); err != nil {
		if os.Getenv("TLI_REQUIRE_PEERS") != "" {
			t.Fatalf("no Vulkan device: %v", err)
		}
		t.Skipf("no Vulkan device: %v", err)
	}
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
	code, stderr := tliRun(t, "train", "--model", model, "--pairs", pf, "--device", "vulkan", "--out", filepath.Join(dir, "t"))
	if code == 0 || !strings.Contains(stderr, "cannot run on Vulkan yet") || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
		t.Errorf("train --device vulkan: exit %d, %q", code, stderr)
	}
}
