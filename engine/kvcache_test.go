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
	// 11 tokens: the row-by-row path; 300: matrix products over blocks.
	for _, L := range []int{11, 300} {
		testAttentionCached(t, L)
	}
}

func testAttentionCached(t *testing.T, L int) {
	const nHeads, nKV, hd = 4, 2, 8
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
	for _, piece := range [][2]int{{0, 5}, {5, 6}, {6, 7}, {7, (7 + L) / 2}, {(7 + L) / 2, L}} {
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
			t.Fatalf("L=%d element %d: cached %v, full %v", L, i, got[i], want[i])
		}
	}
}

// BenchmarkAttention512 compares the packed Attention op with
// AttentionCached (matrix products) on one 512-token sequence with the
// heads of Llama 3.2 1B (32 query, 8 key/value heads of 64).
func BenchmarkAttention512(b *testing.B) {
	const L, nHeads, nKV, hd = 512, 32, 8, 64
	r := rand.New(rand.NewPCG(1, 2))
	fill := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		return x
	}
	q, k, v := fill(L*nHeads*hd), fill(L*nKV*hd), fill(L*nKV*hd)
	out := make([]float32, L*nHeads*hd)
	b.Run("Attention", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			Attention(out, q, k, v, []int{0, L}, nHeads, nKV, hd, nil)
		}
	})
	b.Run("AttentionCached", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			AttentionCached(out, q, L, 0, k, v, nHeads, nKV, hd)
		}
	})
}
