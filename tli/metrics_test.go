package tli

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func randRows(rng *rand.Rand, n, dim int) [][]float32 {
	rows := make([][]float32, n)
	for i := range rows {
		rows[i] = make([]float32, dim)
		for k := range rows[i] {
			rows[i][k] = float32(rng.NormFloat64())
		}
	}
	return L2NormalizeRows(rows)
}

func TestL2Normalize(t *testing.T) {
	v := L2Normalize([]float32{3, 4})
	if v[0] != 0.6 || v[1] != 0.8 {
		t.Errorf("got %v", v)
	}
	if z := L2Normalize([]float32{0, 0}); z[0] != 0 || z[1] != 0 {
		t.Errorf("zero vector: %v", z)
	}
}

func TestMetricsAgainstBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	n, dim := 40, 16
	src := randRows(rng, n, dim)
	// Targets near their sources for the first 30 pairs, unrelated after.
	noise := randRows(rng, n, dim)
	tgt := make([][]float32, n)
	for i := range tgt {
		w := float32(0.3)
		if i >= 30 {
			w = 100
		}
		v := make([]float32, dim)
		for k := range v {
			v[k] = src[i][k] + w*noise[i][k]
		}
		tgt[i] = L2Normalize(v)
	}
	cos, err := PairCosines(src, tgt)
	if err != nil {
		t.Fatal(err)
	}
	// Brute force in float64.
	var sumMis float64
	hits := 0
	for i := range n {
		best, bestJ := math.Inf(-1), -1
		for j := range n {
			var s float64
			for k := range dim {
				s += float64(src[i][k]) * float64(tgt[j][k])
			}
			if i == j && math.Abs(s-cos[i]) > 1e-12 {
				t.Errorf("cos[%d] = %v, want %v", i, cos[i], s)
			}
			if i != j {
				sumMis += s
			}
			if s > best {
				best, bestJ = s, j
			}
		}
		if bestJ == i {
			hits++
		}
	}
	mm, _ := MismatchedMean(src, tgt)
	if want := sumMis / float64(n*(n-1)); math.Abs(mm-want) > 1e-12 {
		t.Errorf("mismatched mean %v, want %v", mm, want)
	}
	p1, _ := PrecisionAt1(src, tgt)
	if want := float64(hits) / float64(n); p1 != want {
		t.Errorf("P@1 %v, want %v", p1, want)
	}
	if p1 < 0.7 || p1 > 0.85 {
		t.Errorf("P@1 %v: the first 30 of 40 pairs are close, the rest random", p1)
	}
	ls, err := ComputeLayerStats(2, src, tgt)
	if err != nil {
		t.Fatal(err)
	}
	if ls.Layer != 2 || ls.N != n || ls.Mean != Mean(cos) || ls.Std != StdSample(cos) || ls.MismatchedMean != mm ||
		ls.Gap != ls.Mean-mm || ls.PrecisionAt1 != p1 {
		t.Errorf("layer stats %+v", ls)
	}
}

// TestMetricsDegenerate shows why the mismatched baseline matters: when one
// vector dominates every embedding (BOS in the pooled mean), every cosine is
// near 1, yet nothing is aligned: gap 0 and no retrieval.
func TestMetricsDegenerate(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	n, dim := 20, 8
	bos := make([]float32, dim)
	bos[0] = 1000
	mk := func() [][]float32 {
		rows := randRows(rng, n, dim)
		for _, r := range rows {
			for k := range r {
				r[k] += bos[k]
			}
		}
		return L2NormalizeRows(rows)
	}
	src, tgt := mk(), mk()
	ls, err := ComputeLayerStats(0, src, tgt)
	if err != nil {
		t.Fatal(err)
	}
	if ls.Mean < 0.999 || ls.MismatchedMean < 0.999 || math.Abs(ls.Gap) > 1e-4 {
		t.Errorf("%+v", ls)
	}
	same := make([][]float32, n)
	for i := range same {
		same[i] = L2Normalize(bos)
	}
	p1, _ := PrecisionAt1(same, same)
	ranks, _ := RetrievalRanks(same, same)
	if p1 != 0 || ranks[0] != n {
		t.Errorf("identical rows: P@1 %v rank %d, want 0 and %d (ties count against)", p1, ranks[0], n)
	}
}

func TestMetricsErrors(t *testing.T) {
	a := [][]float32{{1, 0}, {0, 1}}
	cases := []struct {
		src, tgt [][]float32
		want     string
	}{
		{a, a[:1], "2 Swahili embeddings but 1 English"},
		{nil, nil, "no embeddings"},
		{a, [][]float32{{1, 0}, {0, 1, 0}}, "English embedding 1 has 3 values, want 2"},
		{[][]float32{{1, 0}, {0, 2}}, a, "Swahili embedding 1 has length 2"},
		{[][]float32{{1, 0}, {0, 0}}, a, "Swahili embedding 1 has length 0"},
	}
	for _, c := range cases {
		if _, err := ComputeLayerStats(5, c.src, c.tgt); err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "layer 5") {
			t.Errorf("got %v, want %q", err, c.want)
		}
	}
	if _, err := MismatchedMean(a[:1], a[:1]); err == nil {
		t.Error("n=1 accepted")
	}
}

func BenchmarkLayerStats686x4096(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	src, tgt := randRows(rng, 686, 4096), randRows(rng, 686, 4096)
	for b.Loop() {
		ComputeLayerStats(0, src, tgt)
	}
}
