package tli

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// FuzzParsePairs feeds arbitrary bytes to the pair parser as JSON, TSV and
// CSV (the first byte picks the file name): it must return an error naming
// the file, in one line, or pairs that are all non-empty, within the limits,
// and that EncodePairs writes and ParsePairs reads back unchanged in every
// format. It never panics.
func FuzzParsePairs(f *testing.F) {
	for _, s := range []string{
		"[{\"swahili\":\"maji\",\"english\":\"water\"},{\"swahili\":\"moto\",\"english\":\"fire\"}]",
		"[{\"source\":\"a\",\"target\":\"b\"},{\"source\":null,\"target\":\"c\"}]",
		"\xef\xbb\xbf[{\"Swahili\":\" kula \",\"English\":\"eat\"}]",
		"[{\"swahili\":\"a\",\"english\":\"b\"},\n]",
		"[{\"swahili\":\"a\",\"english\":\"b\"}] trailing",
		"[{\"swahili\":\"a\\ud800\",\"english\":\"b\"}]",
		"[{\"swahili\":1,\"english\":\"b\"}]",
		"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
		"swahili\tenglish\nmaji\twater\n\"a \"\"b\"\"\"\tc\n",
		"Source\tTarget\tnote\nx\ty\tz\nq\n",
		"swahili,english\n\"a, b\",c\nsay \"hi\",hello\n",
		"swahili,english\n\"maji,water\nx,y\n",
		"\xff\xfe[\x00",
		"ma\xffji",
	} {
		for _, name := range []byte{0, 1, 2} {
			f.Add(name, []byte(s))
		}
	}
	names := []string{"f.json", "f.tsv", "f.csv"}
	f.Fuzz(func(t *testing.T, which byte, data []byte) {
		name := names[int(which)%len(names)]
		pairs, rep, err := ParsePairs(name, data)
		if err != nil {
			if msg := err.Error(); !strings.HasPrefix(msg, "tli: pairs file "+name) || strings.Contains(msg, "\n") {
				t.Fatalf("error is not one line naming the file: %q", msg)
			}
			return
		}
		if rep.Kept != len(pairs) || rep.Entries < len(pairs) {
			t.Fatalf("report says %d kept of %d, returned %d", rep.Kept, rep.Entries, len(pairs))
		}
		for _, p := range pairs {
			if p.Source == "" || p.Target == "" || checkWord("Swahili", p.Source) != nil || checkWord("English", p.Target) != nil {
				t.Fatalf("accepted a pair ReadPairs should refuse: %q", p)
			}
		}
		for _, format := range []string{"json", "tsv", "csv"} {
			var b bytes.Buffer
			if err := EncodePairs(&b, pairs, format); err != nil {
				t.Fatalf("EncodePairs %s: %v", format, err)
			}
			back, _, err := ParsePairs("back."+format, b.Bytes())
			if len(pairs) == 0 {
				continue // an empty list has no entries to read back
			}
			if err != nil || !reflect.DeepEqual(back, pairs) {
				t.Fatalf("%s round trip of %q: %q, %v\n%s", format, pairs, back, err, b.Bytes())
			}
		}
	})
}

// FuzzFreeDict feeds arbitrary index and dictionary text to the FreeDict
// parser: an error naming one of the two files, or entries, never a panic.
func FuzzFreeDict(f *testing.F) {
	f.Add([]byte("soma\tA\tT\n"), []byte("soma /s/ <v>\n\nread\n"))
	f.Add([]byte("00-database-info\tA\tB\nzuri\tA\tU\n-zuri\tA\tU\n"), []byte("zuri /z/ <adj>\n1. good\n2. nice\n"))
	f.Add([]byte("a\tA\tT\nb\tB\tS\nc\tC\tR\n"), []byte("soma /s/ <v>\n\nread\n"))
	f.Add([]byte("soma\tA\tZZ\n"), []byte("soma\n"))
	f.Add([]byte("soma\t//\t\xff\n"), []byte(""))
	f.Fuzz(func(t *testing.T, idx, body []byte) {
		d, err := parseFreeDict("i", idx, "d", body)
		if err != nil {
			if msg := err.Error(); !strings.HasPrefix(msg, "tli: freedict i") && !strings.HasPrefix(msg, "tli: freedict d") {
				t.Fatalf("error names neither file: %q", msg)
			}
			return
		}
		for _, p := range d.Pairs(FreeDictOptions{}) {
			if checkWord("Swahili", p.Source) != nil || checkWord("English", p.Target) != nil {
				t.Fatalf("FreeDict pair a pair file could not hold: %q", p)
			}
		}
	})
}
