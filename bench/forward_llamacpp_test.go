package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/gguf"
	"github.com/tli-project/tli/internal/peer"
	"github.com/tli-project/tli/llama"
)

// layerPair synthesises checkpoints of the shape with 1 and 3 layers
// (vocabulary 4096, weights in dt), loads them and exports them to GGUF in
// dt: the models and the GGUF paths by layer count, for the per-layer
// difference both peers are timed on.
func layerPair(b *testing.B, dir, shape string, dt engine.DType) (map[int]*llama.Model, map[int]string) {
	models, paths := map[int]*llama.Model{}, map[int]string{}
	for _, layers := range []int{1, 3} {
		ck := filepath.Join(dir, fmt.Sprintf("l%d", layers))
		if err := llama.Synth(ck, llama.SynthOptions{Shape: shape, Layers: layers, DType: dt, Vocab: 4096, Seed: 1}); err != nil {
			b.Fatal(err)
		}
		m, err := llama.Load(ck, llama.LoadOptions{DType: dt, MaxLayer: llama.AllLayers})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { m.Close() })
		models[layers] = m
		paths[layers] = filepath.Join(dir, fmt.Sprintf("l%d.gguf", layers))
		if err := gguf.ExportLlama(paths[layers], m, ck, gguf.ExportOptions{DType: dt}); err != nil {
			b.Fatal(err)
		}
	}
	return models, paths
}

// llamaCppReply is what llamacpp_forward.mjs answers.
type llamaCppReply struct {
	Seconds map[string]map[string][]float64 // by model path and length: seconds per rep
	GPU     any                             // the backend: false or "vulkan"
	Devices []string                        // the GPU devices llama.cpp used
}

// llamaCppForward runs llamacpp_forward.mjs with the request req and the
// extra environment variables env.
func llamaCppForward(b *testing.B, node, modules string, req map[string]any, env ...string) llamaCppReply {
	data, _ := json.Marshal(req)
	cmd := exec.Command(node, "llamacpp_forward.mjs", modules)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("llama.cpp: %v\n%s", err, stderr.String())
	}
	var res llamaCppReply
	if err := json.Unmarshal(out, &res); err != nil {
		b.Fatalf("llama.cpp reply %q: %v", out, err)
	}
	return res
}

// BenchmarkForwardLlamaCpp times one decoder layer of the Llama 3 8B shape
// (bf16 weights) at 80 and 512 tokens in tli and in llama.cpp (the prebuilt
// CPU build of node-llama-cpp, 2 threads), in the same run. llama.cpp
// computes its last layer only for the tokens whose logits are asked for,
// so a one-layer GGUF times mostly attention; both sides therefore run
// checkpoints of 1 and 3 layers and report the difference per layer:
// (t(3) - t(1)) / 2. tli's side runs Forward up to hidden_states[L] (the
// embedding gather and the layers, as llama.cpp's prompt processing).
//
//	go test ./bench -run XXX -bench ForwardLlamaCpp -benchtime 3x
func BenchmarkForwardLlamaCpp(b *testing.B) {
	node, modules := peer.LlamaCpp(b)
	dir := b.TempDir()
	lengths := []int{80, 512}
	models, paths := layerPair(b, dir, "llama3-8b", engine.BF16)
	// llama.cpp, all shapes in one process.
	reps := max(b.N, 3)
	res := llamaCppForward(b, node, modules, map[string]any{"models": []string{paths[1], paths[3]}, "lengths": lengths, "reps": reps, "threads": 2})
	median := func(xs []float64) float64 {
		s := slices.Clone(xs)
		slices.Sort(s)
		return s[len(s)/2]
	}
	for _, n := range lengths {
		for _, fast := range []bool{false, true} {
			mode := "exact"
			if fast {
				mode = "fast"
			}
			b.Run(fmt.Sprintf("llama3-8b/%dtok/%s", n, mode), func(b *testing.B) {
				tli := map[int]float64{}
				for _, layers := range []int{1, 3} {
					m := models[layers]
					m.FastBF16 = fast
					batch := llama.NewBatch([][]int{ids(n, 1)})
					fn := func(int, []float32) error { return nil }
					want := []int{layers}
					if err := m.Forward(batch, want, fn); err != nil { // warm-up
						b.Fatal(err)
					}
					var times []float64
					for r := 0; r < reps; r++ {
						t0 := time.Now()
						if err := m.Forward(batch, want, fn); err != nil {
							b.Fatal(err)
						}
						times = append(times, time.Since(t0).Seconds())
					}
					tli[layers] = median(times)
				}
				cpp := map[int]float64{}
				for _, layers := range []int{1, 3} {
					cpp[layers] = median(res.Seconds[paths[layers]][strconv.Itoa(n)])
				}
				tliLayer, cppLayer := (tli[3]-tli[1])/2, (cpp[3]-cpp[1])/2
				b.ReportMetric(tliLayer*1000, "ms/layer")
				b.ReportMetric(cppLayer*1000, "llamacpp_ms/layer")
				b.ReportMetric(cppLayer/tliLayer, "tli/llamacpp")
				b.ReportMetric(tli[1]*1000, "ms_1L")
				b.ReportMetric(cpp[1]*1000, "llamacpp_ms_1L")
			})
		}
	}
}
