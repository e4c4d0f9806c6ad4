package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

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
