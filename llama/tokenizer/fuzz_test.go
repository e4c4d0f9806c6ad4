package tokenizer

import (
	"math/rand"
	"strings"
	"testing"
	"unicode/utf8"
)

// fuzzTexts are encoded with every tokenizer FuzzLoadTokenizer loads.
var fuzzTexts = []string{
	"", "a", "ab ab\nb", "Habari ya asubuhi\n\nhello  world", "<|begin_of_text|>x\r\n y", "<s> [X]\tQq b\n",
	"é€😀 \u00a0\n\u3000x", "\xff\xc3", "1234567 it's OK!!\n\n", strings.Repeat("ab ", 40),
	"<bos>a\n\nb<|im_end|>\n<think>", "a" + strings.Repeat("\u0301\u0316", 20) + "\u0b57\u031b",
}

// FuzzLoadTokenizer feeds tokenizer.json and tokenizer_config.json bytes
// to the loader. A file it accepts must encode and decode without panics,
// give ids that are tokens (below VocabSize), and give the same ids through
// EncodeReader cut wherever it may as through Encode.
func FuzzLoadTokenizer(f *testing.F) {
	_, tj, cj := synthTokenizer(f, 300)
	f.Add(tj, cj)
	f.Add(tj, []byte(nil))
	f.Add(spmJSONBytes(), []byte(`{"tokenizer_class": "LlamaTokenizerFast", "bos_token": "<s>", "add_eos_token": true, "eos_token": "</s>"}`))
	f.Add(spmJSONWith([]string{"\n", "\nb", "b▁"}, `["\n", "b"], ["b", "▁"]`, `{"content": "Qq", "rstrip": true}, {"content": "a b", "single_word": true}`), []byte(nil))
	f.Add([]byte(`{"normalizer": null, "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": true}, "model": {"type": "BPE", "vocab": {"▁": 0, "a": 1, "▁a": 2, "<0x0A>": 3}, "merges": ["▁ a"], "byte_fallback": true}}`), []byte(nil))
	f.Add([]byte(`{"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": true, "use_regex": true}, "model": {"type": "BPE", "vocab": {"a": 0, "Ġ": 1, "Ġa": 2, "Ċ": 3}, "merges": ["Ġ a"]}}`), []byte(nil))
	// Every kind of component, to be mutated.
	f.Add([]byte(`{"added_tokens": [{"id": 6, "content": "<s>", "special": true},
  {"id": 7, "content": "[M]", "lstrip": true, "rstrip": true, "single_word": true, "normalized": true}],
 "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Lowercase"}, {"type": "Strip", "strip_left": true, "strip_right": false},
  {"type": "Replace", "pattern": {"Regex": "[0-9]+"}, "content": "#"}, {"type": "NFD"}]},
 "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"String": "-"}, "behavior": "MergedWithNext", "invert": false},
  {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true}]},
 "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}], "special_tokens": {"<s>": {"ids": [6]}}},
 "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"},
  {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
 "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": true, "byte_fallback": true, "ignore_merges": true,
  "vocab": {"<unk>": 0, "▁": 1, "a": 2, "b": 3, "▁a": 4, "-": 5}, "merges": [["▁", "a"]]}}`),
		[]byte(`{"tokenizer_class": "LlamaTokenizer", "add_bos_token": true, "bos_token": "<s>", "split_special_tokens": true}`))
	f.Add([]byte(`{"added_tokens": [{"id": 5, "content": "<|x|>", "special": true}],
 "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "`+strings.ReplaceAll(strings.ReplaceAll(gpt2Regex, `\`, `\\`), `"`, `\"`)+`"}, "behavior": "Isolated", "invert": true},
  {"type": "Split", "pattern": {"String": "a"}, "behavior": "Contiguous"}, {"type": "Split", "pattern": {"String": "b"}, "behavior": "MergedWithPrevious"},
  {"type": "Split", "pattern": {"String": "c"}, "behavior": "Removed"}, {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]},
 "post_processor": {"type": "Sequence", "processors": [{"type": "ByteLevel"}, {"type": "TemplateProcessing", "single": [{"Sequence": {"id": "A"}}, {"SpecialToken": {"id": "<|x|>"}}], "special_tokens": {"<|x|>": {"ids": [5]}}}]},
 "decoder": {"type": "ByteLevel"},
 "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "Ġ": 2, "Ċ": 3, "Ġa": 4}, "merges": ["Ġ a"]}}`), []byte(`{"eos_token": {"content": "<|x|>"}}`))
	// Qwen's shape (NFC, its Split pattern, byte-level) and Gemma's (spaces
	// replaced, a Split on the space, newlines as added tokens, byte
	// fallback, <bos> added from tokenizer_config.json).
	f.Add([]byte(`{"added_tokens": [{"id": 5, "content": "<|im_end|>", "special": true}, {"id": 6, "content": "<think>", "special": false}],
 "normalizer": {"type": "NFC"},
 "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": `+jsonString(qwen2Regex)+`}, "behavior": "Isolated", "invert": false},
  {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}]},
 "post_processor": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
 "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
 "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "Ġ": 2, "Ċ": 3, "Ġa": 4}, "merges": [["Ġ", "a"]]}}`),
		[]byte(`{"tokenizer_class": "Qwen2Tokenizer", "bos_token": null, "eos_token": "<|im_end|>", "add_bos_token": false}`))
	f.Add([]byte(`{"added_tokens": [{"id": 0, "content": "<pad>", "special": true}, {"id": 1, "content": "<eos>", "special": true},
  {"id": 2, "content": "<bos>", "special": true}, {"id": 3, "content": "<unk>", "special": true}, {"id": 4, "content": "\n"}, {"id": 10, "content": "\n\n"},
  {"id": 11, "content": "<start_of_turn>", "special": true}],
 "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
 "pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious", "invert": false},
 "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
  "special_tokens": {"<bos>": {"id": "<bos>", "ids": [2], "tokens": ["<bos>"]}}},
 "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}]},
 "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": true, "byte_fallback": true,
  "vocab": {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "\n": 4, "▁": 5, "a": 6, "▁a": 7, "<0x0A>": 8, "<0x62>": 9, "\n\n": 10, "<start_of_turn>": 11},
  "merges": [["▁", "a"], ["\n", "\n"]]}}`),
		[]byte(`{"tokenizer_class": "GemmaTokenizer", "add_bos_token": true, "add_eos_token": false, "bos_token": "<bos>", "eos_token": "<eos>"}`))
	// BLOOM's shape: its Split pattern, no BOS, its special tokens in the
	// vocabulary.
	f.Add(bloomTinyJSON(f), []byte(bloomConfigJSON))
	// Hostile ones: huge, negative, fractional, duplicate ids; deep nesting;
	// an empty vocabulary; merges of unknown tokens; a truncated file.
	for _, s := range []string{
		`{"model": {"type": "BPE", "vocab": {"a": 0, "b": 2147483647}, "merges": []}}`,
		`{"model": {"type": "BPE", "vocab": {"a": 0, "b": 16777215}, "merges": []}}`,
		`{"model": {"type": "BPE", "vocab": {"a": -1}}}`,
		`{"model": {"type": "BPE", "vocab": {"a": 1.5}}}`,
		`{"model": {"type": "BPE", "vocab": {"a": 0, "b": 0}}}`,
		`{"added_tokens": [{"id": 50000000, "content": "<x>"}], "model": {"type": "BPE", "vocab": {"a": 0}}}`,
		`{"added_tokens": [{"id": 1, "content": "<x>"}, {"id": 1, "content": "<y>"}], "model": {"type": "BPE", "vocab": {"a": 0}}}`,
		`{"normalizer": ` + nested(40) + `, "model": {"type": "BPE", "vocab": {"a": 0}}}`,
		`{"model": {"type": "BPE", "vocab": {}, "merges": []}}`,
		`{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a x"]}}`,
		`{"post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}], "special_tokens": {"<s>": {"ids": [7]}}}, "model": {"type": "BPE", "vocab": {"a": 0}}}`,
		`{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}, "added_tokens": [{"id": 3, "conte`,
	} {
		f.Add([]byte(s), []byte(nil))
	}
	f.Add(tj[:len(tj)/2], cj)
	f.Add(tj, []byte(`{"bos_token": {"content": 5}}`))
	f.Fuzz(func(t *testing.T, tokJSON, cfgJSON []byte) {
		if len(cfgJSON) == 0 {
			cfgJSON = nil
		}
		tk, err := FromJSON("fuzz/tokenizer.json", tokJSON, cfgJSON)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error of more than one line: %q", err)
			}
			return
		}
		n := tk.VocabSize()
		if n < 0 || n > MaxVocab {
			t.Fatalf("VocabSize %d", n)
		}
		for _, id := range []int{-1, 0, n - 1, n, MaxVocab} {
			tk.TokenString(id)
			tk.IsSpecial(id)
		}
		if id, ok := tk.BOS(); ok && (id < 0 || id >= n) {
			t.Fatalf("BOS %d outside 0..%d", id, n-1)
		}
		if id, ok := tk.EOS(); ok && (id < 0 || id >= n) {
			t.Fatalf("EOS %d outside 0..%d", id, n-1)
		}
		texts := append(fuzzTexts, string(tokJSON[:min(len(tokJSON), 64)]))
		rng := rand.New(rand.NewSource(1))
		for _, s := range texts {
			ids := tk.Encode(s, true)
			for _, id := range ids {
				if _, ok := tk.tokens.get(id); !ok {
					t.Fatalf("Encode(%q) gave id %d, which is no token (VocabSize %d)", s, id, n)
				}
			}
			got, _, err := streamIDs(t, tk, &randomReader{[]byte(s), rng}, true, StreamOptions{ChunkBytes: 1, AllowInvalidUTF8: true})
			if err != nil || !sameIDs(got, ids) {
				t.Fatalf("EncodeReader(%q) = %v, %v; Encode gives %v", s, got, err, ids)
			}
			// The decoders repair UTF-8; without one, tokens are joined as
			// they are, and those of a file that loaded are valid UTF-8.
			if d := tk.Decode(ids, false); !utf8.ValidString(d) {
				t.Fatalf("Decode(Encode(%q)) = %q is not valid UTF-8", s, d)
			}
			tk.Decode(ids, true)
			tk.Decode([]int{-5, n, n + 1, 0}, false)
		}
		tk.TokenID("a")
	})
}
