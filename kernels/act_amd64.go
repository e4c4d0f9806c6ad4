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

func siluMulAsm(k actKern, out, gate, up *float32, n int) {
	if k == actZ {
		siluMulZ(out, gate, up, n)
	} else {
		siluMulY(out, gate, up, n)
	}
}

func siluMulBwdAsm(k actKern, dgate, dup, dy, gate, up *float32, n int) {
	if k == actZ {
		siluMulBwdZ(dgate, dup, dy, gate, up, n)
	} else {
		siluMulBwdY(dgate, dup, dy, gate, up, n)
	}
}

func expSumAsm(k actKern, x *float32, n int, shift float32) float32 {
	if k == actZ {
		return expSumZ(x, n, shift)
	}
	return expSumY(x, n, shift)
}
