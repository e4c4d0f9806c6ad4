package kernels

import (
	"fmt"
	"math"
	"runtime"
	"testing"
	"unsafe"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// refTile is the micro-kernel contract of internal/asmgen, element by element.
func refTile(r, w, kc int, bc []float32, rs, ps int, panel, c []float32, ldc int, acc bool) {
	for i := 0; i < r; i++ {
		for l := 0; l < w; l++ {
			var s float64
			for p := 0; p < kc; p++ {
				s += float64(bc[i*rs+p*ps]) * float64(panel[p*w+l])
			}
			if acc {
				s += float64(c[i*ldc+l])
			}
			c[i*ldc+l] = float32(s)
		}
	}
}

// TestGoTile checks every tile shape of the generic path against the
// contract, with both operand layouts the drivers use (the swapped driver's
// rows in place, ps = 4, and the classic driver's packed [p][r] blocks, rs = 4).
func TestGoTile(t *testing.T) {
	for v := 1; v <= goSimd.vmax; v++ {
		for r := 1; r <= 6; r++ {
			for _, kc := range []int{1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 64, 257} {
				for layout := 0; layout < 2; layout++ {
					for acc := 0; acc < 2; acc++ {
						w := v * goSimd.lanes
						rs, ps := kc+3, 1
						if layout == 1 {
							rs, ps = 1, r
						}
						// Operands sized exactly, so that reading past them faults
						// under -race/checkptr rather than passing silently.
						bc := randF32((r-1)*rs + (kc-1)*ps + 1)
						panel := randF32(kc * w)
						ldc := w + 5
						c := randF32((r-1)*ldc + w)
						want := append([]float32(nil), c...)
						refTile(r, w, kc, bc, rs, ps, panel, want, ldc, acc == 1)
						goSimd.f32[v][r](kc, unsafe.Pointer(&bc[0]), uintptr(rs*4), uintptr(ps*4), unsafe.Pointer(&panel[0]), unsafe.Pointer(&c[0]), uintptr(ldc*4), acc)
						for i := range c {
							tol := 1e-5 * float64(kc+1)
							if d := math.Abs(float64(c[i] - want[i])); d > tol || math.IsNaN(d) {
								t.Fatalf("v=%d r=%d kc=%d layout=%d acc=%d: c[%d] = %v, want %v", v, r, kc, layout, acc, i, c[i], want[i])
							}
						}
					}
				}
			}
		}
	}
}

// BenchmarkGoTile measures the generic micro-kernel alone, on one goroutine,
// with L1-resident operands shaped as the drivers pass them: "nt" reads 6
// rows in place (ps = 4), "nn" a packed [kc][6] block (rs = 4).
func BenchmarkGoTile(b *testing.B) {
	const kc = 256
	for _, layout := range []string{"nt", "nn"} {
		for v := 1; v <= goSimd.vmax; v++ {
			for _, r := range []int{6, 1} {
				b.Run(fmt.Sprintf("%s/R%dV%d", layout, r, v), func(b *testing.B) {
					w := v * goSimd.lanes
					rs, ps := kc, 1
					if layout == "nn" {
						rs, ps = 1, r
					}
					bc := randF32(6 * kc)
					panel := randF32(kc * w)
					c := make([]float32, 6*w)
					k := goSimd.f32[v][r]
					for b.Loop() {
						k(kc, unsafe.Pointer(&bc[0]), uintptr(rs*4), uintptr(ps*4), unsafe.Pointer(&panel[0]), unsafe.Pointer(&c[0]), uintptr(w*4), 1)
					}
					b.ReportMetric(float64(2*r*w*kc)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				})
			}
		}
	}
}

// BenchmarkGonumSgemmNN is gonum's Sgemm on the f32-NN shape of BenchmarkGEMM
// (C = A·B), the peer of the generic path's classic driver.
func BenchmarkGonumSgemmNN(b *testing.B) {
	impl := gonum.Implementation{}
	m, k, n := 80, 4096, 4096
	b.Run(fmt.Sprintf("f32-NN/%dx%dx%d", m, k, n), func(b *testing.B) {
		a, w, c := randF32(m*k), randF32(k*n), make([]float32, m*n)
		runtime.GC()
		for b.Loop() {
			impl.Sgemm(blas.NoTrans, blas.NoTrans, m, n, k, 1, a, k, w, n, 0, c, n)
		}
		b.ReportMetric(2*float64(m)*float64(n)*float64(k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	})
}
