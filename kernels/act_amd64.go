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

// installActArch installs the AVX-512 (16 lanes, VSCALEFPS) or AVX2+FMA
// (8 lanes) kernels; the generic path keeps the Go ones.
func installActArch(name string) {
	k, lanes := actZ, 16
	switch name {
	case "avx512":
	case "avx2":
		k, lanes = actY, 8
	default:
		return
	}
	siluMul = func(out, gate, up []float32) { siluMulVec(k, lanes, out, gate, up) }
	siluMulBackward = func(dgate, dup, dy, gate, up []float32) {
		siluMulBackwardVec(k, lanes, dgate, dup, dy, gate, up)
	}
	expSum = func(x []float32, shift float32) float32 { return expSumVec(k, lanes, x, shift) }
}
