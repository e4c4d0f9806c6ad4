package bench

import (
	"testing"
	"time"

	"github.com/tli-project/tli/autograd"
	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/lora"
	"github.com/tli-project/tli/tli"
)

// identity encodes nothing: the benchmark feeds token ids directly, and only
// id 0 (BOS) is special.
type idEncoder struct{}

func (idEncoder) Encode(string, bool) []int { return nil }
func (idEncoder) IsSpecial(id int) bool     { return id == 0 }

// BenchmarkTLIStep times one TLI training step (forward to hidden_states[2],
// pooling, triplet loss, backward into LoRA q/v, AdamW) on two Llama 3 8B
// layers, batch 8 pairs of 5-token words, with f32 weights and with bf16
// weights (fast mode: activations rounded to bf16, as PyTorch's bf16 matmul).
// In the same run the PyTorch peer (bench/tlistep_peer.py, 2 threads) times
// the same step; the benchmark reports both and their ratio
// (torch_s/tli_s > 1 means tli is faster).
//
//	go test ./bench -run XXX -bench TLIStep -benchtime 3x
func BenchmarkTLIStep(b *testing.B) {
	for _, mode := range []struct {
		name string
		dt   engine.DType
	}{{"f32", engine.F32}, {"bf16", engine.BF16}} {
		b.Run(mode.name+"/llama3-8b/layer2", func(b *testing.B) {
			dir := b.TempDir()
			if err := llama.Synth(dir, llama.SynthOptions{Shape: "llama3-8b", Layers: 2, DType: mode.dt, Vocab: 4096, Seed: 1}); err != nil {
				b.Fatal(err)
			}
			m, err := llama.Load(dir, llama.LoadOptions{DType: mode.dt, MaxLayer: 2})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			m.FastBF16 = mode.dt == engine.BF16
			a, err := lora.New(lora.PaperConfig(), m.Config, 1)
			if err != nil {
				b.Fatal(err)
			}
			opt := lora.NewAdamW()
			seqs := make([][]int, 16)
			for i := range seqs {
				seqs[i] = []int{0, 10 + i, 100 + i, 1000 + i, 2000 + i}
			}
			sm := &tli.CPUStep{Model: m}
			step := func() {
				if _, err := tli.Step(sm, idEncoder{}, a.Adapters(), seqs, 2, tli.PoolMean, 0.4, autograd.NewDropout(1)); err != nil {
					b.Fatal(err)
				}
				opt.Step(a.Params(), 2e-4)
				a.ZeroGrad()
			}
			step() // warm-up: first-touch of the weights
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				step()
			}
			tliS := time.Since(start).Seconds() / float64(b.N)
			b.StopTimer()
			b.ReportMetric(tliS, "tli_s/step")
			if b.N < 2 {
				return // the peer runs once, in the final round
			}
			if ts, ok := torchStep(b, mode.name); ok {
				b.ReportMetric(ts, "torch_s/step")
				b.ReportMetric(ts/tliS, "torch/tli")
			}
		})
	}
}

// torchStep runs bench/tlistep_peer.py and returns its median seconds per
// step, or false (with a log line) when PyTorch is missing.
func torchStep(b *testing.B, dtype string) (float64, bool) {
	var res struct{ Median float64 }
	if !runTorchPeer(b, &res, "tlistep_peer.py", "--dtype", dtype, "--layers", "2", "--steps", "3") {
		return 0, false
	}
	b.Logf("torch %s: %.3f s/step", dtype, res.Median)
	return res.Median, true
}
