package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tli-project/tli/internal/memtest"
	"github.com/tli-project/tli/internal/peer"
)

// spmJSON is the tiny SentencePiece-style tokenizer of
// TestSentencePieceStyle with a newline byte and spaces between words, so
// that EncodeReader can cut its text.
const spmJSON = `{
 "added_tokens": [
  {"id": 0, "content": "<unk>", "special": true, "normalized": false},
  {"id": 1, "content": "<s>", "special": true, "normalized": false},
  {"id": 2, "content": "</s>", "special": true, "normalized": false},
  {"id": XID, "content": "[X]", "special": true, "normalized": false, "lstrip": true}ADDED
 ],
 "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
 "pre_tokenizer": null,
 "post_processor": {"type": "TemplateProcessing",
   "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
   "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
 "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
 "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": true, "byte_fallback": true,
  "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "▁": 3, "a": 4, "b": 5, "▁a": 6, "ab": 7, "▁ab": 8, "<0xC3>": 9, "<0xA9>": 10, "c": 11, "<0x0A>": 12, "▁▁": 13, "<0x0D>": 14,
    LETTERS},
  "merges": [["▁", "a"], ["a", "b"], ["▁a", "b"], ["▁", "▁"]MERGES]}
}`

func spmJSONBytes() []byte { return spmJSONWith(nil, "", "") }

// spmJSONWith is spmJSON with more tokens in the vocabulary (ids after the
// letters), more merges (JSON pairs) and more added tokens (JSON objects
// without ids), numbered as Hugging Face numbers them.
func spmJSONWith(vocab []string, merges, added string) []byte {
	var entries []string
	for c := 'A'; c <= 'z'; c++ {
		if isASCIILetter(byte(c)) && (c < 'a' || c > 'c') {
			entries = append(entries, fmt.Sprintf(`"<0x%02X>": %d`, c, 15+len(entries)))
		}
	}
	for _, v := range vocab {
		q, _ := json.Marshal(v)
		entries = append(entries, fmt.Sprintf(`%s: %d`, q, 15+len(entries)))
	}
	id := 15 + len(entries)
	var extra []string
	if added != "" {
		var objs []map[string]any
		if err := json.Unmarshal([]byte("["+added+"]"), &objs); err != nil {
			panic(err)
		}
		for i, o := range objs {
			o["id"] = id + 1 + i
			b, _ := json.Marshal(o)
			extra = append(extra, ", "+string(b))
		}
	}
	if merges != "" {
		merges = ", " + merges
	}
	r := strings.NewReplacer("LETTERS", strings.Join(entries, ", "), "XID", fmt.Sprint(id), "ADDED", strings.Join(extra, ""), "MERGES", merges)
	return []byte(r.Replace(spmJSON))
}

// spmTokenizer is spmJSON with byte-fallback tokens for the ASCII letters
// other than a, b and c (ids 15 to 63), which EncodeReader needs to cut at
// spaces.
func spmTokenizer(t testing.TB) *Tokenizer {
	t.Helper()
	tk, err := FromJSON("spm/tokenizer.json", spmJSONBytes(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// streamTokenizers returns the tokenizers the streaming tests run on: the
// synthetic byte-level one, the SentencePiece-style one above, BLOOM-shaped
// ones (bloomStreamTokenizers) and, when installed, the real Llama 3,
// Llama 2, Qwen3 and Gemma 3 ones.
func streamTokenizers(t testing.TB) map[string]*Tokenizer {
	t.Helper()
	// The synthetic tokenizer learns merges of white space around newlines
	// too, which the GPT-2 pre-tokenizer splits differently at the end of
	// a text.
	words := append([]string{}, synthWords...)
	for i := 0; i < 50; i++ {
		words = append(words, "a \n", "b\t\n\n", "c  \n \n", "d\r\n")
	}
	tj, cj, err := Synth(words, 500)
	if err != nil {
		t.Fatal(err)
	}
	synth, err := FromJSON("synth/tokenizer.json", tj, cj)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*Tokenizer{"synth": synth, "spm": spmTokenizer(t)}
	for name, tk := range bloomStreamTokenizers(t, tj) {
		out[name] = tk
	}
	// Variants for the other pre-tokenizers: GPT-2's ByteLevel (regex and
	// add_prefix_space) on the synthetic vocabulary, Metaspace (split or
	// not, prepend_scheme first or always) on the SentencePiece-style one;
	// and variants of that one that rule out one kind of cut each.
	variants := map[string]struct {
		base     []byte
		override string
	}{
		"synth-gpt2":       {tj, `{"pre_tokenizer": ` + gpt2JSON + `}`},
		"spm-meta-first":   {spmJSONBytes(), `{"normalizer": null, "pre_tokenizer": ` + metaspaceJSON + `}`},
		"spm-meta-always":  {spmJSONBytes(), `{"normalizer": null, "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true}}`},
		"synth-bytelevel0": {tj, `{"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": true, "use_regex": false}}`},
		"spm-nlmerge":      {spmJSONWith([]string{"\n", "\nb"}, `["\n", "b"]`, ""), `{}`},
		"spm-bytemerge":    {spmJSONWith([]string{"<0x0A>b"}, `["<0x0A>", "b"]`, ""), `{}`},
		"spm-spacemerge":   {spmJSONWith([]string{"b▁"}, `["b", "▁"]`, ""), `{}`},
		"spm-rstrip":       {spmJSONWith(nil, "", `{"content": "Qq", "rstrip": true}`), `{}`},
		"spm-lettertoken":  {spmJSONWith(nil, "", `{"content": "Qz"}`), `{}`},
		"spm-spacetoken":   {spmJSONWith(nil, "", `{"content": "a b"}`), `{}`},
		"spm-nltoken":      {spmJSONWith(nil, "", `{"content": "b\nc"}`), `{}`},
		// Spaces become "~", which is unknown and, with no unk token,
		// dropped: the letters beside a space meet and merge.
		"spm-dropspace": {[]byte(strings.Replace(string(spmJSONBytes()), `"unk_token": "<unk>"`, `"unk_token": null`, 1)),
			`{"normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "~"}}`},
		"spm-nldeleted": {spmJSONBytes(), `{"normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
		  {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}, {"type": "Replace", "pattern": {"String": "\n"}, "content": ""}]}}`},
		// Gemma's shape: spaces replaced, a Split on the space that never
		// matches, newlines and runs of white space as added tokens (so
		// newlines never reach the model); with a Prepend, the text after
		// a newline token is a new section, which a continuation is not.
		"spm-gemma": {spmJSONWith(nil, "", `{"content": "\n"}, {"content": "\n\n"}, {"content": "▁▁▁"}, {"content": "\t"}`), gemmaOverride},
		"spm-gemma-prepend": {spmJSONWith(nil, "", `{"content": "\n"}, {"content": "\n\n"}, {"content": "▁▁▁"}`),
			`{"normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}}`},
		"spm-gemma-nlword": {spmJSONWith(nil, "", `{"content": "\n", "single_word": true}`), gemmaOverride},
		// Qwen's shape: NFC before the byte-level pattern.
		"synth-nfc":          {tj, `{"normalizer": {"type": "NFC"}}`},
		"synth-nfkd-nltoken": {synthWithAdded(t, tj, "\n"), `{"normalizer": {"type": "Sequence", "normalizers": [{"type": "NFKD"}, {"type": "NFC"}]}}`},
	}
	for name, v := range variants {
		var m, o map[string]json.RawMessage
		if err := json.Unmarshal(v.base, &m); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(v.override), &o); err != nil {
			t.Fatal(err)
		}
		for k, x := range o {
			m[k] = x
		}
		data, _ := json.Marshal(m)
		cfg := cj
		if strings.HasPrefix(name, "spm") {
			cfg = nil
		}
		tk, err := FromJSON(name+"/tokenizer.json", data, cfg)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = tk
	}
	models := filepath.Join(peer.Root(), ".cache", "node", "node_modules", "@lenml")
	if l3, err := LoadDir(filepath.Join(models, "tokenizer-llama3", "models")); err == nil {
		out["llama3"] = l3
	}
	if l2, err := LoadDir(filepath.Join(models, "tokenizer-llama2", "models")); err == nil {
		out["llama2"] = l2
	}
	if q, err := LoadDir(filepath.Join(models, "tokenizer-qwen3", "models")); err == nil {
		out["qwen3"] = q
	}
	if g, err := LoadDir(filepath.Join(models, "tokenizer-gemma3", "models")); err == nil {
		out["gemma3"] = g
	}
	// The real vocabularies with the other pre-tokenizers, as in TestParity.
	for name, v := range map[string]struct{ dir, override string }{
		"llama3-gpt2":      {"tokenizer-llama3", `{"pre_tokenizer": ` + gpt2JSON + `}`},
		"llama2-metaspace": {"tokenizer-llama2", `{"normalizer": null, "pre_tokenizer": ` + metaspaceJSON + `}`},
	} {
		path := filepath.Join(models, v.dir, "models", "tokenizer.json")
		if _, err := os.Stat(path); err != nil {
			continue
		}
		var o map[string]json.RawMessage
		if err := json.Unmarshal([]byte(v.override), &o); err != nil {
			t.Fatal(err)
		}
		tk, err := FromJSON(path, withOverride(t, path, o), nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = tk
	}
	return out
}

// gemmaOverride gives a SentencePiece-style tokenizer Gemma 3's normalizer
// and pre-tokenizer.
const gemmaOverride = `{"normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
 "pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious", "invert": false}}`

// synthWithAdded returns the synthetic tokenizer.json tj with one more
// added token, content, numbered after the others.
func synthWithAdded(t testing.TB, tj []byte, content string) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(tj, &m); err != nil {
		t.Fatal(err)
	}
	var added []map[string]any
	if err := json.Unmarshal(m["added_tokens"], &added); err != nil {
		t.Fatal(err)
	}
	next := 0.0
	for _, a := range added {
		next = max(next, a["id"].(float64)+1)
	}
	added = append(added, map[string]any{"id": next, "content": content, "special": false, "normalized": false})
	m["added_tokens"], _ = json.Marshal(added)
	out, _ := json.Marshal(m)
	return out
}

// trickyTexts are texts around the cut positions: CRLF, runs of blank
// lines, white space before and after newlines, Unicode white space,
// multi-byte characters at line starts, added tokens beside newlines.
func trickyTexts() []string {
	texts := []string{
		"", "a", "\n", "\n\n", "a\nb", "a\n\nb", "a \nb", "a\n b", "a\r\nb\r\n\r\nc", "a\t\nb",
		"x\u00a0\ny", "x\u3000\ny", "x\u0085\ny", "x\n\u00e9t\u00e9", "x\n\u0301y", "x\n1234\n!!\n\n?", "it's\nI'M\n'll",
		"Habari ya asubuhi\nhabari za jioni\n\n\nAsante sana rafiki\n",
		"line one  \nline two\t\n  indented\n\tTabbed\n",
		"a b c d e f g h i j k l m n o p q r s t u v w x y z",
		"a  b   c\u00a0d e\u2003f",
		"<|begin_of_text|>x\n<|begin_of_text|>\n<|end_of_text|>y z",
		"<s>a b\n</s>\n[X] a\n [X]b ab\n",
		"aé b\nébé\n€a\n",
		"trailing space \nand\r\rCR only\rline\n",
		"12 34\n56 78\n9",
		"👨‍👩‍👧 family\n👍\nok ok",
		"ab ab ab\nab\n▁ab ▁\n▁▁ a",
		"a\nb\nab\nbb\nab b ab\nba ab b b", "Qq b\naQq bc Qq\nQq  b", "Qz b\naQz bc Qz\nQz  b", "aQq\nx y\nQq\nb", "ab\ncd b\nc\nb\ncb\nc", "<|begin_of_text|>\nx\n<|end_of_text|>\n\nx",
		strings.Repeat("word ", 300) + "\n" + strings.Repeat("x", 700) + "\nend",
	}
	texts = append(texts, bloomTexts()...)
	// Random texts from pieces that meet at cut positions in every way.
	pieces := []string{"a", "b", "ab", "Qq", "Qz", "Z", " ", "  ", "\n", "\r\n", "\n\n", "\t", "é", "€", "▁", "'s", "!", "1", "23",
		"\u00a0", "\u3000", "\u0301", "<s>", "[X]", "<|begin_of_text|>", "x", "hello", " world", "\n ", " \n", "(", "|", ".", "…"}
	rng := rand.New(rand.NewSource(7))
	for i := 0; i < 300; i++ {
		var sb strings.Builder
		for n := rng.Intn(40); n >= 0; n-- {
			sb.WriteString(pieces[rng.Intn(len(pieces))])
		}
		texts = append(texts, sb.String())
	}
	return texts
}

// randomReader returns the data in reads of 1 to 5 bytes.
type randomReader struct {
	data []byte
	rng  *rand.Rand
}

func (r *randomReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(1+r.rng.Intn(5), len(p), len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// streamIDs encodes text with EncodeReader and returns the ids and how
// many times emit was called.
func streamIDs(t testing.TB, tk *Tokenizer, r io.Reader, addSpecial bool, opt StreamOptions) ([]int, int, error) {
	t.Helper()
	var got []int
	calls := 0
	err := tk.EncodeReader(r, addSpecial, opt, func(ids []int) error {
		calls++
		got = append(got, ids...)
		return nil
	})
	return got, calls, err
}

// TestEncodeReaderMatchesEncode checks that EncodeReader, cutting the text
// wherever it may (chunks of 1 byte, reads of 1 to 5 bytes), gives exactly
// the ids of Encode on the whole text.
func TestEncodeReaderMatchesEncode(t *testing.T) {
	texts := trickyTexts()
	for name, tk := range streamTokenizers(t) {
		c := tk.cutRules()
		// The synthetic vocabulary merges white space with newlines, which
		// only a pre-tokenizer keeps apart.
		wantNL := !map[string]bool{"synth-bytelevel0": true, "spm-nlmerge": true, "spm-bytemerge": true, "spm-nltoken": true, "spm-nldeleted": true,
			"spm-gemma-prepend": true, "spm-gemma-nlword": true}[name]
		wantSpace := !map[string]bool{"spm-dropspace": true, "spm-spacemerge": true, "spm-spacetoken": true, "spm-nldeleted": true}[name]
		if c.newline != wantNL || c.space != wantSpace {
			t.Errorf("%s: cut rules newline %v, space %v; want %v, %v", name, c.newline, c.space, wantNL, wantSpace)
		}
		rng := rand.New(rand.NewSource(1))
		cuts := 0
		for _, s := range texts {
			for _, chunk := range []int{1, 5, 1 << 20} {
				for _, special := range []bool{true, false} {
					want := tk.Encode(s, special)
					got, calls, err := streamIDs(t, tk, &randomReader{[]byte(s), rng}, special, StreamOptions{ChunkBytes: chunk})
					if err != nil {
						t.Fatalf("%s: EncodeReader(%q): %v", name, s, err)
					}
					if !sameIDs(got, want) {
						t.Fatalf("%s, chunks of %d: EncodeReader(%q)\n got %v\nwant %v", name, chunk, s, got, want)
					}
					if chunk == 1 && special {
						cuts += calls
					}
				}
			}
		}
		if cuts < 2*len(texts) && wantNL && wantSpace {
			t.Errorf("%s: only %d emits for %d texts: the texts were hardly cut", name, cuts, len(texts))
		}
	}
}

// TestEncodeReaderInvalidUTF8 checks the offset and line of invalid UTF-8,
// also when a read ends inside a character, and that AllowInvalidUTF8
// gives Encode's repair.
func TestEncodeReaderInvalidUTF8(t *testing.T) {
	tk, _, _ := synthTokenizer(t, 400)
	cases := []struct {
		in         string
		off, line  int64
		chunkBytes int
	}{
		{"\xff", 0, 1, 0},
		{"ab\ncd\n\xe2\x82", 6, 3, 0},                              // truncated at the end of the text
		{"ab\ncd\n\xe2\x82x", 6, 3, 1},                             // truncated before ASCII
		{"é\né\n\xed\xa0\x80", 6, 3, 1},                            // a UTF-16 surrogate in UTF-8
		{strings.Repeat("ab\n", 1000) + "\xc0\xaf", 3000, 1001, 7}, // overlong, after cuts
	}
	for _, c := range cases {
		rng := rand.New(rand.NewSource(2))
		_, _, err := streamIDs(t, tk, &randomReader{[]byte(c.in), rng}, true, StreamOptions{ChunkBytes: c.chunkBytes})
		var ie *InvalidUTF8Error
		if !errors.As(err, &ie) || ie.Offset != c.off || ie.Line != c.line {
			t.Errorf("EncodeReader(%q): err %v, want invalid UTF-8 at byte %d (line %d)", clip(c.in), err, c.off, c.line)
		}
		got, _, err := streamIDs(t, tk, &randomReader{[]byte(c.in), rng}, true, StreamOptions{ChunkBytes: c.chunkBytes, AllowInvalidUTF8: true})
		if want := tk.Encode(c.in, true); err != nil || !sameIDs(got, want) {
			t.Errorf("EncodeReader(%q) allowing invalid UTF-8 = %v, %v; want %v", clip(c.in), got, err, want)
		}
	}
	if got := (&InvalidUTF8Error{Offset: 5, Line: 2}).Error(); got != "invalid UTF-8 at byte 5 (line 2)" {
		t.Errorf("InvalidUTF8Error = %q", got)
	}
}

// TestEncodeReaderErrors checks that read and emit errors stop it.
func TestEncodeReaderErrors(t *testing.T) {
	tk, _, _ := synthTokenizer(t, 400)
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("ab\ncd\n"), errReader{boom})
	if _, _, err := streamIDs(t, tk, r, true, StreamOptions{}); !errors.Is(err, boom) {
		t.Errorf("read error: %v", err)
	}
	err := tk.EncodeReader(strings.NewReader("ab\ncd"), true, StreamOptions{}, func([]int) error { return boom })
	if !errors.Is(err, boom) {
		t.Errorf("emit error: %v", err)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// TestEncodeReaderMemory encodes 32 MiB of text, generated as it is read,
// and checks that the heap stays far below the size of the text and that
// the ids are those of Encode.
func TestEncodeReaderMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	tk, _, _ := synthTokenizer(t, 600)
	const size = 32 << 20
	text, _ := io.ReadAll(newTextReader(size))
	want := tk.Encode(string(text), true)
	wantLen, wantSum := len(want), checksum(want)
	text, want = nil, nil
	n, sum := 0, uint64(0)
	peak := memtest.PeakHeap(func() {
		err := tk.EncodeReader(newTextReader(size), true, StreamOptions{}, func(ids []int) error {
			n += len(ids)
			for _, id := range ids {
				sum = sum*1099511628211 + uint64(id)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	if n != wantLen || sum != wantSum {
		t.Errorf("EncodeReader gave %d ids (checksum %x), Encode %d (%x)", n, sum, wantLen, wantSum)
	}
	t.Logf("32 MiB of text: %d ids, heap grew by at most %.1f MiB", n, float64(peak)/(1<<20))
	if peak > 16<<20 {
		t.Errorf("heap grew by %.1f MiB encoding 32 MiB of text; want under 16 MiB", float64(peak)/(1<<20))
	}
}

func checksum(ids []int) uint64 {
	var sum uint64
	for _, id := range ids {
		sum = sum*1099511628211 + uint64(id)
	}
	return sum
}

// textReader generates n bytes of prose-like lines as they are read, the
// same for the same n.
type textReader struct {
	rng  *rand.Rand
	left int
	buf  bytes.Buffer
}

func newTextReader(n int) *textReader { return &textReader{rng: rand.New(rand.NewSource(3)), left: n} }

func (r *textReader) Read(p []byte) (int, error) {
	for r.buf.Len() < len(p) && r.left > 0 {
		n := r.buf.Len()
		for k := 5 + r.rng.Intn(15); k > 0; k-- {
			r.buf.WriteString(synthWords[r.rng.Intn(len(synthWords))])
			r.buf.WriteByte(" ,. "[r.rng.Intn(4)])
		}
		r.buf.WriteString([]string{"\n", "\n\n", " \n", "\r\n"}[r.rng.Intn(4)])
		if added := r.buf.Len() - n; added >= r.left {
			r.buf.Truncate(n + r.left)
			r.left = 0
		} else {
			r.left -= added
		}
	}
	if r.buf.Len() == 0 {
		return 0, io.EOF
	}
	return r.buf.Read(p)
}
