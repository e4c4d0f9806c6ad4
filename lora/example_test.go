package lora_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/tli-project/tli/autograd"
	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/lora"
)

// Training steps of TLI on one batch of word pairs: forward to
// hidden_states[2], mean-pool each word, normalise, triplet loss on the
// cosine matrix, backward, AdamW with the linear schedule.
func Example() {
	dir, _ := os.MkdirTemp("", "tli-example")
	defer os.RemoveAll(dir)
	if err := llama.Synth(filepath.Join(dir, "model"), llama.SynthOptions{Layers: 3, Seed: 1}); err != nil {
		log.Fatal(err)
	}
	const target = 2
	m, err := llama.Load(filepath.Join(dir, "model"), llama.LoadOptions{DType: engine.F32, MaxLayer: target})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	cfg := lora.PaperConfig() // r 16, alpha 32, dropout 0.05 on q_proj, v_proj
	ad, err := lora.New(cfg, m.Config, 42)
	if err != nil {
		log.Fatal(err)
	}
	opt := lora.NewAdamW()
	// Four pairs: Swahili words first, then their English translations, each
	// tokenised with BOS (id 1).
	sw := [][]int{{1, 10, 11}, {1, 12}, {1, 13, 14, 15}, {1, 16}}
	en := [][]int{{1, 20}, {1, 21, 22}, {1, 23}, {1, 24, 25}}
	batch := llama.NewBatch(append(append([][]int{}, sw...), en...))
	var losses []float32
	for step := 0; step < 30; step++ {
		ad.ZeroGrad()
		tape := autograd.NewTape()
		tape.SetDropoutSeed(uint64(step)) // fresh, reproducible dropout masks
		h, err := m.ForwardTrain(tape, batch, target, ad.Adapters())
		if err != nil {
			log.Fatal(err)
		}
		p, err := autograd.MeanPool(tape, h, batch.Offsets, nil) // all tokens, BOS included
		if err != nil {
			log.Fatal(err)
		}
		p = autograd.L2Normalize(tape, p, 1e-12)
		n := len(sw)
		sim := autograd.MatMulNT(tape, autograd.SliceRows(tape, p, 0, n), autograd.SliceRows(tape, p, n, 2*n))
		loss := autograd.TripletMargin(tape, sim, 0.4)
		if err := tape.Backward(loss); err != nil {
			log.Fatal(err)
		}
		opt.Step(ad.Params(), 1e-2*lora.LinearSchedule(step, 5, 30))
		losses = append(losses, loss.Value())
	}
	fmt.Println("loss went down:", losses[len(losses)-1] < losses[0])
	fmt.Println("layer-2 adapters updated:", opt.StepCount(lora.KeyA(2, "q_proj")))
	fmt.Println("layer-0 adapters updated:", opt.StepCount(lora.KeyA(0, "q_proj")))
	if err := ad.Save(filepath.Join(dir, "adapter")); err != nil {
		log.Fatal(err)
	}
	// Output:
	// loss went down: true
	// layer-2 adapters updated: 0
	// layer-0 adapters updated: 30
}
