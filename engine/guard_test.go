package engine

import (
	"math"
	"math/rand/v2"
	"testing"
)

// Guarded buffers, as gonum's tests use them: every slice an op reads or
// writes lies inside a larger buffer whose guardLen elements before and
// after hold guardVal, a NaN no op produces. Ops must leave the guards
// alone (a write past either end changes them; a read past either end
// turns a result into NaN).

const guardLen = 7

var guardVal = math.Float32frombits(0x7fc0_1e57)

// guardedBuf is a slice with guards around it.
type guardedBuf struct {
	all []float32 // guards, then the slice, then guards
	n   int
}

// newGuarded returns a guarded buffer of n elements, all set to fill.
func newGuarded(n int, fill float32) *guardedBuf {
	g := &guardedBuf{all: make([]float32, n+2*guardLen), n: n}
	for i := range g.all {
		g.all[i] = guardVal
	}
	for i := range g.s() {
		g.s()[i] = fill
	}
	return g
}

// s is the guarded slice (its capacity reaches into the trailing guards,
// as a slice of a larger array would).
func (g *guardedBuf) s() []float32 { return g.all[guardLen : guardLen+g.n] }

// check fails the test when a guard changed.
func (g *guardedBuf) check(t *testing.T, name string) {
	t.Helper()
	for i := 0; i < guardLen; i++ {
		if a, b := g.all[i], g.all[guardLen+g.n+i]; math.Float32bits(a) != math.Float32bits(guardVal) || math.Float32bits(b) != math.Float32bits(guardVal) {
			t.Fatalf("%s: guard %d changed: before %v, after %v", name, i, a, b)
		}
	}
}

// randGuarded returns a guarded buffer of n normal values times amp.
func randGuarded(r *rand.Rand, n int, amp float64) *guardedBuf {
	g := newGuarded(n, 0)
	for i := range g.s() {
		g.s()[i] = float32(r.NormFloat64() * amp)
	}
	return g
}

// garbage is what output buffers hold before an op that overwrites them.
const garbage = float32(-3.75e29)

// f64s widens a float32 slice.
func f64s(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

// near fails the test unless |got − want| ≤ tol.
func near(t *testing.T, name string, i int, got float32, want, tol float64) {
	t.Helper()
	if d := math.Abs(float64(got) - want); !(d <= tol) {
		t.Fatalf("%s[%d] = %v, want %v (error %.3g > tolerance %.3g)", name, i, got, want, d, tol)
	}
}
