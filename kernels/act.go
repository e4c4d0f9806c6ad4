package kernels

// Exp-based element-wise kernels: the SwiGLU activation of Llama's MLP, its
// backward, and the exponentials of a softmax row. All paths compute the
// same float32 algorithm (see expGeneric): Cody–Waite range reduction
// x = n·ln2 + r with |r| ≤ ln2/2, a degree-7 polynomial (Cephes expf
// coefficients) for exp(r), and a scale by 2^n done in two exactly
// representable halves so that overflow gives +Inf and gradual underflow
// gives correctly rounded denormals. exp is within 2 ulp of the exact value
// over the whole float32 range (the tests check every path against float64).

// Function values of the current path; installAct replaces them.
var (
	siluMul         = siluMulGeneric
	siluMulBackward = siluMulBackwardGeneric
	expSum          = expSumGeneric
)

// installAct sets the activation helpers (exp-based elementwise kernels) of
// path s. Called by install.
func installAct(s *simd) {
	siluMul, siluMulBackward, expSum = siluMulGeneric, siluMulBackwardGeneric, expSumGeneric
	installActArch(s.name)
}

// SiLUMul computes out[i] = silu(gate[i])·up[i] = gate[i]·σ(gate[i])·up[i],
// the SwiGLU of Llama's MLP, in float32. out may alias gate or up (element
// for element); it panics if the lengths differ.
//
// σ(g) is evaluated as 1/(1+t) for g ≥ 0 and t/(1+t) for g < 0 with
// t = exp(−|g|) ≤ 1, so no intermediate overflows: silu(+Inf) = +Inf,
// silu(−Inf) = −0, silu(−100) is the tiny negative denormal it should be
// and nothing produces Inf/Inf. The result is within about 4 ulp of the
// exact value (plus an absolute 1e-38 where it underflows).
func SiLUMul(out, gate, up []float32) {
	if len(gate) != len(out) || len(up) != len(out) {
		panic("kernels: SiLUMul: slices of different lengths")
	}
	siluMul(out, gate, up)
}

// SiLUMulBackward computes the gradients of out = silu(gate)·up:
// with s = σ(g), dup = dy·g·s and dgate = dy·up·s·(1 + g·(1 − s)). 1 − s is
// computed directly (as t/(1+t) or 1/(1+t)), not by subtraction, so it keeps
// full relative precision for large g. Errors are within about 4 ulp of the
// size of the terms; near g ≈ −1.28, where 1 + g·(1 − s) cancels, the
// relative error of dgate is correspondingly larger. Outputs may alias
// inputs element for element; it panics if the lengths differ.
func SiLUMulBackward(dgate, dup, dy, gate, up []float32) {
	n := len(gate)
	if len(dgate) != n || len(dup) != n || len(dy) != n || len(up) != n {
		panic("kernels: SiLUMulBackward: slices of different lengths")
	}
	siluMulBackward(dgate, dup, dy, gate, up)
}

// ExpSum replaces x[i] by exp(x[i] − shift) (the difference rounded to
// float32 first, as a scalar loop would) and returns the float32 sum of the
// new values, summed in vector lanes. It is the exponential step of a
// softmax row, with shift the row's maximum. Each exp is within 2 ulp;
// arguments below about −103.97 give +0, above 88.72 give +Inf, and NaN
// stays NaN.
func ExpSum(x []float32, shift float32) float32 {
	return expSum(x, shift)
}

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
