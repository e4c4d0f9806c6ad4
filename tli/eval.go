package tli

import (
	"fmt"

	"github.com/tli-project/tli/autograd"
	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/lora"
)

// EmbedAdapted embeds the groups with the adapter merged into m in memory
// (W' = W + scale·B·A), and restores m's original weights afterwards, even
// on error. The merged weights are heap copies: a memory-mapped base
// checkpoint is never written. With dev (holding m's weights; nil: the
// CPU) the merged layers are uploaded there for the pass, and the
// originals again afterwards.
func EmbedAdapted(m *llama.Model, dev Device, tok Encoder, a *lora.Adapter, groups []Group, layers []int, poolings []Pooling) (_ GroupVectors, err error) {
	saved := make([]llama.Layer, len(m.Layers))
	for i, l := range m.Layers {
		if l != nil {
			saved[i] = *l
		}
	}
	var merged []int // the loaded layers with adapters
	for i := range a.Layers {
		if i < len(m.Layers) && m.Layers[i] != nil && len(a.Layers[i]) > 0 {
			merged = append(merged, i)
		}
	}
	defer func() {
		for i, l := range m.Layers {
			if l != nil {
				*l = saved[i]
			}
		}
		if dev != nil {
			if rerr := dev.Refresh(m, merged); rerr != nil && err == nil {
				err = fmt.Errorf("restoring the device's weights: %w", rerr)
			}
		}
	}()
	// Adapters on layers that were not loaded cannot change the hidden
	// states asked for (they sit above them): leave them out of the merge.
	loaded := *a
	loaded.Layers = make([]map[string]*autograd.LoRA, len(a.Layers))
	for i := range a.Layers {
		if i < len(m.Layers) && m.Layers[i] != nil {
			loaded.Layers[i] = a.Layers[i]
		}
	}
	if err := loaded.Merge(m); err != nil {
		return nil, err
	}
	if dev != nil {
		if err := dev.Refresh(m, merged); err != nil {
			return nil, err
		}
	}
	return EmbedGroups(embedder(m, dev, tok), groups, layers, poolings)
}

// Compare summarises, for every layer and group, the per-pair cosines
// before and after training: mean, std, change, paired t-test, Wilcoxon
// signed-rank, effect size, and the mismatched baseline, gap and P@1 before
// and after. It also returns every pair's row for results.csv.
func Compare(before, after GroupVectors, groups []Group, layers []int, p Pooling) ([]GroupSummary, []PairResult, error) {
	var sums []GroupSummary
	var rows []PairResult
	for _, l := range layers {
		for _, g := range groups {
			if len(g.Pairs) == 0 {
				continue
			}
			b, ok1 := before.Get(p, l, g.Name)
			a, ok2 := after.Get(p, l, g.Name)
			if !ok1 || !ok2 {
				return nil, nil, fmt.Errorf("missing vectors for %s pairs at layer %d (%s pooling)", g.Name, l, p)
			}
			pre, err := PairCosines(b.Src, b.Tgt)
			if err != nil {
				return nil, nil, err
			}
			post, err := PairCosines(a.Src, a.Tgt)
			if err != nil {
				return nil, nil, err
			}
			var preSt, postSt *LayerStats
			if len(g.Pairs) >= 2 {
				s1, err := ComputeLayerStats(l, b.Src, b.Tgt)
				if err != nil {
					return nil, nil, err
				}
				s2, err := ComputeLayerStats(l, a.Src, a.Tgt)
				if err != nil {
					return nil, nil, err
				}
				preSt, postSt = &s1, &s2
			}
			sum, err := SummarizeGroup(g.Name, l, pre, post, preSt, postSt)
			if err != nil {
				return nil, nil, err
			}
			sums = append(sums, sum)
			r, err := PairResults(g.Pairs, pre, post, g.Name, l)
			if err != nil {
				return nil, nil, err
			}
			rows = append(rows, r...)
		}
	}
	return sums, rows, nil
}
