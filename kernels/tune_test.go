package kernels

import (
	"fmt"
	"testing"
)

func BenchmarkTune(b *testing.B) {
	for _, kc := range []int{128, 256, 512} {
		for _, s := range []string{"f32", "bf16", "bf16fast", "f32-NN", "f32-TN"} {
			m, k, n := 80, 2048, 2048
			if s == "f32-TN" {
				m, k, n = 2048, 80, 2048
			}
			b.Run(fmt.Sprintf("kc%d/%s", kc, s), func(b *testing.B) {
				old := blockK
				blockK = kc
				defer func() { blockK = old }()
				a := randF32(m * k)
				c := make([]float32, m*n)
				w := randF32(n * k)
				h := randBF16(n * k)
				var f func()
				switch s {
				case "f32":
					f = func() { GemmNT(m, n, k, a, k, w, k, c, n, false) }
				case "bf16":
					f = func() { GemmNTBF16(m, n, k, a, k, h, k, c, n, false) }
				case "bf16fast":
					f = func() { GemmNTBF16Fast(m, n, k, a, k, h, k, c, n, false) }
				case "f32-NN":
					f = func() { GemmNN(m, n, k, a, k, w, n, c, n, false) }
				case "f32-TN":
					f = func() { GemmTN(m, n, k, a, m, w, n, c, n, false) }
				}
				f()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					f()
				}
				b.ReportMetric(2*float64(m)*float64(n)*float64(k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
