package tli

import (
	"errors"
	"reflect"
	"testing"

	"github.com/tli-project/tli/llama"
)

func TestScanBestLayers(t *testing.T) {
	s := &ScanResult{Layers: []LayerStats{
		{Layer: 0, Mean: 0.9, Gap: 0.30},
		{Layer: 1, Mean: 0.99, Gap: 0.01},
		{Layer: 2, Mean: 0.5, Gap: 0.20},
		{Layer: 3, Mean: 0.6, Gap: 0.20},
	}}
	gap, _ := s.Best()
	mean, _ := s.BestByMean()
	train, ok := s.BestTrainable()
	if gap.Layer != 0 || mean.Layer != 1 || train.Layer != 2 || !ok {
		t.Errorf("best by gap %d, by mean %d, trainable %d; want 0, 1, 2 (earliest on ties)", gap.Layer, mean.Layer, train.Layer)
	}
	if got := ReportLayers(2, 32); !reflect.DeepEqual(got, []int{2, 32}) {
		t.Errorf("ReportLayers(2, 32) = %v", got)
	}
	if got := ReportLayers(4, 4); !reflect.DeepEqual(got, []int{4}) {
		t.Errorf("ReportLayers(4, 4) = %v", got)
	}
}

// TestOptionErrors: the library names the option field; the CLI maps it to
// its flag.
func TestOptionErrors(t *testing.T) {
	cfg := llama.Config{NumLayers: 4, HiddenSize: 8, NumHeads: 2, NumKVHeads: 1, HeadDim: 4, IntermediateSize: 8, VocabSize: 10}
	for _, c := range []struct {
		mod   func(*TrainOptions)
		field string
		msg   string
	}{
		{func(o *TrainOptions) { o.Layer = 5 }, "Layer", "Layer 5 is outside [1, 4]: layer 0 is the embedding table, which LoRA on attention cannot change"},
		{func(o *TrainOptions) { o.Margin = -1 }, "Margin", "Margin -1 must be in [0, 2] (cosines lie in [-1, 1])"},
		{func(o *TrainOptions) { o.Pooling = "max" }, "Pooling", `Pooling "max": `},
	} {
		o := PaperTrainOptions()
		c.mod(&o)
		err := o.Validate(cfg, 10)
		var oe *OptionError
		if !errors.As(err, &oe) || oe.Field != c.field || len(err.Error()) < len(c.msg) || err.Error()[:len(c.msg)] != c.msg {
			t.Errorf("got %v, want an OptionError on %s starting %q", err, c.field, c.msg)
		}
	}
}
