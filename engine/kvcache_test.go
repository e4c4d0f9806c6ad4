package engine

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestAttentionCached feeds a sequence to a KVCache in pieces (a prefix,
// then one token at a time) and checks every output row against Attention
// over the whole sequence at once.
func TestAttentionCached(t *testing.T) {
	const L, nHeads, nKV, hd = 11, 4, 2, 8
	qd, kd := nHeads*hd, nKV*hd
	r := rand.New(rand.NewPCG(1, 2))
	fill := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		return x
	}
	q, k, v := fill(L*qd), fill(L*kd), fill(L*kd)
	want := make([]float32, L*qd)
	Attention(want, q, k, v, []int{0, L}, nHeads, nKV, hd, nil)

	c := NewKVCache(1, nKV, hd, 2) // small capacity: Store must grow it
	got := make([]float32, L*qd)
	for _, piece := range [][2]int{{0, 5}, {5, 6}, {6, 7}, {7, 11}} {
		a, b := piece[0], piece[1]
		n := b - a
		c.Store(0, k[a*kd:b*kd], v[a*kd:b*kd], n)
		AttentionCached(got[a*qd:b*qd], q[a*qd:b*qd], n, c.Len, c.K[0], c.V[0], nHeads, nKV, hd)
		c.Advance(n)
	}
	if c.Len != L {
		t.Fatalf("cache length %d, want %d", c.Len, L)
	}
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-5 {
			t.Fatalf("element %d: cached %v, full %v", i, got[i], want[i])
		}
	}
}
