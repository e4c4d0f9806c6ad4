package tli

import (
	"math"
	"testing"
)

func TestPoolRows(t *testing.T) {
	// Two sequences, d=2: [BOS a b] and [BOS c].
	h := []float32{
		100, 0, // BOS
		1, 2,
		3, 4,
		100, 0, // BOS
		0, -5,
	}
	offsets := []int{0, 3, 5}
	special := []bool{true, false, false, true, false}
	unit := func(x, y float64) []float64 { n := math.Hypot(x, y); return []float64{x / n, y / n} }
	cases := []struct {
		p    Pooling
		want [][]float64
	}{
		{PoolMean, [][]float64{unit(104.0/3, 6.0/3), unit(50, -2.5)}},
		{PoolContent, [][]float64{unit(2, 3), unit(0, -5)}},
		{PoolLast, [][]float64{unit(3, 4), unit(0, -5)}},
	}
	for _, c := range cases {
		got, err := PoolRows(h, 2, offsets, special, c.p)
		if err != nil {
			t.Fatal(err)
		}
		for s := range c.want {
			for i := range c.want[s] {
				if math.Abs(float64(got[s][i])-c.want[s][i]) > 1e-6 {
					t.Errorf("%s: seq %d = %v, want %v", c.p, s, got[s], c.want[s])
				}
			}
		}
	}
	if _, err := PoolRows(h[:2], 2, []int{0, 1}, []bool{true}, PoolContent); err == nil {
		t.Error("content pooling of a special-only sequence: want an error")
	}
	if _, err := ParsePooling("max"); err == nil {
		t.Error("ParsePooling(max): want an error")
	}
}
