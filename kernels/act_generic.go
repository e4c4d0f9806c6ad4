package kernels

import "math"

// Constants of the float32 exp shared by every path (the assembly loads the
// same bit patterns from expConsts).
const (
	expLo    = -104.0              // below: exp rounds to +0 (exp(−103.97) = 2^−150)
	expHi    = 89.0                // above 88.7228: exp overflows to +Inf
	expLog2e = 1.44269504088896341 // log2(e)
	expC1    = 0.693359375         // ln2, high part: 9 bits, so n·C1 is exact
	expC2    = -2.12194440e-4      // ln2 − C1
	// Cephes expf: exp(r) ≈ 1 + r + r²·(((((P0·r + P1)·r + P2)·r + P3)·r + P4)·r + P5)
	// for |r| ≤ ln2/2, evaluated here in Horner form.
	expP0 = 1.9875691500e-4
	expP1 = 1.3981999507e-3
	expP2 = 8.3334519073e-3
	expP3 = 4.1665795894e-2
	expP4 = 1.6666665459e-1
	expP5 = 5.0000001201e-1
)

// expGeneric is the float32 exp of every path, written out in Go:
//
//	x = clamp(x, −104, 89)            (NaN stays NaN)
//	n = roundeven(x·log2e)
//	r = x − n·C1 − n·C2               (C1 + C2 = ln2, n·C1 exact)
//	y = ((P(r)·r + 1)·r + 1)          (≈ exp(r), |r| ≤ 0.3466)
//	exp(x) = y · 2^⌊n/2⌋ · 2^(n−⌊n/2⌋)
//
// The first scale is exact and the second rounds once, so denormal results
// are correctly rounded from y and results past 88.7228 become +Inf. The
// assembly uses fused multiply-adds; the Go compiler may or may not fuse
// here, which changes the last bit now and then but not the error bound.
func expGeneric(x float32) float32 {
	if x != x {
		return x
	}
	x = min(max(x, expLo), expHi)
	z := x * expLog2e
	n := (z + 12582912) - 12582912 // round to nearest even (|z| < 2^22)
	r := x - n*expC1
	r = r - n*expC2
	p := float32(expP0)
	p = p*r + expP1
	p = p*r + expP2
	p = p*r + expP3
	p = p*r + expP4
	p = p*r + expP5
	p = p*r + 1
	p = p*r + 1
	ni := int32(n)
	n1 := ni >> 1
	n2 := ni - n1
	return p * math.Float32frombits(uint32(n1+127)<<23) * math.Float32frombits(uint32(n2+127)<<23)
}

// sigmoidPair returns σ(g) and 1 − σ(g) without overflow or cancellation:
// with t = exp(−|g|) ∈ [0, 1], they are 1/(1+t) and t/(1+t), swapped for
// g < 0. The swap is a bit select on the sign (a branch would mispredict
// on random signs; for g = −0, t = 1 and both choices agree).
func sigmoidPair(g float32) (s, sc float32) {
	t := expGeneric(-abs32(g))
	d := 1 + t
	m := uint32(int32(math.Float32bits(g)) >> 31)
	tb, ob := math.Float32bits(t), math.Float32bits(1)
	return math.Float32frombits(tb&m|ob&^m) / d, math.Float32frombits(ob&m|tb&^m) / d
}

func abs32(x float32) float32 {
	return math.Float32frombits(math.Float32bits(x) &^ (1 << 31))
}

// maxF32 bounds g where a product with σ(g) or 1 − σ(g) could be ∞·0.
const maxF32 = math.MaxFloat32

func siluMulGeneric(out, gate, up []float32) {
	gate, up = gate[:len(out)], up[:len(out)]
	for i, g := range gate {
		// σ(g) alone: sigmoidPair's first result with one division.
		t := expGeneric(-abs32(g))
		m := uint32(int32(math.Float32bits(g)) >> 31)
		num := math.Float32frombits(math.Float32bits(t)&m | math.Float32bits(1)&^m)
		out[i] = max(g, -maxF32) * (num / (1 + t)) * up[i]
	}
}

func siluMulBackwardGeneric(dgate, dup, dy, gate, up []float32) {
	n := len(gate)
	dgate, dup, dy, up = dgate[:n], dup[:n], dy[:n], up[:n]
	for i, g := range gate {
		s, sc := sigmoidPair(g)
		gl := max(g, -maxF32)
		gc := min(gl, maxF32)
		h := gc*sc + 1
		d := dy[i]
		dup[i] = d * (gl * s)
		dgate[i] = (d * up[i]) * (s * h)
	}
}

func expSumGeneric(x []float32, shift float32) float32 {
	var s float32
	for i, v := range x {
		e := expGeneric(v - shift)
		x[i] = e
		s += e
	}
	return s
}
