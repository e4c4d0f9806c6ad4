package engine

import (
	"math"
	"testing"

	"github.com/tli-project/tli/kernels"
)

// TestRounders checks roundF16 and roundBF16 against the kernels' bit
// conversions on a stride through every float32 bit pattern and around the
// edges (f16 subnormals, the overflow threshold, halfway cases).
func TestRounders(t *testing.T) {
	check := func(u uint32) {
		v := math.Float32frombits(u)
		for _, c := range []struct {
			name string
			got  float32
			want float32
		}{
			{"f16", roundF16(v), kernels.F16ToF32(kernels.F32ToF16(v))},
			{"bf16", roundBF16(v), kernels.BF16ToF32(kernels.F32ToBF16(v))},
		} {
			g, w := math.Float32bits(c.got), math.Float32bits(c.want)
			if g != w && !(c.got != c.got && c.want != c.want) {
				t.Fatalf("%s(%v = %#08x) = %v (%#08x), want %v (%#08x)", c.name, v, u, c.got, g, c.want, w)
			}
		}
	}
	for u := uint64(0); u < 1<<32; u += 4093 {
		check(uint32(u))
	}
	for _, base := range []uint32{0x38800000, 0x33000000, 0x477ff000, 0x477fe000, 0x3f800000, 0x00000001} {
		for d := uint32(0); d < 1<<14; d++ {
			check(base + d - 1<<13)
			check((base + d - 1<<13) | 0x80000000)
		}
	}
}
