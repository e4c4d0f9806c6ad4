package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode"

	"github.com/tli-project/tli/internal/peer"
)

// BLOOM's tokenizer.json sections (bigscience/bloom and its BLOOMZ
// fine-tunes): no normalizer; the Split on bloomRegex then ByteLevel
// without its prefix space and regex; ByteLevel post-processor and decoder.
// transformers' test_tokenization_bloom.py encodes "The quick brown
// fox</s>" as [2175, 23714, 73173, 144252, 2]: no BOS is added.
const (
	bloomPreJSON = `{"type": "Sequence", "pretokenizers": [
  {"type": "Split", "pattern": {"Regex": " ?[^(\\s|[.,!?…。，、।۔،])]+"}, "behavior": "Isolated", "invert": false},
  {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}`
	bloomPostJSON    = `{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": false}`
	bloomDecoderJSON = `{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": false}`
	// bloomJSPreJSON is the same pre-tokenizer with the pattern as
	// Oniguruma reads it written for JavaScript (\s there is not the
	// White_Space property: U+0085 is missing and U+FEFF added), for the
	// reference, which cannot compile the original and rewrites it to
	// another class (see bloomMatcher).
	bloomJSPreJSON = `{"type": "Sequence", "pretokenizers": [
  {"type": "Split", "pattern": {"Regex": " ?[^\\p{White_Space}()|.,!?…。，、।۔،]+"}, "behavior": "Isolated", "invert": false},
  {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}`
	bloomConfigJSON = `{"tokenizer_class": "BloomTokenizerFast", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
 "pad_token": "<pad>", "padding_side": "left"}`
)

// bloomSpecials are BLOOM's added tokens, ids 0 to 3, in its vocabulary
// too.
var bloomSpecials = []string{"<unk>", "<s>", "</s>", "<pad>"}

// bloomOnigExcluded are the characters that Oniguruma 6.9.8 (libonig5)
// leaves out of the class of bloomRegex, found by matching the pattern
// against every code point (testdata/onig.py): the White_Space property
// and ! ( ) , . ? | and the seven other marks. '[' and ']' are in it.
var bloomOnigExcluded = []rune{0x9, 0xa, 0xb, 0xc, 0xd, 0x20, 0x21, 0x28, 0x29, 0x2c, 0x2e, 0x3f, 0x7c, 0x85, 0xa0,
	0x60c, 0x6d4, 0x964, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a,
	0x2026, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000, 0x3001, 0x3002, 0xff0c}

// TestBloomClass checks bloomWord on every code point against the
// characters Oniguruma leaves out of the class.
func TestBloomClass(t *testing.T) {
	var got []rune
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if !bloomWord(r) {
			got = append(got, r)
		}
	}
	if !reflect.DeepEqual(got, bloomOnigExcluded) {
		t.Errorf("characters outside BLOOM's class: %U\nwant (Oniguruma) %U", got, bloomOnigExcluded)
	}
}

// TestBloomSplit pins pre-tokenizations of BLOOM's pattern worked out by
// hand from Oniguruma's reading of it.
func TestBloomSplit(t *testing.T) {
	sp := &splitPre{m: bloomMatcher{}, behavior: behIsolated}
	cases := map[string][]string{
		"Hello world":      {"Hello", " world"},
		"Hello, world!":    {"Hello", ",", " world", "!"},
		"f(x) = a|b":       {"f", "(", "x", ")", " =", " a", "|", "b"},
		"[[x]] {y}":        {"[[x]]", " {y}"},
		"don't 10:30 3.14": {"don't", " 10:30", " 3", ".", "14"},
		"a  b":             {"a", " ", " b"},
		"a \n b":           {"a", " \n", " b"},
		" ...":             {" ..."},
		"a ... b":          {"a", " ...", " b"},
		"x\n(y)\n|z":       {"x", "\n(", "y", ")\n|", "z"},
		"日本語。テスト、です…":      {"日本語", "。", "テスト", "、", "です", "…"},
		"हिन्दी। ok":       {"हिन्दी", "।", " ok"},
		"سلام، دنیا۔":      {"سلام", "،", " دنیا", "۔"},
		"你好，世界":            {"你好", "，", "世界"},
		"a\u0085b":         {"a", "\u0085", "b"},     // U+0085 is white space
		"a\ufeffb \u200bc": {"a\ufeffb", " \u200bc"}, // U+FEFF and U+200B are not
		"a\u00a0b\u3000c":  {"a", "\u00a0", "b", "\u3000", "c"},
		"👍 🎉!":             {"👍", " 🎉", "!"},
		"\t\tx":            {"\t\t", "x"},
		"":                 nil,
		" ":                {" "},
	}
	for in, want := range cases {
		if got := sp.split(nil, in, true); !reflect.DeepEqual(got, want) {
			t.Errorf("split(%q) = %q, want %q", in, got, want)
		}
	}
}

// bloomMatches returns the successive matches of m in s.
func bloomMatches(m matcher, s string) []string {
	var out []string
	for from := 0; from < len(s); {
		st, en, ok := m.find(s, from)
		if !ok {
			break
		}
		out = append(out, s[st:en])
		from = en
	}
	return out
}

// TestSplitOniguruma checks the hand-written matchers against Oniguruma
// itself (the library tokenizers uses, through testdata/onig.py and
// Python's ctypes) on the parity strings, the streaming tests' texts and
// strings with every mark of BLOOM's pattern and the white space where
// JavaScript's \s differs. It skips when python3 or libonig.so.5 is
// missing (apt-get install -y libonig5).
func TestSplitOniguruma(t *testing.T) {
	t.Parallel() // mostly waiting for python3
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not on PATH")
	}
	texts := append(parityStrings(), trickyTexts()...)
	for _, s := range []string{"\u0085", "\ufeff", "\u180e", "\u200b", "x\u0085 y\ufeff z\u2028w\u205fv", "a (b) [c] {d} |e| <f>"} {
		for _, m := range strings.Split(bloomMarks, "") {
			texts = append(texts, s+m+" "+m+"x"+m+s+"\n"+m)
		}
	}
	patterns := []struct {
		name  string
		regex string
		m     matcher
	}{{"bloom", bloomRegex, bloomMatcher{}}, {"llama3", llama3Regex, llama3Matcher{}}, {"qwen2", qwen2Regex, qwen2Matcher{}}, {"gpt2", gpt2Regex, gpt2Matcher{}}}
	for _, p := range patterns {
		req, _ := json.Marshal(map[string]any{"pattern": p.regex, "texts": texts})
		cmd := exec.Command(py, filepath.Join("testdata", "onig.py"))
		cmd.Stdin = bytes.NewReader(req)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == 3 {
			t.Skipf("%s", strings.TrimSpace(stderr.String()))
		}
		if err != nil {
			t.Fatalf("testdata/onig.py: %v\n%s", err, stderr.String())
		}
		var ans map[string][][]string
		if err := json.Unmarshal(out, &ans); err != nil {
			t.Fatal(err)
		}
		for syntax, want := range ans {
			if len(want) != len(texts) {
				t.Fatalf("%s, %s syntax: %d answers for %d texts", p.name, syntax, len(want), len(texts))
			}
			bad := 0
			for i, s := range texts {
				if got := bloomMatches(p.m, s); !reflect.DeepEqual(got, want[i]) && !(len(got) == 0 && len(want[i]) == 0) {
					if bad++; bad <= 5 {
						t.Errorf("%s (%s syntax): matches in %+q\n got %+q\nwant %+q", p.name, syntax, short(s), got, want[i])
					}
				}
			}
			t.Logf("%s, Oniguruma's %s syntax: %d strings, %d mismatches", p.name, syntax, len(texts), bad)
		}
	}
}

// bloomFromVocab returns a tokenizer.json of BLOOM's shape (its added
// tokens at ids 0 to 3, in the vocabulary too, its pre-tokenizer,
// post-processor and decoder, no normalizer) with the byte-level BPE
// vocabulary and merges of the tokenizer.json at path, its ids moved up
// by 4.
func bloomFromVocab(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Model struct {
			Vocab  map[string]int  `json:"vocab"`
			Merges json.RawMessage `json:"merges"`
		} `json:"model"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	return bloomJSON(t, f.Model.Vocab, f.Model.Merges)
}

// bloomJSON builds a BLOOM-shaped tokenizer.json from a byte-level
// vocabulary (ids from 0) and its merges (JSON).
func bloomJSON(t testing.TB, vocab map[string]int, merges json.RawMessage) []byte {
	t.Helper()
	v := make(map[string]int, len(vocab)+4)
	var added []map[string]any
	for i, s := range bloomSpecials {
		if _, ok := vocab[s]; ok {
			t.Fatalf("the vocabulary already has %q", s)
		}
		v[s] = i
		added = append(added, map[string]any{"id": i, "content": s, "single_word": false, "lstrip": false, "rstrip": false,
			"normalized": false, "special": true})
	}
	for s, id := range vocab {
		v[s] = id + len(bloomSpecials)
	}
	m := map[string]any{
		"version": "1.0", "truncation": nil, "padding": nil, "added_tokens": added, "normalizer": nil,
		"pre_tokenizer": json.RawMessage(bloomPreJSON), "post_processor": json.RawMessage(bloomPostJSON),
		"decoder": json.RawMessage(bloomDecoderJSON),
		"model": map[string]any{"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": nil,
			"end_of_word_suffix": nil, "fuse_unk": false, "vocab": v, "merges": merges},
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// bloomTinyJSON is a BLOOM-shaped tokenizer.json on the 256 bytes with
// tokens that join a newline with the marks after it ("\n(", "\n|"),
// which a cut after the newline would split, and a few merges of letters.
func bloomTinyJSON(t testing.TB) []byte {
	t.Helper()
	vocab := map[string]int{}
	for i, b := range byteOrder {
		vocab[string(byteToRune[b])] = i
	}
	var merges [][2]string
	for _, m := range [][2]string{{"Ċ", "("}, {"Ċ", "|"}, {"Ċ", "."}, {"a", "b"}, {"Ġ", "ab"}, {")", "Ċ"}, {"Ġ", "("}} {
		vocab[m[0]+m[1]] = len(vocab)
		merges = append(merges, m)
	}
	mj, _ := json.Marshal(merges)
	return bloomJSON(t, vocab, mj)
}

// TestBloomShape loads BLOOM-shaped tokenizers: no BOS is added, the
// special tokens are matched in the text, Decode gives the text back, and
// tokenizer_config.json's add_prefix_space, which makes transformers
// rewrite the pre-tokenizer, is refused when true.
func TestBloomShape(t *testing.T) {
	tj := bloomTinyJSON(t)
	tk, err := FromJSON("bloom/tokenizer.json", tj, []byte(bloomConfigJSON))
	if err != nil {
		t.Fatal(err)
	}
	if bos, ok := tk.BOS(); !ok || bos != 1 || !tk.IsSpecial(bos) {
		t.Errorf("BOS() = %d, %v; want 1 (<s>), special", bos, ok)
	}
	id := func(s string) int { return tk.mustID(t, s) }
	cases := map[string][]int{
		"ab ab":        {id("ab"), id("Ġab")},
		"x\n(ab)\n|":   {id("x"), id("Ċ("), id("ab"), id(")"), id("Ċ|")}, // "Ċ|" is merged before ")Ċ"
		"x\n(ab)\n":    {id("x"), id("Ċ("), id("ab"), id(")Ċ")},
		"ab (ab)":      {id("ab"), id("Ġ("), id("ab"), id(")")},
		"ab</s>":       {id("ab"), 2},
		"<s>ab\n.":     {1, id("ab"), id("Ċ.")},
		"\n(\n|\n.\n,": {id("Ċ("), id("Ċ|"), id("Ċ."), id("Ċ"), id(",")},
	}
	for in, want := range cases {
		if got := tk.Encode(in, true); !reflect.DeepEqual(got, want) {
			t.Errorf("Encode(%q, true) = %v, want %v", in, got, want)
		}
	}
	for _, s := range roundTripStrings() {
		if got := tk.Decode(tk.Encode(s, false), false); got != s {
			t.Fatalf("Decode(Encode(%q)) = %q", short(s), short(got))
		}
	}
	for _, c := range []struct {
		cfg string
		ok  bool
	}{{`{"tokenizer_class": "BloomTokenizerFast", "add_prefix_space": false}`, true},
		{`{"tokenizer_class": "BloomTokenizerFast", "add_prefix_space": true}`, false},
		{`{"tokenizer_class": "BloomTokenizer", "add_prefix_space": true}`, false},
		{`{"tokenizer_class": "PreTrainedTokenizerFast", "add_prefix_space": true}`, true}} {
		_, err := FromJSON("bloom/tokenizer.json", tj, []byte(c.cfg))
		if (err == nil) != c.ok {
			t.Errorf("config %s: error %v, want ok %v", c.cfg, err, c.ok)
		}
	}
	// Another regex than BLOOM's (its class without the nesting) is still
	// refused.
	var m map[string]any
	if err := json.Unmarshal(tj, &m); err != nil {
		t.Fatal(err)
	}
	m["pre_tokenizer"] = map[string]any{"type": "Split", "pattern": map[string]any{"Regex": ` ?[^\s.,!?…。，、।۔،]+`}, "behavior": "Isolated", "invert": false}
	other, _ := json.Marshal(m)
	if _, err := FromJSON("bloom/tokenizer.json", other, nil); err == nil || !strings.Contains(err.Error(), "BLOOM") {
		t.Errorf("another regex: error %v, want it refused", err)
	}
}

// TestBloomCutRules checks where EncodeReader may cut text for BLOOM's
// pre-tokenizer: after a newline only before a character that starts a
// word (a mark it leaves out would join the newline's piece), and at a
// space between letters.
func TestBloomCutRules(t *testing.T) {
	tk, err := FromJSON("bloom/tokenizer.json", bloomTinyJSON(t), []byte(bloomConfigJSON))
	if err != nil {
		t.Fatal(err)
	}
	c := tk.cutRules()
	if !c.newline || !c.space {
		t.Fatalf("cut rules newline %v, space %v; want both", c.newline, c.space)
	}
	for _, k := range []struct {
		text string
		p    int
		ok   bool
	}{{"a\nbc", 2, true}, {"a\n[b", 2, true}, {"a\n'b", 2, true}, {"a\n-b", 2, true}, {"ab cd", 2, true},
		{"a\n(b", 2, false}, {"a\n|b", 2, false}, {"a\n.b", 2, false}, {"a\n,b", 2, false}, {"a\n!b", 2, false}, {"a\n?b", 2, false},
		{"a\n)b", 2, false}, {"a\n<s>", 2, false}, {"a \nb", 3, false}, {"a\n b", 2, false}} {
		if got := c.at([]byte(k.text), k.p); got != k.ok {
			t.Errorf("cut of %q before byte %d: %v, want %v", k.text, k.p, got, k.ok)
		}
	}
}

// TestParityBloom compares a BLOOM-shaped tokenizer (BLOOM's sections and
// added tokens on the real Llama 3 vocabulary) with @lenml/tokenizers on
// the parity strings: ids with and without special tokens, decoding, and
// no BOS. The reference runs the pattern as Oniguruma reads it
// (bloomJSPreJSON); with BLOOM's own pattern, which it rewrites, it
// differs exactly on the strings holding '(', '|' or ')'.
func TestParityBloom(t *testing.T) {
	t.Parallel() // mostly waiting for node
	node, modules := peer.NodeModules(t)
	dirs := requireModels(t, modules, "tokenizer-llama3")
	dir := t.TempDir()
	tj := bloomFromVocab(t, filepath.Join(dirs[0], "tokenizer.json"))
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), tj, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(bloomConfigJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	texts := parityStrings()
	exact := newParityJob("bloom", dir, map[string]string{"pre_tokenizer": bloomJSPreJSON}, texts, 1, false)
	rewritten := newParityJob("bloom-lenml", dir, nil, texts, 1, false)
	ref := runRef(t, node, modules, refRequest{Jobs: refJobs([]parityJob{exact, rewritten}), SplitTexts: texts})

	// The pattern alone, against JavaScript's engine.
	want := ref.split["bloom"]
	if len(want) != len(texts) {
		t.Fatalf("split bloom: %d answers, want %d", len(want), len(texts))
	}
	bad := 0
	for i, s := range texts {
		if got := bloomMatches(bloomMatcher{}, s); !reflect.DeepEqual(got, want[i]) && !(len(got) == 0 && len(want[i]) == 0) {
			if bad++; bad <= 5 {
				t.Errorf("bloom matches in %q\n got %q\nwant %q", short(s), got, want[i])
			}
		}
	}
	t.Logf("bloom pre-tokenizer regex: %d strings, %d mismatches", len(texts), bad)

	// This package loads BLOOM's own pattern.
	exact.Override = nil
	t.Run("bloom", func(t *testing.T) { checkParity(t, exact, ref.jobs["bloom"]) })

	// @lenml's rewrite keeps '(', '|' and ')' in words: the ids differ
	// only where they appear.
	tk, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := ref.jobs["bloom-lenml"]
	same, differ := 0, 0
	for i, s := range texts {
		eq := sameIDs(tk.Encode(s, true), r.IDs[i])
		switch {
		case strings.ContainsAny(s, "(|)"):
			if !eq {
				differ++
			}
		case !eq:
			t.Errorf("@lenml's rewritten pattern differs on %q, which has no '(', '|' or ')'", short(s))
		default:
			same++
		}
	}
	if differ == 0 {
		t.Error("@lenml's rewritten pattern gave the same ids on every string with '(', '|' or ')'")
	}
	t.Logf("@lenml's own reading of BLOOM's pattern: %d strings alike, %d with '(', '|' or ')' differ", same, differ)
}

// bloomStreamTokenizers are BLOOM-shaped tokenizers for the streaming
// tests: the tiny one, the synthetic vocabulary and, when installed, Llama
// 3's.
func bloomStreamTokenizers(t testing.TB, synthJSON []byte) map[string]*Tokenizer {
	t.Helper()
	out := map[string]*Tokenizer{}
	add := func(name string, tj []byte) {
		tk, err := FromJSON(name+"/tokenizer.json", tj, []byte(bloomConfigJSON))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = tk
	}
	add("bloom-tiny", bloomTinyJSON(t))
	var f struct {
		Model struct {
			Vocab  map[string]int  `json:"vocab"`
			Merges json.RawMessage `json:"merges"`
		} `json:"model"`
	}
	if err := json.Unmarshal(synthJSON, &f); err != nil {
		t.Fatal(err)
	}
	add("synth-bloom", bloomJSON(t, f.Model.Vocab, f.Model.Merges))
	path := filepath.Join(peer.Root(), ".cache", "node", "node_modules", "@lenml", "tokenizer-llama3", "models", "tokenizer.json")
	if _, err := os.Stat(path); err == nil {
		add("llama3-bloom", bloomFromVocab(t, path))
	}
	return out
}

// bloomTexts are texts with BLOOM's marks around newlines and spaces.
func bloomTexts() []string {
	var out []string
	for _, m := range strings.Split(bloomMarks, "") {
		out = append(out, fmt.Sprintf("ab\n%sab\n%s\n\nab %s ab%s\n%s%s", m, m, m, m, m, m))
	}
	return append(out, "f(x)\n(y)\n|z|\n[w]\n...\n…\n。\n，ab\n،\n۔\n।", "a\n(b\n|c\n)d\n.e\n,f\n!g\n?h\n<s>(\n</s>|")
}
