package tli

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tli-project/tli/internal/peer"
)

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadPairsFormats(t *testing.T) {
	want := []Pair{{Source: "maji", Target: "water"}, {Source: "kula", Target: "to eat"}, {Source: "Jumatatu", Target: "Monday"}}
	files := map[string]string{
		"pub.json": `[
    {"swahili": "maji", "english": "water"},
    {"swahili": " kula ", "english": "to eat"},
    {"english": "Monday", "swahili": "Jumatatu"}
]`,
		"gen.json": `[{"source":"maji","target":"water"},{"source":"kula","target":"to eat"},{"Source":"Jumatatu","Target":"Monday"}]`,
		"a.tsv":    "id\tSwahili\tEnglish\n1\tmaji\twater\n2\tkula\tto eat\n\n3\tJumatatu\tMonday\n",
		"a.csv":    "source,target\nmaji,water\n\"kula\",\"to eat\"\nJumatatu,Monday\n",
	}
	for name, content := range files {
		got, rep, err := ReadPairs(writeTemp(t, name, content))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %v, want %v", name, got, want)
		}
		if !rep.Clean() || rep.Entries != 3 || rep.Kept != 3 {
			t.Errorf("%s: report %s", name, rep)
		}
	}
}

func TestReadPairsReport(t *testing.T) {
	content := `[
  {"swahili": "maji", "english": "water"},
  {"swahili": "", "english": "fire"},
  {"swahili": "Maji", "english": "Water"},
  {"swahili": "moto", "english": null},
  {"swahili": "maji", "english": "liquid"},
  {"swahili": "kiowevu", "english": "liquid"}
]`
	got, rep, err := ReadPairs(writeTemp(t, "r.json", content))
	if err != nil {
		t.Fatal(err)
	}
	want := []Pair{{Source: "maji", Target: "water"}, {Source: "maji", Target: "liquid"}, {Source: "kiowevu", Target: "liquid"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if rep.Entries != 6 || rep.Kept != 3 {
		t.Errorf("entries %d kept %d", rep.Entries, rep.Kept)
	}
	if len(rep.Duplicates) != 1 || rep.Duplicates[0].Index != 2 || rep.Duplicates[0].Line != 4 {
		t.Errorf("duplicates %v", rep.Duplicates)
	}
	if len(rep.Empty) != 2 || rep.Empty[0].Index != 1 || rep.Empty[1].Index != 3 || rep.Empty[1].Problem != "empty English side" {
		t.Errorf("empty %v", rep.Empty)
	}
	if len(rep.SharedSource) != 1 || rep.SharedSource[0].Index != 4 {
		t.Errorf("shared source %v", rep.SharedSource)
	}
	if len(rep.SharedTarget) != 1 || rep.SharedTarget[0].Index != 5 || rep.SharedTarget[0].Line != 7 {
		t.Errorf("shared target %v", rep.SharedTarget)
	}
	if rep.Clean() || !strings.Contains(rep.String(), "1 duplicate entries") {
		t.Errorf("report string: %s", rep)
	}
}

func TestReadPairsErrors(t *testing.T) {
	cases := []struct{ name, content, want string }{
		{"e.json", "", "is empty"},
		{"e.json", `{"swahili":"a","english":"b"}`, "expected a JSON list"},
		{"e.json", "[\n {\"swahili\":\"a\",\"english\":\"b\"},\n {\"swahili\":\"a\"}\n]", "entry 1 (line 3): no field \"english\""},
		{"e.json", "[\n {\"swahili\":\"a\",\"english\":\"b\"},\n {\"kiswahili\":\"a\",\"english\":\"b\"}\n]", "entry 1 (line 3): no field \"swahili\" or \"source\""},
		{"e.json", "[{\"swahili\":1,\"english\":\"b\"}]", "entry 0 (line 1): field \"swahili\" is a number, want a string"},
		{"e.json", "[{\"swahili\":\"a\",\"english\":\"b\"},\n{\"swahili\":\"a\" \"english\":\"b\"}]", "entry 1 (line 2)"},
		{"e.tsv", "word\tmeaning\na\tb\n", "line 1: header"},
		{"e.tsv", "swahili\tenglish\na\tb\nc\n", "line 3: 1 column, expected at least 2: the header puts \"swahili\" in column 1 and \"english\" in column 2, separated by tabs"},
	}
	for _, c := range cases {
		p := writeTemp(t, c.name, c.content)
		_, _, err := ReadPairs(p)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%q: error %v, want one naming the file and containing %q", c.content, err, c.want)
		}
	}
	if _, _, err := ReadPairs(filepath.Join(t.TempDir(), "missing.json")); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("missing file: %v", err)
	}
}

func TestWritePairsRoundTrip(t *testing.T) {
	pairs := []Pair{{Source: "maji", Target: "water"}, {Source: "kula, kunywa", Target: "eat, \"drink\""}, {Source: "<b>", Target: "&"}}
	dir := t.TempDir()
	for _, name := range []string{"p.json", "p.tsv", "p.csv"} {
		path := filepath.Join(dir, name)
		if err := WritePairs(path, pairs); err != nil {
			t.Fatal(err)
		}
		got, rep, err := ReadPairs(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, pairs) || !rep.Clean() {
			t.Errorf("%s: got %v (%s)", name, got, rep)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "p.json"))
	if !strings.HasPrefix(string(b), "[\n    {\n        \"swahili\": \"maji\",\n        \"english\": \"water\"\n    },") {
		t.Errorf("JSON layout differs from the published files:\n%s", b)
	}
}

func TestCheckTokenized(t *testing.T) {
	pairs := []Pair{{Source: "maji", Target: "water"}, {Source: "", Target: "x"}, {Source: "y", Target: "##"}, {Source: "#", Target: "#"}}
	count := func(s string) int { return len(strings.Trim(s, "#")) }
	got := CheckTokenized(pairs, count)
	if len(got) != 3 || got[0].Index != 1 || got[1].Problem != "English side tokenises to no tokens" ||
		got[2].Problem != "Swahili side and English side tokenises to no tokens" {
		t.Errorf("got %v", got)
	}
}

func TestReadPairsPaperData(t *testing.T) {
	dir := peer.PaperData()
	if dir == "" {
		t.Skip("published TLI data not found beside the repository")
	}
	train, rep, err := ReadPairs(filepath.Join(dir, "word_pairs.json"))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != 623 || len(rep.Empty) != 0 || len(rep.Duplicates) != 0 {
		t.Errorf("word_pairs.json: %s", rep)
	}
	t.Logf("published training list: %s", rep)
	control, rep, err := ReadPairs(filepath.Join(dir, "control_word_pairs.json"))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != 63 || len(control) != 63 {
		t.Errorf("control_word_pairs.json: %s", rep)
	}
	if train[0] != (Pair{Source: "-anana", Target: "thin"}) {
		t.Errorf("first training pair %v", train[0])
	}
}
