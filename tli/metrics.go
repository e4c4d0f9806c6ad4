package tli

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// L2Normalize returns v scaled to unit Euclidean length (computed in
// float64). A zero vector comes back as zeros.
func L2Normalize(v []float32) []float32 {
	var ss float64
	for _, x := range v {
		ss += float64(x) * float64(x)
	}
	out := make([]float32, len(v))
	if ss == 0 {
		return out
	}
	inv := 1 / math.Sqrt(ss)
	for i, x := range v {
		out[i] = float32(float64(x) * inv)
	}
	return out
}

// L2NormalizeRows returns every row of rows normalised by L2Normalize.
func L2NormalizeRows(rows [][]float32) [][]float32 {
	out := make([][]float32, len(rows))
	for i, r := range rows {
		out[i] = L2Normalize(r)
	}
	return out
}

func dot(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

// normTolerance is how far from 1 the length of an input row of the metrics
// below may be: float32 rounding gives about 1e-7; a row that is off by more
// than this was not normalised (or is a zero vector of a word that pooled to
// nothing), and the cosines would be wrong.
const normTolerance = 1e-3

// checkEmbeddings validates src and tgt as matching lists of unit rows.
func checkEmbeddings(src, tgt [][]float32) error {
	if len(src) != len(tgt) {
		return fmt.Errorf("tli: %d Swahili embeddings but %d English ones", len(src), len(tgt))
	}
	if len(src) == 0 {
		return fmt.Errorf("tli: no embeddings")
	}
	dim := len(src[0])
	for _, side := range []struct {
		name string
		rows [][]float32
	}{{"Swahili", src}, {"English", tgt}} {
		for i, r := range side.rows {
			if len(r) != dim {
				return fmt.Errorf("tli: %s embedding %d has %d values, want %d", side.name, i, len(r), dim)
			}
			n := math.Sqrt(dot(r, r))
			if math.IsNaN(n) || math.Abs(n-1) > normTolerance {
				return fmt.Errorf("tli: %s embedding %d has length %.6g, want an L2-normalised row (length 1)", side.name, i, n)
			}
		}
	}
	return nil
}

// PairCosines returns the cosine similarity of each pair, src[i]·tgt[i]; the
// rows must be L2-normalised.
func PairCosines(src, tgt [][]float32) ([]float64, error) {
	if err := checkEmbeddings(src, tgt); err != nil {
		return nil, err
	}
	out := make([]float64, len(src))
	for i := range src {
		out[i] = dot(src[i], tgt[i])
	}
	return out, nil
}

// MismatchedMean returns the mean cosine over all n(n-1) non-matching pairs
// src[i]·tgt[j], i != j: the baseline a pair's cosine must beat to mean
// anything. It is exact, computed in O(n·dim) from the sums of the rows:
// Σ_{i≠j} s_i·t_j = (Σ_i s_i)·(Σ_j t_j) − Σ_i s_i·t_i. Needs n >= 2.
func MismatchedMean(src, tgt [][]float32) (float64, error) {
	if err := checkEmbeddings(src, tgt); err != nil {
		return 0, err
	}
	n := len(src)
	if n < 2 {
		return 0, fmt.Errorf("tli: mismatched-pair mean needs at least 2 pairs, have %d", n)
	}
	dim := len(src[0])
	ss, ts := make([]float64, dim), make([]float64, dim)
	var matched float64
	for i := range src {
		for k := range dim {
			ss[k] += float64(src[i][k])
			ts[k] += float64(tgt[i][k])
		}
		matched += dot(src[i], tgt[i])
	}
	var all float64
	for k := range dim {
		all += ss[k] * ts[k]
	}
	return (all - matched) / float64(n*(n-1)), nil
}

// similarity returns the n×n matrix of cosines S[i][j] = src[i]·tgt[j].
func similarity(src, tgt [][]float32) *mat.Dense {
	n, dim := len(src), len(src[0])
	a, b := mat.NewDense(n, dim, nil), mat.NewDense(n, dim, nil)
	for i := range n {
		ra, rb := a.RawRowView(i), b.RawRowView(i)
		for k := range dim {
			ra[k], rb[k] = float64(src[i][k]), float64(tgt[i][k])
		}
	}
	var s mat.Dense
	s.Mul(a, b.T())
	return &s
}

// RetrievalRanks returns, for each Swahili row i, the rank of its own
// English row among all English rows ordered by cosine with src[i]: 1 plus
// the number of other rows j with src[i]·tgt[j] >= src[i]·tgt[i]. Ties count
// against the right answer, so degenerate embeddings (all rows equal, as
// with BOS-dominated pooling) score rank n, not 1.
func RetrievalRanks(src, tgt [][]float32) ([]int, error) {
	if err := checkEmbeddings(src, tgt); err != nil {
		return nil, err
	}
	s := similarity(src, tgt)
	n := len(src)
	ranks := make([]int, n)
	for i := range n {
		row := s.RawRowView(i)
		r := 1
		for j, v := range row {
			if j != i && v >= row[i] {
				r++
			}
		}
		ranks[i] = r
	}
	return ranks, nil
}

// PrecisionAt1 returns the fraction of Swahili rows whose nearest English
// row (by cosine, among all n) is their own translation; see RetrievalRanks
// for ties. Chance level is 1/n.
func PrecisionAt1(src, tgt [][]float32) (float64, error) {
	ranks, err := RetrievalRanks(src, tgt)
	if err != nil {
		return 0, err
	}
	hits := 0
	for _, r := range ranks {
		if r == 1 {
			hits++
		}
	}
	return float64(hits) / float64(len(ranks)), nil
}

// LayerStats bundles the alignment measures of one layer over one list of
// pairs. Mean and Std (sample, ddof=1) describe the matched-pair cosines;
// MismatchedMean is the mean cosine of all non-matching pairs (see
// MismatchedMean) and Gap = Mean - MismatchedMean, the part of the cosine
// that is about translation rather than about every vector pointing the
// same way; PrecisionAt1 is Swahili->English retrieval among the N targets.
type LayerStats struct {
	Layer          int     `json:"layer"`
	N              int     `json:"n"`
	Mean           float64 `json:"mean"`
	Std            float64 `json:"std"`
	MismatchedMean float64 `json:"mismatched_mean"`
	Gap            float64 `json:"gap"`
	PrecisionAt1   float64 `json:"precision_at_1"`
}

// ComputeLayerStats measures one layer: src[i] and tgt[i] are the
// L2-normalised pooled embeddings of pair i's Swahili and English words.
func ComputeLayerStats(layer int, src, tgt [][]float32) (LayerStats, error) {
	cos, err := PairCosines(src, tgt)
	if err != nil {
		return LayerStats{}, fmt.Errorf("layer %d: %w", layer, err)
	}
	mm, err := MismatchedMean(src, tgt)
	if err != nil {
		return LayerStats{}, fmt.Errorf("layer %d: %w", layer, err)
	}
	p1, err := PrecisionAt1(src, tgt)
	if err != nil {
		return LayerStats{}, fmt.Errorf("layer %d: %w", layer, err)
	}
	m := Mean(cos)
	return LayerStats{
		Layer: layer, N: len(cos), Mean: m, Std: StdSample(cos),
		MismatchedMean: mm, Gap: m - mm, PrecisionAt1: p1,
	}, nil
}
