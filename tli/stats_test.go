package tli

import (
	"encoding/csv"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/tli-project/tli/internal/peer"
)

func approxRel(got, want, rel float64) bool {
	if math.IsNaN(want) {
		return math.IsNaN(got)
	}
	return math.Abs(got-want) <= rel*math.Max(math.Abs(want), 1e-300)
}

func TestMeanStd(t *testing.T) {
	x := []float64{2, 4, 4, 4, 5, 5, 7, 9} // the textbook example with population std 2
	if Mean(x) != 5 || StdPop(x) != 2 {
		t.Errorf("mean %v std %v", Mean(x), StdPop(x))
	}
	if want := math.Sqrt(32.0 / 7); !approxRel(StdSample(x), want, 1e-15) {
		t.Errorf("sample std %v, want %v", StdSample(x), want)
	}
	// A large offset: the naive sum-of-squares formula loses every digit.
	y := []float64{1e9 + 1, 1e9 + 2, 1e9 + 3}
	if StdSample(y) != 1 {
		t.Errorf("offset sample std %v, want 1", StdSample(y))
	}
	if !math.IsNaN(StdSample([]float64{1})) || !math.IsNaN(Mean(nil)) {
		t.Error("want NaN for too few values")
	}
}

func TestStudentTwoSidedP(t *testing.T) {
	// Two-sided 5%, 1% and 5% critical values of Student's t for 10, 5 and 1
	// degrees of freedom (scipy.stats.t.ppf(0.975, 10) etc.; tables give
	// 2.228, 4.032, 12.706).
	for _, c := range []struct{ t, df, p float64 }{
		{2.2281388519649385, 10, 0.05}, {4.032142983557536, 5, 0.01}, {12.706204736174698, 1, 0.05},
		{0, 7, 1},
	} {
		if got := StudentTwoSidedP(c.t, c.df); !approxRel(got, c.p, 1e-9) {
			t.Errorf("t=%v df=%v: p %v, want %v", c.t, c.df, got, c.p)
		}
	}
}

func TestPairedTTestSmall(t *testing.T) {
	// d = after - before = {1, 2, 3, 4, 5}: mean 3, sample sd sqrt(2.5),
	// t = 3/(sqrt(2.5)/sqrt(5)) = 3 sqrt(2) = 4.242640687119285, df 4;
	// p = 0.0132355995636827 (mpmath betainc(2, 1/2, 0, 4/22, regularized=True)).
	before := []float64{1, 1, 1, 1, 1}
	after := []float64{2, 3, 4, 5, 6}
	r, err := PairedTTest(after, before)
	if err != nil {
		t.Fatal(err)
	}
	if !approxRel(r.T, 3*math.Sqrt2, 1e-14) || r.DF != 4 || !approxRel(r.P, 0.0132355995636827, 1e-12) {
		t.Errorf("got %+v", r)
	}
	if r2, _ := PairedTTest(before, after); r2.T != -r.T || r2.P != r.P {
		t.Errorf("swapped: %+v", r2)
	}
	dz, _ := CohensDz(after, before)
	if !approxRel(dz, 3/math.Sqrt(2.5), 1e-14) || !approxRel(dz, r.T/math.Sqrt(5), 1e-14) {
		t.Errorf("d_z %v", dz)
	}
	if _, err := PairedTTest([]float64{1}, []float64{1, 2}); err == nil {
		t.Error("length mismatch accepted")
	}
	if _, err := PairedTTest([]float64{1}, []float64{2}); err == nil {
		t.Error("n=1 accepted")
	}
	if r, _ := PairedTTest([]float64{2, 3}, []float64{1, 2}); !math.IsInf(r.T, 1) || r.P != 0 {
		t.Errorf("constant shift: %+v", r)
	}
}

// The Darwin maize differences (Fisher 1935), scipy.stats.wilcoxon's
// documentation example: statistic 24, exact p 0.041259765625,
// normal-approximation p 0.04088813291185591.
var darwin = []float64{6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75}

func TestWilcoxonExact(t *testing.T) {
	zero := make([]float64, len(darwin))
	r, err := WilcoxonSignedRank(darwin, zero)
	if err != nil {
		t.Fatal(err)
	}
	if r.Stat != 24 || !r.Exact || r.N != 15 || r.P != 0.041259765625 {
		t.Errorf("got %+v", r)
	}
	// Independent check by enumerating all 2^15 sign patterns of ranks 1..15.
	count := 0
	for mask := 0; mask < 1<<15; mask++ {
		s := 0
		for k := 0; k < 15; k++ {
			if mask&(1<<k) != 0 {
				s += k + 1
			}
		}
		if s <= 24 {
			count++
		}
	}
	if want := 2 * float64(count) / (1 << 15); r.P != want {
		t.Errorf("p %v, enumeration gives %v", r.P, want)
	}
	if signedRankCDF(3, 0) != 0.125 || signedRankCDF(3, 3) != 0.625 || signedRankCDF(3, 6) != 1 {
		t.Error("signedRankCDF for n=3")
	}
}

func TestWilcoxonApprox(t *testing.T) {
	// A zero difference forces the normal approximation: dropping it leaves
	// the Darwin data, z = (24 - 60)/sqrt(310).
	a := append([]float64{5}, darwin...)
	b := make([]float64, len(a))
	b[0] = 5
	r, err := WilcoxonSignedRank(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if r.Exact || r.Zeros != 1 || r.N != 15 || !approxRel(r.Z, -36/math.Sqrt(310), 1e-14) || !approxRel(r.P, 0.04088813291185591, 1e-12) {
		t.Errorf("got %+v", r)
	}
	// Ties: d = {1, 1, -2, 3, 3, 3, 4}. |d| ranks: 1,1 -> 1.5; 2 -> 3;
	// 3,3,3 -> 5; 4 -> 7. R- = 3, R+ = 25; n = 7, mean 14,
	// var = 7*8*15/24 - ((8-2)+(27-3))/48 = 35 - 0.625.
	d := []float64{1, 1, -2, 3, 3, 3, 4}
	r, err = WilcoxonSignedRank(d, make([]float64, len(d)))
	if err != nil {
		t.Fatal(err)
	}
	z := (3 - 14) / math.Sqrt(35-0.625)
	if r.Exact || r.Stat != 3 || !approxRel(r.Z, z, 1e-14) || !approxRel(r.P, math.Erfc(-z/math.Sqrt2), 1e-14) {
		t.Errorf("ties: got %+v, want z %v", r, z)
	}
	if _, err := WilcoxonSignedRank([]float64{1, 2}, []float64{1, 2}); err == nil {
		t.Error("all-zero differences accepted")
	}
}

// TestPaperStatistics recomputes the published evaluation's statistics from
// its per-pair quantitative_results.csv. The expected values were computed
// independently with mpmath at 40 digits (t from the definition, p as the
// regularised incomplete beta, Wilcoxon z from average ranks); the means
// match the paper's 0.3211 -> 0.4113 (trained) and 0.3143 -> 0.4033 (control).
func TestPaperStatistics(t *testing.T) {
	dir := peer.PaperData()
	if dir == "" {
		t.Skip("published TLI data not found beside the repository")
	}
	f, err := os.Open(filepath.Join(dir, "quantitative_results.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	pre, post := map[string][]float64{}, map[string][]float64{}
	for _, r := range rows[1:] {
		a, _ := strconv.ParseFloat(r[2], 64)
		b, _ := strconv.ParseFloat(r[3], 64)
		pre[r[4]] = append(pre[r[4]], a)
		post[r[4]] = append(post[r[4]], b)
	}
	want := map[string]struct {
		n                                  int
		meanPre, meanPost, sdPre, popSdPre float64
		t, p, dz, w, z, pw                 float64
	}{
		"trained": {623, 0.32112666005403234, 0.4113072727599075, 0.08338851363522695, 0.08332156178690951,
			54.884161570485181, 1.3320112764210309e-240, 2.1988875019108155, 46, -21.614396629253412, 1.3151012271328613e-103},
		"control": {63, 0.31431577957811807, 0.4033331390884187, 0.07335199855084036, 0.07276751116004891,
			18.452500588074424, 7.1724141951189833e-27, 2.324796553491335, 0, -6.9008729334841754, 5.168394813632279e-12},
	}
	for g, w := range want {
		if len(pre[g]) != w.n {
			t.Fatalf("%s: %d rows", g, len(pre[g]))
		}
		if !approxRel(Mean(pre[g]), w.meanPre, 1e-13) || !approxRel(Mean(post[g]), w.meanPost, 1e-13) ||
			!approxRel(StdSample(pre[g]), w.sdPre, 1e-12) || !approxRel(StdPop(pre[g]), w.popSdPre, 1e-12) {
			t.Errorf("%s: mean %v -> %v, sd %v / %v", g, Mean(pre[g]), Mean(post[g]), StdSample(pre[g]), StdPop(pre[g]))
		}
		tt, _ := PairedTTest(post[g], pre[g])
		dz, _ := CohensDz(post[g], pre[g])
		if !approxRel(tt.T, w.t, 1e-11) || tt.DF != w.n-1 || !approxRel(tt.P, w.p, 1e-8) || !approxRel(dz, w.dz, 1e-11) {
			t.Errorf("%s: t-test %+v d_z %v", g, tt, dz)
		}
		wx, _ := WilcoxonSignedRank(post[g], pre[g])
		if wx.Exact || wx.Stat != w.w || !approxRel(wx.Z, w.z, 1e-12) || !approxRel(wx.P, w.pw, 1e-9) {
			t.Errorf("%s: Wilcoxon %+v", g, wx)
		}
	}
}
