package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/tli-project/tli/internal/peer"
)

// llama31Post is the post-processor of Llama 3.1's tokenizer.json: it adds
// <|begin_of_text|> where the original Llama 3 file adds nothing.
const llama31Post = `{"type":"Sequence","processors":[
 {"type":"ByteLevel","add_prefix_space":true,"trim_offsets":false,"use_regex":true},
 {"type":"TemplateProcessing",
  "single":[{"SpecialToken":{"id":"<|begin_of_text|>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],
  "pair":[{"SpecialToken":{"id":"<|begin_of_text|>","type_id":0}},{"Sequence":{"id":"A","type_id":0}},
          {"SpecialToken":{"id":"<|begin_of_text|>","type_id":1}},{"Sequence":{"id":"B","type_id":1}}],
  "special_tokens":{"<|begin_of_text|>":{"id":"<|begin_of_text|>","ids":[128000],"tokens":["<|begin_of_text|>"]}}}]}`

type refJob struct {
	Name      string                     `json:"name"`
	Tokenizer string                     `json:"tokenizer"`
	Config    string                     `json:"config"`
	Override  map[string]json.RawMessage `json:"override,omitempty"`
	Texts     []string                   `json:"texts"`
}

type refAnswer struct {
	IDs         [][]int  `json:"ids"`
	Plain       [][]int  `json:"plain"`
	Decoded     []string `json:"decoded"`
	DecodedSkip []string `json:"decoded_skip"`
}

// runRef runs testdata/ref.mjs on the jobs.
func runRef(t *testing.T, node, modules string, jobs []refJob, splitTexts []string) (map[string]refAnswer, map[string][][]string) {
	t.Helper()
	req, err := json.Marshal(map[string]any{"jobs": jobs, "split_texts": splitTexts})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, filepath.Join("testdata", "ref.mjs"), modules)
	cmd.Stdin = bytes.NewReader(req)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node testdata/ref.mjs: %v\n%s", err, stderr.String())
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(out, &raw); err != nil {
		t.Fatalf("reading ref.mjs output: %v", err)
	}
	ans := map[string]refAnswer{}
	var split map[string][][]string
	for k, v := range raw {
		var err error
		if k == "split" {
			err = json.Unmarshal(v, &split)
		} else {
			var a refAnswer
			err = json.Unmarshal(v, &a)
			ans[k] = a
		}
		if err != nil {
			t.Fatalf("reading ref.mjs output %s: %v", k, err)
		}
	}
	return ans, split
}

// withOverride returns a copy of the tokenizer.json at path with top-level
// fields replaced.
func withOverride(t testing.TB, path string, override map[string]json.RawMessage) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range override {
		m[k] = v
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Variants of the real files, to reach components they do not use: GPT-2's
// ByteLevel pre-tokenizer (regex and add_prefix_space) on the Llama 3
// vocabulary, and the Metaspace pre-tokenizer (prepend_scheme "first", as in
// the newer Llama 2 and Mistral files; add_prefix_space is there for
// @lenml, which ignores prepend_scheme without it) on the SentencePiece-style
// one.
const (
	gpt2JSON      = `{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true}`
	metaspaceJSON = `{"type":"Metaspace","replacement":"\u2581","add_prefix_space":true,"prepend_scheme":"first","split":false}`
)

// TestParity compares ids (with and without special tokens) and decoded
// text with @lenml/tokenizers for the real Llama 3 tokenizer, the same with
// Llama 3.1's BOS template, and a SentencePiece-style (Llama 2 / Mistral)
// tokenizer, on every string of parityStrings.
func TestParity(t *testing.T) {
	node, modules := peer.NodeModules(t)
	texts := parityStrings()
	l3 := filepath.Join(modules, "@lenml", "tokenizer-llama3", "models")
	l2 := filepath.Join(modules, "@lenml", "tokenizer-llama2", "models")
	for _, d := range []string{l3, l2} {
		if _, err := os.Stat(filepath.Join(d, "tokenizer.json")); err != nil {
			peer.Missing(t, "no tokenizer.json in "+d)
		}
	}
	job := func(name, dir string, override map[string]string) refJob {
		j := refJob{Name: name, Tokenizer: filepath.Join(dir, "tokenizer.json"), Config: filepath.Join(dir, "tokenizer_config.json"), Texts: texts}
		if override != nil {
			j.Override = map[string]json.RawMessage{}
			for k, v := range override {
				j.Override[k] = json.RawMessage(v)
			}
		}
		return j
	}
	jobs := []refJob{
		job("llama3", l3, nil),
		job("llama3-bos", l3, map[string]string{"post_processor": llama31Post}),
		job("llama2", l2, nil),
		job("gpt2-bytelevel", l3, map[string]string{"pre_tokenizer": gpt2JSON}),
		job("metaspace-first", l2, map[string]string{"normalizer": "null", "pre_tokenizer": metaspaceJSON}),
	}
	if len(texts) < 2000 {
		t.Fatalf("only %d parity strings", len(texts))
	}
	ref, split := runRef(t, node, modules, jobs, texts)

	// The hand-written matchers against JavaScript's regex engine.
	for name, m := range map[string]matcher{"llama3": llama3Matcher{}, "gpt2": gpt2Matcher{}} {
		want := split[name]
		if len(want) != len(texts) {
			t.Fatalf("split %s: %d answers, want %d", name, len(want), len(texts))
		}
		sp := &splitPre{m: m, behavior: behIsolated}
		bad := 0
		for i, s := range texts {
			if got := sp.split(nil, s, true); !reflect.DeepEqual(got, want[i]) && !(len(got) == 0 && len(want[i]) == 0) {
				if bad++; bad <= 5 {
					t.Errorf("%s split of %q\n got %q\nwant %q", name, short(s), got, want[i])
				}
			}
		}
		t.Logf("%s pre-tokenizer regex: %d strings, %d mismatches", name, len(texts), bad)
	}

	load := func(j refJob) (*Tokenizer, error) {
		if j.Override == nil {
			return Load(j.Tokenizer)
		}
		cfg, err := os.ReadFile(j.Config)
		if err != nil {
			return nil, err
		}
		return FromJSON(j.Tokenizer, withOverride(t, j.Tokenizer, j.Override), cfg)
	}
	for _, job := range jobs {
		t.Run(job.Name, func(t *testing.T) {
			tk, err := load(job)
			if err != nil {
				t.Fatal(err)
			}
			r, ok := ref[job.Name]
			if !ok || len(r.IDs) != len(texts) {
				t.Fatalf("reference for %s has %d answers, want %d", job.Name, len(r.IDs), len(texts))
			}
			bad := 0
			report := func(format string, args ...any) {
				bad++
				if bad <= 10 {
					t.Errorf(format, args...)
				}
			}
			for i, s := range texts {
				if got := tk.Encode(s, true); !sameIDs(got, r.IDs[i]) {
					report("Encode(%q, true)\n got %v\nwant %v", short(s), got, r.IDs[i])
				}
				if got := tk.Encode(s, false); !sameIDs(got, r.Plain[i]) {
					report("Encode(%q, false)\n got %v\nwant %v", short(s), got, r.Plain[i])
				}
				if got := tk.Decode(r.IDs[i], false); got != r.Decoded[i] {
					report("Decode(%v, false) = %q, want %q", r.IDs[i], short(got), short(r.Decoded[i]))
				}
				if got := tk.Decode(r.IDs[i], true); got != r.DecodedSkip[i] {
					report("Decode(%v, true) = %q, want %q", r.IDs[i], short(got), short(r.DecodedSkip[i]))
				}
			}
			// BOS appears exactly where AutoTokenizer adds it.
			bos, ok := tk.BOS()
			wantBOS := 128000
			if job.Name == "llama2" || job.Name == "metaspace-first" {
				wantBOS = 1
			}
			if !ok || bos != wantBOS {
				t.Errorf("BOS() = %d, %v; want %d", bos, ok, wantBOS)
			}
			ids := tk.Encode("Habari", true)
			if starts := len(ids) > 0 && ids[0] == bos; starts != (job.Name != "llama3" && job.Name != "gpt2-bytelevel") {
				t.Errorf("Encode(\"Habari\", true) = %v: BOS first is %v", ids, starts)
			}
			if !tk.IsSpecial(bos) || tk.IsSpecial(ids[len(ids)-1]) {
				t.Errorf("IsSpecial(%d) = %v, IsSpecial(%d) = %v", bos, tk.IsSpecial(bos), ids[len(ids)-1], tk.IsSpecial(ids[len(ids)-1]))
			}
			t.Logf("%s: %d strings, %d mismatches (ids with and without special tokens, decode with and without skipping)", job.Name, len(texts), bad)
		})
	}
}

func sameIDs(a, b []int) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}

func short(s string) string {
	if len(s) > 120 {
		return s[:120] + fmt.Sprintf("...(%d bytes)", len(s))
	}
	return s
}
