package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/llama"
)

// BenchmarkForward measures the hidden-states forward (every layer's states
// requested) on the layer shapes of Llama 3.2 1B and Llama 3 8B with bf16
// weights, synthesised with few layers and a small vocabulary (the
// vocabulary only affects the embedding gather). Two inputs: one 512-token
// sequence, and 16 word-length sequences (2 to 9 tokens) packed into one
// batch. In the same run the PyTorch peer (bench/forward_peer.py, bf16,
// 2 threads) times the same forward, padding the 16 sequences to the
// longest as a Hugging Face batch does; the benchmark reports both rates
// and their ratio (tli/torch > 1 means tli is faster).
//
//	go test ./bench -run XXX -bench Forward -benchtime 3x
func BenchmarkForward(b *testing.B) {
	shapes := []struct {
		shape  string
		layers int
	}{{"llama3.2-1b", 2}, {"llama3-8b", 1}}
	for _, sh := range shapes {
		dir := b.TempDir()
		if err := llama.Synth(dir, llama.SynthOptions{Shape: sh.shape, Layers: sh.layers, DType: engine.BF16, Vocab: 4096, Seed: 1}); err != nil {
			b.Fatal(err)
		}
		m, err := llama.Load(dir, llama.LoadOptions{DType: engine.BF16, MaxLayer: llama.AllLayers})
		if err != nil {
			b.Fatal(err)
		}
		layers := make([]int, sh.layers+1)
		for i := range layers {
			layers[i] = i
		}
		inputs := []struct {
			name string
			seqs [][]int
		}{{"512tok", [][]int{ids(512, 1)}}, {"16words", words16()}}
		for _, in := range inputs {
			for _, fast := range []bool{false, true} {
				name := fmt.Sprintf("%s-%dL/%s/exact", sh.shape, sh.layers, in.name)
				if fast {
					name = fmt.Sprintf("%s-%dL/%s/fast", sh.shape, sh.layers, in.name)
				}
				b.Run(name, func(b *testing.B) {
					m.FastBF16 = fast
					batch := llama.NewBatch(in.seqs)
					fn := func(int, []float32) error { return nil }
					if err := m.Forward(batch, layers, fn); err != nil { // warm-up
						b.Fatal(err)
					}
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						if err := m.Forward(batch, layers, fn); err != nil {
							b.Fatal(err)
						}
					}
					b.StopTimer()
					sec := b.Elapsed().Seconds() / float64(b.N)
					tokS := float64(batch.NumTokens()) / sec
					b.ReportMetric(tokS, "tok/s")
					b.ReportMetric(sec*1000/float64(sh.layers), "ms/layer")
					if torchSec, ok := torchForward(b, dir, in.seqs); ok {
						b.ReportMetric(float64(batch.NumTokens())/torchSec, "torch_tok/s")
						b.ReportMetric(torchSec/sec, "tli/torch")
					}
				})
			}
		}
		m.Close()
	}
}

// torchForward returns the PyTorch peer's best seconds for one forward of
// seqs. It runs the peer every time, right after tli's own timing, so that
// the ratio compares two measurements taken under the same machine load.
func torchForward(b *testing.B, dir string, seqs [][]int) (float64, bool) {
	req, _ := json.Marshal(map[string]any{"seqs": seqs})
	rp := filepath.Join(b.TempDir(), "req.json")
	if err := os.WriteFile(rp, req, 0o644); err != nil {
		b.Fatal(err)
	}
	var r struct{ Seconds float64 }
	ok := runTorchPeer(b, &r, "forward_peer.py", "--model", dir, "--request", rp, "--threads", "2")
	return r.Seconds, ok
}

// ids returns n deterministic token ids below 4096 starting with BOS-like 1.
func ids(n int, seed uint32) []int {
	s := make([]int, n)
	x := seed*2654435761 + 1
	for i := range s {
		x = x*1664525 + 1013904223
		s[i] = int(x>>8) % 4096
	}
	s[0] = 1
	return s
}

// words16 returns 16 sequences of word lengths: BOS plus 1 to 8 tokens.
func words16() [][]int {
	lens := []int{2, 3, 4, 2, 5, 3, 6, 2, 4, 9, 3, 2, 7, 4, 3, 5}
	seqs := make([][]int, len(lens))
	for i, n := range lens {
		seqs[i] = ids(n, uint32(i+2))
	}
	return seqs
}
