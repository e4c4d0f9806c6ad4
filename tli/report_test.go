package tli

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tli-project/tli/internal/peer"
)

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.txt")
	if err := WriteFileAtomic(path, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(path, []byte("two")); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := WriteAtomic(path, func(w io.Writer) error {
		w.Write([]byte("partial"))
		return boom
	})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), path) {
		t.Errorf("failed write: %v", err)
	}
	b, _ := os.ReadFile(path)
	ents, _ := os.ReadDir(dir)
	if string(b) != "two" || len(ents) != 1 {
		t.Errorf("content %q, %d files left in the folder", b, len(ents))
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", st.Mode())
	}
	if err := WriteFileAtomic(filepath.Join(dir, "no", "such", "dir.txt"), nil); err == nil {
		t.Error("missing folder accepted")
	}
}

func testScan() *ScanResult {
	return &ScanResult{
		Model: "tiny", Pairs: "default train", Pooling: PoolContent,
		Layers: []LayerStats{
			{Layer: 0, N: 623, Mean: 0.30, Std: 0.1, MismatchedMean: 0.29, Gap: 0.01, PrecisionAt1: 0.01},
			{Layer: 1, N: 623, Mean: 0.40, Std: 0.1, MismatchedMean: 0.25, Gap: 0.15, PrecisionAt1: 0.2},
			{Layer: 2, N: 623, Mean: 0.99, Std: 0.001, MismatchedMean: 0.99, Gap: 0.0, PrecisionAt1: 0.5},
			{Layer: 3, N: 623, Mean: 0.45, Std: math.NaN(), MismatchedMean: 0.30, Gap: 0.15, PrecisionAt1: 0.3},
		},
		Notes: []string{"synthetic"},
	}
}

func TestScanWriters(t *testing.T) {
	s := testScan()
	if b, ok := s.Best(); !ok || b.Layer != 1 {
		t.Errorf("best %+v (want layer 1: largest gap, earliest on ties, not largest mean)", b)
	}
	if _, ok := (&ScanResult{}).Best(); ok {
		t.Error("empty scan has a best layer")
	}
	dir := t.TempDir()
	if err := WriteScanCSV(filepath.Join(dir, "scan.csv"), s); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(filepath.Join(dir, "scan.csv"))
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{scanHeader, {"0", "0.3", "0.1", "0.29", "0.01", "0.01"}, {"1", "0.4", "0.1", "0.25", "0.15", "0.2"},
		{"2", "0.99", "0.001", "0.99", "0", "0.5"}, {"3", "0.45", "NaN", "0.3", "0.15", "0.3"}}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("scan.csv:\n%v\nwant\n%v", rows, want)
	}
	back, err := ReadScanCSV(filepath.Join(dir, "scan.csv"))
	if err != nil || len(back) != 4 || back[1] != (LayerStats{Layer: 1, Mean: 0.4, Std: 0.1, MismatchedMean: 0.25, Gap: 0.15, PrecisionAt1: 0.2}) ||
		!math.IsNaN(back[3].Std) {
		t.Errorf("ReadScanCSV: %+v %v", back, err)
	}
	if err := WriteScanJSON(filepath.Join(dir, "scan.json"), s); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Model              string
		Pooling            string
		PoolingDescription string `json:"pooling_description"`
		BestLayer          int    `json:"best_layer_by_gap"`
		Note               string
		Layers             []map[string]any
	}
	b, _ := os.ReadFile(filepath.Join(dir, "scan.json"))
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Model != "tiny" || doc.Pooling != "content" || doc.BestLayer != 1 || doc.PoolingDescription != PoolContent.Describe() || doc.Note != BOSNote || len(doc.Layers) != 4 ||
		doc.Layers[1]["gap"] != 0.15 || doc.Layers[3]["std"] != nil || doc.Layers[0]["n"] != 623.0 {
		t.Errorf("scan.json: %s", b)
	}
	var tb bytes.Buffer
	if err := WriteScanTable(&tb, s); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(tb.String(), "\n")
	if !strings.Contains(lines[1], "BOS/EOS left out") || !strings.HasSuffix(strings.TrimSpace(lines[4]), "<- best gap") ||
		!strings.Contains(lines[4], "0.4000  0.1000      0.2500  0.1500  0.200") || strings.Contains(lines[7], "best") {
		t.Errorf("table:\n%s", tb.String())
	}
}

func TestResultsRoundTripAndSummary(t *testing.T) {
	pairs := []Pair{{Source: "maji", Target: "water"}, {Source: "moto", Target: "fire"}, {Source: "jua", Target: "sun"}, {Source: "mti", Target: "tree"}}
	pre := []float64{0.1, 0.2, 0.3, 0.4}
	post := []float64{0.2, 0.35, 0.3, 0.6}
	rows, err := PairResults(pairs, pre, post, "trained", 2)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "results.csv")
	if err := WriteResultsCSV(path, rows); err != nil {
		t.Fatal(err)
	}
	got, err := ReadResultsCSV(path, -1)
	if err != nil || !reflect.DeepEqual(got, rows) {
		t.Fatalf("round trip: %v %v", got, err)
	}
	if _, err := PairResults(pairs, pre[:3], post, "x", 0); err == nil {
		t.Error("length mismatch accepted")
	}
	sums, err := SummarizeResults(got)
	if err != nil || len(sums) != 1 {
		t.Fatal(sums, err)
	}
	g := sums[0]
	// d = {0.1, 0.15, 0, 0.2}: mean 0.1125, the zero is dropped by Wilcoxon.
	d := []float64{0.1, 0.15, 0, 0.2}
	tt, _ := PairedTTest(post, pre)
	if g.N != 4 || !approxRel(g.MeanPre, 0.25, 1e-15) || !approxRel(g.Change, Mean(d), 1e-12) ||
		!approxRel(g.ChangePct, 100*Mean(d)/0.25, 1e-12) || g.TTest != tt || g.Wilcoxon.Zeros != 1 || g.Wilcoxon.Exact ||
		!approxRel(g.StdPost, StdSample(post), 1e-15) || !approxRel(g.StdPostPop, StdPop(post), 1e-15) {
		t.Errorf("summary %+v", g)
	}
	// An untrained adapter: no change, no Wilcoxon p, still a summary.
	z, err := SummarizeGroup("control", 2, pre, pre, nil, nil)
	if err != nil || !math.IsNaN(z.Wilcoxon.P) || !math.IsNaN(z.TTest.T) || z.Change != 0 {
		t.Errorf("zero change: %+v %v", z, err)
	}
	ls := LayerStats{Layer: 2, N: 4, Mean: 0.25, MismatchedMean: 0.2, Gap: 0.05, PrecisionAt1: 0.5}
	ls2 := LayerStats{Layer: 2, N: 4, Mean: 0.36, MismatchedMean: 0.22, Gap: 0.14, PrecisionAt1: 0.75}
	g.Pre, g.Post = &ls, &ls2
	es := &EvalSummary{Model: "tiny", Adapter: "a.safetensors", Pooling: PoolContent, Groups: []GroupSummary{g, z}}
	sp := filepath.Join(t.TempDir(), "summary.json")
	if err := WriteSummaryJSON(sp, es); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	b, _ := os.ReadFile(sp)
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	gs := doc["groups"].([]any)
	g0, g1 := gs[0].(map[string]any), gs[1].(map[string]any)
	if g0["ttest"].(map[string]any)["t"] != tt.T || g0["post"].(map[string]any)["precision_at_1"] != 0.75 ||
		g1["wilcoxon"].(map[string]any)["p"] != nil || g1["ttest"].(map[string]any)["t"] != nil || doc["pooling"] != "content" {
		t.Errorf("summary.json: %s", b)
	}
	var tb bytes.Buffer
	if err := WriteEvalTable(&tb, es); err != nil {
		t.Fatal(err)
	}
	out := tb.String()
	for _, want := range []string{"BOS/EOS left out", "0.2000 -> 0.2200", "0.0500 -> 0.1400", "0.500 -> 0.750", "+45.00%", "n/a"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestReportMarkdown(t *testing.T) {
	dir := t.TempDir()
	scan := testScan()
	scan.Pooling = PoolMean
	g, _ := SummarizeGroup("trained", 2, []float64{0.1, 0.2, 0.3}, []float64{0.2, 0.3, 0.5}, nil, nil)
	r := Report{
		Title: "TLI on tiny", Scan: scan,
		Eval:     &EvalSummary{Model: "tiny", Adapter: "a", Pooling: PoolContent, Groups: []GroupSummary{g}},
		Plots:    []PlotRef{{"Scan", filepath.Join(dir, "plots", "scan.png")}, {"Elsewhere", "/abs/other.png"}},
		Commands: []string{"tli scan --model tiny"},
	}
	path := filepath.Join(dir, "report.md")
	if err := WriteReportMarkdown(path, r); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	md := string(b)
	for _, want := range []string{
		"# TLI on tiny",
		"- Scan pooling: **mean** — mean over all tokens, BOS/EOS included",
		"- Evaluation pooling: **content**",
		"different poolings",
		"mismatched-pair baseline",
		"> " + BOSNote,
		"| **1** | **0.4000** | **0.1000** | **0.2500** | **0.1500** | **0.200** |",
		"Best layer by gap: **1**",
		"| trained | 2 | 3 | 0.2000 (0.1000) | 0.3333 (0.1528) | +0.1333 | +66.67% |",
		"| control | 63 | 0.3143 | 0.4033 | +28.32% |",
		"![Scan](plots/scan.png)",
		"![Elsewhere](/abs/other.png)",
		"tli scan --model tiny",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(md)
	}
}

// TestPaperResultsSummary reads the published per-pair results and checks
// that the summary reproduces the paper's headline numbers.
func TestPaperResultsSummary(t *testing.T) {
	dir := peer.PaperData()
	if dir == "" {
		t.Skip("published TLI data not found beside the repository")
	}
	rows, err := ReadResultsCSV(filepath.Join(dir, "quantitative_results.csv"), 2)
	if err != nil {
		t.Fatal(err)
	}
	sums, err := SummarizeResults(rows)
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) != 2 {
		t.Fatalf("%d groups", len(sums))
	}
	for i, g := range sums {
		p := Published[i]
		if g.Group != p.Group || g.N != p.N || g.Layer != 2 || math.Abs(g.MeanPre-p.MeanPre) > 5e-5 || math.Abs(g.MeanPost-p.MeanPost) > 5e-5 ||
			math.Abs(g.ChangePct-p.ChangePct) > 5e-3 || math.Abs(g.Change-p.Change) > 5e-5 {
			t.Errorf("%s: %+v, published %+v", g.Group, g, p)
		}
	}
	if !approxRel(sums[0].TTest.T, 54.884161570485181, 1e-11) || sums[0].TTest.DF != 622 {
		t.Errorf("trained t-test %+v", sums[0].TTest)
	}
	// The published scan (BOS included in the pooling): 32 rows, layers
	// 0-31, 0.3153 at the embeddings, 0.99998 at layer 2.
	scan, err := ReadScanCSV(filepath.Join(dir, "layer_alignment_results.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if len(scan) != 32 || scan[31].Layer != 31 || scan[2].Layer != 2 || scan[2].Mean != 0.9999804970349393 || scan[0].Mean != 0.3153099313402252 || !math.IsNaN(scan[2].Gap) {
		t.Errorf("published scan: %d layers, %+v", len(scan), scan[:3])
	}
}
