package tli

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/stat"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgpdf"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Plot colours: Swahili and "before" in blue, English and "after" in
// orange, the highlighted best layer in red.
var (
	colorSwahili = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	colorEnglish = color.RGBA{R: 255, G: 127, B: 14, A: 255}
	colorBest    = color.RGBA{R: 214, G: 39, B: 40, A: 255}
	colorBar     = color.RGBA{R: 140, G: 140, B: 140, A: 255}
	colorLink    = color.RGBA{R: 190, G: 190, B: 190, A: 255}
)

// Plot size in inches-based vg units; PNG output is at PlotDPI, 96 by
// default, so 8×5 in gives 768×480 pixels.
const (
	plotWidth  = 8 * vg.Inch
	plotHeight = 5 * vg.Inch
)

// padTop raises the top of the y axis by frac of its range, making room for
// a legend in the upper right corner.
func padTop(p *plot.Plot, frac float64) {
	p.Y.Max += frac * (p.Y.Max - p.Y.Min)
}

// PlotFormat is the file format of the plots tli writes: "png" (the
// default), "svg" or "pdf" (vector formats for papers); PlotDPI is the
// resolution of PNG plots (96 by default; 300 for print). Set them with
// SetPlotOutput before writing plots.
var (
	PlotFormat = "png"
	PlotDPI    = 96
)

// SetPlotOutput sets PlotFormat and PlotDPI (dpi 0 keeps 96).
func SetPlotOutput(format string, dpi int) error {
	switch format {
	case "png", "svg", "pdf":
	default:
		return fmt.Errorf("plot format %q: want png, svg or pdf", format)
	}
	if dpi == 0 {
		dpi = 96
	}
	if dpi < 36 || dpi > 1200 {
		return fmt.Errorf("plot resolution %d dpi: want 36..1200", dpi)
	}
	PlotFormat, PlotDPI = format, dpi
	return nil
}

// plotFile is name with the extension of PlotFormat.
func plotFile(name string) string { return name + "." + PlotFormat }

// savePlot writes p to path, atomically, in the format its extension names
// (.png at PlotDPI, .svg or .pdf).
func savePlot(p *plot.Plot, path string, w, h vg.Length) error {
	return saveDrawn(path, w, h, func(c draw.Canvas) { p.Draw(c) })
}

// saveDrawn writes what drawFn draws on a w×h canvas to path, atomically,
// in the format its extension names (.png at PlotDPI, .svg or .pdf).
func saveDrawn(path string, w, h vg.Length, drawFn func(draw.Canvas)) error {
	var c vg.CanvasWriterTo
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".png":
		c = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(PlotDPI))}
	case ".svg":
		c = vgsvg.New(w, h)
	case ".pdf":
		c = vgpdf.New(w, h)
	default:
		return fmt.Errorf("tli: plot %s: want a .png, .svg or .pdf file", path)
	}
	drawFn(draw.New(c))
	return WriteAtomic(path, func(out io.Writer) error {
		_, err := c.WriteTo(out)
		return err
	})
}

// PlotLayerBars draws one bar per layer (values[i] for layers[i]) and marks
// the bar of layer best in red with its value in the legend (best < 0 marks
// none). ylabel names the measure, e.g. "mean cosine (content pooling)".
func PlotLayerBars(path string, layers []int, values []float64, best int, title, ylabel string) error {
	p, width, err := layerBars(layers, values, best, title, ylabel)
	if err != nil {
		return fmt.Errorf("tli: plot %s: %w", path, err)
	}
	return savePlot(p, path, width, plotHeight)
}

// layerBars is PlotLayerBars' plot and the width it needs.
func layerBars(layers []int, values []float64, best int, title, ylabel string) (*plot.Plot, vg.Length, error) {
	if len(layers) != len(values) || len(layers) == 0 {
		return nil, 0, fmt.Errorf("%d layers but %d values", len(layers), len(values))
	}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "layer"
	p.Y.Label.Text = ylabel
	bars, err := plotter.NewBarChart(plotter.Values(values), vg.Points(barWidth(len(values))))
	if err != nil {
		return nil, 0, err
	}
	bars.Color = colorBar
	bars.LineStyle.Width = 0
	p.Add(plotter.NewGrid(), bars)
	for i, l := range layers {
		if l != best {
			continue
		}
		hb, err := plotter.NewBarChart(plotter.Values{values[i]}, bars.Width)
		if err != nil {
			return nil, 0, err
		}
		hb.XMin = float64(i)
		hb.Color = colorBest
		hb.LineStyle.Width = 0
		p.Add(hb)
		p.Legend.Add(fmt.Sprintf("best: layer %d (%.4f)", l, values[i]), hb)
		p.Legend.Top = true
	}
	// Every layer is labelled: beyond 24 layers the labels stand upright
	// and the plot widens (81 hidden states of an 80-layer model: 10.5 in).
	names := make([]string, len(layers))
	for i, l := range layers {
		names[i] = strconv.Itoa(l)
	}
	p.NominalX(names...)
	width := plotWidth
	if len(layers) > 24 {
		p.X.Tick.Label.Rotation = math.Pi / 2
		p.X.Tick.Label.XAlign = draw.XRight
		p.X.Tick.Label.YAlign = draw.YCenter
		width = max(plotWidth, vg.Length(len(layers))*0.13*vg.Inch)
	}
	// Whole bars at both ends, and room above them for the legend.
	p.X.Min, p.X.Max = -0.6, float64(len(layers))-0.4
	padTop(p, 0.2)
	return p, width, nil
}

// barWidth returns a bar width in points that fills the plot for n bars.
func barWidth(n int) float64 {
	return math.Max(5, math.Min(40, 440/float64(n)))
}

// PlotLayerLines draws, per layer, the mean matched-pair cosine before and
// after training as solid lines and each mismatched-pair baseline as a
// dashed line of the same colour, so the gap is visible. after may be nil
// (a scan of one model); the layers of before and after must match.
func PlotLayerLines(path string, before, after []LayerStats, title string) error {
	if len(before) == 0 {
		return fmt.Errorf("tli: plot %s: no layers", path)
	}
	if after != nil && len(after) != len(before) {
		return fmt.Errorf("tli: plot %s: %d layers before but %d after", path, len(before), len(after))
	}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "layer"
	p.Y.Label.Text = "cosine similarity"
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	series := []struct {
		name  string
		stats []LayerStats
		col   color.Color
	}{{"before", before, colorSwahili}, {"after", after, colorEnglish}}
	for _, s := range series {
		if s.stats == nil {
			continue
		}
		matched, mismatched := make(plotter.XYs, len(s.stats)), make(plotter.XYs, len(s.stats))
		for i, st := range s.stats {
			if after != nil && after[i].Layer != before[i].Layer {
				return fmt.Errorf("tli: plot %s: entry %d is layer %d before but %d after", path, i, before[i].Layer, after[i].Layer)
			}
			matched[i] = plotter.XY{X: float64(st.Layer), Y: st.Mean}
			mismatched[i] = plotter.XY{X: float64(st.Layer), Y: st.MismatchedMean}
		}
		l, pts, err := plotter.NewLinePoints(matched)
		if err != nil {
			return fmt.Errorf("tli: plot %s: %w", path, err)
		}
		l.Color, pts.Color = s.col, s.col
		pts.Radius = vg.Points(2)
		m, err := plotter.NewLine(mismatched)
		if err != nil {
			return fmt.Errorf("tli: plot %s: %w", path, err)
		}
		m.Color = s.col
		m.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(l, pts, m)
		p.Legend.Add(s.name+": translation pairs", l, pts)
		p.Legend.Add(s.name+": mismatched pairs", m)
	}
	padTop(p, 0.3)
	return savePlot(p, path, plotWidth, plotHeight)
}

// PlotHistogram draws the distribution of per-pair changes (cosine after
// minus before) in bins bins (0: the square root of n, at most 50), with
// vertical lines at zero and at the mean change.
func PlotHistogram(path string, changes []float64, bins int, title string) error {
	if len(changes) == 0 {
		return fmt.Errorf("tli: plot %s: no values", path)
	}
	if bins <= 0 {
		bins = min(50, max(5, int(math.Sqrt(float64(len(changes))))))
	}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "change in cosine (after - before)"
	p.Y.Label.Text = "pairs"
	h, err := plotter.NewHist(plotter.Values(changes), bins)
	if err != nil {
		return fmt.Errorf("tli: plot %s: %w", path, err)
	}
	h.FillColor = colorSwahili
	h.LineStyle.Width = vg.Points(0.5)
	h.LineStyle.Color = color.White
	p.Add(plotter.NewGrid(), h)
	ymax := 0.0
	for _, b := range h.Bins {
		ymax = math.Max(ymax, b.Weight)
	}
	for _, v := range []struct {
		x   float64
		col color.Color
		lbl string
	}{{0, color.Black, "no change"}, {Mean(changes), colorBest, fmt.Sprintf("mean %+.4f", Mean(changes))}} {
		l, err := plotter.NewLine(plotter.XYs{{X: v.x, Y: 0}, {X: v.x, Y: ymax}})
		if err != nil {
			return fmt.Errorf("tli: plot %s: %w", path, err)
		}
		l.Color = v.col
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(v.lbl, l)
	}
	p.Legend.Top = true
	padTop(p, 0.15)
	return savePlot(p, path, plotWidth, plotHeight)
}

// PlotPairMap draws a 2-D map of the Swahili (blue) and English (orange)
// embeddings with a grey line joining the two words of each pair; method is
// "pca" (the first two principal components, gonum stat.PC) or "tsne"
// (exact t-SNE, perplexity 30, fixed seed; fine up to ~1,500 points, i.e.
// 750 pairs). Up to maxLabels pairs (the first ones) are labelled with
// their words; pairs may be nil for no labels. PlotMaps draws the maps of
// a run (before and after on the same axes).
func PlotPairMap(path string, src, tgt [][]float32, pairs []Pair, method string, maxLabels int, title string) error {
	if len(src) != len(tgt) || len(src) < 2 {
		return fmt.Errorf("tli: plot %s: need at least 2 pairs of embeddings, have %d Swahili and %d English", path, len(src), len(tgt))
	}
	if pairs != nil && len(pairs) != len(src) {
		return fmt.Errorf("tli: plot %s: %d labels for %d pairs", path, len(pairs), len(src))
	}
	x := mapRows(nil, src, tgt)
	y, axes, err := embed2(x, method, 0)
	if err != nil {
		return fmt.Errorf("tli: plot %s: %w", path, err)
	}
	return drawPairMap(path, y, pairs, maxLabels, title, axes, nil)
}

// mapRows appends the rows of src, then those of tgt, as float64.
func mapRows(x [][]float64, src, tgt [][]float32) [][]float64 {
	for _, rows := range [][][]float32{src, tgt} {
		for _, r := range rows {
			v := make([]float64, len(r))
			for k, f := range r {
				v[k] = float64(f)
			}
			x = append(x, v)
		}
	}
	return x
}

// embed2 maps the rows of x to 2-D with method (pca or tsne, at the given
// perplexity, 0: TSNE's default) and names the axes.
func embed2(x [][]float64, method string, perplexity float64) ([][2]float64, [2]string, error) {
	switch method {
	case "pca":
		y, vars, err := PCA2(x)
		if err != nil {
			return nil, [2]string{}, err
		}
		return y, [2]string{fmt.Sprintf("PC1 (%.1f%% of variance)", 100*vars[0]), fmt.Sprintf("PC2 (%.1f%% of variance)", 100*vars[1])}, nil
	case "tsne":
		y, err := TSNE(x, TSNEOptions{Perplexity: perplexity})
		return y, [2]string{"t-SNE 1", "t-SNE 2"}, err
	}
	return nil, [2]string{}, fmt.Errorf("unknown method %q (want pca or tsne)", method)
}

// drawPairMap draws y (the n Swahili points, then the n English ones) with
// a line per pair, the first maxLabels pairs labelled; lim, when not nil,
// fixes the axes (xmin, xmax, ymin, ymax) so that maps can be compared.
func drawPairMap(path string, y [][2]float64, pairs []Pair, maxLabels int, title string, axes [2]string, lim *[4]float64) error {
	n := len(y) / 2
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text, p.Y.Label.Text = axes[0], axes[1]
	for i := range n {
		l, err := plotter.NewLine(plotter.XYs{{X: y[i][0], Y: y[i][1]}, {X: y[n+i][0], Y: y[n+i][1]}})
		if err != nil {
			return fmt.Errorf("tli: plot %s: %w", path, err)
		}
		l.Color = colorLink
		l.Width = vg.Points(0.5)
		p.Add(l)
	}
	for side, col := range []color.Color{colorSwahili, colorEnglish} {
		xy := make(plotter.XYs, n)
		for i := range n {
			xy[i] = plotter.XY{X: y[side*n+i][0], Y: y[side*n+i][1]}
		}
		s, err := plotter.NewScatter(xy)
		if err != nil {
			return fmt.Errorf("tli: plot %s: %w", path, err)
		}
		s.Color = col
		s.Shape = draw.CircleGlyph{}
		s.Radius = vg.Points(2.5)
		p.Add(s)
		p.Legend.Add([]string{"Swahili", "English"}[side], s)
	}
	if pairs != nil && maxLabels > 0 {
		var lab plotter.XYLabels
		for i := range min(maxLabels, n) {
			lab.XYs = append(lab.XYs, plotter.XY{X: y[i][0], Y: y[i][1]}, plotter.XY{X: y[n+i][0], Y: y[n+i][1]})
			lab.Labels = append(lab.Labels, pairs[i].Source, pairs[i].Target)
		}
		l, err := plotter.NewLabels(lab)
		if err != nil {
			return fmt.Errorf("tli: plot %s: %w", path, err)
		}
		for i := range l.TextStyle {
			l.TextStyle[i].Font.Size = vg.Points(7)
		}
		p.Add(l)
	}
	p.Legend.Top = true
	if lim != nil {
		p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = lim[0], lim[1], lim[2], lim[3]
	}
	padTop(p, 0.08)
	return savePlot(p, path, plotWidth, 7*vg.Inch)
}

// MapOptions say how PlotMaps draws a run's maps. PCA maps every pair and
// labels the first Labels; t-SNE maps a seeded sample of Sample pairs, all
// labelled, at Perplexity. Zero values are the published settings: 25
// labels, a sample of 25 pairs, perplexity 15, seed 42.
type MapOptions struct {
	Sample     int
	Perplexity float64
	Labels     int
	Seed       uint64
}

func (o MapOptions) withDefaults() MapOptions {
	if o.Sample <= 0 {
		o.Sample = 25
	}
	if o.Perplexity <= 0 {
		o.Perplexity = 15
	}
	if o.Labels <= 0 {
		o.Labels = 25
	}
	if o.Seed == 0 {
		o.Seed = 42
	}
	return o
}

// samplePairs is a seeded sample of k of n pair indices, in order.
func samplePairs(n, k int, seed uint64) []int {
	if k >= n {
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		return idx
	}
	idx := rand.New(rand.NewPCG(seed, 0x5eed)).Perm(n)[:k]
	slices.Sort(idx)
	return idx
}

// PCA2 projects the rows of x onto their first two principal components
// (gonum stat.PC on the centred data, or an eigendecomposition of the Gram
// matrix when there are more dimensions than points) and returns the coordinates and the
// fraction of the total variance each component explains.
func PCA2(x [][]float64) ([][2]float64, []float64, error) {
	n := len(x)
	if n < 2 {
		return nil, nil, fmt.Errorf("PCA needs at least 2 points, have %d", n)
	}
	d := len(x[0])
	if d < 2 {
		return nil, nil, fmt.Errorf("PCA to 2-D needs at least 2 dimensions, have %d", d)
	}
	a := mat.NewDense(n, d, nil)
	for i, r := range x {
		if len(r) != d {
			return nil, nil, fmt.Errorf("PCA: row %d has %d values, want %d", i, len(r), d)
		}
		a.SetRow(i, r)
	}
	if d > n {
		return pcaGram(a)
	}
	var pc stat.PC
	if !pc.PrincipalComponents(a, nil) {
		return nil, nil, fmt.Errorf("PCA: SVD did not converge")
	}
	var vecs mat.Dense
	pc.VectorsTo(&vecs)
	vars := pc.VarsTo(nil)
	var total float64
	for _, v := range vars {
		total += v
	}
	// Centre, then project onto the first two component vectors.
	means := make([]float64, d)
	for j := range d {
		means[j] = stat.Mean(mat.Col(nil, j, a), nil)
	}
	out := make([][2]float64, n)
	for i := range n {
		for c := range 2 {
			var s float64
			for j := range d {
				s += (a.At(i, j) - means[j]) * vecs.At(j, c)
			}
			out[i][c] = s
		}
	}
	frac := []float64{0, 0}
	if total > 0 {
		frac[0], frac[1] = vars[0]/total, vars[1]/total
	}
	return out, frac, nil
}

// pcaGram is PCA2 for wide data (more dimensions than points, as 1,372
// word vectors of 4,096 values): the principal coordinates are
// sqrt(λ_k)·u_k, with λ_k, u_k the eigenpairs of the n×n Gram matrix of the
// centred rows, which is much cheaper than an SVD of the n×d matrix and
// gives the same result up to the sign of each component.
func pcaGram(a *mat.Dense) ([][2]float64, []float64, error) {
	n, d := a.Dims()
	for j := range d {
		var m float64
		for i := range n {
			m += a.At(i, j)
		}
		m /= float64(n)
		for i := range n {
			a.Set(i, j, a.At(i, j)-m)
		}
	}
	g := mat.NewSymDense(n, nil)
	g.SymOuterK(1, a)
	var eig mat.EigenSym
	if !eig.Factorize(g, true) {
		return nil, nil, fmt.Errorf("PCA: eigendecomposition did not converge")
	}
	vals := eig.Values(nil) // ascending
	var vecs mat.Dense
	eig.VectorsTo(&vecs)
	var total float64
	for _, v := range vals {
		total += math.Max(v, 0)
	}
	out := make([][2]float64, n)
	frac := []float64{0, 0}
	for c := range 2 {
		k := n - 1 - c
		lam := math.Max(vals[k], 0)
		if total > 0 {
			frac[c] = lam / total
		}
		for i := range n {
			out[i][c] = math.Sqrt(lam) * vecs.At(i, k)
		}
	}
	return out, frac, nil
}

// TSNEOptions sets up TSNE; zero fields take the defaults.
type TSNEOptions struct {
	Perplexity   float64 // default 30 (lowered to (n-1)/3 for small n)
	Iterations   int     // default 1000
	LearningRate float64 // default max(n/12/4, 50), scikit-learn's "auto"
	Seed         uint64  // default 1
}

// TSNE embeds the rows of x in 2-D with exact t-SNE (van der Maaten and
// Hinton 2008): Gaussian input affinities calibrated by binary search to the
// perplexity, symmetrised; Student-t output affinities; gradient descent
// with momentum 0.5 then 0.8 and per-coordinate gains, early exaggeration 12
// for the first 250 iterations; initial points drawn from N(0, 1e-4²) with a
// seeded generator, so results are deterministic. Cost is O(n²) per
// iteration.
func TSNE(x [][]float64, opt TSNEOptions) ([][2]float64, error) {
	n := len(x)
	if n < 4 {
		return nil, fmt.Errorf("t-SNE needs at least 4 points, have %d", n)
	}
	if opt.Perplexity <= 0 {
		opt.Perplexity = 30
	}
	opt.Perplexity = math.Min(opt.Perplexity, float64(n-1)/3)
	if opt.Iterations <= 0 {
		opt.Iterations = 1000
	}
	const exaggeration = 12.0
	if opt.LearningRate <= 0 {
		opt.LearningRate = math.Max(float64(n)/exaggeration/4, 50)
	}
	if opt.Seed == 0 {
		opt.Seed = 1
	}
	d2, err := squaredDistances(x)
	if err != nil {
		return nil, err
	}
	p := tsneAffinities(d2, n, opt.Perplexity)

	rng := rand.New(rand.NewPCG(opt.Seed, 0x7453e2))
	y := make([]float64, 2*n)
	for i := range y {
		y[i] = 1e-4 * rng.NormFloat64()
	}
	upd := make([]float64, 2*n)
	gains := make([]float64, 2*n)
	for i := range gains {
		gains[i] = 1
	}
	grad := make([]float64, 2*n)
	// Per-row partial sums of one pass (see tsneRows).
	rowZ := make([]float64, n)
	attr := make([]float64, 2*n)
	rep := make([]float64, 2*n)
	for it := range opt.Iterations {
		exag, momentum := 1.0, 0.8
		if it < 250 {
			exag, momentum = exaggeration, 0.5
		}
		tsneRows(y, p, n, exag, rowZ, attr, rep)
		var z float64
		for _, v := range rowZ {
			z += v
		}
		for k := range grad {
			grad[k] = 4 * (attr[k] - rep[k]/z)
		}
		for k := range y {
			if (grad[k] > 0) != (upd[k] > 0) {
				gains[k] += 0.2
			} else {
				gains[k] *= 0.8
			}
			gains[k] = math.Max(gains[k], 0.01)
			upd[k] = momentum*upd[k] - opt.LearningRate*gains[k]*grad[k]
			y[k] += upd[k]
		}
		// Keep the map centred.
		var mx, my float64
		for i := range n {
			mx += y[2*i]
			my += y[2*i+1]
		}
		mx, my = mx/float64(n), my/float64(n)
		for i := range n {
			y[2*i] -= mx
			y[2*i+1] -= my
		}
	}
	out := make([][2]float64, n)
	for i := range n {
		out[i] = [2]float64{y[2*i], y[2*i+1]}
	}
	return out, nil
}

// tsneRows computes, for every point i in one pass over j (rows split
// across goroutines; each row is summed in a fixed order, so results do not
// depend on scheduling), with q_ij = 1/(1+|y_i-y_j|²):
//
//	rowZ[i] = Σ_j q_ij
//	attr[i] = Σ_j exag·p_ij·q_ij·(y_i-y_j)
//	rep[i]  = Σ_j q_ij²·(y_i-y_j)
//
// The t-SNE gradient is then 4(attr_i - rep_i/Z) with Z = Σ_i rowZ[i].
func tsneRows(y, p []float64, n int, exag float64, rowZ, attr, rep []float64) {
	workers := min(runtime.GOMAXPROCS(0), max(1, n/64))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				yi0, yi1 := y[2*i], y[2*i+1]
				var z, ax, ay, rx, ry float64
				pi := p[i*n : (i+1)*n]
				for j := range n {
					if j == i {
						continue
					}
					dx, dy := yi0-y[2*j], yi1-y[2*j+1]
					q := 1 / (1 + dx*dx + dy*dy)
					z += q
					a := exag * pi[j] * q
					ax += a * dx
					ay += a * dy
					q2 := q * q
					rx += q2 * dx
					ry += q2 * dy
				}
				rowZ[i] = z
				attr[2*i], attr[2*i+1] = ax, ay
				rep[2*i], rep[2*i+1] = rx, ry
			}
		}(w*n/workers, (w+1)*n/workers)
	}
	wg.Wait()
}

// squaredDistances returns the n×n squared Euclidean distances of the rows
// of x, row-major, via the Gram matrix.
func squaredDistances(x [][]float64) ([]float64, error) {
	n, d := len(x), len(x[0])
	a := mat.NewDense(n, d, nil)
	for i, r := range x {
		if len(r) != d {
			return nil, fmt.Errorf("t-SNE: row %d has %d values, want %d", i, len(r), d)
		}
		for _, v := range r {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("t-SNE: row %d holds %v", i, v)
			}
		}
		a.SetRow(i, r)
	}
	var g mat.Dense
	g.Mul(a, a.T())
	out := make([]float64, n*n)
	for i := range n {
		for j := range n {
			out[i*n+j] = math.Max(0, g.At(i, i)+g.At(j, j)-2*g.At(i, j))
		}
		out[i*n+i] = 0
	}
	return out, nil
}

// tsneAffinities returns the symmetrised input affinities
// P_ij = (p_j|i + p_i|j) / 2n, where p_·|i is a Gaussian around point i whose
// precision is found by bisection so that its perplexity 2^H (H in bits)
// equals perp.
func tsneAffinities(d2 []float64, n int, perp float64) []float64 {
	cond := tsneConditional(d2, n, perp)
	p := make([]float64, n*n)
	for i := range n {
		for j := range n {
			if i != j {
				p[i*n+j] = math.Max((cond[i*n+j]+cond[j*n+i])/(2*float64(n)), 1e-12)
			}
		}
	}
	return p
}

// tsneConditional returns the row-stochastic matrix p_j|i of TSNE's input
// affinities; row i has entropy log(perp) nats.
func tsneConditional(d2 []float64, n int, perp float64) []float64 {
	cond := make([]float64, n*n)
	target := math.Log(perp) // entropy in nats
	row := make([]float64, n)
	for i := range n {
		// Distances relative to the nearest neighbour, for stable exp.
		minD := math.Inf(1)
		for j := range n {
			if j != i {
				minD = math.Min(minD, d2[i*n+j])
			}
		}
		beta, lo, hi := 1.0, 0.0, math.Inf(1)
		for range 100 {
			var sum, sumDP float64
			for j := range n {
				if j == i {
					row[j] = 0
					continue
				}
				dd := d2[i*n+j] - minD
				row[j] = math.Exp(-beta * dd)
				sum += row[j]
				sumDP += dd * row[j]
			}
			// H = log(sum) + beta * E[d].
			h := math.Log(sum) + beta*sumDP/sum
			for j := range n {
				cond[i*n+j] = row[j] / sum
			}
			if math.Abs(h-target) < 1e-6 {
				break
			}
			if h > target {
				lo = beta
				if math.IsInf(hi, 1) {
					beta *= 2
				} else {
					beta = (beta + hi) / 2
				}
			} else {
				hi = beta
				beta = (beta + lo) / 2
			}
		}
	}
	return cond
}

// PlotSweepGain draws, for a sweep whose axis xAxis holds numbers (layer,
// rank, ...), the gain of the alignment gap (gap after - gap before, at
// each cell's training layer) of the trained and control pairs against the
// axis: one point per cell and a line through the mean of the cells with
// the same value (seeds and other axes averaged).
func PlotSweepGain(path string, t *SweepTable, xAxis, title string) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xAxis
	p.Y.Label.Text = "gain of the gap (matched - mismatched cosine)"
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	for _, g := range []struct {
		name string
		col  color.Color
	}{{"trained", colorSwahili}, {"control", colorEnglish}} {
		var pts plotter.XYs
		sum, n := map[float64]float64{}, map[float64]int{}
		for _, c := range t.Cells {
			x, err := strconv.ParseFloat(c.Values[xAxis], 64)
			if err != nil {
				return fmt.Errorf("tli: plot %s: %s value %q is not a number", path, xAxis, c.Values[xAxis])
			}
			gain, ok := cellGain(c, g.name)
			if !ok {
				continue
			}
			pts = append(pts, plotter.XY{X: x, Y: gain})
			sum[x] += gain
			n[x]++
		}
		if len(pts) == 0 {
			continue
		}
		var xs []float64
		for x := range sum {
			xs = append(xs, x)
		}
		slices.Sort(xs)
		mean := make(plotter.XYs, len(xs))
		for i, x := range xs {
			mean[i] = plotter.XY{X: x, Y: sum[x] / float64(n[x])}
		}
		sc, err := plotter.NewScatter(pts)
		if err != nil {
			return fmt.Errorf("tli: plot %s: %w", path, err)
		}
		sc.Color = g.col
		sc.Radius = vg.Points(2.5)
		l, err := plotter.NewLine(mean)
		if err != nil {
			return fmt.Errorf("tli: plot %s: %w", path, err)
		}
		l.Color = g.col
		p.Add(sc, l)
		p.Legend.Add(g.name+" pairs (line: mean over cells)", sc, l)
	}
	padTop(p, 0.2)
	return savePlot(p, path, plotWidth, plotHeight)
}

// PlotTrainedVsControl draws each cell's gain of the gap on the control
// pairs against the gain on the trained pairs, with the diagonal: points
// below it are cells whose adapter helped the trained words more.
func PlotTrainedVsControl(path string, t *SweepTable, title string) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "gain of the gap, trained pairs"
	p.Y.Label.Text = "gain of the gap, control pairs"
	p.Add(plotter.NewGrid())
	var pts plotter.XYs
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, c := range t.Cells {
		x, ok1 := cellGain(c, "trained")
		y, ok2 := cellGain(c, "control")
		if ok1 && ok2 {
			pts = append(pts, plotter.XY{X: x, Y: y})
			lo, hi = math.Min(lo, math.Min(x, y)), math.Max(hi, math.Max(x, y))
		}
	}
	if len(pts) == 0 {
		return fmt.Errorf("tli: plot %s: no cell has both groups", path)
	}
	diag, err := plotter.NewLine(plotter.XYs{{X: lo, Y: lo}, {X: hi, Y: hi}})
	if err != nil {
		return fmt.Errorf("tli: plot %s: %w", path, err)
	}
	diag.Color = colorLink
	diag.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	sc, err := plotter.NewScatter(pts)
	if err != nil {
		return fmt.Errorf("tli: plot %s: %w", path, err)
	}
	sc.Color = colorSwahili
	sc.Radius = vg.Points(3)
	p.Add(diag, sc)
	return savePlot(p, path, plotWidth, plotHeight)
}

// cellGain is gap after minus gap before of a group in a cell's result.
func cellGain(c CellResult, group string) (float64, bool) {
	for _, g := range c.Groups {
		if g["group"] != group {
			continue
		}
		pre, err1 := strconv.ParseFloat(cellValue(g, "gap_pre"), 64)
		post, err2 := strconv.ParseFloat(cellValue(g, "gap_post"), 64)
		return post - pre, err1 == nil && err2 == nil
	}
	return 0, false
}

// PlotLossCurve draws the training loss of every step (left axis) and the
// learning rate of the schedule (right scale, drawn to the loss axis's
// range and labelled in the legend with its peak).
func PlotLossCurve(path string, logs []StepLog, title string) error {
	if len(logs) == 0 {
		return fmt.Errorf("tli: plot %s: no training steps", path)
	}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "optimiser step"
	p.Y.Label.Text = "triplet loss"
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	loss, lr := make(plotter.XYs, len(logs)), make(plotter.XYs, len(logs))
	lo, hi, peak := math.Inf(1), math.Inf(-1), 0.0
	for i, l := range logs {
		loss[i] = plotter.XY{X: float64(l.Step), Y: l.Loss}
		lo, hi, peak = math.Min(lo, l.Loss), math.Max(hi, l.Loss), math.Max(peak, l.LR)
	}
	if hi <= lo {
		hi = lo + 1
	}
	for i, l := range logs {
		y := lo
		if peak > 0 {
			y = lo + (hi-lo)*l.LR/peak
		}
		lr[i] = plotter.XY{X: float64(l.Step), Y: y}
	}
	ll, err := plotter.NewLine(loss)
	if err != nil {
		return fmt.Errorf("tli: plot %s: %w", path, err)
	}
	ll.Color = colorSwahili
	rl, err := plotter.NewLine(lr)
	if err != nil {
		return fmt.Errorf("tli: plot %s: %w", path, err)
	}
	rl.Color = colorEnglish
	rl.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(ll, rl)
	p.Legend.Add("loss", ll)
	p.Legend.Add(fmt.Sprintf("learning rate (0 .. %.3g, scaled to the loss axis)", peak), rl)
	padTop(p, 0.3)
	return savePlot(p, path, plotWidth, plotHeight)
}

// meanErrs are bar tops with symmetric error bars, for NewYErrorBars.
type meanErrs struct {
	xy  plotter.XYs
	err []float64
}

func (m meanErrs) Len() int                        { return len(m.xy) }
func (m meanErrs) XY(i int) (float64, float64)     { return m.xy[i].X, m.xy[i].Y }
func (m meanErrs) YError(i int) (float64, float64) { return m.err[i], m.err[i] }

// PlotBeforeAfterBars draws, for each group (trained, control) at one
// layer, the mean cosine before and after training side by side, with
// error bars of the 95% confidence interval of the mean (1.96·std/√n), and
// the mismatched baselines as rings when known.
func PlotBeforeAfterBars(path string, groups []GroupSummary, title string) error {
	if len(groups) == 0 {
		return fmt.Errorf("tli: plot %s: no groups", path)
	}
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = "mean cosine (error bars: 95% CI of the mean)"
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	// Group i's bars stand at 3i (before) and 3i+1 (after).
	w := vg.Points(math.Min(70, 360/float64(2*len(groups))))
	var ticks []plot.Tick
	for i, g := range groups {
		ticks = append(ticks, plot.Tick{Value: 3*float64(i) + 0.5, Label: fmt.Sprintf("%s pairs (layer %d, n=%d)", g.Group, g.Layer, g.N)})
	}
	for side, s := range []struct {
		name string
		col  color.Color
		get  func(GroupSummary) (float64, float64, *LayerStats)
	}{
		{"before training", colorSwahili, func(g GroupSummary) (float64, float64, *LayerStats) { return g.MeanPre, g.StdPre, g.Pre }},
		{"after training", colorEnglish, func(g GroupSummary) (float64, float64, *LayerStats) { return g.MeanPost, g.StdPost, g.Post }},
	} {
		me := meanErrs{}
		var base plotter.XYs
		for i, g := range groups {
			m, sd, st := s.get(g)
			x := 3*float64(i) + float64(side)
			bar, err := plotter.NewBarChart(plotter.Values{m}, w)
			if err != nil {
				return fmt.Errorf("tli: plot %s: %w", path, err)
			}
			bar.XMin, bar.Color, bar.LineStyle.Width = x, s.col, 0
			p.Add(bar)
			if i == 0 {
				p.Legend.Add(s.name, bar)
			}
			e := 0.0
			if g.N > 1 && !math.IsNaN(sd) {
				e = 1.96 * sd / math.Sqrt(float64(g.N))
			}
			me.xy = append(me.xy, plotter.XY{X: x, Y: m})
			me.err = append(me.err, e)
			if st != nil {
				base = append(base, plotter.XY{X: x, Y: st.MismatchedMean})
			}
		}
		eb, err := plotter.NewYErrorBars(me)
		if err != nil {
			return fmt.Errorf("tli: plot %s: %w", path, err)
		}
		eb.LineStyle.Width = vg.Points(1.2)
		p.Add(eb)
		if len(base) > 0 {
			sc, err := plotter.NewScatter(base)
			if err != nil {
				return fmt.Errorf("tli: plot %s: %w", path, err)
			}
			sc.Shape, sc.Color, sc.Radius = draw.RingGlyph{}, color.Black, vg.Points(4)
			p.Add(sc)
			if side == 0 {
				p.Legend.Add("mismatched-pair baseline", sc)
			}
		}
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	p.X.Min, p.X.Max = -0.8, 3*float64(len(groups)-1)+1.8
	p.Y.Min = math.Min(0, p.Y.Min)
	padTop(p, 0.3)
	return savePlot(p, path, plotWidth, plotHeight)
}

// PlotScan draws a scan in two panels over the same layers: above, the
// mean cosine of the translation pairs and the mismatched-pair baseline;
// below, their gap as bars, the best layer by gap in red. Every layer is
// labelled (see PlotLayerBars).
func PlotScan(path string, stats []LayerStats, best int, title string) error {
	if len(stats) == 0 {
		return fmt.Errorf("tli: plot %s: no layers", path)
	}
	layers := make([]int, len(stats))
	gaps := make([]float64, len(stats))
	mean, base := make(plotter.XYs, len(stats)), make(plotter.XYs, len(stats))
	for i, st := range stats {
		layers[i], gaps[i] = st.Layer, st.Gap
		mean[i] = plotter.XY{X: float64(i), Y: st.Mean}
		base[i] = plotter.XY{X: float64(i), Y: st.MismatchedMean}
	}
	bars, width, err := layerBars(layers, gaps, best, "", "gap: translation − mismatched")
	if err != nil {
		return fmt.Errorf("tli: plot %s: %w", path, err)
	}
	top := plot.New()
	top.Title.Text = title
	top.Y.Label.Text = "mean cosine"
	top.Legend.Top = true
	top.Add(plotter.NewGrid())
	for _, s := range []struct {
		name   string
		xy     plotter.XYs
		dashed bool
	}{{"translation pairs", mean, false}, {"mismatched pairs (baseline)", base, true}} {
		l, pts, err := plotter.NewLinePoints(s.xy)
		if err != nil {
			return fmt.Errorf("tli: plot %s: %w", path, err)
		}
		l.Color, pts.Color, pts.Radius = colorSwahili, colorSwahili, vg.Points(2)
		if s.dashed {
			l.Color, pts.Color = colorEnglish, colorEnglish
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		top.Add(l, pts)
		top.Legend.Add(s.name, l, pts)
	}
	// The same x positions and labels as the bars below.
	top.X.Min, top.X.Max = bars.X.Min, bars.X.Max
	top.X.Tick.Marker = bars.X.Tick.Marker
	top.X.Tick.Label = bars.X.Tick.Label
	padTop(top, 0.25)
	h := plotHeight * 8 / 5
	return saveDrawn(path, width, h, func(c draw.Canvas) {
		tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Points(2), PadBottom: vg.Points(2), PadY: vg.Points(6)}
		canvases := plot.Align([][]*plot.Plot{{top}, {bars}}, tiles, c)
		top.Draw(canvases[0][0])
		bars.Draw(canvases[1][0])
	})
}
