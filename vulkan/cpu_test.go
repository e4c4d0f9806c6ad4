//go:build vulkan && (amd64 || arm64) && (linux || darwin || windows)

package vulkan

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/tli-project/tli/kernels"
)

// TestAgainstCPUKernels runs the kernels that have a counterpart in package
// kernels on the same inputs and compares: the GEMMs (f32, bf16, f16
// weights) and SiLU·mul, each within twice the tolerance of the float64
// comparisons (both sides are within it of the exact value). It also checks
// the test's own f16 decoding against kernels.F16ToF32 on every half.
func TestAgainstCPUKernels(t *testing.T) {
	for h := range 1 << 16 {
		a, b := halfToFloat(uint16(h)), kernels.F16ToF32(uint16(h))
		if math.Float32bits(a) != math.Float32bits(b) && !(a != a && b != b) {
			t.Fatalf("halfToFloat(0x%04x) = %v, kernels.F16ToF32 %v", h, a, b)
		}
	}
	c := openContext(t, Options{})
	rng := rand.New(rand.NewPCG(21, 22))
	for _, wt := range []WeightType{F32, BF16, F16} {
		for _, s := range [][3]int{{80, 130, 257}, {33, 65, 18}, {1, 300, 64}} {
			m, n, k := s[0], s[1], s[2]
			a := randF32(rng, m*k, -1, 1)
			stored, w := randWeights(rng, n*k, wt)
			c0 := randF32(rng, m*n, -1, 1)
			cpu := append([]float32(nil), c0...)
			switch wt {
			case F32:
				kernels.GemmNT(m, n, k, a, k, w, k, cpu, n, true)
			case BF16:
				kernels.GemmNTBF16(m, n, k, a, k, stored.([]uint16), k, cpu, n, true)
			case F16:
				kernels.GemmNTF16(m, n, k, a, k, stored.([]uint16), k, cpu, n, true)
			}
			ga := newGuarded(t, c, 4*m*k, a)
			es, _ := wt.size()
			gw := newGuarded(t, c, int(es)*n*k, stored)
			gc := newGuarded(t, c, 4*m*n, c0)
			if err := c.GEMM(gc.span(), ga.span(), gw.span(), m, n, k, wt, true); err != nil {
				t.Fatal(err)
			}
			got := gc.f32(t)
			ref := make([]float64, m*n)
			scale := make([]float64, m*n)
			for i := range m {
				for j := range n {
					abs := math.Abs(float64(c0[i*n+j]))
					for kk := range k {
						abs += math.Abs(float64(a[i*k+kk]) * float64(w[j*k+kk]))
					}
					ref[i*n+j], scale[i*n+j] = float64(cpu[i*n+j]), 2*abs
				}
			}
			compare(t, fmt.Sprintf("GEMM %s %dx%dx%d vs kernels", wt, m, n, k), got, ref, scale)
		}
	}
	n := 100003
	g := randF32(rng, n, -12, 12)
	u := randF32(rng, n, -2, 2)
	cpu := make([]float32, n)
	kernels.SiLUMul(cpu, g, u)
	gg, gu, out := newGuarded(t, c, 4*n, g), newGuarded(t, c, 4*n, u), newGuarded(t, c, 4*n, nil)
	if err := c.SiLUMul(out.span(), gg.span(), gu.span(), n); err != nil {
		t.Fatal(err)
	}
	ref := make([]float64, n)
	scale := make([]float64, n)
	for i, v := range cpu {
		ref[i], scale[i] = float64(v), 2*math.Abs(float64(v))
	}
	compare(t, "SiLU·mul vs kernels", out.f32(t), ref, scale)
}
