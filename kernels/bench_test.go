package kernels

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// benchShape is one GEMM benchmark: C (M×N) = op(A)·op(B) with inner size K.
type benchShape struct {
	dtype   string // f32, bf16 (widened), bf16fast, f16, with -NN / -TN for the backward layouts
	m, k, n int
}

var benchShapes = func() []benchShape {
	var s []benchShape
	for _, dt := range []string{"f32", "bf16", "bf16fast", "f16"} {
		for _, mkn := range [][3]int{{512, 4096, 4096}, {80, 4096, 4096}, {80, 4096, 14336}, {80, 14336, 4096}, {2048, 2048, 2048}} {
			s = append(s, benchShape{dt, mkn[0], mkn[1], mkn[2]})
		}
	}
	// Backward: dX = dY·W (NN) and dW = dYᵀ·X (TN, inner size = tokens).
	s = append(s, benchShape{"f32-NN", 80, 4096, 4096}, benchShape{"f32-NN", 80, 14336, 4096}, benchShape{"bf16-NN", 80, 4096, 4096},
		benchShape{"f32-TN", 4096, 80, 4096}, benchShape{"f32-TN", 4096, 512, 4096})
	return s
}()

func randF32(n int) []float32 {
	r := rand.New(rand.NewPCG(9, 9))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.Float64()*2 - 1)
	}
	return x
}

func randBF16(n int) []uint16 {
	x := randF32(n)
	h := make([]uint16, n)
	for i, v := range x {
		h[i] = F32ToBF16(v)
	}
	return h
}

func randF16(n int) []uint16 {
	x := randF32(n)
	h := make([]uint16, n)
	for i, v := range x {
		h[i] = F32ToF16(v)
	}
	return h
}

// BenchmarkGEMM measures the selected path (set TLI_KERNELS to pick another)
// on two worker goroutines and reports GFLOP/s.
func BenchmarkGEMM(b *testing.B) {
	SetRunner(goRunner(2))
	defer SetRunner(nil)
	for _, s := range benchShapes {
		b.Run(fmt.Sprintf("%s/%dx%dx%d", s.dtype, s.m, s.k, s.n), func(b *testing.B) {
			m, k, n := s.m, s.k, s.n
			a := randF32(m * k)
			c := make([]float32, m*n)
			var f func()
			switch s.dtype {
			case "f32":
				w := randF32(n * k)
				f = func() { GemmNT(m, n, k, a, k, w, k, c, n, false) }
			case "bf16":
				w := randBF16(n * k)
				f = func() { GemmNTBF16(m, n, k, a, k, w, k, c, n, false) }
			case "bf16fast":
				w := randBF16(n * k)
				f = func() { GemmNTBF16Fast(m, n, k, a, k, w, k, c, n, false) }
			case "f16":
				w := randF16(n * k)
				f = func() { GemmNTF16(m, n, k, a, k, w, k, c, n, false) }
			case "f32-NN":
				w := randF32(k * n)
				f = func() { GemmNN(m, n, k, a, k, w, n, c, n, false) }
			case "bf16-NN":
				w := randBF16(k * n)
				f = func() { GemmNNBF16(m, n, k, a, k, w, n, c, n, false) }
			case "f32-TN":
				at := randF32(k * m)
				w := randF32(k * n)
				f = func() { GemmTN(m, n, k, at, m, w, n, c, n, false) }
			}
			f()
			// Collect the previous shapes' operands now rather than during
			// a timed call (they are hundreds of MB).
			runtime.GC()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				f()
			}
			flop := 2 * float64(m) * float64(n) * float64(k) * float64(b.N)
			b.ReportMetric(flop/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkGonumSgemm is the pure-Go peer: gonum's Sgemm (C = A·Bᵀ) on the
// f32 shapes, parallel over GOMAXPROCS.
func BenchmarkGonumSgemm(b *testing.B) {
	impl := gonum.Implementation{}
	for _, mkn := range [][3]int{{512, 4096, 4096}, {80, 4096, 4096}, {2048, 2048, 2048}} {
		m, k, n := mkn[0], mkn[1], mkn[2]
		b.Run(fmt.Sprintf("f32/%dx%dx%d", m, k, n), func(b *testing.B) {
			a, w, c := randF32(m*k), randF32(n*k), make([]float32, m*n)
			runtime.GC()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				impl.Sgemm(blas.NoTrans, blas.Trans, m, n, k, 1, a, k, w, k, 0, c, n)
			}
			b.ReportMetric(2*float64(m)*float64(n)*float64(k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkSmallM measures products with few rows of A (decoding), which are
// bound by reading B: it reports the rate B is streamed at.
func BenchmarkSmallM(b *testing.B) {
	SetRunner(goRunner(2))
	defer SetRunner(nil)
	for _, m := range []int{1, 4, 8, 16} {
		for _, dt := range []string{"f32", "bf16", "bf16fast"} {
			k, n := 4096, 4096
			b.Run(fmt.Sprintf("%s/%dx%dx%d", dt, m, k, n), func(b *testing.B) {
				a, c := randF32(m*k), make([]float32, m*n)
				var f func()
				bytes := float64(n * k * 2)
				switch dt {
				case "f32":
					w := randF32(n * k)
					f = func() { GemmNT(m, n, k, a, k, w, k, c, n, false) }
					bytes *= 2
				case "bf16":
					w := randBF16(n * k)
					f = func() { GemmNTBF16(m, n, k, a, k, w, k, c, n, false) }
				case "bf16fast":
					w := randBF16(n * k)
					f = func() { GemmNTBF16Fast(m, n, k, a, k, w, k, c, n, false) }
				}
				f()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					f()
				}
				b.ReportMetric(bytes*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
			})
		}
	}
}
