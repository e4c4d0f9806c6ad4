package tli

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestPairsHostile: each kind of bad pair file gets one line naming the
// file, where, and what was expected; none is read whole past the limit.
func TestPairsHostile(t *testing.T) {
	long := strings.Repeat("a", MaxWordBytes+1)
	cases := []struct{ name, content, want string }{
		{"x.json", "[{\"swahili\":\"a\",\"english\":\"b\"}]\nxyz", "line 2: unexpected data after the JSON list: \"xyz\""},
		{"x.json", "[{\"swahili\":\"a\",\"english\":\"b\"}] [{\"swahili\":\"c\",\"english\":\"d\"}]", "line 1: unexpected data after the JSON list"},
		{"x.json", "[{\"swahili\":\"a\",\"english\":\"b\"},\n\n]", "line 3: a comma before the closing ] (JSON allows no trailing comma)"},
		{"x.json", "[{\"swahili\":\"a\",\"english\":\"b\"}\n", "line 2: the file ends before the closing ] of the JSON list (after entry 1)"},
		{"x.json", "[{\"swahili\":\"a\",\"english\":\"b\"},\n{\"swahili\":\"a\",\"engl", "entry 1 (line 2): the file ends inside this entry"},
		{"x.json", "[\"a\"]", "entry 0 (line 1): expected an object with \"swahili\" and \"english\", found a string"},
		{"x.json", "[{\"swahili\":\"a\",\"Swahili\":\"b\",\"english\":\"b\"}]", `fields "Swahili" and "swahili" both given`},
		{"x.json", "[{\"swahili\":\"ma\xffji\",\"english\":\"water\"}]", "line 1: invalid UTF-8 at byte offset 15 (byte 0xff); pair files must be UTF-8 text"},
		{"x.json", "[\n{\"swahili\":\"a\",\"english\":\"b\"},\n{\"swahili\":\"\xc3\",\"english\":\"b\"}]", "line 3: invalid UTF-8 at byte offset 45 (byte 0xc3)"},
		{"x.json", "\xff\xfe[\x00", "this looks like UTF-16; save the file as UTF-8"},
		{"x.json", "[{\"swahili\":\"a\\ud800\",\"english\":\"b\"}]", "holds U+FFFD, the replacement character"},
		{"x.json", "[{\"swahili\":\"a\\u0000\",\"english\":\"b\"}]", "holds the control character U+0000"},
		{"x.json", "[{\"swahili\":\"" + long + "\",\"english\":\"b\"}]", fmt.Sprintf("entry 0 (line 1): Swahili side \"%s\"... is %d bytes long, over the limit of %d bytes (tli.MaxWordBytes)", long[:40], MaxWordBytes+1, MaxWordBytes)},
		{"x.tsv", "swahili\tenglish\nmaji\t" + long + "\n", "line 2: English side"},
		{"x.tsv", "swahili\tenglish\na\tb\nc\n", "line 3: 1 column, expected at least 2: the header puts \"swahili\" in column 1 and \"english\" in column 2, separated by tabs"},
		{"x.csv", "swahili,english\nsay \"hi\",hello\n", "line 2, column 5: a quote (\") inside an unquoted field; in CSV, quote the whole field and double the quote"},
		{"x.csv", "swahili,english\n\"maji,water\nx,y\n", "line 3: a quoted field opened on line 2 is never closed"},
		{"x.csv", "word,meaning\nmaji,water\n", `line 1: header "word,meaning" must name the columns swahili and english (or source and target)`},
	}
	for _, c := range cases {
		p := writeTemp(t, c.name, c.content)
		_, _, err := ReadPairs(p)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "tli: pairs file "+p) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q:\n got %v\nwant one line naming %s and containing %q", c.content, err, p, c.want)
		}
	}
	// A word of exactly MaxWordBytes is accepted, and a quote in TSV is text.
	p := writeTemp(t, "ok.tsv", "swahili\tenglish\n"+long[1:]+"\tb\n\"maji\twater\n")
	got, _, err := ReadPairs(p)
	if want := []Pair{{Source: long[1:], Target: "b"}, {Source: `"maji`, Target: "water"}}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("longest word and TSV quote: %v", err)
	}
}

// TestPairsFileLimits: files past MaxPairsFileBytes, endless devices and
// lists of more than MaxPairs entries are refused without reading them
// whole.
func TestPairsFileLimits(t *testing.T) {
	big := filepath.Join(t.TempDir(), "big.json")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(MaxPairsFileBytes + 1) // sparse: costs no disk
	f.Close()
	want := fmt.Sprintf("tli: pairs file %s: larger than 64 MiB (tli.MaxPairsFileBytes); a pair list is expected to be small", big)
	if _, _, err := ReadPairs(big); err == nil || err.Error() != want {
		t.Errorf("65 MiB file: %v", err)
	}
	if _, err := os.Stat("/dev/zero"); err == nil {
		start := time.Now()
		_, _, err := ReadPairs("/dev/zero")
		if err == nil || !strings.Contains(err.Error(), "larger than 64 MiB (tli.MaxPairsFileBytes)") {
			t.Errorf("/dev/zero: %v", err)
		}
		t.Logf("/dev/zero refused in %v", time.Since(start))
	}
	var b bytes.Buffer
	b.WriteString("swahili\tenglish\n")
	for i := 0; i <= MaxPairs; i++ {
		fmt.Fprintf(&b, "s%d\te%d\n", i, i)
	}
	_, _, err = ParsePairs("many.tsv", b.Bytes())
	if want := fmt.Sprintf("tli: pairs file many.tsv: line %d: more than 1000000 entries (tli.MaxPairs)", MaxPairs+2); err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("MaxPairs+1 entries: %v", err)
	}
}

// TestPairsLinear: parsing time grows linearly with the number of entries
// (it was quadratic for JSON: every entry counted lines from the start).
// Quadratic parsing would make 8x the entries take 64x the time; the bound
// leaves room for a busy machine.
func TestPairsLinear(t *testing.T) {
	gen := func(n int) []byte {
		var b bytes.Buffer
		b.WriteString("[\n")
		for i := 0; i < n; i++ {
			if i > 0 {
				b.WriteString(",\n")
			}
			fmt.Fprintf(&b, "  {\"swahili\": \"neno%d\", \"english\": \"word%d\"}", i, i)
		}
		b.WriteString("\n]\n")
		return b.Bytes()
	}
	timeIt := func(data []byte, want int) time.Duration {
		best := time.Duration(1 << 62)
		for range 3 {
			start := time.Now()
			got, _, err := ParsePairs("x.json", data)
			if err != nil || len(got) != want {
				t.Fatalf("%d pairs: %d, %v", want, len(got), err)
			}
			best = min(best, time.Since(start))
		}
		return best
	}
	small, large := timeIt(gen(25_000), 25_000), timeIt(gen(200_000), 200_000)
	t.Logf("25k pairs %v, 200k pairs %v (ratio %.1f)", small, large, float64(large)/float64(small))
	if large > 24*small {
		t.Errorf("200k pairs took %v, 25k %v: more than linear", large, small)
	}
}

// TestFreeDictHostile: a dictzip bomb stops at MaxFreeDictBytes, invalid
// UTF-8 and index entries that cover the text many times are refused.
func TestFreeDictHostile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, FreeDictName+".index"), []byte("soma\tA\tT\n"), 0o644)
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zero := make([]byte, 1<<20)
	for range MaxFreeDictBytes>>20 + 1 {
		zw.Write(zero)
	}
	zw.Close()
	dz := filepath.Join(dir, FreeDictName+".dict.dz")
	os.WriteFile(dz, z.Bytes(), 0o644)
	if _, err := LoadFreeDict(dir); err == nil || err.Error() != "tli: freedict "+dz+": larger than 64 MiB (tli.MaxFreeDictBytes) uncompressed" {
		t.Errorf("dictzip bomb (%d bytes compressed): %v", z.Len(), err)
	}
	_, err := parseFreeDict("i", []byte("soma\tA\tT\n"), "d", []byte("soma \xff\n\nread\n"))
	if err == nil || err.Error() != "tli: freedict d: line 1: invalid UTF-8 at byte offset 5" {
		t.Errorf("invalid UTF-8: %v", err)
	}
	var idx bytes.Buffer
	body := strings.Repeat("soma /s/ <v>\n\nread\n", 500) // 9500 bytes
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&idx, "w%d\tA\t%s\n", i, dictdB64Encode(int64(len(body)-19*i)))
	}
	_, err = parseFreeDict("i", idx.Bytes(), "d", []byte(body))
	if err == nil || !strings.Contains(err.Error(), "the index entries overlap, covering more than twice") {
		t.Errorf("overlapping index: %v", err)
	}
}

// dictdB64Encode writes n in dictd's base-64 digits.
func dictdB64Encode(n int64) string {
	const digits = dictdB64
	if n == 0 {
		return "A"
	}
	var s []byte
	for ; n > 0; n /= 64 {
		s = append([]byte{digits[n%64]}, s...)
	}
	return string(s)
}

// TestPairCategories: the optional category column or field is read,
// written back and selected by.
func TestPairCategories(t *testing.T) {
	want := []Pair{{Source: "soma", Target: "read", Category: "v"}, {Source: "maji", Target: "water", Category: "n"}, {Source: "zuri", Target: "good"}}
	for name, data := range map[string]string{
		"c.json": `[{"swahili":"soma","english":"read","category":"v"},{"swahili":"maji","english":"water","category":" n "},{"swahili":"zuri","english":"good","category":null}]`,
		"c.tsv":  "swahili\tenglish\tpos\nsoma\tread\tv\nmaji\twater\tn\nzuri\tgood\n",
		"c.csv":  "category,english,swahili\nv,read,soma\nn,water,maji\n,good,zuri\n",
	} {
		got, _, err := ParsePairs(name, []byte(data))
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %q, %v", name, got, err)
		}
	}
	for _, format := range []string{"json", "tsv", "csv"} {
		var b bytes.Buffer
		if err := EncodePairs(&b, want, format); err != nil {
			t.Fatal(err)
		}
		got, _, err := ParsePairs("x."+format, b.Bytes())
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s round trip: %q, %v\n%s", format, got, err, b.Bytes())
		}
	}
	if got, err := SelectCategory(want, "n"); err != nil || len(got) != 1 || got[0].Source != "maji" {
		t.Errorf("SelectCategory n: %v, %v", got, err)
	}
	if _, err := SelectCategory(want, "adj"); err == nil || err.Error() != `no pair has category "adj" (the list has (none): 1, n: 1, v: 1)` {
		t.Errorf("SelectCategory adj: %v", err)
	}
	if _, _, err := ParsePairs("x.json", []byte(`[{"swahili":"a","english":"b","category":"`+strings.Repeat("x", 65)+`"}]`)); err == nil || !strings.Contains(err.Error(), "tli.MaxCategoryBytes") {
		t.Errorf("long category: %v", err)
	}
}
