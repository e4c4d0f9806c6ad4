//go:build !purego

package kernels

// Assembly in act_amd64.s: n > 0 and a multiple of 16 (Z) or 8 (Y).

//go:noescape
func siluMulZ(out, gate, up *float32, n int)

//go:noescape
func siluMulBwdZ(dgate, dup, dy, gate, up *float32, n int)

//go:noescape
func expSumZ(x *float32, n int, shift float32) float32

//go:noescape
func siluMulY(out, gate, up *float32, n int)

//go:noescape
func siluMulBwdY(dgate, dup, dy, gate, up *float32, n int)

//go:noescape
func expSumY(x *float32, n int, shift float32) float32

// installActArch installs the AVX-512 (16 lanes, VSCALEFPS) or AVX2+FMA
// (8 lanes) kernels; the generic path keeps the Go ones.
func installActArch(name string) {
	switch name {
	case "avx512":
		siluMul = func(out, gate, up []float32) { siluMulVec(siluMulZ, 16, out, gate, up) }
		siluMulBackward = func(dgate, dup, dy, gate, up []float32) {
			siluMulBackwardVec(siluMulBwdZ, 16, dgate, dup, dy, gate, up)
		}
		expSum = func(x []float32, shift float32) float32 { return expSumVec(expSumZ, 16, x, shift) }
	case "avx2":
		siluMul = func(out, gate, up []float32) { siluMulVec(siluMulY, 8, out, gate, up) }
		siluMulBackward = func(dgate, dup, dy, gate, up []float32) {
			siluMulBackwardVec(siluMulBwdY, 8, dgate, dup, dy, gate, up)
		}
		expSum = func(x []float32, shift float32) float32 { return expSumVec(expSumY, 8, x, shift) }
	}
}
