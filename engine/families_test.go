package engine

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tli-project/tli/internal/peer"
)

// layerNormRef is torch.nn.LayerNorm of one row in float64: the output,
// the mean and the reciprocal standard deviation.
func layerNormRef(x, w, b []float64, eps float64) (out []float64, mu, r float64) {
	d := float64(len(x))
	for _, v := range x {
		mu += v
	}
	mu /= d
	var vr float64
	for _, v := range x {
		vr += (v - mu) * (v - mu)
	}
	r = 1 / math.Sqrt(vr/d+eps)
	out = make([]float64, len(x))
	for i, v := range x {
		out[i] = (v - mu) * r * w[i]
		if b != nil {
			out[i] += b[i]
		}
	}
	return out, mu, r
}

// layerNormGradRef is dx of Σ dy·LayerNorm(x) for one row in float64, and
// the size of its terms for the tolerance.
func layerNormGradRef(dy, x, w []float64, eps float64) (dx, size []float64) {
	_, mu, r := layerNormRef(x, w, nil, eps)
	d := float64(len(x))
	var mg, mgx, ag, agx float64
	for i, v := range x {
		g, xh := w[i]*dy[i], (v-mu)*r
		mg += g / d
		mgx += g * xh / d
		ag += math.Abs(g) / d
		agx += math.Abs(g*xh) / d
	}
	dx, size = make([]float64, len(x)), make([]float64, len(x))
	for i, v := range x {
		g, xh := w[i]*dy[i], (v-mu)*r
		dx[i] = r * (g - mg - xh*mgx)
		size[i] = r * (math.Abs(g) + ag + math.Abs(xh)*agx)
	}
	return dx, size
}

// TestLayerNorm checks LayerNorm (with and without bias, saved statistics
// or not, in place) against float64, on rows of one element, constant rows
// (only eps keeps them finite) and rows far from zero mean.
func TestLayerNorm(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	const eps = 1e-5
	for _, c := range []struct {
		T, d   int
		center float64
		bias   bool
	}{{1, 1, 0, true}, {3, 7, 0, false}, {4, 64, 5, true}, {7, 333, -40, true}, {2, 16, 0, true}} {
		name := fmt.Sprintf("T=%d d=%d center=%v bias=%v", c.T, c.d, c.center, c.bias)
		x := randGuarded(r, c.T*c.d, 1.5)
		for i := range x.s() {
			x.s()[i] += float32(c.center)
		}
		if c.T == 2 { // a constant row
			for i := 0; i < c.d; i++ {
				x.s()[i] = 3.25
			}
		}
		w := randGuarded(r, c.d, 1)
		var b *guardedBuf
		var bs []float32
		if c.bias {
			b = randGuarded(r, c.d, 1)
			bs = b.s()
		}
		out, mean, rstd := newGuarded(c.T*c.d, garbage), newGuarded(c.T, garbage), newGuarded(c.T, garbage)
		LayerNorm(out.s(), x.s(), w.s(), bs, c.T, c.d, eps, mean.s(), rstd.s())
		for _, g := range []*guardedBuf{x, w, out, mean, rstd} {
			g.check(t, name)
		}
		if b != nil {
			b.check(t, name)
		}
		for tt := 0; tt < c.T; tt++ {
			xr := f64s(x.s()[tt*c.d : (tt+1)*c.d])
			var b64 []float64
			if c.bias {
				b64 = f64s(bs)
			}
			want, mu, rs := layerNormRef(xr, f64s(w.s()), b64, eps)
			near(t, name+" mean", tt, mean.s()[tt], mu, 0x1p-24*math.Abs(mu))
			near(t, name+" rstd", tt, rstd.s()[tt], rs, 4*0x1p-24*rs)
			for i, wv := range want {
				size := (math.Abs(xr[i]-mu) + math.Abs(mu)) * rs * math.Abs(float64(w.s()[i]))
				if c.bias {
					size += math.Abs(b64[i])
				}
				near(t, name+" out", tt*c.d+i, out.s()[tt*c.d+i], wv, 2e-6*size)
			}
		}
		// In place, and without statistics: the same bits.
		inPlace := newGuarded(c.T*c.d, 0)
		copy(inPlace.s(), x.s())
		LayerNorm(inPlace.s(), inPlace.s(), w.s(), bs, c.T, c.d, eps, nil, nil)
		inPlace.check(t, name+" in place")
		for i, v := range inPlace.s() {
			if math.Float32bits(v) != math.Float32bits(out.s()[i]) {
				t.Fatalf("%s: in place [%d] = %v, want %v", name, i, v, out.s()[i])
			}
		}
	}
}

// TestLayerNormBackward checks LayerNormBackward, overwriting and
// accumulating, against the float64 gradient, itself checked against
// central differences of the float64 forward.
func TestLayerNormBackward(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	const eps = 1e-5
	for _, c := range []struct {
		T, d   int
		center float64
	}{{2, 1, 0}, {3, 5, 0}, {4, 64, 3}, {5, 257, -20}} {
		name := fmt.Sprintf("T=%d d=%d center=%v", c.T, c.d, c.center)
		x := randGuarded(r, c.T*c.d, 1.5)
		for i := range x.s() {
			x.s()[i] += float32(c.center)
		}
		w, dy := randGuarded(r, c.d, 1), randGuarded(r, c.T*c.d, 1)
		mean, rstd := make([]float32, c.T), make([]float32, c.T)
		LayerNorm(make([]float32, c.T*c.d), x.s(), w.s(), nil, c.T, c.d, eps, mean, rstd)
		dx := newGuarded(c.T*c.d, garbage)
		LayerNormBackward(dx.s(), dy.s(), x.s(), w.s(), mean, rstd, c.T, c.d, false)
		acc := randGuarded(r, c.T*c.d, 1)
		prev := append([]float32(nil), acc.s()...)
		LayerNormBackward(acc.s(), dy.s(), x.s(), w.s(), mean, rstd, c.T, c.d, true)
		for _, g := range []*guardedBuf{x, w, dy, dx, acc} {
			g.check(t, name)
		}
		for tt := 0; tt < c.T; tt++ {
			lo, hi := tt*c.d, (tt+1)*c.d
			xr, dyr, w64 := f64s(x.s()[lo:hi]), f64s(dy.s()[lo:hi]), f64s(w.s())
			want, size := layerNormGradRef(dyr, xr, w64, eps)
			if c.d <= 64 {
				checkLayerNormFD(t, name, xr, dyr, w64, eps, want, size)
			}
			for i := range want {
				near(t, name+" dx", lo+i, dx.s()[lo+i], want[i], 4e-6*size[i])
				near(t, name+" dx acc", lo+i, acc.s()[lo+i], float64(prev[lo+i])+want[i], 4e-6*size[i]+0x1p-23*math.Abs(float64(prev[lo+i])))
			}
		}
	}
}

// checkLayerNormFD checks the float64 gradient of one row against central
// differences of Σ dy·LayerNorm(x).
func checkLayerNormFD(t *testing.T, name string, x, dy, w []float64, eps float64, want, size []float64) {
	t.Helper()
	loss := func(x []float64) float64 {
		out, _, _ := layerNormRef(x, w, nil, eps)
		var s float64
		for i, v := range out {
			s += dy[i] * v
		}
		return s
	}
	xp := append([]float64(nil), x...)
	for i := range x {
		h := 1e-6 * (1 + math.Abs(x[i]))
		xp[i] = x[i] + h
		up := loss(xp)
		xp[i] = x[i] - h
		down := loss(xp)
		xp[i] = x[i]
		if fd := (up - down) / (2 * h); math.Abs(fd-want[i]) > 1e-6*(size[i]+1) {
			t.Fatalf("%s: float64 reference dx[%d] = %v, central difference %v", name, i, want[i], fd)
		}
	}
}

// TestAddBias checks AddBias bit for bit against the float32 sums.
func TestAddBias(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	for _, c := range [][2]int{{1, 1}, {5, 9}, {33, 70}} {
		T, d := c[0], c[1]
		x, b := randGuarded(r, T*d, 1), randGuarded(r, d, 1)
		want := make([]float32, T*d)
		for i, v := range x.s() {
			want[i] = v + b.s()[i%d]
		}
		AddBias(x.s(), b.s(), T, d)
		x.check(t, "AddBias x")
		b.check(t, "AddBias b")
		for i, v := range x.s() {
			if v != want[i] {
				t.Fatalf("AddBias T=%d d=%d [%d] = %v, want %v", T, d, i, v, want[i])
			}
		}
	}
}

// geluRef is gelu(x) = 0.5·x·(1 + tanh(u)) in float64 and its derivative;
// below x = −3, where 1 + tanh(u) starts to cancel, both are computed from
// s = e^{2u}/(1 + e^{2u}) = (1 + tanh(u))/2 instead.
func geluRef(x float64) (y, dy float64) {
	c := math.Sqrt(2 / math.Pi)
	u := c * (x + 0.044715*x*x*x)
	th := math.Tanh(u)
	y = 0.5 * x * (1 + th)
	dy = 0.5*(1+th) + 0.5*x*(1-th*th)*c*(1+3*0.044715*x*x)
	if x < -3 {
		e := math.Exp(2 * u)
		s := e / (1 + e) // (1 + tanh(u))/2
		y = x * s
		dy = s + 2*x*s*(1-s)*c*(1+3*0.044715*x*x)
	}
	return y, dy
}

// geluInputs are the test inputs of the GELU ops: a grid over [−12, 12],
// normals, and a few extremes.
func geluInputs(r *rand.Rand) []float32 {
	var xs []float32
	for i := -1200; i <= 1200; i++ {
		xs = append(xs, float32(i)/100)
	}
	for i := 0; i < 3000; i++ {
		xs = append(xs, float32(r.NormFloat64()*3))
	}
	return append(xs, 0, float32(math.Copysign(0, -1)), 1e-30, -1e-30, 1e-3, -1e-3, 30, -30, 1e10, -1e10, 3e38, -3e38)
}

// denormTol is the absolute tolerance of the GELU ops where a float32
// factor or result is denormal (a few of the smallest denormal's steps).
const denormTol = 0x1p-146

// TestGELUTanh checks GELUTanh (correctly rounded but for the float64
// reference's own error), GELUTanhInPlace (the same bits, across the pool)
// and GELUTanhBackward against float64.
func TestGELUTanh(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	xs := geluInputs(r)
	for i, x := range xs {
		want, _ := geluRef(float64(x))
		near(t, "GELUTanh", i, GELUTanh(x), want, 0x1p-24*math.Abs(want)*1.001+denormTol)
	}
	// A slice long enough to be split across the pool.
	n := 3<<14 + 5
	x := newGuarded(n, 0)
	for i := range x.s() {
		x.s()[i] = xs[i%len(xs)]
	}
	y := newGuarded(n, 0)
	copy(y.s(), x.s())
	GELUTanhInPlace(y.s())
	y.check(t, "GELUTanhInPlace")
	for i, v := range y.s() {
		if w := GELUTanh(x.s()[i]); math.Float32bits(v) != math.Float32bits(w) {
			t.Fatalf("GELUTanhInPlace[%d] = %v, want %v", i, v, w)
		}
	}
	dy := randGuarded(r, n, 1)
	dx := newGuarded(n, garbage)
	GELUTanhBackward(dx.s(), dy.s(), x.s())
	inPlace := newGuarded(n, 0)
	copy(inPlace.s(), dy.s())
	GELUTanhBackward(inPlace.s(), inPlace.s(), x.s())
	for _, g := range []*guardedBuf{x, dy, dx, inPlace} {
		g.check(t, "GELUTanhBackward")
	}
	for i, xv := range x.s() {
		xf := float64(xv)
		_, d := geluRef(xf)
		want := float64(dy.s()[i]) * d
		if math.Abs(xf) < 8 {
			// The float64 derivative against a central difference.
			h := 1e-6
			up, _ := geluRef(xf + h)
			down, _ := geluRef(xf - h)
			if fd := (up - down) / (2 * h); math.Abs(fd-d) > 1e-8 {
				t.Fatalf("float64 gelu'(%v) = %v, central difference %v", xf, d, fd)
			}
		}
		near(t, "GELUTanhBackward", i, dx.s()[i], want, 0x1p-22*math.Abs(want)+denormTol)
		if inPlace.s()[i] != dx.s()[i] {
			t.Fatalf("GELUTanhBackward in place [%d] = %v, want %v", i, inPlace.s()[i], dx.s()[i])
		}
	}
}

// TestGELUTanhMul checks the gated GELU of Gemma's MLP and its backward
// against float64, with guards, and in place.
func TestGELUTanhMul(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 20))
	xs := geluInputs(r)
	xs = xs[:len(xs)-2] // ±3e38 times up overflows
	n := 3<<14 + 7
	gate, up, dy := newGuarded(n, 0), randGuarded(r, n, 1), randGuarded(r, n, 1)
	for i := range gate.s() {
		gate.s()[i] = xs[(i*7)%len(xs)]
	}
	out, dg, du := newGuarded(n, garbage), newGuarded(n, garbage), newGuarded(n, garbage)
	GELUTanhMul(out.s(), gate.s(), up.s())
	GELUTanhMulBackward(dg.s(), du.s(), dy.s(), gate.s(), up.s())
	for _, g := range []*guardedBuf{gate, up, dy, out, dg, du} {
		g.check(t, "GELUTanhMul")
	}
	for i, gv := range gate.s() {
		y, d := geluRef(float64(gv))
		u, gy := float64(up.s()[i]), float64(dy.s()[i])
		near(t, "GELUTanhMul", i, out.s()[i], y*u, 0x1p-23*math.Abs(y*u)+denormTol)
		near(t, "GELUTanhMulBackward dup", i, du.s()[i], gy*y, 0x1p-23*math.Abs(gy*y)+denormTol)
		near(t, "GELUTanhMulBackward dgate", i, dg.s()[i], gy*u*d, 0x1p-22*math.Abs(gy*u*d)+denormTol)
	}
	// In place: out over gate; dgate over gate and dup over up.
	g2, u2 := append([]float32(nil), gate.s()...), append([]float32(nil), up.s()...)
	GELUTanhMul(g2, g2, up.s())
	GELUTanhMulBackward(u2, u2, dy.s(), gate.s(), u2) // dgate aliases up, then dup overwrites it
	for i := range g2 {
		if g2[i] != out.s()[i] || u2[i] != du.s()[i] {
			t.Fatalf("in place [%d]: %v %v, want %v %v", i, g2[i], u2[i], out.s()[i], du.s()[i])
		}
	}
}

// alibiExact is base^p rounded once to float32, from the exact power of
// the float32 base.
func alibiExact(base float32, p int) float32 {
	b := new(big.Float).SetPrec(8192).SetFloat64(float64(base))
	x := new(big.Float).SetPrec(8192).SetInt64(1)
	for i := 0; i < p; i++ {
		x.Mul(x, b)
	}
	f, _ := x.Float32()
	return f
}

// checkSlopes compares ALiBiSlopes(n) with PyTorch's slopes: they agree
// but where torch.pow is not correctly rounded; there they may differ by
// one ulp (ALiBiSlopes is checked against the exact powers elsewhere). It
// returns the number of such entries.
func checkSlopes(t *testing.T, n int, torch []uint32) int {
	t.Helper()
	got := ALiBiSlopes(n)
	if len(got) != len(torch) {
		t.Fatalf("ALiBiSlopes(%d) has %d slopes, PyTorch %d", n, len(got), len(torch))
	}
	off := 0
	for h, g := range got {
		if d := int64(math.Float32bits(g)) - int64(torch[h]); d != 0 {
			if d != 1 && d != -1 {
				t.Fatalf("ALiBiSlopes(%d)[%d] = %#08x, PyTorch %#08x", n, h, math.Float32bits(g), torch[h])
			}
			off++
		}
	}
	return off
}

// TestALiBiSlopes checks that ALiBiSlopes gives the correctly rounded
// powers of build_alibi_tensor's float32 bases for 1..130 heads, and
// compares it with PyTorch's values in testdata/alibi_slopes.txt.
func TestALiBiSlopes(t *testing.T) {
	for n := 1; n <= 130; n++ {
		got := ALiBiSlopes(n)
		p2 := 1
		for p2*2 <= n {
			p2 *= 2
		}
		base := float32(math.Pow(2, -8/float64(p2)))
		extra := float32(math.Pow(2, -4/float64(p2)))
		for h, g := range got {
			want := alibiExact(base, h+1)
			if h >= p2 {
				want = alibiExact(extra, 2*(h-p2)+1)
			}
			if g != want {
				t.Fatalf("ALiBiSlopes(%d)[%d] = %v, want %v", n, h, g, want)
			}
		}
		if len(got) != n {
			t.Fatalf("ALiBiSlopes(%d) has %d slopes", n, len(got))
		}
	}
	if ALiBiSlopes(8)[0] != 0.5 || ALiBiSlopes(1)[0] != 1.0/256 {
		t.Fatalf("ALiBiSlopes(8)[0] = %v, ALiBiSlopes(1)[0] = %v", ALiBiSlopes(8)[0], ALiBiSlopes(1)[0])
	}
	f, err := os.Open(filepath.Join("testdata", "alibi_slopes.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	lines, off := 0, 0
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		head, rest, ok := strings.Cut(line, ":")
		n, err := strconv.Atoi(head)
		if !ok || err != nil {
			t.Fatalf("testdata/alibi_slopes.txt: bad line %q", line)
		}
		var torch []uint32
		for _, w := range strings.Fields(rest) {
			v, err := strconv.ParseUint(w, 16, 32)
			if err != nil {
				t.Fatalf("testdata/alibi_slopes.txt: %v", err)
			}
			torch = append(torch, uint32(v))
		}
		off += checkSlopes(t, n, torch)
		lines++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if lines != 22 || off != 7 {
		t.Fatalf("testdata/alibi_slopes.txt: %d head counts, %d slopes 1 ulp off; want 22 and 7", lines, off)
	}
}

// torchOps runs testdata/torch_ops.py on the requests reqs (in one
// Python start) and decodes its answers into outs, skipping (or failing,
// with TLI_REQUIRE_PEERS=1) without PyTorch.
func torchOps(t *testing.T, reqs []map[string]any, outs ...any) {
	t.Helper()
	py := peer.Torch(t)
	body, err := json.Marshal(reqs)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, filepath.Join("testdata", "torch_ops.py"))
	cmd.Stdin = bytes.NewReader(body)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	res, err := cmd.Output()
	if err != nil {
		t.Fatalf("torch_ops.py: %v\n%s", err, stderr.Bytes())
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(res, &raw); err != nil || len(raw) != len(outs) {
		t.Fatalf("torch_ops.py: %d answers for %d requests (%v)", len(raw), len(outs), err)
	}
	for i, out := range outs {
		if err := json.Unmarshal(raw[i], out); err != nil {
			t.Fatalf("torch_ops.py %v: %v", reqs[i]["op"], err)
		}
	}
}

// TestFamilyOpsTorch compares ALiBiSlopes, GELUTanh and LayerNorm with
// PyTorch run now (build_alibi_tensor's code, gelu(approximate="tanh"),
// layer_norm), on this machine's PyTorch paths.
func TestFamilyOpsTorch(t *testing.T) {
	heads := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 32, 64, 112}
	r := rand.New(rand.NewPCG(21, 22))
	xs := geluInputs(r)
	xs = xs[:len(xs)-2] // PyTorch's float32 x³ overflows at ±3e38
	const T, d, eps = 3, 50, 1e-5
	x, w, b := randGuarded(r, T*d, 2), randGuarded(r, d, 1), randGuarded(r, d, 1)
	for i := range x.s() {
		x.s()[i] += 7
	}
	var slopes [][]uint32
	var ys, lnBias, lnNoBias []float64
	ln := func(b []float32) map[string]any {
		return map[string]any{"op": "layernorm", "x": x.s(), "w": w.s(), "b": b, "T": T, "d": d, "eps": eps}
	}
	torchOps(t, []map[string]any{
		{"op": "alibi", "heads": heads},
		{"op": "gelu", "x": xs},
		ln(b.s()), ln(nil),
	}, &slopes, &ys, &lnBias, &lnNoBias)

	off := 0
	for i, n := range heads {
		off += checkSlopes(t, n, slopes[i])
	}
	t.Logf("ALiBi: %d of PyTorch's slopes are 1 ulp off the correctly rounded ones", off)
	for i, x := range xs {
		// PyTorch computes in float32, and 1 + tanh(u) cancels in the
		// left tail: an absolute tolerance relative to |x|.
		near(t, "GELUTanh vs PyTorch", i, GELUTanh(x), ys[i], 0x1p-20*math.Abs(float64(x))+0x1p-22*math.Abs(ys[i])+1e-45)
	}
	for _, c := range []struct {
		b    []float32
		want []float64
	}{{b.s(), lnBias}, {nil, lnNoBias}} {
		got := make([]float32, T*d)
		LayerNorm(got, x.s(), w.s(), c.b, T, d, eps, nil, nil)
		for i, v := range c.want {
			near(t, fmt.Sprintf("LayerNorm vs PyTorch (bias %v)", c.b != nil), i, got[i], v, 1e-5*(1+math.Abs(v)))
		}
	}
}
