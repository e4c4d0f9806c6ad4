package tli

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// readPNG decodes path and counts the pixels of each wanted colour.
func readPNG(t *testing.T, path string, want ...color.RGBA) (image.Rectangle, []int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	counts := make([]int, len(want))
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			for k, c := range want {
				if uint8(r>>8) == c.R && uint8(g>>8) == c.G && uint8(bl>>8) == c.B {
					counts[k]++
				}
			}
		}
	}
	return b, counts
}

func TestPlotLayerBars(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "scan.png")
	layers := []int{0, 1, 2, 3, 4, 5}
	vals := []float64{0.1, 0.3, 0.5, 0.4, 0.2, 0.1}
	if err := PlotLayerBars(path, layers, vals, 2, "gap per layer", "gap"); err != nil {
		t.Fatal(err)
	}
	b, n := readPNG(t, path, colorBest, colorBar)
	if b.Dx() != 768 || b.Dy() != 480 {
		t.Errorf("size %v", b)
	}
	// The highlighted bar (and its legend swatch) is red; the other five grey
	// bars together hold much more area.
	if n[0] < 500 || n[1] < 2*n[0] {
		t.Errorf("best-layer pixels %d, other-bar pixels %d", n[0], n[1])
	}
	if err := PlotLayerBars(path, layers, vals, -1, "no best", "gap"); err != nil {
		t.Fatal(err)
	}
	if _, n := readPNG(t, path, colorBest); n[0] != 0 {
		t.Errorf("best = -1 still highlights %d pixels", n[0])
	}
	if err := PlotLayerBars(path, layers, vals[:2], 0, "", ""); err == nil {
		t.Error("length mismatch accepted")
	}
	// 81 hidden states (an 80-layer model): the plot widens to label every
	// layer, and the last bar, the best, is drawn whole: its red area is
	// that of a middle bar of the same height.
	var many []int
	var mv []float64
	for i := 0; i <= 80; i++ {
		many, mv = append(many, i), append(mv, 0.5)
	}
	if err := PlotLayerBars(path, many, mv, 80, "", "gap"); err != nil {
		t.Fatal(err)
	}
	if b, _ := readPNG(t, path); b.Dx() < 1000 {
		t.Errorf("81 layers: %d px wide, want the plot widened", b.Dx())
	}
	red := map[int]int{}
	for _, best := range []int{2, 5} {
		if err := PlotLayerBars(path, layers, []float64{0.5, 0.5, 0.5, 0.5, 0.5, 0.5}, best, "", "gap"); err != nil {
			t.Fatal(err)
		}
		_, n := readPNG(t, path, colorBest)
		red[best] = n[0]
	}
	if red[5] < red[2]*95/100 {
		t.Errorf("the last bar has %d red pixels, a middle one %d: clipped", red[5], red[2])
	}
	if err := PlotLayerBars(filepath.Join(dir, "x.gif"), layers, vals, 0, "", ""); err == nil || !strings.Contains(err.Error(), "want a .png, .svg or .pdf file") {
		t.Errorf("gif: %v", err)
	}
}

func TestPlotLayerLinesAndHistogram(t *testing.T) {
	dir := t.TempDir()
	var before, after []LayerStats
	for l := range 8 {
		before = append(before, LayerStats{Layer: l, Mean: 0.3 + 0.01*float64(l), MismatchedMean: 0.2})
		after = append(after, LayerStats{Layer: l, Mean: 0.4 + 0.01*float64(l), MismatchedMean: 0.25})
	}
	path := filepath.Join(dir, "lines.png")
	if err := PlotLayerLines(path, before, after, "before/after"); err != nil {
		t.Fatal(err)
	}
	if _, n := readPNG(t, path, colorSwahili, colorEnglish); n[0] < 100 || n[1] < 100 {
		t.Errorf("line pixels %v", n)
	}
	if err := PlotLayerLines(path, before, nil, "scan"); err != nil {
		t.Fatal(err)
	}
	if _, n := readPNG(t, path, colorSwahili, colorEnglish); n[0] < 100 || n[1] != 0 {
		t.Errorf("before-only line pixels %v", n)
	}
	after[3].Layer = 9
	if err := PlotLayerLines(path, before, after, ""); err == nil || !strings.Contains(err.Error(), "entry 3") {
		t.Errorf("layer mismatch: %v", err)
	}

	rng := rand.New(rand.NewPCG(1, 1))
	ch := make([]float64, 600)
	for i := range ch {
		ch[i] = 0.09 + 0.03*rng.NormFloat64()
	}
	hp := filepath.Join(dir, "hist.png")
	if err := PlotHistogram(hp, ch, 0, "change"); err != nil {
		t.Fatal(err)
	}
	if _, n := readPNG(t, hp, colorSwahili, colorBest); n[0] < 5000 || n[1] < 50 {
		t.Errorf("histogram pixels %v", n)
	}
	if err := PlotHistogram(hp, nil, 0, ""); err == nil {
		t.Error("empty histogram accepted")
	}
}

func TestPCA2(t *testing.T) {
	// Points a*u + b*v + c in 5-D with orthonormal u, v: the principal
	// coordinates are the centred (a, b) up to sign, and the variance
	// fractions are var(a)/(var(a)+var(b)) and var(b)/(...).
	u := []float64{0.6, 0.8, 0, 0, 0}
	v := []float64{0, 0, 0, 0.6, -0.8}
	c := []float64{1, 2, 3, 4, 5}
	// Uncorrelated coordinates (Σ a_i b_i = 0, both centred).
	as := []float64{-3, -1, 1, 3, 0, 0}
	bs := []float64{0, 0, 0, 0, 1, -1}
	var x [][]float64
	for i := range as {
		r := make([]float64, 5)
		for k := range r {
			r[k] = as[i]*u[k] + bs[i]*v[k] + c[k]
		}
		x = append(x, r)
	}
	y, frac, err := PCA2(x)
	if err != nil {
		t.Fatal(err)
	}
	ma, mb := Mean(as), Mean(bs)
	sa, sb := math.Copysign(1, y[0][0]*(as[0]-ma)), math.Copysign(1, y[4][1]*(bs[4]-mb))
	for i := range as {
		if math.Abs(y[i][0]-sa*(as[i]-ma)) > 1e-12 || math.Abs(y[i][1]-sb*(bs[i]-mb)) > 1e-12 {
			t.Errorf("point %d: %v, want ±(%v, %v)", i, y[i], as[i]-ma, bs[i]-mb)
		}
	}
	va, vb := StdSample(as)*StdSample(as), StdSample(bs)*StdSample(bs)
	if math.Abs(frac[0]-va/(va+vb)) > 1e-12 || math.Abs(frac[1]-vb/(va+vb)) > 1e-12 {
		t.Errorf("variance fractions %v, want %v %v", frac, va/(va+vb), vb/(va+vb))
	}
	// The same points embedded in 40 dimensions (more dimensions than
	// points) take the Gram-matrix path and must give the same answer.
	wide := make([][]float64, len(x))
	for i, r := range x {
		wide[i] = append(append([]float64(nil), r...), make([]float64, 35)...) // zero padding
	}
	rot := func(r []float64) []float64 { // a fixed orthogonal map: swap and Givens-rotate pairs
		out := make([]float64, len(r))
		for k := 0; k+1 < len(r); k += 2 {
			out[k] = 0.8*r[k] - 0.6*r[k+1]
			out[k+1] = 0.6*r[k] + 0.8*r[k+1]
		}
		return out
	}
	for i := range wide {
		wide[i] = rot(wide[i])
	}
	yw, fw, err := PCA2(wide)
	if err != nil {
		t.Fatal(err)
	}
	for i := range as {
		for c := range 2 {
			if math.Abs(math.Abs(yw[i][c])-math.Abs(y[i][c])) > 1e-10 {
				t.Errorf("wide point %d: %v, want ±%v", i, yw[i], y[i])
			}
		}
	}
	if math.Abs(fw[0]-frac[0]) > 1e-12 || math.Abs(fw[1]-frac[1]) > 1e-12 {
		t.Errorf("wide variance fractions %v, want %v", fw, frac)
	}
}

// clusters returns k Gaussian clusters of m points in dim dimensions,
// centres 10 apart, and each point's cluster.
func clusters(k, m, dim int, seed uint64) ([][]float64, []int) {
	rng := rand.New(rand.NewPCG(seed, 9))
	var x [][]float64
	var lab []int
	for c := range k {
		for range m {
			r := make([]float64, dim)
			for j := range r {
				r[j] = rng.NormFloat64()
			}
			r[c] += 10
			x = append(x, r)
			lab = append(lab, c)
		}
	}
	return x, lab
}

func TestTSNEConditionalPerplexity(t *testing.T) {
	x, _ := clusters(3, 15, 6, 2)
	d2, err := squaredDistances(x)
	if err != nil {
		t.Fatal(err)
	}
	n := len(x)
	for _, perp := range []float64{5, 10} {
		cond := tsneConditional(d2, n, perp)
		for i := range n {
			var h, s float64
			for j := range n {
				if p := cond[i*n+j]; p > 0 {
					h -= p * math.Log(p)
					s += p
				}
			}
			if math.Abs(s-1) > 1e-12 || math.Abs(math.Exp(h)-perp) > 1e-4 {
				t.Fatalf("perplexity %v row %d: sum %v perplexity %v", perp, i, s, math.Exp(h))
			}
		}
	}
	p := tsneAffinities(d2, n, 10)
	var total float64
	for i := range n {
		for j := range n {
			total += p[i*n+j]
			if p[i*n+j] != p[j*n+i] {
				t.Fatalf("P not symmetric at %d,%d", i, j)
			}
		}
	}
	if math.Abs(total-1) > 1e-8 { // the 1e-12 floor adds up to n²·1e-12
		t.Errorf("P sums to %v", total)
	}
}

func TestTSNESeparatesClusters(t *testing.T) {
	x, lab := clusters(3, 20, 10, 3)
	y, err := TSNE(x, TSNEOptions{Iterations: 400})
	if err != nil {
		t.Fatal(err)
	}
	// Every point's nearest neighbour in the map is in its own cluster, and
	// clusters are further apart than their spread.
	for i := range y {
		best, bj := math.Inf(1), -1
		for j := range y {
			if d := math.Hypot(y[i][0]-y[j][0], y[i][1]-y[j][1]); j != i && d < best {
				best, bj = d, j
			}
		}
		if lab[bj] != lab[i] {
			t.Errorf("point %d (cluster %d): nearest neighbour %d is in cluster %d", i, lab[i], bj, lab[bj])
		}
	}
	y2, _ := TSNE(x, TSNEOptions{Iterations: 400})
	for i := range y {
		if y[i] != y2[i] {
			t.Fatalf("not deterministic at point %d: %v vs %v", i, y[i], y2[i])
		}
	}
	if _, err := TSNE(x[:3], TSNEOptions{}); err == nil {
		t.Error("3 points accepted")
	}
}

func TestPlotPairMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	n, dim := 30, 12
	src := randRows(rng, n, dim)
	tgt := make([][]float32, n)
	for i := range tgt {
		v := make([]float32, dim)
		for k := range v {
			v[k] = src[i][k] + 0.2*float32(rng.NormFloat64())
		}
		tgt[i] = L2Normalize(v)
	}
	pairs := make([]Pair, n)
	for i := range pairs {
		pairs[i] = Pair{Source: "sw" + string(rune('a'+i%26)), Target: "en" + string(rune('a'+i%26))}
	}
	dir := t.TempDir()
	for _, m := range []string{"pca", "tsne"} {
		path := filepath.Join(dir, m+".png")
		if err := PlotPairMap(path, src, tgt, pairs, m, 10, "map "+m); err != nil {
			t.Fatal(err)
		}
		b, cnt := readPNG(t, path, colorSwahili, colorEnglish, colorLink)
		if b.Dx() != 768 || b.Dy() != 672 || cnt[0] < 200 || cnt[1] < 200 || cnt[2] < 5 {
			t.Errorf("%s: size %v, pixels (Swahili, English, links) %v", m, b, cnt)
		}
	}
	if os.Getenv("TLI_KEEP_PLOTS") != "" {
		for _, f := range []string{"pca.png", "tsne.png"} {
			b, _ := os.ReadFile(filepath.Join(dir, f))
			os.WriteFile(filepath.Join(os.Getenv("TLI_KEEP_PLOTS"), f), b, 0o644)
		}
	}
	if err := PlotPairMap(filepath.Join(dir, "x.png"), src, tgt, nil, "umap", 0, ""); err == nil || !strings.Contains(err.Error(), "unknown method") {
		t.Errorf("unknown method: %v", err)
	}
	if err := PlotPairMap(filepath.Join(dir, "x.png"), src, tgt[:5], nil, "pca", 0, ""); err == nil {
		t.Error("length mismatch accepted")
	}
}

func BenchmarkTSNE1372(b *testing.B) {
	x, _ := clusters(4, 343, 64, 5)
	for b.Loop() {
		TSNE(x, TSNEOptions{Iterations: 100})
	}
}

// Plots can be written as SVG and PDF for papers, and as PNG at a chosen
// resolution.
func TestPlotFormats(t *testing.T) {
	defer SetPlotOutput("png", 96)
	dir := t.TempDir()
	for _, c := range []struct {
		format string
		dpi    int
		magic  string
		width  int
	}{{"png", 0, "\x89PNG", 768}, {"png", 300, "\x89PNG", 2400}, {"svg", 0, "<?xml", 0}, {"pdf", 0, "%PDF", 0}} {
		if err := SetPlotOutput(c.format, c.dpi); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, plotFile(fmt.Sprintf("bars%d", c.dpi)))
		if err := PlotLayerBars(path, []int{0, 1, 2}, []float64{0.1, 0.3, 0.2}, 1, "gap by layer", "gap"); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil || !strings.HasPrefix(string(b), c.magic) {
			t.Fatalf("%s: %v, starts %q", path, err, b[:min(8, len(b))])
		}
		if c.width > 0 {
			cfg, err := png.DecodeConfig(bytes.NewReader(b))
			if err != nil || cfg.Width != c.width {
				t.Errorf("%s at %d dpi: %d px wide (%v), want %d", path, c.dpi, cfg.Width, err, c.width)
			}
		}
	}
	for _, bad := range []struct {
		format string
		dpi    int
	}{{"jpg", 0}, {"png", 5000}} {
		if err := SetPlotOutput(bad.format, bad.dpi); err == nil {
			t.Errorf("SetPlotOutput(%q, %d): no error", bad.format, bad.dpi)
		}
	}
}

// A run's maps: PCA of every pair and t-SNE of a seeded sample, before and
// after from one fit each.
func TestPlotMapsWith(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	n, d := 40, 16
	var pairs []Pair
	mk := func() [][]float32 {
		out := make([][]float32, n)
		for i := range out {
			out[i] = make([]float32, d)
			for k := range out[i] {
				out[i][k] = float32(r.NormFloat64())
			}
		}
		return out
	}
	for i := 0; i < n; i++ {
		pairs = append(pairs, Pair{Source: fmt.Sprintf("sw%d", i), Target: fmt.Sprintf("en%d", i)})
	}
	gv := func() GroupVectors {
		return GroupVectors{PoolContent: {2: {"trained": PairVectors{Src: mk(), Tgt: mk()}}}}
	}
	dir := t.TempDir()
	plots, err := PlotMapsWith(dir, Group{Name: "trained", Pairs: pairs}, 2, PoolContent, gv(), gv(), []string{"pca", "tsne"}, MapOptions{Sample: 10, Perplexity: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(plots) != 4 || !strings.Contains(plots[3].Title, "10 sampled pairs, perplexity 3") {
		t.Fatalf("plots %+v", plots)
	}
	for _, p := range plots {
		if _, err := os.Stat(p.Path); err != nil {
			t.Error(err)
		}
	}
	a, b := samplePairs(100, 25, 42), samplePairs(100, 25, 42)
	if !slices.Equal(a, b) || !slices.IsSorted(a) || len(a) != 25 || a[24] >= 100 {
		t.Errorf("samplePairs: %v, %v", a, b)
	}
}

func TestPlotBeforeAfterBars(t *testing.T) {
	path := filepath.Join(t.TempDir(), "means.png")
	gs := []GroupSummary{
		{Group: "trained", Layer: 2, N: 600, MeanPre: 0.3, MeanPost: 0.5, StdPre: 0.1, StdPost: 0.1, Pre: &LayerStats{MismatchedMean: 0.2}, Post: &LayerStats{MismatchedMean: 0.25}},
		{Group: "control", Layer: 2, N: 60, MeanPre: 0.3, MeanPost: 0.35, StdPre: 0.1, StdPost: 0.1},
	}
	if err := PlotBeforeAfterBars(path, gs, "means"); err != nil {
		t.Fatal(err)
	}
	_, n := readPNG(t, path, colorSwahili, colorEnglish)
	// The after bars are taller (0.5 and 0.35 against 0.3 and 0.3).
	if n[0] < 1000 || n[1] < n[0] {
		t.Errorf("before pixels %d, after pixels %d", n[0], n[1])
	}
	if err := PlotBeforeAfterBars(path, nil, ""); err == nil {
		t.Error("no groups: no error")
	}
}

// The scan figure: the means and baselines above, the gaps below.
func TestPlotScan(t *testing.T) {
	path := filepath.Join(t.TempDir(), "scan.png")
	var st []LayerStats
	for l := 0; l <= 32; l++ {
		m := 0.3 + 0.01*float64(l)
		st = append(st, LayerStats{Layer: l, Mean: m, MismatchedMean: m - 0.02 - 0.001*float64(l%5), Gap: 0.02 + 0.001*float64(l%5)})
	}
	if err := PlotScan(path, st, 4, "scan"); err != nil {
		t.Fatal(err)
	}
	b, n := readPNG(t, path, colorSwahili, colorEnglish, colorBest, colorBar)
	if b.Dy() != 768 || n[0] == 0 || n[1] == 0 || n[2] < 100 || n[3] < 10*n[2] {
		t.Errorf("size %v, pixels: mean %d, baseline %d, best bar %d, other bars %d", b, n[0], n[1], n[2], n[3])
	}
	if err := PlotScan(path, nil, 0, ""); err == nil {
		t.Error("no layers: no error")
	}
}
