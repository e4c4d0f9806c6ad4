package engine

import (
	"math"
	"math/rand/v2"
	"testing"
)

// attentionRef is causal grouped-query attention of one sequence in
// float64, the reference for the vectorised softmax.
func attentionRef(q, k, v []float32, L, nHeads, nKV, hd int) []float64 {
	qd, kd := nHeads*hd, nKV*hd
	out := make([]float64, L*qd)
	for h := 0; h < nHeads; h++ {
		kh := h / (nHeads / nKV)
		for i := 0; i < L; i++ {
			s := make([]float64, i+1)
			mx := math.Inf(-1)
			for j := range s {
				for d := 0; d < hd; d++ {
					s[j] += float64(q[i*qd+h*hd+d]) * float64(k[j*kd+kh*hd+d])
				}
				s[j] /= math.Sqrt(float64(hd))
				mx = math.Max(mx, s[j])
			}
			var sum float64
			for j := range s {
				s[j] = math.Exp(s[j] - mx)
				sum += s[j]
			}
			for j := range s {
				for d := 0; d < hd; d++ {
					out[i*qd+h*hd+d] += s[j] / sum * float64(v[j*kd+kh*hd+d])
				}
			}
		}
	}
	return out
}

// TestAttentionSoftmax checks Attention and AttentionCached (both paths,
// each run twice so the pooled score buffers are reused with stale
// contents, longest first) against a float64 reference.
func TestAttentionSoftmax(t *testing.T) {
	const nHeads, nKV, hd = 4, 2, 16
	qd, kd := nHeads*hd, nKV*hd
	r := rand.New(rand.NewPCG(3, 4))
	for _, L := range []int{200, 37, 9} {
		fill := func(n int) []float32 {
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(r.NormFloat64() * 2)
			}
			return x
		}
		q, k, v := fill(L*qd), fill(L*kd), fill(L*kd)
		want := attentionRef(q, k, v, L, nHeads, nKV, hd)
		check := func(name string, got []float32) {
			t.Helper()
			for i, w := range want {
				if math.Abs(float64(got[i])-w) > 2e-5*(1+math.Abs(w)) {
					t.Fatalf("%s L=%d element %d: %v, want %v", name, L, i, got[i], w)
				}
			}
		}
		for rep := 0; rep < 2; rep++ {
			got := make([]float32, L*qd)
			Attention(got, q, k, v, []int{0, L}, nHeads, nKV, hd, nil)
			check("Attention", got)
			got = make([]float32, L*qd)
			AttentionCached(got, q, L, 0, k, v, nHeads, nKV, hd)
			check("AttentionCached", got)
		}
	}
}

// TestSiLUMulOps checks the engine's SiLUMul and SiLUMulBackward, split
// across the pool, against float64.
func TestSiLUMulOps(t *testing.T) {
	const n = 3<<14 + 5
	r := rand.New(rand.NewPCG(5, 6))
	g, u, dy := make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range g {
		g[i], u[i], dy[i] = float32(r.NormFloat64()*4), float32(r.NormFloat64()), float32(r.NormFloat64())
	}
	out, dg, du := make([]float32, n), make([]float32, n), make([]float32, n)
	SiLUMul(out, g, u)
	SiLUMulBackward(dg, du, dy, g, u)
	eps := math.Pow(2, -23)
	for i := range g {
		gv := float64(g[i])
		s := 1 / (1 + math.Exp(-gv))
		silu := gv * s
		if w := silu * float64(u[i]); math.Abs(float64(out[i])-w) > 8*eps*math.Abs(w)+1e-30 {
			t.Fatalf("SiLUMul[%d] = %v, want %v", i, out[i], w)
		}
		if w := float64(dy[i]) * silu; math.Abs(float64(du[i])-w) > 8*eps*math.Abs(w)+1e-30 {
			t.Fatalf("dup[%d] = %v, want %v", i, du[i], w)
		}
		size := math.Abs(float64(dy[i])*float64(u[i])*s) * (1 + math.Abs(gv*(1-s)))
		if w := float64(dy[i]) * float64(u[i]) * s * (1 + gv*(1-s)); math.Abs(float64(dg[i])-w) > 12*eps*size+1e-30 {
			t.Fatalf("dgate[%d] = %v, want %v", i, dg[i], w)
		}
	}
}
