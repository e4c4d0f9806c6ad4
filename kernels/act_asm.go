//go:build (amd64 || arm64) && !purego

package kernels

// actKern names an assembly kernel set; siluMulAsm, siluMulBwdAsm and
// expSumAsm (per architecture) call it directly, so that escape analysis
// sees the //go:noescape declarations and the tail buffers below stay on
// the stack (a call through a func value would move them to the heap).
type actKern uint8

const (
	actZ actKern = iota // AVX-512
	actY                // AVX2+FMA
	actN                // NEON
)

// siluMulVec, siluMulBackwardVec and expSumVec run an assembly kernel on the
// largest multiple of lanes (at most 16) elements and the remaining tail
// through the same kernel on a padded copy, so every element gets the same
// bits whatever its position.
func siluMulVec(k actKern, lanes int, out, gate, up []float32) {
	n := len(out) / lanes * lanes
	if n > 0 {
		siluMulAsm(k, &out[0], &gate[0], &up[0], n)
	}
	if r := len(out) - n; r > 0 {
		var ob, gb, ub [16]float32
		copy(gb[:], gate[n:])
		copy(ub[:], up[n:])
		siluMulAsm(k, &ob[0], &gb[0], &ub[0], lanes)
		copy(out[n:], ob[:r])
	}
}

func siluMulBackwardVec(k actKern, lanes int, dgate, dup, dy, gate, up []float32) {
	n := len(gate) / lanes * lanes
	if n > 0 {
		siluMulBwdAsm(k, &dgate[0], &dup[0], &dy[0], &gate[0], &up[0], n)
	}
	if r := len(gate) - n; r > 0 {
		var dgb, dub, dyb, gb, ub [16]float32
		copy(dyb[:], dy[n:])
		copy(gb[:], gate[n:])
		copy(ub[:], up[n:])
		siluMulBwdAsm(k, &dgb[0], &dub[0], &dyb[0], &gb[0], &ub[0], lanes)
		copy(dgate[n:], dgb[:r])
		copy(dup[n:], dub[:r])
	}
}

func expSumVec(k actKern, lanes int, x []float32, shift float32) float32 {
	n := len(x) / lanes * lanes
	var s float32
	if n > 0 {
		s = expSumAsm(k, &x[0], n, shift)
	}
	if r := len(x) - n; r > 0 {
		var xb [16]float32
		copy(xb[:], x[n:])
		expSumAsm(k, &xb[0], lanes, shift)
		for i, v := range xb[:r] {
			x[n+i] = v
			s += v
		}
	}
	return s
}

// vecAct is the activation set of an assembly kernel set with its lanes.
func vecAct(k actKern, lanes int) actSet {
	return actSet{
		siluMul: func(out, gate, up []float32) { siluMulVec(k, lanes, out, gate, up) },
		siluMulBackward: func(dgate, dup, dy, gate, up []float32) {
			siluMulBackwardVec(k, lanes, dgate, dup, dy, gate, up)
		},
		expSum: func(x []float32, shift float32) float32 { return expSumVec(k, lanes, x, shift) },
	}
}
