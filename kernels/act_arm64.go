//go:build !purego

package kernels

// Assembly in act_arm64.s: n > 0 and a multiple of 4.

//go:noescape
func siluMulN(out, gate, up *float32, n int)

//go:noescape
func siluMulBwdN(dgate, dup, dy, gate, up *float32, n int)

//go:noescape
func expSumN(x *float32, n int, shift float32) float32

func siluMulAsm(_ actKern, out, gate, up *float32, n int) { siluMulN(out, gate, up, n) }

func siluMulBwdAsm(_ actKern, dgate, dup, dy, gate, up *float32, n int) {
	siluMulBwdN(dgate, dup, dy, gate, up, n)
}

func expSumAsm(_ actKern, x *float32, n int, shift float32) float32 { return expSumN(x, n, shift) }

// installActArch installs the NEON kernels (4 lanes) on the neon path; the
// generic path keeps the Go ones.
func installActArch(name string) {
	if name != "neon" {
		return
	}
	siluMul = func(out, gate, up []float32) { siluMulVec(actN, 4, out, gate, up) }
	siluMulBackward = func(dgate, dup, dy, gate, up []float32) {
		siluMulBackwardVec(actN, 4, dgate, dup, dy, gate, up)
	}
	expSum = func(x []float32, shift float32) float32 { return expSumVec(actN, 4, x, shift) }
}
