package tli

import (
	"compress/gzip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tli-project/tli/internal/peer"
)

func TestDecodeDictdB64(t *testing.T) {
	for s, want := range map[string]int64{"A": 0, "B": 1, "/": 63, "BA": 64, "DX+": 3*4096 + 23*64 + 62, "ilH": 34*4096 + 37*64 + 7} {
		got, err := decodeDictdB64(s)
		if err != nil || got != want {
			t.Errorf("%q: got %d, %v; want %d", s, got, err, want)
		}
	}
	if _, err := decodeDictdB64("a*"); err == nil {
		t.Error("invalid digit accepted")
	}
}

func TestParseDictEntry(t *testing.T) {
	cases := []struct {
		text string
		want DictEntry
	}{
		{"afisa, ofisa /afˈisa/ /ofˈisa/ <n> (pl: {maafisa}, {maofisa})\n\nofficer\n",
			DictEntry{Headwords: []string{"afisa", "ofisa"}, POS: "n", Senses: [][]string{{"officer"}}}},
		{"agiza /aɡˈiza/ <v, caus>\n1.\norder, command, instruct\n; direct, instruct, give instructions\n2.\norder, place an order\n",
			DictEntry{Headwords: []string{"agiza"}, POS: "v, caus", Senses: [][]string{
				{"order", "command", "instruct", "direct", "instruct", "give instructions"}, {"order", "place an order"}}}},
		{"baba mdogo /bˈaba mdˈoɡo/ <n>\n\n(paternal) uncle\n father's younger brother\n\n",
			DictEntry{Headwords: []string{"baba mdogo"}, POS: "n", Senses: [][]string{{"uncle"}}}},
		{"kope /kˈope/ <n>\n\n Plural of {ukope}: 1. eyelid 2. eyelash\n\n",
			DictEntry{Headwords: []string{"kope"}, POS: "n", PluralOf: "ukope", Senses: [][]string{{"eyelid"}, {"eyelash"}}}},
		{"agano /aɡˈano/ <n> (pl: {maagano})\n1.\npromise\n2.\nagreement, contract\n   See also: {ahadi}\n\n",
			DictEntry{Headwords: []string{"agano"}, POS: "n", Senses: [][]string{{"promise"}, {"agreement", "contract"}}}},
		{"habari /habˈari/ <n>\n\nnews, novelty(used also in greetings (e.g. Habari yako?, Habari za hapa?, etc.))\n",
			DictEntry{Headwords: []string{"habari"}, POS: "n", Senses: [][]string{{"news", "novelty"}}}},
	}
	for _, c := range cases {
		got, err := parseDictEntry(c.text)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q:\n got %#v, %v\nwant %#v", c.text, got, err, c.want)
		}
	}
}

// writeMiniDict writes a two-entry dictd database (index + dictzip body)
// built the way dictfmt lays it out.
func writeMiniDict(t *testing.T) string {
	dir := t.TempDir()
	body := "\n00-database-info\nmetadata\n" +
		"soma /sˈoma/ <v>\n\nread, study\n" +
		"Agosti /aɡˈosti/ <n> [sg=pl]\n\nAugust\n" +
		"zuri /zˈuri/ <adj>\n\ngood, beautiful\n"
	var idx strings.Builder
	add := func(head, text string) {
		off := strings.Index(body, text)
		enc := func(v int) string {
			s := ""
			for {
				s = string(dictdB64[v%64]) + s
				v /= 64
				if v == 0 {
					return s
				}
			}
		}
		idx.WriteString(head + "\t" + enc(off) + "\t" + enc(len(text)) + "\n")
	}
	add("00databaseinfo", "\n00-database-info\nmetadata\n")
	add("agosti", "Agosti /aɡˈosti/ <n> [sg=pl]\n\nAugust\n")
	add("soma", "soma /sˈoma/ <v>\n\nread, study\n")
	add("zuri", "zuri /zˈuri/ <adj>\n\ngood, beautiful\n")
	if err := os.WriteFile(filepath.Join(dir, FreeDictName+".index"), []byte(idx.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, FreeDictName+".dict.dz"))
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	zw.Write([]byte(body))
	zw.Close()
	f.Close()
	return dir
}

func TestReadFreeDictMini(t *testing.T) {
	dir := writeMiniDict(t)
	got, err := ReadFreeDict(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []Pair{{Source: "Agosti", Target: "August", Category: "n"}, {Source: "soma", Target: "read", Category: "v"}, {Source: "zuri", Target: "good", Category: "adj"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	got, err = ReadFreeDictWith(dir, FreeDictOptions{MaxPairs: 2, Infinitives: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := []Pair{{Source: "Agosti", Target: "August", Category: "n"}, {Source: "kusoma", Target: "to read", Category: "v"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("infinitives: got %v, want %v", got, want)
	}
	d, err := LoadFreeDict(dir)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[Pair]bool{
		{Source: "kusoma", Target: "to study"}: true, {Source: "soma", Target: "Read"}: true, {Source: "-zuri", Target: "beautiful"}: true,
		{Source: "agosti", Target: "august"}: true, {Source: "zuri", Target: "bad"}: false, {Source: "kula", Target: "eat"}: false,
		{Source: "zuri", Target: "nice, good"}: true,
	} {
		if d.Confirms(p) != want {
			t.Errorf("Confirms(%v) = %v, want %v", p, !want, want)
		}
	}
}

func TestReadFreeDictErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadFreeDict(dir); err == nil || !strings.Contains(err.Error(), FreeDictName+".index") {
		t.Errorf("missing index: %v", err)
	}
	os.WriteFile(filepath.Join(dir, FreeDictName+".index"), []byte("soma\tA\tZZ\n"), 0o644)
	os.WriteFile(filepath.Join(dir, FreeDictName+".dict"), []byte("soma /s/ <v>\n\nread\n"), 0o644)
	if _, err := ReadFreeDict(dir); err == nil || !strings.Contains(err.Error(), "line 1") || !strings.Contains(err.Error(), "runs past the end") {
		t.Errorf("bad length: %v", err)
	}
	os.WriteFile(filepath.Join(dir, FreeDictName+".index"), []byte("soma\tA\n"), 0o644)
	if _, err := ReadFreeDict(dir); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("short line: %v", err)
	}
	os.WriteFile(filepath.Join(dir, FreeDictName+".index"), []byte("soma\tA\tT\n"), 0o644)
	if got, err := ReadFreeDict(dir); err != nil || !reflect.DeepEqual(got, []Pair{{Source: "soma", Target: "read", Category: "v"}}) {
		t.Errorf("uncompressed .dict: %v, %v", got, err)
	}
}

// installedFreeDict loads the Debian-installed Swahili-English FreeDict
// database, a test peer (CI installs dict-freedict-swh-eng): missing, the
// test skips, or fails under TLI_REQUIRE_PEERS=1.
func installedFreeDict(t *testing.T) *FreeDict {
	t.Helper()
	if _, err := os.Stat(filepath.Join(FreeDictDir, FreeDictName+".index")); err != nil {
		peer.Missing(t, "FreeDict swh-eng not installed in "+FreeDictDir+" (apt-get install dict-freedict-swh-eng)")
	}
	d, err := LoadFreeDict(FreeDictDir)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestFreeDictInstalled(t *testing.T) {
	d := installedFreeDict(t)
	// The 0.4.4 edition says "2675 headwords"; the index has 2675 entries
	// besides its 6 metadata lines, 23 of them spelling variants that share
	// an entry with another headword.
	if n := len(d.Entries); n < 2600 || n > 2700 {
		t.Errorf("%d entries", n)
	}
	checks := map[string][]string{
		"abiria": {"passenger"},
		"acha":   {"leave", "quit", "stop doing sth"},
		"afisa":  {"officer"},
		"ofisa":  {"officer"},
		"kope":   {"eyelid", "eyelash"},
		"kwenda": {"go"},
	}
	for w, want := range checks {
		if got := d.Translations(w); !reflect.DeepEqual(got, want) {
			t.Errorf("Translations(%q) = %q, want %q", w, got, want)
		}
	}
	pairs := d.Pairs(FreeDictOptions{})
	if len(pairs) < 1000 {
		t.Errorf("only %d default pairs", len(pairs))
	}
	if pairs[0] != (Pair{Source: "abiria", Target: "passenger", Category: "n"}) {
		t.Errorf("first pair %v", pairs[0])
	}
	classes := map[string]int{}
	for _, p := range pairs {
		classes[p.Category]++
	}
	if classes["n"] < 500 || classes["v"] < 100 || classes["adj"] < 20 {
		t.Errorf("word classes of the default pairs: %v", classes)
	}
	t.Logf("word classes: %v", classes)
	for _, p := range pairs {
		if p.Source == "kumbe" && p.Target != "So" {
			t.Errorf("kumbe: %q (the dictionary's \"So!\" without the \"!\")", p.Target)
		}
		if strings.ContainsAny(p.Target, "!?()") || strings.Contains(p.Source, " ") {
			t.Errorf("pair %v", p)
		}
	}
	t.Logf("%d entries, %d default pairs, %d with plurals and multi-word and shared targets", len(d.Entries), len(pairs),
		len(d.Pairs(FreeDictOptions{Plurals: true, MultiWord: true, SharedTargets: true})))
}
