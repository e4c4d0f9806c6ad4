package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestRoundF32 checks roundF32 (the vector kernel where the path has one,
// Go otherwise) bit for bit against F32ToBF16 on ties, the largest finite
// values (which round to Inf), denormals, infinities, signalling and quiet
// NaNs with payloads, and random bit patterns, in every length up to 70 (the
// vector bulk and the Go tail) with guards after the output.
func TestRoundF32(t *testing.T) {
	special := []uint32{0, 0x80000000, 0x3f808000, 0x3f818000, 0x3f808001, 0x3f80ffff, 0x7f7fffff, 0xff7fffff,
		0x7f7f8000, 0x00000001, 0x8000ffff, 0x007fffff, 0x7f800000, 0xff800000, 0x7f800001, 0xff800001,
		0x7fc00000, 0x7fffffff, 0xffbfffff, 0x7f80ffff}
	rng := rand.New(rand.NewPCG(4, 4))
	forEachPath(t, func(t *testing.T) {
		for n := 0; n <= 70; n++ {
			src := make([]float32, n)
			for i := range src {
				if i < len(special) && n%2 == 0 {
					src[i] = math.Float32frombits(special[(i+n)%len(special)])
				} else {
					src[i] = math.Float32frombits(rng.Uint32())
				}
			}
			src0 := append([]float32(nil), src...)
			dst := make([]uint32, n+8)
			for i := range dst {
				dst[i] = 0xdeadbeef
			}
			roundF32(dst[:n], src)
			if !sameBits(src, src0) {
				t.Fatalf("n=%d: roundF32 modified its input", n)
			}
			for i, v := range src {
				if want := uint32(F32ToBF16(v)) << 16; dst[i] != want {
					t.Fatalf("n=%d: round(%#08x) = %#08x, want %#08x", n, math.Float32bits(v), dst[i], want)
				}
			}
			for i := n; i < len(dst); i++ {
				if dst[i] != 0xdeadbeef {
					t.Fatalf("n=%d: wrote past the output at %d", n, i)
				}
			}
		}
	})
}
