//go:build vulkan && (amd64 || arm64) && (linux || darwin || windows)

package vulkan

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/kernels"
)

// TestTrainingAgainstCPU runs the training kernels that have a counterpart
// in packages kernels and engine on the same inputs and compares, within
// twice the tolerance of the float64 comparisons: GEMMNN (f32, bf16, f16)
// with kernels.GemmNN*, GEMMTN with kernels.GemmTN, SiLUMulBackward with
// kernels.SiLUMulBackward, and RMSNormSave + RMSNormBackward (accumulating)
// with engine.RMSNorm and engine.RMSNormBackward.
func TestTrainingAgainstCPU(t *testing.T) {
	c := openContext(t, Options{})
	rng := rand.New(rand.NewPCG(53, 54))
	for _, wt := range []WeightType{F32, BF16, F16, -1} {
		for _, s := range [][3]int{{80, 130, 257}, {33, 65, 18}, {1, 300, 64}} {
			m, n, k := s[0], s[1], s[2]
			a := randF32(rng, m*k, -1, 1)
			bt := wt
			if wt < 0 { // GEMMTN
				bt = F32
			}
			stored, b := randWeights(rng, k*n, bt)
			c0 := randF32(rng, m*n, -1, 1)
			cpu := append([]float32(nil), c0...)
			name := fmt.Sprintf("GEMMNN %s %dx%dx%d vs kernels", wt, m, n, k)
			switch wt {
			case F32:
				kernels.GemmNN(m, n, k, a, k, b, n, cpu, n, true)
			case BF16:
				kernels.GemmNNBF16(m, n, k, a, k, stored.([]uint16), n, cpu, n, true)
			case F16:
				kernels.GemmNNF16(m, n, k, a, k, stored.([]uint16), n, cpu, n, true)
			default:
				kernels.GemmTN(m, n, k, a, m, b, n, cpu, n, true)
				name = fmt.Sprintf("GEMMTN %dx%dx%d vs kernels", m, n, k)
			}
			ga := newGuarded(t, c, 4*m*k, a)
			es, _ := bt.size()
			gb := newGuarded(t, c, int(es)*k*n, stored)
			gc := newGuarded(t, c, 4*m*n, c0)
			var err error
			if wt < 0 {
				err = c.GEMMTN(gc.span(), ga.span(), gb.span(), m, n, k, true)
			} else {
				err = c.GEMMNN(gc.span(), ga.span(), gb.span(), m, n, k, wt, true)
			}
			if err != nil {
				t.Fatal(err)
			}
			ref := make([]float64, m*n)
			scale := make([]float64, m*n)
			for i := range m {
				for j := range n {
					abs := math.Abs(float64(c0[i*n+j]))
					for kk := range k {
						av := a[i*k+kk]
						if wt < 0 {
							av = a[kk*m+i]
						}
						abs += math.Abs(float64(av) * float64(b[kk*n+j]))
					}
					ref[i*n+j], scale[i*n+j] = float64(cpu[i*n+j]), 2*abs
				}
			}
			compare(t, name, gc.f32(t), ref, scale)
		}
	}

	n := 100003
	g, u, dy := randF32(rng, n, -12, 12), randF32(rng, n, -2, 2), randF32(rng, n, -1, 1)
	cg, cu := make([]float32, n), make([]float32, n)
	kernels.SiLUMulBackward(cg, cu, dy, g, u)
	gg, gu, gdy := newGuarded(t, c, 4*n, g), newGuarded(t, c, 4*n, u), newGuarded(t, c, 4*n, dy)
	dg, du := newGuarded(t, c, 4*n, nil), newGuarded(t, c, 4*n, nil)
	if err := c.SiLUMulBackward(dg.span(), du.span(), gdy.span(), gg.span(), gu.span(), n); err != nil {
		t.Fatal(err)
	}
	refG, refU, scG, scU := make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
	for i := range n {
		x := float64(g[i])
		s := 1 / (1 + math.Exp(-x))
		refG[i], refU[i] = float64(cg[i]), float64(cu[i])
		scG[i] = 2 * math.Abs(float64(dy[i])*float64(u[i])*s) * (1 + math.Abs(x*(1-s)))
		scU[i] = 2 * math.Abs(float64(dy[i])*x*s)
	}
	compare(t, "SiLUMulBackward dgate vs kernels", dg.f32(t), refG, scG)
	compare(t, "SiLUMulBackward dup vs kernels", du.f32(t), refU, scU)

	const rows, d, eps = 5, 1000, 1e-5
	x, w, dyn, dx0 := randF32(rng, rows*d, -3, 3), randF32(rng, d, 0.5, 1.5), randF32(rng, rows*d, -1, 1), randF32(rng, rows*d, -1, 1)
	out, rstd := make([]float32, rows*d), make([]float32, rows)
	engine.RMSNorm(out, x, w, rows, d, eps, rstd)
	cdx := append([]float32(nil), dx0...)
	engine.RMSNormBackward(cdx, dyn, x, w, rstd, rows, d, true)
	gx, gw, gdyn := newGuarded(t, c, 4*len(x), x), newGuarded(t, c, 4*d, w), newGuarded(t, c, 4*len(dyn), dyn)
	gout, gr, gdx := newGuarded(t, c, 4*len(x), nil), newGuarded(t, c, 4*rows, nil), newGuarded(t, c, 4*len(x), dx0)
	if err := c.RMSNormSave(gout.span(), gr.span(), gx.span(), gw.span(), rows, d, eps); err != nil {
		t.Fatal(err)
	}
	if err := c.RMSNormBackward(gdx.span(), gdyn.span(), gx.span(), gw.span(), gr.span(), rows, d, true); err != nil {
		t.Fatal(err)
	}
	refR, scR := make([]float64, rows), make([]float64, rows)
	refX, scX := make([]float64, len(x)), make([]float64, len(x))
	for r := range rows {
		refR[r], scR[r] = float64(rstd[r]), 2*float64(rstd[r])
		rr := float64(rstd[r])
		var sa float64
		for i := range d {
			sa += math.Abs(float64(w[i]) * float64(dyn[r*d+i]) * float64(x[r*d+i]))
		}
		for i := range d {
			j := r*d + i
			refX[j] = float64(cdx[j])
			scX[j] = 2 * (math.Abs(float64(dx0[j])) + rr*math.Abs(float64(w[i])*float64(dyn[j])) + math.Abs(float64(x[j]))*rr*rr*rr*sa/d)
		}
	}
	compare(t, "RMSNormSave rrms vs engine", gr.f32(t), refR, scR)
	compare(t, "RMSNormBackward vs engine", gdx.f32(t), refX, scX)
}
