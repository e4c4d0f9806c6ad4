package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/tli-project/tli/internal/memtest"
	"github.com/tli-project/tli/llama/tokenizer"
)

// TestTokenize runs tli tokenize on a synthetic tokenizer: the ids must be
// those of the package, with BOS, and --decode must give the strings back.
func TestTokenize(t *testing.T) {
	dir := t.TempDir()
	tj, cj, err := tokenizer.Synth([]string{"habari", "asubuhi", "hello", "world"}, 320)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), tj, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), cj, 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, int) {
		var out, errs bytes.Buffer
		tokenizeOut = &out
		defer func() { tokenizeOut = os.Stdout }()
		code := runMain(append([]string{"tokenize"}, args...), &errs)
		if code != 0 {
			t.Logf("stderr: %s", errs.String())
		}
		return out.String(), code
	}
	texts := []string{"habari ya asubuhi", "hello world!", "", "<|begin_of_text|>x"}
	in, _ := json.Marshal(texts)
	file := filepath.Join(dir, "in.json")
	if err := os.WriteFile(file, in, 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := run("--model", dir, "--file", file)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var lists [][]int
	if err := json.Unmarshal([]byte(out), &lists); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	bos, _ := tok.BOS()
	for i, s := range texts {
		want := tok.Encode(s, true)
		if !reflect.DeepEqual(lists[i], want) || lists[i][0] != bos {
			t.Errorf("ids of %q = %v, want %v starting with BOS %d", s, lists[i], want, bos)
		}
	}
	if again, code := run("--model", dir, "--file", file, "--json"); code != 0 || again != out {
		t.Errorf("--json: exit %d, output %q, want %q", code, again, out)
	}
	out, code = run("--tokenizer", filepath.Join(dir, "tokenizer.json"), "--text", "hello world")
	if code != 0 || strings.TrimSpace(out) != strings.TrimSpace(mustJSON(t, [][]int{tok.Encode("hello world", true)})) {
		t.Errorf("--text: exit %d, output %q", code, out)
	}
	out, code = run("--model", dir, "--decode", "--text", mustJSON(t, lists))
	var back []string
	if err := json.Unmarshal([]byte(out), &back); err != nil || code != 0 {
		t.Fatalf("--decode: exit %d, output %q: %v", code, out, err)
	}
	for i, s := range texts {
		if back[i] != "<|begin_of_text|>"+s {
			t.Errorf("decode %d = %q, want %q", i, back[i], "<|begin_of_text|>"+s)
		}
	}
	if _, code := run("--model", dir); code != 2 {
		t.Errorf("missing --text/--file: exit %d, want 2", code)
	}
	if _, code := run("--model", dir, "--decode", "--text", "[[99999]]"); code != 1 {
		t.Errorf("out-of-range id: exit %d, want 1", code)
	}
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// tokenizeFixture writes a synthetic tokenizer into a folder and loads it.
func tokenizeFixture(t *testing.T) (string, *tokenizer.Tokenizer) {
	t.Helper()
	dir := t.TempDir()
	tj, cj, err := tokenizer.Synth([]string{"habari", "asubuhi", "hello", "world", "a \n", "b\n\n"}, 400)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), tj, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), cj, 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, tok
}

// runTokenizeCmd runs tli tokenize with args, returning stdout, stderr and
// the exit status.
func runTokenizeCmd(t *testing.T, out io.Writer, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if out == nil {
		out = &stdout
	}
	tokenizeOut = out
	defer func() { tokenizeOut = os.Stdout }()
	code := runMain(append([]string{"tokenize"}, args...), &stderr)
	return stdout.String(), stderr.String(), code
}

// tokenizeTexts are strings that meet the streaming encoder's cut
// positions in every way, plus long ones that it must cut.
func tokenizeTexts() []string {
	return []string{
		"", "habari ya asubuhi", "a\r\nb\r\n\r\nc", "line  \n\n\nnext\n \n\tx", "x\u00a0\ny\u3000\nz\u0085\n",
		"é\nü\n€x\n😀 y\n", "<|begin_of_text|>\nhello\n<|end_of_text|> world", "quote \" backslash \\ slash / tab \t nul \x00 bell \a",
		strings.Repeat("habari ya asubuhi\n", 20000), strings.Repeat("hello world ", 30000), strings.Repeat("x", 300000),
	}
}

// TestTokenizeStreams checks that --file (a JSON list, read as a stream)
// and --text-file (plain text) give the ids of Encode on each whole
// string, on texts long enough to be cut.
func TestTokenizeStreams(t *testing.T) {
	dir, tok := tokenizeFixture(t)
	texts := tokenizeTexts()
	want := make([][]int, len(texts))
	for i, s := range texts {
		want[i] = tok.Encode(s, true)
	}
	// The JSON file spells characters in every way JSON allows.
	var jb strings.Builder
	jb.WriteString(" [\n")
	for i, s := range texts {
		if i > 0 {
			jb.WriteString(" ,\n\t")
		}
		q, _ := json.Marshal(s)
		if i%2 == 1 { // escape every non-ASCII character, as \uXXXX or a surrogate pair
			q = []byte(strconv.QuoteToASCII(s))
			q = bytes.ReplaceAll(q, []byte(`\a`), []byte(`\u0007`))
			q = bytes.ReplaceAll(q, []byte(`\x00`), []byte(`\u0000`))
			q = regexp.MustCompile(`\\U000([0-9a-f]{5})`).ReplaceAllFunc(q, func(m []byte) []byte {
				r, _ := strconv.ParseUint(string(m[2:]), 16, 32)
				hi, lo := utf16.EncodeRune(rune(r))
				return []byte(fmt.Sprintf(`\u%04x\u%04X`, hi, lo))
			})
		}
		jb.Write(q)
	}
	jb.WriteString("\n]\n")
	file := filepath.Join(dir, "in.json")
	if err := os.WriteFile(file, []byte(jb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errs, code := runTokenizeCmd(t, nil, "--model", dir, "--file", file)
	var got [][]int
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || len(got) != len(texts) {
		t.Fatalf("--file: exit %d, %d lists, stderr %q", code, len(got), errs)
	}
	for i := range texts {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("--file, string %d (%q...): %d ids, want %d", i, clipString(texts[i]), len(got[i]), len(want[i]))
		}
	}
	for i, s := range texts {
		path := filepath.Join(dir, fmt.Sprintf("text%d.txt", i))
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		out, errs, code := runTokenizeCmd(t, nil, "--model", dir, "--text-file", path)
		if code != 0 || strings.TrimSpace(out) != mustJSON(t, [][]int{want[i]}) {
			t.Errorf("--text-file %q: exit %d, stderr %q", clipString(s), code, errs)
		}
	}
	// The output is what encoding/json writes for the lists.
	out, _, _ = runTokenizeCmd(t, nil, "--model", dir, "--text", "hello world", "--no-special")
	if out != mustJSON(t, [][]int{tok.Encode("hello world", false)})+"\n" {
		t.Errorf("--no-special output %q", out)
	}
	empty := filepath.Join(dir, "empty.json")
	os.WriteFile(empty, []byte("[ ]"), 0o644)
	if out, _, code := runTokenizeCmd(t, nil, "--model", dir, "--file", empty); code != 0 || out != "[]\n" {
		t.Errorf("empty list: exit %d, output %q", code, out)
	}
}

func clipString(s string) string {
	if len(s) > 40 {
		return s[:40]
	}
	return s
}

// TestTokenizeRefuses checks the one-line errors for careless and hostile
// input, and that a bad regular file gives no output at all.
func TestTokenizeRefuses(t *testing.T) {
	dir, tok := tokenizeFixture(t)
	write := func(name, data string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	hint := "; --allow-invalid-utf8 replaces it with U+FFFD"
	badText := write("bad.txt", "ok\nstill ok\nnot \xff ok\n"+strings.Repeat("more\n", 100000))
	badJSON := write("bad.json", "[\"ok\",\n \"n\xc3t\"]")
	surrogate := write("surrogate.json", `["ok", "x\ud800y"]`)
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--text", "ab\xffc"}, 2, "--text: invalid UTF-8 at byte 2 (line 1)" + hint},
		{[]string{"--text", "a\nb\n\xed\xa0\x80"}, 2, "--text: invalid UTF-8 at byte 4 (line 3)" + hint},
		{[]string{"--text-file", badText}, 2, badText + ": invalid UTF-8 at byte 16 (line 3)" + hint},
		{[]string{"--file", badJSON}, 2, badJSON + ": invalid UTF-8 at byte 10 (line 2)" + hint},
		{[]string{"--file", surrogate}, 2, surrogate + `: \ud800 at byte 9 (line 1) is half of a UTF-16 surrogate pair, not a character` + hint},
		{[]string{"--file", write("obj.json", `{"a": 1}`)}, 2, filepath.Join(dir, "obj.json") + ": want a JSON list of strings: found '{' at byte 0 (line 1)"},
		{[]string{"--file", write("num.json", "[\"a\",\n 1]")}, 2, filepath.Join(dir, "num.json") + ": want a JSON list of strings: found '1' where a string should be at byte 7 (line 2)"},
		{[]string{"--file", write("trunc.json", `["a", "b`)}, 2, filepath.Join(dir, "trunc.json") + ": want a JSON list of strings: unexpected end of file at byte 8 (line 1)"},
		{[]string{"--file", write("after.json", `["a"] x`)}, 2, filepath.Join(dir, "after.json") + ": want a JSON list of strings: found 'x' after the list at byte 6 (line 1)"},
		{[]string{"--file", write("comma.json", `["a",]`)}, 2, filepath.Join(dir, "comma.json") + ": want a JSON list of strings: found ']' where a string should be at byte 5 (line 1)"},
		{[]string{"--file", write("sep.json", `["a" "b"]`)}, 2, filepath.Join(dir, "sep.json") + `: want a JSON list of strings: found '"' after a string, want ',' or ']' at byte 5 (line 1)`},
		{[]string{"--file", write("ctl.json", "[\"a\tb\"]")}, 2, filepath.Join(dir, "ctl.json") + ": want a JSON list of strings: control character byte 0x09 in a string (write it as an escape) at byte 3 (line 1)"},
		{[]string{"--file", write("esc.json", `["a\qb"]`)}, 2, filepath.Join(dir, "esc.json") + ": want a JSON list of strings: invalid escape 'q' at byte 3 (line 1)"},
		{[]string{"--file", write("u.json", `["a\u12"]`)}, 2, filepath.Join(dir, "u.json") + ": want a JSON list of strings: invalid \\u escape at byte 3 (line 1)"},
		{[]string{"--file", write("nothing.json", "")}, 2, filepath.Join(dir, "nothing.json") + ": want a JSON list of strings: unexpected end of file at byte 0 (line 1)"},
		{[]string{"--file", dir}, 1, dir + " is a directory"},
		{[]string{"--text-file", filepath.Join(dir, "missing.txt")}, 1, "open " + filepath.Join(dir, "missing.txt") + ": no such file or directory"},
		{[]string{"--text-file", badText, "--decode"}, 2, "--text-file is text to encode; --decode reads id lists from --text or --file"},
		{[]string{"--text", "x", "--skip-special"}, 2, "--skip-special is for --decode; to encode without special tokens, use --no-special"},
		{[]string{"--text", "[[1]]", "--decode", "--no-special"}, 2, "--no-special is for encoding; with --decode, --skip-special leaves special tokens out"},
		{[]string{"--text", "[[1]]", "--decode", "--allow-invalid-utf8"}, 2, "--allow-invalid-utf8 is for the text to encode, not for --decode"},
		{[]string{"--text", "x", "--file", badJSON}, 2, "give exactly one of --text, --file and --text-file"},
		{[]string{"--text", "[[1]] [2]", "--decode"}, 2, "--text: want a JSON list of id lists: data after the JSON list at byte 6"},
		{[]string{"--text", "[[1], 2]", "--decode"}, 2, "--text: want a JSON list of id lists: json: cannot unmarshal number into Go value of type []int"},
		{[]string{"--text", "[[1, -1]]", "--decode"}, 1, "--text: list 0: id -1 is outside the vocabulary (0..399)"},
	}
	for _, c := range cases {
		out, errs, code := runTokenizeCmd(t, nil, append([]string{"--model", dir}, c.args...)...)
		if want := "tli tokenize: " + c.want + "\n"; code != c.code || errs != want || out != "" {
			t.Errorf("%q:\n exit %d, stderr %q, stdout %q\nwant exit %d, stderr %q, no output", c.args, code, errs, clipString(out), c.code, want)
		}
	}
	if _, errs, code := runTokenizeCmd(t, nil, "--tokenizer", "/dev/zero", "--text", "x"); code != 1 || errs != "tli tokenize: tokenizer: /dev/zero: not a JSON object (byte 0 is 0x00, want '{')\n" {
		t.Errorf("--tokenizer /dev/zero: exit %d, %q", code, errs)
	}
	// --allow-invalid-utf8 encodes as the package does.
	for _, c := range []struct {
		args []string
		text string
	}{
		{[]string{"--text", "ab\xffc"}, "ab\xffc"},
		{[]string{"--file", surrogate}, "\ufffd"},
		{[]string{"--file", badJSON}, "n\xc3t"},
	} {
		out, errs, code := runTokenizeCmd(t, nil, append([]string{"--model", dir, "--allow-invalid-utf8"}, c.args...)...)
		var got [][]int
		if code != 0 || json.Unmarshal([]byte(out), &got) != nil {
			t.Errorf("%q --allow-invalid-utf8: exit %d, %q", c.args, code, errs)
			continue
		}
		if last := got[len(got)-1]; c.text == "\ufffd" {
			if !reflect.DeepEqual(last, tok.Encode("x\ufffdy", true)) {
				t.Errorf("%q: ids %v", c.args, last)
			}
		} else if !reflect.DeepEqual(last, tok.Encode(c.text, true)) {
			t.Errorf("%q: ids %v, want %v", c.args, last, tok.Encode(c.text, true))
		}
	}
	// A pipe is checked as it is read: the error comes after some output.
	if _, err := os.Stat("/proc/self/fd"); err == nil {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			w.Write([]byte(strings.Repeat("hello\n", 100000) + "bad \xff\n"))
			w.Close()
		}()
		path := fmt.Sprintf("/proc/self/fd/%d", r.Fd())
		_, errs, code := runTokenizeCmd(t, io.Discard, "--model", dir, "--text-file", path)
		r.Close()
		if want := "tli tokenize: " + path + ": invalid UTF-8 at byte 600004 (line 100001)" + hint + "\n"; code != 2 || errs != want {
			t.Errorf("pipe: exit %d, stderr %q, want %q", code, errs, want)
		}
	}
}

// countingWriter hashes what is written to it without keeping it.
type countingWriter struct {
	n   int
	sum uint64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	for _, b := range p {
		c.sum = c.sum*1099511628211 + uint64(b)
	}
	c.n += len(p)
	return len(p), nil
}

// TestTokenizeMemory encodes 24 MiB of text, as a plain file and as one
// string of a JSON file, in a fresh process each (so that nothing else the
// tests did sets the garbage collector's pace), and checks that its heap
// grows far less than the input and that the output is that of encoding
// the whole text at once.
func TestTokenizeMemory(t *testing.T) {
	if args := os.Getenv("TLI_TOKENIZE_MEMORY_CHILD"); args != "" {
		tokenizeMemoryChild(t, strings.Split(args, "\n"))
		return
	}
	if testing.Short() {
		t.Skip("-short")
	}
	dir, tok := tokenizeFixture(t)
	words := []string{"habari", "ya", "asubuhi", "hello", "world", "rafiki", "é", "mwalimu", "Kiswahili", "2024", "!"}
	var sb strings.Builder
	for i := 0; sb.Len() < 24<<20; i++ {
		sb.WriteString(words[(i*7+i/3)%len(words)])
		sb.WriteString([]string{" ", " ", ", ", "\n", " \n", "\r\n", "\n\n"}[i%7])
	}
	text := sb.String()
	var want countingWriter
	fmt.Fprintf(&want, "%s\n", mustJSON(t, [][]int{tok.Encode(text, true)}))
	plain := filepath.Join(dir, "big.txt")
	if err := os.WriteFile(plain, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	q, _ := json.Marshal([]string{text})
	jsonFile := filepath.Join(dir, "big.json")
	if err := os.WriteFile(jsonFile, q, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--model", dir, "--text-file", plain}, {"--model", dir, "--file", jsonFile}} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestTokenizeMemory$")
		// GOGC=50: the heap the child samples holds less garbage, so its
		// peak tracks the live data even when other work slows the
		// collector (at the default the peak once crossed 12 MiB under load,
		// against 8 MiB alone).
		cmd.Env = append(os.Environ(), "TLI_TOKENIZE_MEMORY_CHILD="+strings.Join(args, "\n"), "GOGC=50")
		out, err := cmd.CombinedOutput()
		var got struct {
			Code       int
			N          int
			Sum        uint64
			Peak, RSSK uint64
			Errs       string
		}
		line := regexp.MustCompile(`(?m)^MEMORY (.*)$`).FindSubmatch(out)
		if err != nil || line == nil || json.Unmarshal(line[1], &got) != nil {
			t.Fatalf("%s: child: %v\n%s", args[2], err, out)
		}
		if got.Code != 0 || got.N != want.n || got.Sum != want.sum {
			t.Errorf("%s: exit %d (%q), %d bytes of output (hash %x), want %d (%x)", args[2], got.Code, got.Errs, got.N, got.Sum, want.n, want.sum)
		}
		t.Logf("%s: 24 MiB of text, %d bytes of ids; heap grew by at most %.1f MiB, peak RSS of the test process %.1f MiB",
			args[2], got.N, float64(got.Peak)/(1<<20), float64(got.RSSK)/1024)
		if got.Peak > 12<<20 {
			t.Errorf("%s: heap grew by %.1f MiB for 24 MiB of text; want under 12 MiB", args[2], float64(got.Peak)/(1<<20))
		}
	}
}

// tokenizeMemoryChild runs tli tokenize with args, measuring the heap, and
// prints the result for TestTokenizeMemory.
func tokenizeMemoryChild(t *testing.T, args []string) {
	var out countingWriter
	var errs string
	code := 0
	peak := memtest.PeakHeap(func() { _, errs, code = runTokenizeCmd(t, &out, args...) })
	var rss uint64
	if status, err := os.ReadFile("/proc/self/status"); err == nil {
		if m := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindSubmatch(status); m != nil {
			rss, _ = strconv.ParseUint(string(m[1]), 10, 64)
		}
	}
	res, _ := json.Marshal(map[string]any{"Code": code, "N": out.n, "Sum": out.sum, "Peak": peak, "RSSK": rss, "Errs": errs})
	fmt.Printf("MEMORY %s\n", res)
}
