package gguf

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/tli-project/tli/internal/limitread"
	"github.com/tli-project/tli/llama/tokenizer"
)

// Token types of tokenizer.ggml.token_type (llama.cpp's llama_token_type).
const (
	TokenNormal      = 1
	TokenUnknown     = 2
	TokenControl     = 3
	TokenUserDefined = 4
	TokenUnused      = 5
	TokenByte        = 6
)

// Pre-tokenizer patterns of tokenizer.json that llama.cpp implements under
// a tokenizer.ggml.pre name.
const (
	llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	qwen2Pattern  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// vocab is the tokenizer as GGUF stores it.
type vocab struct {
	model, pre     string
	tokens         []string
	types          []int32
	merges         []string
	bos, eos       int
	addBOS, addEOS bool
	hasBOS, hasEOS bool
	unk            int
	hasUnk         bool
	// SentencePiece-style BPE (tokenizer.ggml.model "llama"): scores
	// instead of merges, and whether a space is put before the text.
	scores         []float32
	addSpacePrefix bool
	// chatTemplate is tokenizer_config.json's chat_template ("": none).
	chatTemplate string
}

func (v *vocab) kvs() []KV {
	kvs := []KV{
		{"tokenizer.ggml.model", v.model},
		{"tokenizer.ggml.pre", v.pre},
		{"tokenizer.ggml.tokens", v.tokens},
		{"tokenizer.ggml.token_type", v.types},
	}
	if v.scores != nil {
		kvs = append(kvs, KV{"tokenizer.ggml.scores", v.scores}, KV{"tokenizer.ggml.add_space_prefix", v.addSpacePrefix})
	} else {
		kvs = append(kvs, KV{"tokenizer.ggml.merges", v.merges})
	}
	if v.hasBOS {
		kvs = append(kvs, KV{"tokenizer.ggml.bos_token_id", uint32(v.bos)})
	}
	if v.hasEOS {
		kvs = append(kvs, KV{"tokenizer.ggml.eos_token_id", uint32(v.eos)})
	}
	if v.hasUnk {
		kvs = append(kvs, KV{"tokenizer.ggml.unknown_token_id", uint32(v.unk)})
	}
	kvs = append(kvs, KV{"tokenizer.ggml.add_bos_token", v.addBOS}, KV{"tokenizer.ggml.add_eos_token", v.addEOS})
	if v.chatTemplate != "" {
		kvs = append(kvs, KV{"tokenizer.chat_template", v.chatTemplate})
	}
	return kvs
}

type tokenizerFile struct {
	AddedTokens []struct {
		ID      int    `json:"id"`
		Content string `json:"content"`
		Special bool   `json:"special"`
	} `json:"added_tokens"`
	PreTokenizer json.RawMessage `json:"pre_tokenizer"`
	Normalizer   json.RawMessage `json:"normalizer"`
	Model        struct {
		Type         string          `json:"type"`
		Vocab        map[string]int  `json:"vocab"`
		Merges       json.RawMessage `json:"merges"`
		ByteFallback bool            `json:"byte_fallback"`
		UnkToken     *string         `json:"unk_token"`
	} `json:"model"`
}

type preTok struct {
	Type          string   `json:"type"`
	Pretokenizers []preTok `json:"pretokenizers"`
	Pattern       struct {
		Regex  *string `json:"Regex"`
		String *string `json:"String"`
	} `json:"pattern"`
	UseRegex       *bool `json:"use_regex"`
	AddPrefixSpace bool  `json:"add_prefix_space"`
}

// preName is llama.cpp's tokenizer.ggml.pre for a byte-level BPE
// pre-tokenizer: "llama-bpe" (Llama 3's split then ByteLevel), "qwen2" or
// "gpt-2" (ByteLevel with its own regex).
func preName(raw json.RawMessage) (string, error) {
	var p preTok
	if err := json.Unmarshal(raw, &p); err != nil {
		return "", fmt.Errorf("pre_tokenizer: %v", err)
	}
	steps := []preTok{p}
	if p.Type == "Sequence" {
		steps = p.Pretokenizers
	}
	switch {
	case len(steps) == 2 && steps[0].Type == "Split" && steps[0].Pattern.Regex != nil &&
		steps[1].Type == "ByteLevel" && steps[1].UseRegex != nil && !*steps[1].UseRegex && !steps[1].AddPrefixSpace:
		switch *steps[0].Pattern.Regex {
		case llama3Pattern:
			return "llama-bpe", nil
		case qwen2Pattern:
			return "qwen2", nil
		}
	case len(steps) == 1 && steps[0].Type == "ByteLevel" && (steps[0].UseRegex == nil || *steps[0].UseRegex) && !steps[0].AddPrefixSpace:
		return "gpt-2", nil
	}
	return "", fmt.Errorf("pre_tokenizer %s is not one llama.cpp names (supported: Llama 3's, Qwen2's, GPT-2's)", clip(string(raw)))
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// readVocab reads dir's tokenizer.json (byte-level BPE) as GGUF's gpt2
// tokenizer with n tokens (config.json's vocab_size: ids the tokenizer
// lacks become unused [PADi] tokens, as the converter writes them).
func readVocab(dir string, n int) (*vocab, error) {
	path := filepath.Join(dir, "tokenizer.json")
	data, err := limitread.ReadFile(path, tokenizer.MaxFileBytes)
	if err != nil {
		return nil, fmt.Errorf("gguf: tokenizer: %w", err)
	}
	var f tokenizerFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("gguf: %s: %v", path, err)
	}
	tok, err := tokenizer.LoadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("gguf: tokenizer: %w", err)
	}
	if f.Model.Type != "BPE" {
		return nil, fmt.Errorf("gguf: %s: model type %q is not exported (byte-level BPE only for now)", path, f.Model.Type)
	}
	v := &vocab{model: "gpt2", tokens: make([]string, n), types: make([]int32, n)}
	if f.Model.ByteFallback {
		// SentencePiece-style BPE (Llama 2's tokenizer.json): llama.cpp's
		// "llama" tokenizer, which merges by token score.
		ok, prefix := spmSplit(f.Normalizer, f.PreTokenizer)
		if !ok {
			return nil, fmt.Errorf("gguf: %s: a byte-fallback BPE tokenizer whose normalizer and pre-tokenizer are neither Llama 2's nor Gemma's is not exported", path)
		}
		v.model, v.pre, v.addSpacePrefix = "llama", "default", prefix
	} else if v.pre, err = preName(f.PreTokenizer); err != nil {
		return nil, fmt.Errorf("gguf: %s: %w", path, err)
	}
	set := func(id int, s string, typ int32) error {
		if id < 0 || id >= n {
			return fmt.Errorf("gguf: %s: token %q has id %d, outside the model's vocab_size %d", path, clip(s), id, n)
		}
		v.tokens[id], v.types[id] = s, typ
		return nil
	}
	for s, id := range f.Model.Vocab {
		if err := set(id, s, TokenNormal); err != nil {
			return nil, err
		}
	}
	for _, a := range f.AddedTokens {
		typ := int32(TokenUserDefined)
		if a.Special {
			typ = TokenControl
		}
		if err := set(a.ID, a.Content, typ); err != nil {
			return nil, err
		}
	}
	for i := range v.tokens {
		if v.types[i] == 0 {
			v.tokens[i], v.types[i] = fmt.Sprintf("[PAD%d]", i), TokenUnused
		} else if i < tok.VocabSize() && tok.TokenString(i) != v.tokens[i] {
			return nil, fmt.Errorf("gguf: %s: token %d is %q, the tokenizer reads %q", path, i, clip(v.tokens[i]), clip(tok.TokenString(i)))
		}
	}
	if v.merges, err = readMerges(f.Model.Merges); err != nil {
		return nil, fmt.Errorf("gguf: %s: %w", path, err)
	}
	if v.model == "llama" {
		v.spmScores()
	}
	if f.Model.UnkToken != nil {
		if id, ok := f.Model.Vocab[*f.Model.UnkToken]; ok {
			v.unk, v.hasUnk = id, true
		}
	}
	if v.chatTemplate, err = chatTemplate(dir); err != nil {
		return nil, err
	}
	v.bos, v.hasBOS = tok.BOS()
	v.eos, v.hasEOS = tok.EOS()
	// Whether BOS and EOS are added is what the tokenizer does (its
	// post-processor or tokenizer_config.json's add_bos_token).
	plain := tok.Encode("a", false)
	with := tok.Encode("a", true)
	if len(with) > len(plain) {
		v.addBOS = v.hasBOS && with[0] == v.bos
		v.addEOS = v.hasEOS && with[len(with)-1] == v.eos && len(with) >= len(plain)+1+b2i(v.addBOS)
	}
	return v, nil
}

// spmSplit reports whether a byte-fallback BPE tokenizer splits text as
// llama.cpp's "llama" tokenizer does, and whether a space is put before the
// text: Llama 2's normalizer (prepend \u2581, replace spaces by it, no
// pre-tokenizer), or Gemma's (replace spaces by \u2581, no prefix; its
// split on spaces then finds none).
func spmSplit(norm, pre json.RawMessage) (ok, addSpacePrefix bool) {
	type replace struct {
		Type    string `json:"type"`
		Prepend string `json:"prepend"`
		Pattern struct {
			String *string `json:"String"`
		} `json:"pattern"`
		Content  string `json:"content"`
		Behavior string `json:"behavior"`
	}
	isReplace := func(r replace) bool {
		return r.Type == "Replace" && r.Pattern.String != nil && *r.Pattern.String == " " && r.Content == "\u2581"
	}
	var n struct {
		replace
		Normalizers []replace `json:"normalizers"`
	}
	if json.Unmarshal(norm, &n) != nil {
		return false, false
	}
	noPre := len(pre) == 0 || string(pre) == "null"
	switch {
	case n.Type == "Sequence" && len(n.Normalizers) == 2 && noPre:
		p := n.Normalizers[0]
		return p.Type == "Prepend" && p.Prepend == "\u2581" && isReplace(n.Normalizers[1]), true
	case isReplace(n.replace):
		var p replace
		if noPre {
			return true, false
		}
		if json.Unmarshal(pre, &p) != nil {
			return false, false
		}
		return p.Type == "Split" && p.Pattern.String != nil && *p.Pattern.String == " " && p.Behavior == "MergedWithPrevious", false
	}
	return false, false
}

// spmScores sets the token types and scores of a SentencePiece-style
// vocabulary. llama.cpp merges the adjacent pair whose merged token scores
// highest; tokenizers merges the pair of lowest merge rank. A token's
// score is minus the rank of the first merge that makes it, so both pick
// the same pair; tokens no merge makes score below every merge. <0xXX>
// tokens are bytes, the unknown token is unknown.
func (v *vocab) spmScores() {
	v.scores = make([]float32, len(v.tokens))
	made := make(map[string]int, len(v.merges))
	for i, m := range v.merges {
		a, b, _ := strings.Cut(m, " ")
		if _, ok := made[a+b]; !ok {
			made[a+b] = i
		}
	}
	for id, s := range v.tokens {
		switch {
		case v.types[id] == TokenControl || v.types[id] == TokenUnused:
			v.scores[id] = 0
		case v.types[id] == TokenUserDefined:
			v.scores[id] = -1000
		case v.hasUnk && id == v.unk:
			v.types[id] = TokenUnknown
		case len(s) == 6 && strings.HasPrefix(s, "<0x") && strings.HasSuffix(s, ">"):
			v.types[id] = TokenByte
		default:
			if r, ok := made[s]; ok {
				v.scores[id] = -float32(r)
			} else {
				v.scores[id] = -1e9
			}
		}
	}
}

// chatTemplate is the chat_template of dir's tokenizer_config.json: the
// string, or of a list of named templates the one named "default" ("" when
// there is none).
func chatTemplate(dir string) (string, error) {
	path := filepath.Join(dir, "tokenizer_config.json")
	data, err := limitread.ReadFile(path, tokenizer.MaxConfigBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("gguf: %w", err)
	}
	var c struct {
		ChatTemplate json.RawMessage `json:"chat_template"`
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return "", fmt.Errorf("gguf: %s: %v", path, err)
	}
	var s string
	if json.Unmarshal(c.ChatTemplate, &s) == nil {
		return s, nil
	}
	var named []struct{ Name, Template string }
	if json.Unmarshal(c.ChatTemplate, &named) == nil {
		for _, n := range named {
			if n.Name == "default" {
				return n.Template, nil
			}
		}
	}
	return "", nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// readMerges reads model.merges in either form tokenizers writes: "a b"
// strings or [a, b] pairs. GGUF stores them as "a b".
func readMerges(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return []string{}, nil
	}
	var strs []string
	if err := json.Unmarshal(raw, &strs); err == nil {
		return strs, nil
	}
	var pairs [][2]string
	if err := json.Unmarshal(raw, &pairs); err != nil {
		return nil, fmt.Errorf("model.merges: %v", err)
	}
	out := make([]string, len(pairs))
	for i, p := range pairs {
		if strings.Contains(p[0], " ") || strings.Contains(p[1], " ") {
			return nil, fmt.Errorf("merge %d (%q, %q) has a space, which GGUF's \"a b\" merges cannot hold", i, p[0], p[1])
		}
		out[i] = p[0] + " " + p[1]
	}
	return out, nil
}
