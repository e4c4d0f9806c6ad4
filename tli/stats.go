package tli

import (
	"fmt"
	"math"
	"sort"

	"gonum.org/v1/gonum/mathext"
	"gonum.org/v1/gonum/stat"
)

// Mean returns the arithmetic mean of x (NaN for an empty slice).
func Mean(x []float64) float64 {
	if len(x) == 0 {
		return math.NaN()
	}
	return stat.Mean(x, nil)
}

// Std returns the standard deviation of x with ddof delta degrees of
// freedom: the root of sum((x-mean)²)/(n-ddof). ddof=1 is the sample
// standard deviation (pandas' Series.std default, R's sd); ddof=0 the
// population one (numpy's np.std default). NaN when n <= ddof.
//
// Reports in this package use the sample standard deviation (StdSample)
// throughout; the paper's scripts are not published, so which one its
// "std" columns used is not known, and both are given where it matters.
func Std(x []float64, ddof int) float64 {
	n := len(x)
	if n <= ddof {
		return math.NaN()
	}
	m := Mean(x)
	var ss, c float64
	for _, v := range x {
		d := v - m
		ss += d * d
		c += d
	}
	// Two-pass corrected sum of squares (the compensation term c is zero in
	// exact arithmetic and removes the rounding error of the mean).
	ss -= c * c / float64(n)
	return math.Sqrt(ss / float64(n-ddof))
}

// StdSample is Std(x, 1).
func StdSample(x []float64) float64 { return Std(x, 1) }

// StdPop is Std(x, 0).
func StdPop(x []float64) float64 { return Std(x, 0) }

// TTest is the result of a paired t-test.
type TTest struct {
	T  float64 // t statistic
	DF int     // degrees of freedom, n-1
	P  float64 // two-sided p-value
}

// PairedTTest is the two-sided paired t-test of a against b, as
// scipy.stats.ttest_rel(a, b): with d = a - b,
// t = mean(d) / (StdSample(d) / sqrt(n)), df = n - 1, and
// p = 2 P(T_df > |t|) = I_{df/(df+t²)}(df/2, 1/2) (regularised incomplete
// beta, accurate for tiny p). Pass (after, before) for a positive t when
// values went up. Errors when the lengths differ or n < 2. When every
// difference is equal, t is ±Inf (p 0) or NaN (p NaN) if they are all zero,
// as in scipy.
func PairedTTest(a, b []float64) (TTest, error) {
	d, err := diffs(a, b)
	if err != nil {
		return TTest{}, err
	}
	n := len(d)
	if n < 2 {
		return TTest{}, fmt.Errorf("tli: paired t-test needs at least 2 pairs, have %d", n)
	}
	m, s := Mean(d), StdSample(d)
	r := TTest{DF: n - 1}
	r.T = m / (s / math.Sqrt(float64(n)))
	if s == 0 {
		switch {
		case m > 0:
			r.T = math.Inf(1)
		case m < 0:
			r.T = math.Inf(-1)
		default:
			r.T = math.NaN()
		}
	}
	r.P = StudentTwoSidedP(r.T, float64(r.DF))
	return r, nil
}

// StudentTwoSidedP returns 2 P(T > |t|) for Student's t with df degrees of
// freedom.
func StudentTwoSidedP(t, df float64) float64 {
	if math.IsNaN(t) {
		return math.NaN()
	}
	if math.IsInf(t, 0) {
		return 0
	}
	return mathext.RegIncBeta(df/2, 0.5, df/(df+t*t))
}

func diffs(a, b []float64) ([]float64, error) {
	if len(a) != len(b) {
		return nil, fmt.Errorf("tli: paired samples differ in length: %d and %d", len(a), len(b))
	}
	d := make([]float64, len(a))
	for i := range a {
		d[i] = a[i] - b[i]
	}
	return d, nil
}

// CohensDz returns Cohen's d for paired samples in its d_z form: the mean of
// the differences a - b over their sample standard deviation. It is t/sqrt(n)
// of the paired t-test, the effect size that test measures.
func CohensDz(a, b []float64) (float64, error) {
	d, err := diffs(a, b)
	if err != nil {
		return 0, err
	}
	if len(d) < 2 {
		return 0, fmt.Errorf("tli: Cohen's d needs at least 2 pairs, have %d", len(d))
	}
	return Mean(d) / StdSample(d), nil
}

// Wilcoxon is the result of a Wilcoxon signed-rank test.
type Wilcoxon struct {
	// Stat is min(R+, R-), the smaller of the rank sums of the positive and
	// negative differences (scipy's two-sided statistic).
	Stat float64
	// N counts the non-zero differences that were ranked; Zeros the dropped
	// zero differences.
	N, Zeros int
	// Exact says whether P comes from the exact null distribution (true) or
	// the normal approximation (false).
	Exact bool
	// Z is the normal-approximation z score (0 when Exact).
	Z float64
	// P is the two-sided p-value.
	P float64
}

// WilcoxonSignedRank is the two-sided Wilcoxon signed-rank test of the
// differences a - b, following scipy.stats.wilcoxon(a, b) with its defaults
// (zero_method="wilcox", correction=False, method="auto"):
//
//   - zero differences are dropped before ranking ("wilcox");
//   - the absolute differences are ranked, ties getting their average rank;
//   - if no difference was zero, none are tied and n <= 50, p is exact:
//     2 P(W <= Stat) under the null distribution of the signed-rank sum
//     (2^n equally likely sign patterns, counted by dynamic programming),
//     capped at 1;
//   - otherwise p comes from the normal approximation without continuity
//     correction: z = (Stat - n(n+1)/4) / sqrt(n(n+1)(2n+1)/24 - Σ(t³-t)/48),
//     where t runs over the sizes of tied groups, and p = 2 Φ(-|z|).
//
// For samples without zeros or ties this is scipy's result (for n > 50 and
// for samples with zeros, scipy also takes the normal approximation). How
// scipy treats ties in small samples has varied across versions (some
// compute the exact distribution regardless, with a warning), so for n <= 50
// with tied differences its p-value may differ from this one. Errors when
// the lengths differ or no difference is non-zero.
func WilcoxonSignedRank(a, b []float64) (Wilcoxon, error) {
	all, err := diffs(a, b)
	if err != nil {
		return Wilcoxon{}, err
	}
	var d []float64
	for _, v := range all {
		if v != 0 {
			d = append(d, v)
		}
	}
	r := Wilcoxon{N: len(d), Zeros: len(all) - len(d)}
	n := len(d)
	if n == 0 {
		return r, fmt.Errorf("tli: Wilcoxon test: all %d differences are zero", len(all))
	}
	// Rank |d| with average ranks for ties.
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(x, y int) bool { return math.Abs(d[idx[x]]) < math.Abs(d[idx[y]]) })
	ranks := make([]float64, n)
	var tieTerm float64
	ties := false
	for i := 0; i < n; {
		j := i + 1
		for j < n && math.Abs(d[idx[j]]) == math.Abs(d[idx[i]]) {
			j++
		}
		avg := float64(i+j+1) / 2 // ranks i+1..j
		for k := i; k < j; k++ {
			ranks[idx[k]] = avg
		}
		if t := float64(j - i); t > 1 {
			ties = true
			tieTerm += t*t*t - t
		}
		i = j
	}
	var rPlus, rMinus float64
	for i, v := range d {
		if v > 0 {
			rPlus += ranks[i]
		} else {
			rMinus += ranks[i]
		}
	}
	r.Stat = math.Min(rPlus, rMinus)
	fn := float64(n)
	if n <= 50 && !ties && r.Zeros == 0 {
		r.Exact = true
		r.P = math.Min(1, 2*signedRankCDF(n, int(r.Stat)))
		return r, nil
	}
	mean := fn * (fn + 1) / 4
	variance := fn*(fn+1)*(2*fn+1)/24 - tieTerm/48
	r.Z = (r.Stat - mean) / math.Sqrt(variance)
	r.P = math.Erfc(math.Abs(r.Z) / math.Sqrt2) // 2 Φ(-|z|)
	return r, nil
}

// signedRankCDF returns P(W <= w) for the signed-rank sum W of n untied
// ranks under the null hypothesis: the number of subsets of {1..n} with sum
// <= w, over 2^n.
func signedRankCDF(n, w int) float64 {
	max := n * (n + 1) / 2
	if w >= max {
		return 1
	}
	if w < 0 {
		return 0
	}
	// count[s] = number of subsets of {1..k} summing to s, as float64 (2^50
	// is exact in a float64 mantissa).
	count := make([]float64, max+1)
	count[0] = 1
	for k := 1; k <= n; k++ {
		for s := max; s >= k; s-- {
			count[s] += count[s-k]
		}
	}
	var c float64
	for s := 0; s <= w; s++ {
		c += count[s]
	}
	return c / math.Pow(2, float64(n))
}
