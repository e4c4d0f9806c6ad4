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
