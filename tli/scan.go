package tli

import (
	"fmt"
	"sort"
)

// Group is a named list of pairs ("trained", "control").
type Group struct {
	Name  string
	Pairs []Pair
}

// PairVectors are the pooled vectors of a group's Swahili (Src) and English
// (Tgt) sides, in pair order.
type PairVectors struct {
	Src, Tgt [][]float32
}

// GroupVectors holds PairVectors by pooling, layer and group name.
type GroupVectors map[Pooling]map[int]map[string]PairVectors

// Get returns the vectors of one (pooling, layer, group), and whether they
// are there.
func (g GroupVectors) Get(p Pooling, layer int, group string) (PairVectors, bool) {
	v, ok := g[p][layer][group]
	return v, ok
}

// Subset returns the vectors of pooling p at the given layers (those it
// holds), sharing the slices.
func (g GroupVectors) Subset(p Pooling, layers []int) GroupVectors {
	out := GroupVectors{p: {}}
	for _, l := range layers {
		if v, ok := g[p][l]; ok {
			out[p][l] = v
		}
	}
	return out
}

// EmbedGroups embeds every word of every group in one pass over the model,
// at every layer and pooling asked for.
func EmbedGroups(e Embedder, groups []Group, layers []int, poolings []Pooling) (GroupVectors, error) {
	var words []string
	for _, g := range groups {
		for _, p := range g.Pairs {
			words = append(words, p.Source)
		}
		for _, p := range g.Pairs {
			words = append(words, p.Target)
		}
	}
	vecs, err := e.Embed(words, layers, poolings)
	if err != nil {
		return nil, err
	}
	out := GroupVectors{}
	for _, p := range poolings {
		out[p] = map[int]map[string]PairVectors{}
		for _, l := range layers {
			v := vecs[p][l]
			if len(v) != len(words) {
				return nil, fmt.Errorf("embedder returned %d vectors for %d words at layer %d", len(v), len(words), l)
			}
			out[p][l] = map[string]PairVectors{}
			i := 0
			for _, g := range groups {
				n := len(g.Pairs)
				out[p][l][g.Name] = PairVectors{Src: v[i : i+n], Tgt: v[i+n : i+2*n]}
				i += 2 * n
			}
		}
	}
	return out, nil
}

// ScanVectors computes the per-layer alignment statistics of one group from
// its vectors: matched-pair cosine, mismatched baseline, gap and P@1.
func ScanVectors(gv GroupVectors, group string, p Pooling) ([]LayerStats, error) {
	var layers []int
	for l := range gv[p] {
		layers = append(layers, l)
	}
	sort.Ints(layers)
	out := make([]LayerStats, 0, len(layers))
	for _, l := range layers {
		v, ok := gv.Get(p, l, group)
		if !ok {
			return nil, fmt.Errorf("no vectors for group %q at layer %d", group, l)
		}
		st, err := ComputeLayerStats(l, v.Src, v.Tgt)
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", l, err)
		}
		out = append(out, st)
	}
	return out, nil
}

// Scan embeds the pairs at every layer in one pass and returns the per-layer
// statistics with the given pooling.
func Scan(e Embedder, pairs []Pair, layers []int, p Pooling) (*ScanResult, GroupVectors, error) {
	if len(pairs) < 2 {
		return nil, nil, fmt.Errorf("a scan needs at least 2 pairs (the mismatched baseline compares different pairs), got %d", len(pairs))
	}
	gv, err := EmbedGroups(e, []Group{{"scan", pairs}}, layers, []Pooling{p})
	if err != nil {
		return nil, nil, err
	}
	st, err := ScanVectors(gv, "scan", p)
	if err != nil {
		return nil, nil, err
	}
	return &ScanResult{Pooling: p, Layers: st}, gv, nil
}
