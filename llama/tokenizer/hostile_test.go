package tokenizer

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// tinyJSON is a small valid tokenizer.json; hostile variants replace one
// of its parts (VOCAB, ADDED, NORM, POST).
const tinyJSON = `{"added_tokens": [ADDED],
 "normalizer": NORM,
 "post_processor": POST,
 "model": {"type": "BPE", "vocab": VOCAB, "merges": ["a b"]}}`

func tiny(vocab, added, norm, post string) []byte {
	if vocab == "" {
		vocab = `{"a": 0, "b": 1, "ab": 2}`
	}
	if norm == "" {
		norm = "null"
	}
	if post == "" {
		post = "null"
	}
	r := strings.NewReplacer("VOCAB", vocab, "ADDED", added, "NORM", norm, "POST", post)
	return []byte(r.Replace(tinyJSON))
}

// nested returns a normalizer Sequence nested depth deep.
func nested(depth int) string {
	return strings.Repeat(`{"type": "Sequence", "normalizers": [`, depth) + `{"type": "NFC"}` + strings.Repeat(`]}`, depth)
}

const wantInt = "want an integer from 0 to 16777215 (below tokenizer.MaxVocab)"

// TestHostileTokenizerJSON checks that broken and hostile tokenizer.json
// files are refused with one line naming the file, what is wrong and what
// is expected.
func TestHostileTokenizerJSON(t *testing.T) {
	long := strings.Repeat("x", 2000)
	badUTF8 := tiny("{\"a\": 0, \"b\": 1, \"ab\": 2, \"\xff\": 3}", "", "", "")
	lone := tiny(`{"a": 0, "b": 1, "ab": 2, "\ud800": 3}`, "", "", "")
	loneLow := tiny(`{"a": 0, "b": 1, "ab": 2, "x\udc00": 3}`, "", "", "")
	highA := tiny(`{"a": 0, "b": 1, "ab": 2, "\ud800\u0041": 3}`, "", "", "")
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"huge vocab id", tiny(`{"a": 0, "b": 2147483647, "ab": 2}`, "", "", ""), `model: vocab: token "b" has id 2147483647; ` + wantInt},
		{"50M vocab id", tiny(`{"a": 0, "b": 50000000, "ab": 2}`, "", "", ""), `model: vocab: token "b" has id 50000000; ` + wantInt},
		{"vocab id past int32", tiny(`{"a": 0, "b": 4294967296, "ab": 2}`, "", "", ""), `model: vocab: token "b" has id 4294967296; ` + wantInt},
		{"vocab id past int64", tiny(`{"a": 0, "b": 99999999999999999999999, "ab": 2}`, "", "", ""), `model: vocab: token "b" has id 4611686018427387904; ` + wantInt},
		{"negative vocab id", tiny(`{"a": 0, "b": -1, "ab": 2}`, "", "", ""), `model: vocab: token "b" has id -1; ` + wantInt},
		{"fractional vocab id", tiny(`{"a": 0, "b": 1.5, "ab": 2}`, "", "", ""), `model: vocab: token "b" has id 1.5; ` + wantInt},
		{"exponent vocab id", tiny(`{"a": 0, "b": 1e3, "ab": 2}`, "", "", ""), `model: vocab: token "b" has id 1e3; ` + wantInt},
		{"string vocab id", tiny(`{"a": 0, "b": "1", "ab": 2}`, "", "", ""), `model: vocab: token "b" has id "1"; ` + wantInt},
		{"null vocab id", tiny(`{"a": 0, "b": null, "ab": 2}`, "", "", ""), `model: vocab: token "b" has id null; ` + wantInt},
		{"two bad vocab ids", tiny(`{"z": -5, "a": 0, "b": 1.5, "ab": 2}`, "", "", ""), `model: vocab: token "b" has id 1.5; ` + wantInt},
		{"duplicate vocab id", tiny(`{"a": 0, "b": 1, "ab": 1}`, "", "", ""), `model: vocab: tokens "ab" and "b" both have id 1; every token needs its own id`},
		{"long vocab token", tiny(`{"a": 0, "b": 1, "ab": 2, "`+strings.Repeat("y", 5000)+`": 3}`, "", "", ""), `model: vocab: token "` + strings.Repeat("y", 60) + `..." is 5000 bytes; at most 4096 (tokenizer.MaxTokenBytes)`},
		{"vocab not an object", tiny(`[1, 2]`, "", "", ""), `model: field "vocab": json: cannot unmarshal array into Go value of type map[string]tokenizer.jsonID`},
		{"merge of unknown tokens", []byte(`{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a x"]}}`), `model: merge 0 ("a" "x") uses a token that is not in the vocabulary`},
		{"merge without result", []byte(`{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": [["a", "b"]]}}`), `model: merge 0 ("a" "b") uses a token that is not in the vocabulary`},
		{"merge of three tokens", []byte(`{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a a a"]}}`), `model: merge 0 "a a a" is not two tokens separated by one space`},
		{"huge added id", tiny("", `{"id": 2147483647, "content": "<x>"}`, "", ""), `added token "<x>" has id 2147483647; ` + wantInt},
		{"negative added id", tiny("", `{"id": -1, "content": "<x>"}`, "", ""), `added token "<x>" has id -1; ` + wantInt},
		{"fractional added id", tiny("", `{"id": 3.0, "content": "<x>"}`, "", ""), `added token "<x>" has id 3.0; ` + wantInt},
		{"missing added id", tiny("", `{"content": "<x>"}`, "", ""), `added token "<x>" has no id`},
		{"added id of a vocab token", tiny("", `{"id": 1, "content": "<x>"}`, "", ""), `added token "<x>" has id 1, which is already the id of "b"; every token needs its own id`},
		{"two added tokens, one id", tiny("", `{"id": 3, "content": "<x>"}, {"id": 3, "content": "<y>"}`, "", ""), `added token "<y>" has id 3, which is already the id of "<x>"; every token needs its own id`},
		{"added id out of order", tiny("", `{"id": 4, "content": "<x>"}, {"id": 3, "content": "<y>"}`, "", ""), `added token "<x>" has id 4, but Hugging Face tokenizers numbers added tokens that are not in the vocabulary in file order from the vocabulary size (3), which gives it id 3`},
		{"added token with the wrong vocab id", tiny("", `{"id": 0, "content": "b"}`, "", ""), `added token "b" has id 0, but the vocabulary gives it id 1`},
		{"added token twice", tiny("", `{"id": 3, "content": "<x>"}, {"id": 4, "content": "<x>"}`, "", ""), `added token "<x>" appears twice (ids 3 and 4)`},
		{"empty added token", tiny("", `{"id": 3, "content": ""}`, "", ""), `added token 0 (id 3) has no content`},
		{"long added token", tiny("", `{"id": 3, "content": "`+long+`"}`, "", ""), `added token "` + long[:60] + `..." (id 3) is 2000 bytes; at most 1024 (tokenizer.MaxAddedTokenBytes)`},
		{"deep Sequence", tiny("", "", nested(17), ""), `normalizer: Sequence nested more than 16 deep (tokenizer.MaxSequenceDepth)`},
		{"deep JSON", tiny("", "", nested(20000), ""), `exceeded max depth`},
		{"many components", tiny("", "", `{"type": "Sequence", "normalizers": [`+strings.Repeat(`{"type": "NFC"}, `, 300)+`{"type": "NFC"}]}`, ""), `normalizer: more than 256 components (tokenizer.MaxComponents)`},
		{"long Replace", tiny("", "", `{"type": "Replace", "pattern": {"String": "a"}, "content": "`+long+`"}`, ""), `normalizer Replace: content is 2000 bytes; at most 1024 (tokenizer.MaxPatternBytes)`},
		{"long Prepend", tiny("", "", `{"type": "Prepend", "prepend": "`+long+`"}`, ""), `normalizer Prepend: prepend is 2000 bytes; at most 1024 (tokenizer.MaxPatternBytes)`},
		{"template id past the vocabulary", tiny("", "", "", `{"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}], "special_tokens": {"<s>": {"ids": [99]}}}`),
			`post_processor TemplateProcessing: special token "<s>" has id 99, which is not a token of the vocabulary or the added tokens`},
		{"negative template id", tiny("", "", "", `{"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}], "special_tokens": {"<s>": {"ids": [-3]}}}`),
			`post_processor TemplateProcessing: special token "<s>" has id -3; ` + wantInt},
		{"template with two sequences", tiny("", "", "", `{"type": "TemplateProcessing", "single": [{"Sequence": {"id": "A"}}, {"Sequence": {"id": "A"}}], "special_tokens": {}}`),
			`post_processor TemplateProcessing: the single template has 2 sequences ($A); want exactly one`},
		{"template adding many ids", tiny("", "", "", `{"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}], "special_tokens": {"<s>": {"ids": [`+strings.Repeat("0, ", 64)+`0]}}}`),
			`post_processor TemplateProcessing: the single template adds more than 64 special tokens (tokenizer.MaxTemplateIDs)`},
		{"truncated", tiny("", "", "", "")[:60], `unexpected end of JSON input`},
		{"empty", nil, `empty, want a JSON object`},
		{"blank", []byte(" \n\t"), `empty, want a JSON object`},
		{"a list", []byte(`[{"model": {}}]`), `not a JSON object (byte 0 is '[', want '{')`},
		{"zeros", make([]byte, 100), `not a JSON object (byte 0 is 0x00, want '{')`},
		{"byte order mark", append([]byte("\xef\xbb\xbf"), tiny("", "", "", "")...), `not a JSON object (byte 0 is 0xef, want '{')`},
		{"invalid UTF-8", badUTF8, fmt.Sprintf(`invalid UTF-8 at byte %d (line 4)`, bytes.IndexByte(badUTF8, 0xff))},
		{"surrogate escape", lone, fmt.Sprintf(`\ud800 at byte %d (line 4) is half of a UTF-16 surrogate pair, not a character`, bytes.Index(lone, []byte(`\ud800`)))},
		{"low surrogate escape", loneLow, fmt.Sprintf(`\udc00 at byte %d (line 4) is half of a UTF-16 surrogate pair, not a character`, bytes.Index(loneLow, []byte(`\udc00`)))},
		{"high surrogate before a non-surrogate", highA, fmt.Sprintf(`\ud800 at byte %d (line 4) is half of a UTF-16 surrogate pair, not a character`, bytes.Index(highA, []byte(`\ud800`)))},
		{"no model", []byte(`{"added_tokens": []}`), `no "model"`},
		{"trailing comma", []byte("{\"model\": {\"type\": \"BPE\",\n \"vocab\": {\"a\": 0,}}}"), `invalid character '}' looking for beginning of object key string at byte 44 (line 2)`},
		{"wrong type", []byte("{\"added_tokens\": [{\"id\": 0, \"content\": \"a\", \"special\": \"yes\"}], \"model\": {}}"), `json: cannot unmarshal string into Go struct field addedJSON.added_tokens.special of type bool at byte 59 (line 1)`},
	}
	for _, c := range cases {
		_, err := FromJSON("/m/tokenizer.json", c.data, nil)
		want := "tokenizer: /m/tokenizer.json: " + c.want
		if c.want == "exceeded max depth" || c.want == "unexpected end of JSON input" {
			if err == nil || !strings.HasPrefix(err.Error(), "tokenizer: /m/tokenizer.json: ") || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: err = %v, want one containing %q", c.name, err, c.want)
			}
			continue
		}
		if err == nil || err.Error() != want {
			t.Errorf("%s:\n got %v\nwant %s", c.name, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error has more than one line: %q", c.name, err)
		}
	}
	// A valid surrogate pair and escaped backslashes are fine.
	ok := tiny(`{"a": 0, "b": 1, "ab": 2, "\ud83d\ude00": 3, "\\ud800": 4}`, "", "", "")
	if _, err := FromJSON("/m/tokenizer.json", ok, nil); err != nil {
		t.Errorf("surrogate pair: %v", err)
	}
}

// TestHostileIDsCheap checks that huge ids are refused, and the largest
// allowed one accepted, at once and without allocating for them.
func TestHostileIDsCheap(t *testing.T) {
	for _, c := range []struct {
		name string
		data []byte
		ok   bool
	}{
		{"vocab 2^31-1", tiny(`{"a": 0, "b": 2147483647, "ab": 2}`, "", "", ""), false},
		{"vocab 50M", tiny(`{"a": 0, "b": 50000000, "ab": 2}`, "", "", ""), false},
		{"added 2^31-1", tiny("", `{"id": 2147483647, "content": "<x>"}`, "", ""), false},
		{"added 50M", tiny("", `{"id": 50000000, "content": "<x>"}`, "", ""), false},
		{"vocab MaxVocab-1", tiny(`{"a": 0, "b": 1, "ab": 16777215}`, "", "", ""), true},
	} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		start := time.Now()
		tk, err := FromJSON("/m/tokenizer.json", c.data, nil)
		elapsed := time.Since(start)
		runtime.ReadMemStats(&after)
		alloc := after.TotalAlloc - before.TotalAlloc
		if (err == nil) != c.ok {
			t.Errorf("%s: err = %v", c.name, err)
		}
		if elapsed > time.Second || alloc > 1<<20 {
			t.Errorf("%s: took %v and allocated %d bytes; want under 1 s and 1 MiB", c.name, elapsed, alloc)
		}
		if c.ok {
			if tk.VocabSize() != MaxVocab || tk.TokenString(MaxVocab-1) != "ab" || tk.TokenString(5) != "" {
				t.Errorf("%s: VocabSize %d, token %q", c.name, tk.VocabSize(), tk.TokenString(MaxVocab-1))
			}
			if got := tk.Decode(tk.Encode("abab", false), false); got != "ab ab" {
				t.Errorf("%s: Decode(Encode(abab)) = %q", c.name, got)
			}
		}
	}
}

// TestHostileFiles checks Load on files that are not tokenizer.json files.
func TestHostileFiles(t *testing.T) {
	dir := t.TempDir()
	// A sparse file past the limit is refused from its size alone.
	big := filepath.Join(dir, "big", "tokenizer.json")
	if err := os.MkdirAll(filepath.Dir(big), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxFileBytes + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := Load(big); err == nil || err.Error() != "tokenizer: "+big+": larger than 256 MiB (tokenizer.MaxFileBytes)" {
		t.Errorf("big file: %v", err)
	}
	// A device that never ends, refused at its first byte.
	if _, err := os.Stat("/dev/zero"); err == nil {
		start := time.Now()
		_, err := Load("/dev/zero")
		if err == nil || err.Error() != "tokenizer: /dev/zero: not a JSON object (byte 0 is 0x00, want '{')" || time.Since(start) > time.Second {
			t.Errorf("/dev/zero: %v after %v", err, time.Since(start))
		}
	}
	if _, err := Load(dir); err == nil || err.Error() != "tokenizer: "+dir+" is a directory, not a JSON file" {
		t.Errorf("directory: %v", err)
	}
	// A pipe (size 0) that goes on past the limit: the limit is read
	// through, not taken from the size.
	if _, err := os.Stat("/proc/self/fd"); err == nil {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			w.Write([]byte("{"))
			blank := []byte(strings.Repeat(" ", 1<<16))
			for {
				if _, err := w.Write(blank); err != nil {
					return
				}
			}
		}()
		path := fmt.Sprintf("/proc/self/fd/%d", r.Fd())
		_, err = readJSONFile(path, 1<<20, "MaxFileBytes")
		r.Close()
		w.Close()
		if err == nil || err.Error() != "tokenizer: "+path+": larger than 1 MiB (tokenizer.MaxFileBytes)" {
			t.Errorf("endless pipe: %v", err)
		}
	}
	// tokenizer_config.json is bounded and checked too.
	good := tiny("", "", "", "")
	for _, c := range []struct {
		name string
		cfg  []byte
		want string
	}{
		{"large", nil, "larger than 256 MiB (tokenizer.MaxConfigBytes)"}, // sparse, past the limit
		{"not an object", []byte(`"bos"`), `not a JSON object (byte 0 is '"', want '{')`},
		{"invalid UTF-8", []byte("{\"bos_token\": \"\xc0\"}"), "invalid UTF-8 at byte 15 (line 1)"},
		{"unknown BOS", []byte(`{"bos_token": "<s>"}`), `bos_token "<s>" is not a token of ` + filepath.Join(dir, "c", "tokenizer.json")},
	} {
		d := filepath.Join(dir, "c")
		os.MkdirAll(d, 0o755)
		if err := os.WriteFile(filepath.Join(d, "tokenizer.json"), good, 0o644); err != nil {
			t.Fatal(err)
		}
		cfgPath := filepath.Join(d, "tokenizer_config.json")
		if err := os.WriteFile(cfgPath, c.cfg, 0o644); err != nil {
			t.Fatal(err)
		}
		if c.cfg == nil {
			os.WriteFile(cfgPath, []byte(`{"x": "`), 0o644)
			if err := os.Truncate(cfgPath, MaxConfigBytes+1); err != nil {
				t.Fatal(err)
			}
		}
		_, err := LoadDir(d)
		if want := "tokenizer: " + filepath.Join(d, "tokenizer_config.json") + ": " + c.want; err == nil || err.Error() != want {
			t.Errorf("config %s:\n got %v\nwant %s", c.name, err, want)
		}
	}
}

// TestEmptyVocab checks that a tokenizer without tokens loads and encodes
// every text to no ids.
func TestEmptyVocab(t *testing.T) {
	tk, err := FromJSON("e.json", []byte(`{"model": {"type": "BPE", "vocab": {}, "merges": []}}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if ids := tk.Encode("abc\n", true); len(ids) != 0 || tk.VocabSize() != 0 || tk.Decode([]int{0, -1, 5}, false) != "" {
		t.Errorf("Encode = %v, VocabSize %d", ids, tk.VocabSize())
	}
}

// TestSynthLlama3ShapeLoads: the tokenizer tli synth writes for the Llama 3
// vocabulary (128256 ids, a 25 MB tokenizer_config.json listing every
// reserved special token) is within the limits.
func TestSynthLlama3ShapeLoads(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 128256-token tokenizer")
	}
	tj, cj, err := Synth([]string{"maji", "water"}, 128256)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "tokenizer.json"), tj, 0o644)
	os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), cj, 0o644)
	tk, err := LoadDir(dir)
	if err != nil {
		t.Fatalf("%v (tokenizer_config.json is %d bytes)", err, len(cj))
	}
	if tk.VocabSize() != 128256 {
		t.Errorf("vocab %d, want 128256", tk.VocabSize())
	}
	t.Logf("tokenizer.json %d bytes, tokenizer_config.json %d bytes", len(tj), len(cj))
}
