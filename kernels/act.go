package kernels

// Exp-based element-wise kernels: the SwiGLU activation of Llama's MLP, its
// backward, and the exponentials of a softmax row. All paths compute the
// same float32 algorithm (see expGeneric): Cody–Waite range reduction
// x = n·ln2 + r with |r| ≤ ln2/2, a degree-7 polynomial (Cephes expf
// coefficients) for exp(r), and a scale by 2^n done in two exactly
// representable halves so that overflow gives +Inf and gradual underflow
// gives correctly rounded denormals. exp is within 2 ulp of the exact value
// over the whole float32 range (the tests check every path against float64).

// actSet is one path's activation kernels (simd.act); install makes them
// the current ones.
type actSet struct {
	siluMul         func(out, gate, up []float32)
	siluMulBackward func(dgate, dup, dy, gate, up []float32)
	expSum          func(x []float32, shift float32) float32
}

// genericAct is the pure-Go set, used by the generic path.
var genericAct = actSet{siluMulGeneric, siluMulBackwardGeneric, expSumGeneric}

// Function values of the current path; install replaces them.
var (
	siluMul         = siluMulGeneric
	siluMulBackward = siluMulBackwardGeneric
	expSum          = expSumGeneric
)

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
