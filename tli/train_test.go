package tli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/llama/tokenizer"
)

func trainTestModel(t *testing.T) (*llama.Model, *tokenizer.Tokenizer) {
	t.Helper()
	dir := t.TempDir()
	var words []string
	for _, p := range DefaultTrainPairs()[:30] {
		words = append(words, p.Source, p.Target)
	}
	if err := llama.Synth(dir, llama.SynthOptions{Shape: "tiny", Layers: 3, Seed: 5, Words: words}); err != nil {
		t.Fatal(err)
	}
	m, err := llama.Load(dir, llama.LoadOptions{DType: engine.F32, MaxLayer: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	tok, err := tokenizer.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m, tok
}

// An interrupted run writes a checkpoint mid-epoch; resuming from it ends
// with the same adapter, byte for byte, as an uninterrupted run.
func TestTrainInterruptResume(t *testing.T) {
	m, tok := trainTestModel(t)
	pairs := DefaultTrainPairs()[:30]
	opts := PaperTrainOptions()
	opts.Epochs, opts.Warmup, opts.LR = 2, 2, 1e-3

	full := t.TempDir()
	opts.OutDir = full
	var losses []float64
	if _, err := Train(context.Background(), m, tok, pairs, opts, "", func(l StepLog) { losses = append(losses, l.Loss) }); err != nil {
		t.Fatal(err)
	}
	if len(losses) != 8 { // 30 pairs, batch 8: 4 steps per epoch
		t.Fatalf("%d steps, want 8", len(losses))
	}

	cut := t.TempDir()
	opts.OutDir = cut
	ctx, cancel := context.WithCancel(context.Background())
	_, err := Train(ctx, m, tok, pairs, opts, "", func(l StepLog) {
		if l.Step == 6 {
			cancel()
		}
	})
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("interrupted run returned %v, want ErrInterrupted", err)
	}
	ck := filepath.Join(cut, "checkpoint")
	var resumed []float64
	if _, err := Train(context.Background(), m, tok, pairs, opts, ck, func(l StepLog) { resumed = append(resumed, l.Loss) }); err != nil {
		t.Fatal(err)
	}
	if len(resumed) != 2 || resumed[0] != losses[6] || resumed[1] != losses[7] {
		t.Errorf("resumed losses %v, want %v", resumed, losses[6:])
	}
	a, _ := os.ReadFile(filepath.Join(full, "final", "adapter_model.safetensors"))
	b, _ := os.ReadFile(filepath.Join(cut, "final", "adapter_model.safetensors"))
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Error("resumed final adapter differs from the uninterrupted one")
	}
	info, ok, err := ReadAdapterInfo(filepath.Join(full, "final"))
	if err != nil || !ok || info.Layer != 2 || info.Pooling != PoolMean {
		t.Errorf("ReadAdapterInfo = %+v, %v, %v", info, ok, err)
	}
	// A checkpoint of another configuration is refused.
	opts.Batch = 6
	if _, err := Train(context.Background(), m, tok, pairs, opts, ck, nil); err == nil {
		t.Error("resume with another batch size: want an error")
	}
}

func TestTrainOptionsValidate(t *testing.T) {
	cfg := llama.Config{NumLayers: 4, HiddenSize: 8, NumHeads: 2, NumKVHeads: 1, HeadDim: 4, IntermediateSize: 8, VocabSize: 10}
	for _, c := range []struct {
		mod   func(*TrainOptions)
		pairs int
	}{
		{func(o *TrainOptions) { o.Layer = 0 }, 10},
		{func(o *TrainOptions) { o.Layer = 5 }, 10},
		{func(o *TrainOptions) { o.Batch = 1 }, 10},
		{func(o *TrainOptions) {}, 1},
		{func(o *TrainOptions) { o.LR = 0 }, 10},
		{func(o *TrainOptions) { o.Pooling = "max" }, 10},
	} {
		o := PaperTrainOptions()
		c.mod(&o)
		if err := o.Validate(cfg, c.pairs); err == nil {
			t.Errorf("%+v with %d pairs: want an error", o, c.pairs)
		}
	}
	o := PaperTrainOptions()
	if err := o.Validate(cfg, 10); err != nil {
		t.Errorf("paper options: %v", err)
	}
}
