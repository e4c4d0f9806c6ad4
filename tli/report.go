package tli

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

// BOSNote explains, for every report, why the pooling must be stated.
const BOSNote = "Why pooling matters: in Llama models the hidden state of the BOS token " +
	"grows to a norm far above every other token's from layer 1 on and is " +
	"almost the same vector whatever the input. A mean over a word's tokens " +
	"that includes BOS is therefore dominated by that one shared vector, so " +
	"every word (translation or not) gets a cosine near 1 with every other: " +
	"this is why the published scan, which pooled with BOS included, shows " +
	"0.99998 at layer 2, while the published evaluation, which left BOS/EOS " +
	"out, measured 0.32 at the same layer. A cosine means something only " +
	"next to the mismatched-pair baseline (the mean cosine of non-translation " +
	"pairs under the same pooling): the gap between the two, and retrieval " +
	"precision@1, are what show alignment."

// Published holds the numbers of the TLI paper (arXiv 2506.15415) for
// comparison: mean per-pair cosine at layer 2 with BOS/EOS left out of the
// pooling, before and after training, on its 623 trained and 63 control
// pairs (they match its quantitative_results.csv).
var Published = []GroupSummary{
	{Group: "trained", Layer: 2, N: 623, MeanPre: 0.3211, MeanPost: 0.4113, Change: 0.0902, ChangePct: 28.08},
	{Group: "control", Layer: 2, N: 63, MeanPre: 0.3143, MeanPost: 0.4033, Change: 0.0890, ChangePct: 28.32},
}

// ScanResult is the per-layer alignment scan of one model over one pair
// list: Layers[i] are the LayerStats of one layer, in the hidden_states
// numbering (0 = token embeddings, L = last layer's output).
type ScanResult struct {
	Model   string       // model name or path
	Pairs   string       // where the pairs came from (file, "default train")
	Pooling Pooling      // how token states were pooled into word vectors
	Layers  []LayerStats // one per scanned layer
	Notes   []string     // free text added to reports
	Prov    *Provenance  // written into scan.json when not nil
}

// Best returns the layer with the largest gap between matched and
// mismatched cosines (the earliest on ties), not the largest mean: with
// BOS-dominated pooling the mean is near 1 everywhere and says nothing.
// ok is false when there are no layers.
func (s *ScanResult) Best() (best LayerStats, ok bool) {
	for i, l := range s.Layers {
		if i == 0 || l.Gap > best.Gap {
			best, ok = l, true
		}
	}
	return best, ok
}

// scanHeader is the column list of scan.csv.
var scanHeader = []string{"layer", "mean", "std", "mismatched_mean", "gap", "precision_at_1"}

// fmtFloat writes x with full float64 precision (NaN and ±Inf as such).
func fmtFloat(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }

// WriteScanCSV writes s as scan.csv: one row per layer with the columns
// layer, mean, std, mismatched_mean, gap, precision_at_1 (std is the sample
// standard deviation, ddof=1).
func WriteScanCSV(path string, s *ScanResult) error {
	return WriteAtomic(path, func(w io.Writer) error {
		cw := csv.NewWriter(w)
		cw.Write(scanHeader)
		for _, l := range s.Layers {
			cw.Write([]string{strconv.Itoa(l.Layer), fmtFloat(l.Mean), fmtFloat(l.Std), fmtFloat(l.MismatchedMean), fmtFloat(l.Gap), fmtFloat(l.PrecisionAt1)})
		}
		cw.Flush()
		return cw.Error()
	})
}

// ReadScanCSV reads per-layer results from a scan.csv written by
// WriteScanCSV, or from the published layer_alignment_results.csv (columns
// layer, avg_cosine_similarity; BOS included in the pooling), in which case
// only Layer and Mean are known and the other fields are NaN (N is 0).
func ReadScanCSV(path string) ([]LayerStats, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tli: read scan: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	head, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("tli: scan %s: line 1: %w", path, err)
	}
	col := map[string]int{}
	for i, h := range head {
		col[strings.ToLower(strings.TrimSpace(h))] = i
	}
	cl, ok := col["layer"]
	cm, okm := col["mean"]
	if !okm {
		cm, okm = col["avg_cosine_similarity"]
	}
	if !ok || !okm {
		return nil, fmt.Errorf("tli: scan %s: header %q lacks layer and mean (or avg_cosine_similarity)", path, strings.Join(head, ","))
	}
	var out []LayerStats
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("tli: scan %s: %w", path, err)
		}
		line, _ := r.FieldPos(0)
		nan := math.NaN()
		l := LayerStats{Std: nan, MismatchedMean: nan, Gap: nan, PrecisionAt1: nan}
		if l.Layer, err = strconv.Atoi(strings.TrimSpace(rec[cl])); err != nil {
			return nil, fmt.Errorf("tli: scan %s: line %d: layer: %w", path, line, err)
		}
		fields := []struct {
			name string
			dst  *float64
		}{{"mean", &l.Mean}, {"std", &l.Std}, {"mismatched_mean", &l.MismatchedMean}, {"gap", &l.Gap}, {"precision_at_1", &l.PrecisionAt1}}
		for _, fd := range fields {
			i, ok := col[fd.name]
			if fd.name == "mean" {
				i, ok = cm, true
			}
			if !ok {
				continue
			}
			if *fd.dst, err = strconv.ParseFloat(strings.TrimSpace(rec[i]), 64); err != nil {
				return nil, fmt.Errorf("tli: scan %s: line %d: %s: %w", path, line, fd.name, err)
			}
		}
		out = append(out, l)
	}
	return out, nil
}

// num returns x for JSON, or nil (null) when x is NaN or infinite, which
// JSON cannot hold.
func num(x float64) any {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil
	}
	return x
}

func layerJSON(l LayerStats) map[string]any {
	return map[string]any{
		"layer": l.Layer, "n": l.N, "mean": num(l.Mean), "std": num(l.Std),
		"mismatched_mean": num(l.MismatchedMean), "gap": num(l.Gap), "precision_at_1": num(l.PrecisionAt1),
	}
}

// WriteScanJSON writes s as scan.json: model, pairs, pooling (name and
// description), the layers (as in scan.csv plus n), the best layer by gap,
// the std convention and the pooling note.
func WriteScanJSON(path string, s *ScanResult) error {
	layers := make([]any, len(s.Layers))
	for i, l := range s.Layers {
		layers[i] = layerJSON(l)
	}
	doc := map[string]any{
		"schema": SchemaVersion, "tli": ThisBuild(),
		"model": s.Model, "pairs": s.Pairs,
		"pooling": string(s.Pooling), "pooling_description": s.Pooling.Describe(),
		"std":    "sample standard deviation (ddof=1)",
		"layers": layers, "note": BOSNote,
	}
	if b, ok := s.Best(); ok {
		doc["best_layer_by_gap"] = b.Layer
	}
	if s.Prov != nil {
		doc["provenance"] = s.Prov
	}
	if len(s.Notes) > 0 {
		doc["notes"] = s.Notes
	}
	return writeJSON(path, doc)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("tli: write %s: %w", path, err)
	}
	return WriteFileAtomic(path, append(b, '\n'))
}

// WriteScanTable prints s as an aligned text table, headed by the model,
// the pooling and the number of pairs, with the best layer by gap marked.
func WriteScanTable(w io.Writer, s *ScanResult) error {
	best, _ := s.Best()
	n := 0
	if len(s.Layers) > 0 {
		n = s.Layers[0].N
	}
	fmt.Fprintf(w, "model %s, %d pairs (%s)\npooling: %s\n", s.Model, n, s.Pairs, s.Pooling.Describe())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "layer\tmean\tstd\tmismatched\tgap\tP@1\t\t")
	for _, l := range s.Layers {
		mark := ""
		if l.Layer == best.Layer {
			mark = "<- best gap"
		}
		fmt.Fprintf(tw, "%d\t%.4f\t%.4f\t%.4f\t%.4f\t%.3f\t%s\t\n", l.Layer, l.Mean, l.Std, l.MismatchedMean, l.Gap, l.PrecisionAt1, mark)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, "mismatched = mean cosine of non-translation pairs; gap = mean - mismatched; P@1 = Swahili->English retrieval among all pairs.")
	return err
}

// PairResult is one pair's cosine before and after training, as written to
// results.csv.
type PairResult struct {
	Swahili, English string
	SimPre, SimPost  float64
	Group            string // "trained" or "control"
	Layer            int
}

// PairResults zips pairs with their cosines before and after into
// PairResults of one group and layer.
func PairResults(pairs []Pair, pre, post []float64, group string, layer int) ([]PairResult, error) {
	if len(pairs) != len(pre) || len(pairs) != len(post) {
		return nil, fmt.Errorf("tli: %s: %d pairs but %d cosines before and %d after", group, len(pairs), len(pre), len(post))
	}
	out := make([]PairResult, len(pairs))
	for i, p := range pairs {
		out[i] = PairResult{p.Source, p.Target, pre[i], post[i], group, layer}
	}
	return out, nil
}

// WriteResultsCSV writes results.csv with the columns swahili, english,
// sim_pre, sim_post, group, layer.
func WriteResultsCSV(path string, rows []PairResult) error {
	return WriteAtomic(path, func(w io.Writer) error {
		cw := csv.NewWriter(w)
		cw.Write([]string{"swahili", "english", "sim_pre", "sim_post", "group", "layer"})
		for _, r := range rows {
			cw.Write([]string{r.Swahili, r.English, fmtFloat(r.SimPre), fmtFloat(r.SimPost), r.Group, strconv.Itoa(r.Layer)})
		}
		cw.Flush()
		return cw.Error()
	})
}

// ReadResultsCSV reads a results.csv written by WriteResultsCSV, or the
// published quantitative_results.csv (columns sim_pre_tli, sim_post_tli and
// no layer column). Rows without a layer column get defaultLayer.
func ReadResultsCSV(path string, defaultLayer int) ([]PairResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tli: read results: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	head, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("tli: results %s: line 1: %w", path, err)
	}
	col := map[string]int{}
	for i, h := range head {
		col[strings.ToLower(strings.TrimSpace(h))] = i
	}
	pick := func(names ...string) int {
		for _, n := range names {
			if i, ok := col[n]; ok {
				return i
			}
		}
		return -1
	}
	cs, ce := pick("swahili", "source"), pick("english", "target")
	cpre, cpost := pick("sim_pre", "sim_pre_tli"), pick("sim_post", "sim_post_tli")
	cg, cl := pick("group"), pick("layer")
	if cs < 0 || ce < 0 || cpre < 0 || cpost < 0 || cg < 0 {
		return nil, fmt.Errorf("tli: results %s: header %q lacks swahili, english, sim_pre, sim_post or group", path, strings.Join(head, ","))
	}
	var out []PairResult
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("tli: results %s: %w", path, err)
		}
		line, _ := r.FieldPos(0)
		pr := PairResult{Swahili: rec[cs], English: rec[ce], Group: rec[cg], Layer: defaultLayer}
		if pr.SimPre, err = strconv.ParseFloat(rec[cpre], 64); err == nil {
			pr.SimPost, err = strconv.ParseFloat(rec[cpost], 64)
		}
		if err == nil && cl >= 0 {
			pr.Layer, err = strconv.Atoi(rec[cl])
		}
		if err != nil {
			return nil, fmt.Errorf("tli: results %s: line %d: %w", path, line, err)
		}
		out = append(out, pr)
	}
	return out, nil
}

// GroupSummary is the before/after comparison of one group of pairs at one
// layer. Std* are sample standard deviations (ddof=1) and Std*Pop the
// population ones (ddof=0, numpy's default), since the paper does not say
// which it used. Change is MeanPost - MeanPre and ChangePct is Change as a
// percentage of MeanPre. TTest and Wilcoxon compare post against pre (a
// positive t means cosines went up); CohensDz is the paired effect size.
// Pre and Post, when the embeddings were at hand, hold the LayerStats of
// the group before and after: mismatched baseline, gap and P@1.
type GroupSummary struct {
	Group                 string
	Layer                 int
	N                     int
	MeanPre, MeanPost     float64
	StdPre, StdPost       float64
	StdPrePop, StdPostPop float64
	Change, ChangePct     float64
	TTest                 TTest
	Wilcoxon              Wilcoxon
	CohensDz              float64
	Pre, Post             *LayerStats
}

// SummarizeGroup compares the per-pair cosines pre and post of one group
// at one layer; preStats and postStats (may be nil) are the group's
// LayerStats before and after, for the baseline, gap and P@1 columns.
func SummarizeGroup(group string, layer int, pre, post []float64, preStats, postStats *LayerStats) (GroupSummary, error) {
	if len(pre) != len(post) {
		return GroupSummary{}, fmt.Errorf("tli: %s: %d cosines before but %d after", group, len(pre), len(post))
	}
	g := GroupSummary{Group: group, Layer: layer, N: len(pre), Pre: preStats, Post: postStats}
	g.MeanPre, g.MeanPost = Mean(pre), Mean(post)
	g.StdPre, g.StdPost = StdSample(pre), StdSample(post)
	g.StdPrePop, g.StdPostPop = StdPop(pre), StdPop(post)
	g.Change = g.MeanPost - g.MeanPre
	g.ChangePct = 100 * g.Change / g.MeanPre
	var err error
	if g.TTest, err = PairedTTest(post, pre); err != nil {
		return g, fmt.Errorf("tli: %s: %w", group, err)
	}
	if g.CohensDz, err = CohensDz(post, pre); err != nil {
		return g, fmt.Errorf("tli: %s: %w", group, err)
	}
	if g.Wilcoxon, err = WilcoxonSignedRank(post, pre); err != nil {
		// All differences zero (an untrained adapter): no Wilcoxon p.
		g.Wilcoxon = Wilcoxon{Stat: math.NaN(), P: math.NaN(), Zeros: len(pre)}
	}
	return g, nil
}

// SummarizeResults groups rows by (group, layer), in order of first
// appearance, and summarises each with SummarizeGroup (without LayerStats).
func SummarizeResults(rows []PairResult) ([]GroupSummary, error) {
	type key struct {
		g string
		l int
	}
	var order []key
	pre, post := map[key][]float64{}, map[key][]float64{}
	for _, r := range rows {
		k := key{r.Group, r.Layer}
		if _, ok := pre[k]; !ok {
			order = append(order, k)
		}
		pre[k] = append(pre[k], r.SimPre)
		post[k] = append(post[k], r.SimPost)
	}
	var out []GroupSummary
	for _, k := range order {
		g, err := SummarizeGroup(k.g, k.l, pre[k], post[k], nil, nil)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, nil
}

// EvalSummary is the before/after evaluation of a trained adapter.
type EvalSummary struct {
	Model   string  // base model
	Adapter string  // adapter file or name
	Pooling Pooling // pooling used for every cosine
	Groups  []GroupSummary
	Notes   []string
	Prov    *Provenance // written into summary.json when not nil
}

func groupJSON(g GroupSummary) map[string]any {
	m := map[string]any{
		"group": g.Group, "layer": g.Layer, "n": g.N,
		"mean_pre": num(g.MeanPre), "mean_post": num(g.MeanPost),
		"std_pre": num(g.StdPre), "std_post": num(g.StdPost),
		"std_pre_ddof0": num(g.StdPrePop), "std_post_ddof0": num(g.StdPostPop),
		"change": num(g.Change), "change_pct": num(g.ChangePct),
		"ttest": map[string]any{"t": num(g.TTest.T), "df": g.TTest.DF, "p": num(g.TTest.P)},
		"wilcoxon": map[string]any{"statistic": num(g.Wilcoxon.Stat), "n": g.Wilcoxon.N, "zeros": g.Wilcoxon.Zeros,
			"exact": g.Wilcoxon.Exact, "z": num(g.Wilcoxon.Z), "p": num(g.Wilcoxon.P)},
		"cohens_dz": num(g.CohensDz),
	}
	if g.Pre != nil {
		m["pre"] = layerJSON(*g.Pre)
	}
	if g.Post != nil {
		m["post"] = layerJSON(*g.Post)
	}
	return m
}

// WriteSummaryJSON writes summary.json: model, adapter, pooling (name and
// description), one object per group and layer (means, both standard
// deviations, change, t-test, Wilcoxon, d_z, and "pre"/"post" LayerStats
// with the mismatched baseline, gap and P@1 when known), the published
// figures for comparison and the pooling note. Non-finite numbers are null.
func WriteSummaryJSON(path string, s *EvalSummary) error {
	groups := make([]any, len(s.Groups))
	for i, g := range s.Groups {
		groups[i] = groupJSON(g)
	}
	pub := make([]any, len(Published))
	for i, g := range Published {
		pub[i] = map[string]any{"group": g.Group, "layer": g.Layer, "n": g.N, "mean_pre": g.MeanPre, "mean_post": g.MeanPost, "change_pct": g.ChangePct}
	}
	doc := map[string]any{
		"schema": SchemaVersion, "tli": ThisBuild(),
		"model": s.Model, "adapter": s.Adapter,
		"pooling": string(s.Pooling), "pooling_description": s.Pooling.Describe(),
		"groups":    groups,
		"published": map[string]any{"source": "arXiv 2506.15415, layer 2, BOS/EOS left out of the pooling", "groups": pub},
		"tests":     "paired t-test and Wilcoxon signed-rank test of post against pre, two-sided (as scipy.stats.ttest_rel and wilcoxon)",
		"note":      BOSNote,
	}
	if len(s.Notes) > 0 {
		doc["notes"] = s.Notes
	}
	if s.Prov != nil {
		doc["provenance"] = s.Prov
	}
	return writeJSON(path, doc)
}

// fmtP formats a p-value compactly: 4 decimals, or scientific below 1e-4.
func fmtP(p float64) string {
	switch {
	case math.IsNaN(p):
		return "n/a"
	case p == 0:
		return "<1e-300"
	case p < 1e-4:
		return fmt.Sprintf("%.2e", p)
	}
	return fmt.Sprintf("%.4f", p)
}

// prePost formats "a -> b" with f, or "n/a" when the stats are missing.
func prePost(pre, post *LayerStats, f func(LayerStats) float64, digits int) string {
	if pre == nil || post == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.*f -> %.*f", digits, f(*pre), digits, f(*post))
}

// WriteEvalTable prints s as an aligned text table, one row per group and
// layer, headed by the model, adapter and pooling.
func WriteEvalTable(w io.Writer, s *EvalSummary) error {
	fmt.Fprintf(w, "model %s, adapter %s\npooling: %s\n", s.Model, s.Adapter, s.Pooling.Describe())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "group\tlayer\tn\tmean pre\tstd pre\tmean post\tstd post\tchange\tchange %\tt\tp (t)\tp (Wilcoxon)\td_z\tmismatched\tgap\tP@1\t")
	for _, g := range s.Groups {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.4f\t%.4f\t%.4f\t%.4f\t%+.4f\t%+.2f%%\t%.2f\t%s\t%s\t%.2f\t%s\t%s\t%s\t\n",
			g.Group, g.Layer, g.N, g.MeanPre, g.StdPre, g.MeanPost, g.StdPost, g.Change, g.ChangePct,
			g.TTest.T, fmtP(g.TTest.P), fmtP(g.Wilcoxon.P), g.CohensDz,
			prePost(g.Pre, g.Post, func(l LayerStats) float64 { return l.MismatchedMean }, 4),
			prePost(g.Pre, g.Post, func(l LayerStats) float64 { return l.Gap }, 4),
			prePost(g.Pre, g.Post, func(l LayerStats) float64 { return l.PrecisionAt1 }, 3))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, "std: sample (ddof=1); tests: post vs pre, two-sided; mismatched/gap/P@1: before -> after.")
	return err
}

// PlotRef is a plot to show in report.md.
type PlotRef struct {
	Title string
	Path  string // made relative to the report's folder when possible
}

// Report is everything report.md shows; Scan and Eval may each be nil.
type Report struct {
	Title    string
	Scan     *ScanResult
	Eval     *EvalSummary
	Plots    []PlotRef
	Commands []string // the commands that produced the results, shown verbatim
	// Run, when not nil, is shown as the run's settings, build and times;
	// Train as its training section.
	Run   *Provenance
	Train *TrainSummary
}

// WriteReportMarkdown writes report.md at path: the pooling used, the
// mismatched baseline and the pooling note first, then the scan table (best
// layer by gap in bold), the evaluation table with the published figures
// beside it, and the plots.
func WriteReportMarkdown(path string, r Report) error {
	var b strings.Builder
	title := r.Title
	if title == "" {
		title = "TLI report"
	}
	fmt.Fprintf(&b, "# %s\n\n", title)
	var pool []Pooling
	if r.Scan != nil {
		pool = append(pool, r.Scan.Pooling)
	}
	if r.Eval != nil {
		pool = append(pool, r.Eval.Pooling)
	}
	for i, p := range pool {
		what := "Scan"
		if i == 1 || r.Scan == nil {
			what = "Evaluation"
		}
		fmt.Fprintf(&b, "- %s pooling: **%s** — %s.\n", what, p, p.Describe())
	}
	if len(pool) == 2 && pool[0] != pool[1] {
		b.WriteString("- **The scan and the evaluation use different poolings: their cosines are not comparable.**\n")
	}
	b.WriteString("- Every cosine below is shown with the mismatched-pair baseline (mean cosine of non-translation pairs, same layer and pooling); the gap and Swahili→English retrieval precision@1 measure alignment, the raw mean alone does not.\n\n")
	fmt.Fprintf(&b, "> %s\n\n", BOSNote)

	if s := r.Scan; s != nil {
		n := 0
		if len(s.Layers) > 0 {
			n = s.Layers[0].N
		}
		fmt.Fprintf(&b, "## Layer scan\n\nModel `%s`, %d pairs (%s), pooling `%s`.\n\n", s.Model, n, s.Pairs, s.Pooling)
		b.WriteString("| layer | mean | std | mismatched mean | gap | P@1 |\n|---:|---:|---:|---:|---:|---:|\n")
		best, _ := s.Best()
		for _, l := range s.Layers {
			row := fmt.Sprintf("%d | %.4f | %.4f | %.4f | %.4f | %.3f", l.Layer, l.Mean, l.Std, l.MismatchedMean, l.Gap, l.PrecisionAt1)
			if l.Layer == best.Layer {
				row = "**" + strings.ReplaceAll(row, " | ", "** | **") + "**"
			}
			fmt.Fprintf(&b, "| %s |\n", row)
		}
		fmt.Fprintf(&b, "\nBest layer by gap: **%d** (gap %.4f, P@1 %.3f; chance P@1 is %.4f). Std is the sample standard deviation (ddof=1).\n\n", best.Layer, best.Gap, best.PrecisionAt1, 1/math.Max(1, float64(n)))
		for _, note := range s.Notes {
			fmt.Fprintf(&b, "- %s\n", note)
		}
		if len(s.Notes) > 0 {
			b.WriteString("\n")
		}
	}
	if e := r.Eval; e != nil {
		fmt.Fprintf(&b, "## Before/after evaluation\n\nModel `%s`, adapter `%s`, pooling `%s`.\n\n", e.Model, e.Adapter, e.Pooling)
		b.WriteString("| group | layer | n | mean pre (std) | mean post (std) | change | change % | t (df) | p t-test | p Wilcoxon | d_z | mismatched pre → post | gap pre → post | P@1 pre → post |\n")
		b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, g := range e.Groups {
			fmt.Fprintf(&b, "| %s | %d | %d | %.4f (%.4f) | %.4f (%.4f) | %+.4f | %+.2f%% | %.2f (%d) | %s | %s | %.2f | %s | %s | %s |\n",
				g.Group, g.Layer, g.N, g.MeanPre, g.StdPre, g.MeanPost, g.StdPost, g.Change, g.ChangePct,
				g.TTest.T, g.TTest.DF, fmtP(g.TTest.P), fmtP(g.Wilcoxon.P), g.CohensDz,
				prePost(g.Pre, g.Post, func(l LayerStats) float64 { return l.MismatchedMean }, 4),
				prePost(g.Pre, g.Post, func(l LayerStats) float64 { return l.Gap }, 4),
				prePost(g.Pre, g.Post, func(l LayerStats) float64 { return l.PrecisionAt1 }, 3))
		}
		b.WriteString("\nStd is the sample standard deviation (ddof=1; summary.json also has ddof=0). Tests compare post against pre, two-sided: paired t-test as scipy.stats.ttest_rel, Wilcoxon signed-rank as scipy.stats.wilcoxon (zero differences dropped; exact for n ≤ 50 without ties, else normal approximation with tie correction). d_z is Cohen's d of the paired differences.\n\n")
		b.WriteString("Published (arXiv 2506.15415, Llama, layer 2, BOS/EOS left out of the pooling, no mismatched baseline reported):\n\n| group | n | mean pre | mean post | change % |\n|---|---:|---:|---:|---:|\n")
		for _, g := range Published {
			fmt.Fprintf(&b, "| %s | %d | %.4f | %.4f | %+.2f%% |\n", g.Group, g.N, g.MeanPre, g.MeanPost, g.ChangePct)
		}
		b.WriteString("\n")
		for _, note := range e.Notes {
			fmt.Fprintf(&b, "- %s\n", note)
		}
		if len(e.Notes) > 0 {
			b.WriteString("\n")
		}
	}
	if t := r.Train; t != nil {
		fmt.Fprintf(&b, "## Training\n\nLayer %d, %d optimiser steps, triplet loss %.4f at the first step and %.4f at the last (the curve with the learning rate is among the plots).\n\n", t.Layer, t.Steps, t.FirstLoss, t.LastLoss)
	}
	if pv := r.Run; pv != nil {
		fmt.Fprintf(&b, "## Run\n\n- tli %s; results schema %d\n- model `%s`", pv.Build, pv.Schema, pv.Model)
		if pv.Family != "" {
			fmt.Fprintf(&b, " (%s)", pv.Family)
		}
		if pv.DType != "" {
			fmt.Fprintf(&b, ", weights held as %s", pv.DType)
		}
		b.WriteString("\n")
		if pv.Device != "" {
			fmt.Fprintf(&b, "- computed on %s\n", pv.Device)
		}
		if pv.Numerics != "" && pv.Numerics != "f32" || pv.EvalNumerics != "" {
			fmt.Fprintf(&b, "- numerics: %s", pv.Numerics)
			if pv.EvalNumerics != "" {
				fmt.Fprintf(&b, "; evaluation: %s, the adapter merged into the 4-bit weights (requantised)", pv.EvalNumerics)
			}
			b.WriteString("\n")
		}
		if len(pv.Settings) > 0 {
			keys := make([]string, 0, len(pv.Settings))
			for k := range pv.Settings {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			b.WriteString("- settings:")
			for _, k := range keys {
				fmt.Fprintf(&b, " %s=%v", k, pv.Settings[k])
			}
			b.WriteString("\n")
		}
		if len(pv.Seconds) > 0 {
			b.WriteString("- time:")
			for _, k := range []string{"scan", "train", "eval"} {
				if v, ok := pv.Seconds[k]; ok {
					fmt.Fprintf(&b, " %s %.1f s", k, v)
				}
			}
			b.WriteString("\n")
		}
		if pv.Date != "" {
			fmt.Fprintf(&b, "- finished %s\n", pv.Date)
		}
		b.WriteString("\n")
	}
	if len(r.Plots) > 0 {
		b.WriteString("## Plots\n\n")
		dir := filepath.Dir(path)
		for _, p := range r.Plots {
			rel := p.Path
			if x, err := filepath.Rel(dir, p.Path); err == nil && !strings.HasPrefix(x, "..") {
				rel = x
			}
			fmt.Fprintf(&b, "### %s\n\n![%s](%s)\n\n", p.Title, p.Title, filepath.ToSlash(rel))
		}
	}
	if len(r.Commands) > 0 {
		b.WriteString("## Commands\n\n```\n")
		for _, c := range r.Commands {
			b.WriteString(c + "\n")
		}
		b.WriteString("```\n")
	}
	return WriteFileAtomic(path, []byte(b.String()))
}
