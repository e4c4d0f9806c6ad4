//go:build vulkan && (amd64 || arm64) && (linux || darwin || windows)

package bench

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/tli-project/tli/autograd"
	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/internal/peer"
	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/lora"
	"github.com/tli-project/tli/tli"
	"github.com/tli-project/tli/vulkan"
)

// The Vulkan path against its peers on the same device, in the same run
// (go test -tags vulkan ./bench -run XXX -bench Vulkan -benchtime 1x).
// lavapipe (Mesa's software device, what CI has) runs compute shaders on
// the CPU: its figures say nothing of a GPU; record `tli env` and `tli
// devices` beside any figure.

// openDevice opens the Vulkan device $TLI_VULKAN_DEVICE (default vulkan).
func openDevice(b *testing.B) (*vulkan.Context, vulkan.Device) {
	spec := os.Getenv("TLI_VULKAN_DEVICE")
	if spec == "" {
		spec = "vulkan"
	}
	d, err := vulkan.Select(spec)
	if err != nil {
		peer.Missing(b, err.Error())
	}
	c, err := vulkan.Open(d, vulkan.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c, d
}

// llamaCppVulkan returns node and the node_modules folder holding
// node-llama-cpp with its prebuilt Vulkan build.
func llamaCppVulkan(b *testing.B) (node, modules string) {
	node, modules = peer.LlamaCpp(b)
	if _, err := os.Stat(filepath.Join(modules, "@node-llama-cpp", "linux-x64-vulkan")); err != nil && runtime.GOOS == "linux" {
		peer.Missing(b, "no @node-llama-cpp/linux-x64-vulkan under "+modules+" (npm install --prefix .cache/node @node-llama-cpp/linux-x64-vulkan@3.21.1)")
	}
	return node, modules
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkVulkanForwardLlamaCpp times one decoder layer of the Llama 3.2
// 1B shape (f32 weights) over one sequence of 80 tokens: tli's device
// forward, llama.cpp's Vulkan build (node-llama-cpp, every layer offloaded,
// GGML_VK_VISIBLE_DEVICES set to the same device) and tli on the CPU. As
// in BenchmarkForwardLlamaCpp, both sides run checkpoints of 1 and 3
// layers and report (t(3) − t(1)) / 2 per layer, which leaves out
// llama.cpp's output head.
func BenchmarkVulkanForwardLlamaCpp(b *testing.B) {
	node, modules := llamaCppVulkan(b)
	c, dev := openDevice(b)
	dir := b.TempDir()
	const n = 80
	models, paths := layerPair(b, dir, "llama3.2-1b", engine.F32)
	reps := max(b.N, 3)
	res := llamaCppForward(b, node, modules, map[string]any{"models": []string{paths[1], paths[3]}, "lengths": []int{n}, "reps": reps, "threads": runtime.NumCPU(), "gpu": "vulkan"},
		"GGML_VK_VISIBLE_DEVICES="+strconv.Itoa(dev.Index))
	if res.GPU != "vulkan" || len(res.Devices) == 0 {
		b.Fatalf("llama.cpp did not run on a Vulkan device (backend %v, devices %v)", res.GPU, res.Devices)
	}
	time1 := func(f func() error) float64 {
		if err := f(); err != nil { // warm-up: pipelines, activations, first touch
			b.Fatal(err)
		}
		var ts []float64
		for range reps {
			t0 := time.Now()
			if err := f(); err != nil {
				b.Fatal(err)
			}
			ts = append(ts, time.Since(t0).Seconds())
		}
		return median(ts)
	}
	ids := make([]int, n)
	for i := range ids {
		ids[i] = 1 + i%1000
	}
	batch := llama.NewBatch([][]int{ids})
	nop := func(int, []float32) error { return nil }
	dev1, cpu1 := map[int]float64{}, map[int]float64{}
	for _, layers := range []int{1, 3} {
		m := models[layers]
		dm, err := vulkan.Upload(c, m)
		if err != nil {
			b.Fatal(err)
		}
		want := []int{layers}
		dev1[layers] = time1(func() error { return dm.Forward(batch, want, nop) })
		cpu1[layers] = time1(func() error { return m.Forward(batch, want, nop) })
		dm.Close()
	}
	cpp := map[int]float64{}
	for _, layers := range []int{1, 3} {
		cpp[layers] = median(res.Seconds[paths[layers]][strconv.Itoa(n)])
	}
	perLayer := func(t map[int]float64) float64 { return (t[3] - t[1]) / 2 }
	d, p, cp := perLayer(dev1), perLayer(cpp), perLayer(cpu1)
	b.ReportMetric(d*1000, "ms/layer")
	b.ReportMetric(p*1000, "llamacpp_vulkan_ms/layer")
	b.ReportMetric(cp*1000, "tli_cpu_ms/layer")
	b.ReportMetric(p/d, "tli/llamacpp")
	b.ReportMetric(float64(n)/d, "tok/s/layer")
	b.Logf("%s: one llama3.2-1b layer, %d tokens: tli %.1f ms, llama.cpp Vulkan %.1f ms (%s), tli CPU %.1f ms", c.Info.Name, n, d*1000, p*1000, res.Devices[0], cp*1000)
}

// BenchmarkVulkanStep times the TLI training step (tli.Step: the forward
// to layer 2 with LoRA r 16 on q_proj and v_proj, dropout, the loss on the
// host, the backward) on the device and on the CPU in the same run: the
// Llama 3.2 1B shape with 2 layers, 8 pairs of 5-token words.
func BenchmarkVulkanStep(b *testing.B) {
	c, _ := openDevice(b)
	dir := b.TempDir()
	if err := llama.Synth(dir, llama.SynthOptions{Shape: "llama3.2-1b", Layers: 2, Vocab: 4096, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	m, err := llama.Load(dir, llama.LoadOptions{MaxLayer: llama.AllLayers})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	dm, err := vulkan.Upload(c, m)
	if err != nil {
		b.Fatal(err)
	}
	defer dm.Close()
	a, err := lora.New(lora.PaperConfig(), m.Config, 1)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for _, p := range a.Params() {
		for i := range p.Data {
			p.Data[i] = float32(rng.NormFloat64()) * 0.01
		}
	}
	seqs := make([][]int, 16)
	for i := range seqs {
		seqs[i] = []int{0, 10 + i, 100 + i, 1000 + i, 2000 + i}
	}
	step := func(sm tli.StepModel) float64 {
		t0 := time.Now()
		if _, err := tli.Step(sm, idEncoder{}, a.Adapters(), seqs, 2, tli.PoolMean, 0.4, autograd.NewDropout(1)); err != nil {
			b.Fatal(err)
		}
		a.ZeroGrad()
		return time.Since(t0).Seconds()
	}
	cpu := &tli.CPUStep{Model: m}
	step(dm)
	step(cpu)
	var dt, ct []float64
	for range max(b.N, 3) {
		dt = append(dt, step(dm))
		ct = append(ct, step(cpu))
	}
	d, cp := median(dt), median(ct)
	b.ReportMetric(d, "s/step")
	b.ReportMetric(cp, "cpu_s/step")
	b.ReportMetric(cp/d, "cpu/device")
	b.Logf("%s: TLI step (llama3.2-1b shape, 2 layers, 80 tokens): device %.3f s, CPU %.3f s", c.Info.Name, d, cp)
}
