package tokenizer

import (
	"bytes"
	"container/heap"
	"encoding/json"
	"fmt"
	"sort"
)

// Names of the special tokens of synthetic tokenizers (those of Llama 3).
const (
	SynthBOS = "<|begin_of_text|>"
	SynthEOS = "<|end_of_text|>"
)

// Synth learns a small byte-level BPE tokenizer in the style of Llama 3 from
// words and returns its tokenizer.json and tokenizer_config.json. The
// vocabulary has exactly vocabSize ids: the 256 bytes (ids 0..255 in GPT-2
// order), then merges learned from the words (each counted alone and after a
// space, cut by the Llama 3 pre-tokenizer), then reserved special tokens if
// the merges run out, then <|begin_of_text|> (BOS, added by a
// TemplateProcessing post-processor) and <|end_of_text|> (EOS) as the last
// two ids. The result depends only on the words (in order) and vocabSize.
func Synth(words []string, vocabSize int) (tokenizerJSON, configJSON []byte, err error) {
	if vocabSize < 258 {
		return nil, nil, fmt.Errorf("tokenizer: Synth: vocabSize %d is below 258 (256 bytes and 2 special tokens)", vocabSize)
	}
	// Token strings (byte-level spelling) by id; byte b has id byteID[b].
	var tokens []string
	ids := map[string]int32{}
	var byteID [256]int32
	for i, b := range byteOrder {
		s := string(byteToRune[b])
		byteID[b] = int32(i)
		ids[s] = int32(i)
		tokens = append(tokens, s)
	}
	// The training corpus: distinct pre-tokens with their counts, in sorted
	// order so that nothing depends on map iteration.
	counts := map[string]int{}
	pre := &splitPre{m: llama3Matcher{}, behavior: behIsolated}
	for _, w := range words {
		w = validUTF8(w)
		for _, s := range []string{w, " " + w} {
			for _, p := range pre.split(nil, s, true) {
				counts[p]++
			}
		}
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	type word struct {
		syms  []int32
		count int
	}
	corpus := make([]word, len(keys))
	pairs := map[[2]int32]int{}
	where := map[[2]int32]map[int]bool{}
	addPairs := func(wi int, sign int) {
		w := corpus[wi]
		for i := 0; i+1 < len(w.syms); i++ {
			p := [2]int32{w.syms[i], w.syms[i+1]}
			pairs[p] += sign * w.count
			if sign > 0 {
				if where[p] == nil {
					where[p] = map[int]bool{}
				}
				where[p][wi] = true
			}
		}
	}
	for i, k := range keys {
		syms := make([]int32, len(k))
		for j := 0; j < len(k); j++ {
			syms[j] = byteID[k[j]]
		}
		corpus[i] = word{syms, counts[k]}
		addPairs(i, 1)
	}
	h := &pairHeap{}
	for p, c := range pairs {
		heap.Push(h, pairEntry{c, p})
	}
	var merges []string
	for len(tokens) < vocabSize-2 && h.Len() > 0 {
		e := heap.Pop(h).(pairEntry)
		if c := pairs[e.pair]; c != e.count || c <= 0 {
			continue // stale
		}
		a, b := e.pair[0], e.pair[1]
		s := tokens[a] + tokens[b]
		id, ok := ids[s]
		if !ok {
			id = int32(len(tokens))
			ids[s] = id
			tokens = append(tokens, s)
		}
		merges = append(merges, tokens[a]+" "+tokens[b])
		touched := map[[2]int32]bool{}
		affected := make([]int, 0, len(where[e.pair]))
		for wi := range where[e.pair] {
			affected = append(affected, wi)
		}
		sort.Ints(affected)
		for _, wi := range affected {
			w := &corpus[wi]
			before := append([]int32(nil), w.syms...)
			addPairs(wi, -1)
			out := w.syms[:0]
			for i := 0; i < len(before); i++ {
				if i+1 < len(before) && before[i] == a && before[i+1] == b {
					out = append(out, id)
					i++
				} else {
					out = append(out, before[i])
				}
			}
			w.syms = out
			addPairs(wi, 1)
			for i := 0; i+1 < len(before); i++ {
				touched[[2]int32{before[i], before[i+1]}] = true
			}
			for i := 0; i+1 < len(out); i++ {
				touched[[2]int32{out[i], out[i+1]}] = true
			}
		}
		delete(where, e.pair)
		for p := range touched {
			if c := pairs[p]; c > 0 {
				heap.Push(h, pairEntry{c, p})
			}
		}
	}
	vocab := make(map[string]int, len(tokens))
	for i, s := range tokens {
		vocab[s] = i
	}
	// Reserved tokens fill the vocabulary if the merges ran out, then BOS
	// and EOS take the last two ids.
	type added struct {
		ID         int    `json:"id"`
		Content    string `json:"content"`
		SingleWord bool   `json:"single_word"`
		LStrip     bool   `json:"lstrip"`
		RStrip     bool   `json:"rstrip"`
		Normalized bool   `json:"normalized"`
		Special    bool   `json:"special"`
	}
	var specials []added
	for n := len(tokens); n < vocabSize-2; n++ {
		specials = append(specials, added{ID: n, Content: fmt.Sprintf("<|reserved_special_token_%d|>", n-len(tokens)), Special: true})
	}
	bos, eos := vocabSize-2, vocabSize-1
	specials = append([]added{{ID: bos, Content: SynthBOS, Special: true}, {ID: eos, Content: SynthEOS, Special: true}}, specials...)
	sort.Slice(specials, func(i, j int) bool { return specials[i].ID < specials[j].ID })

	type obj = map[string]any
	tok := struct {
		Version       string  `json:"version"`
		Truncation    any     `json:"truncation"`
		Padding       any     `json:"padding"`
		AddedTokens   []added `json:"added_tokens"`
		Normalizer    any     `json:"normalizer"`
		PreTokenizer  obj     `json:"pre_tokenizer"`
		PostProcessor obj     `json:"post_processor"`
		Decoder       obj     `json:"decoder"`
		Model         obj     `json:"model"`
	}{
		Version:     "1.0",
		AddedTokens: specials,
		PreTokenizer: obj{"type": "Sequence", "pretokenizers": []obj{
			{"type": "Split", "pattern": obj{"Regex": llama3Regex}, "behavior": "Isolated", "invert": false},
			{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
		}},
		PostProcessor: obj{"type": "Sequence", "processors": []obj{
			{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
			{"type": "TemplateProcessing",
				"single": []obj{{"SpecialToken": obj{"id": SynthBOS, "type_id": 0}}, {"Sequence": obj{"id": "A", "type_id": 0}}},
				"pair": []obj{{"SpecialToken": obj{"id": SynthBOS, "type_id": 0}}, {"Sequence": obj{"id": "A", "type_id": 0}},
					{"SpecialToken": obj{"id": SynthBOS, "type_id": 1}}, {"Sequence": obj{"id": "B", "type_id": 1}}},
				"special_tokens": obj{SynthBOS: obj{"id": SynthBOS, "ids": []int{bos}, "tokens": []string{SynthBOS}}}},
		}},
		Decoder: obj{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
		Model: obj{"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": nil,
			"end_of_word_suffix": nil, "fuse_unk": false, "byte_fallback": false, "ignore_merges": true,
			"vocab": vocab, "merges": merges},
	}
	decoderMap := obj{}
	for _, s := range specials {
		decoderMap[fmt.Sprint(s.ID)] = obj{"content": s.Content, "lstrip": false, "normalized": false,
			"rstrip": false, "single_word": false, "special": true}
	}
	cfg := obj{
		"added_tokens_decoder":         decoderMap,
		"bos_token":                    SynthBOS,
		"eos_token":                    SynthEOS,
		"clean_up_tokenization_spaces": true,
		"model_input_names":            []string{"input_ids", "attention_mask"},
		"model_max_length":             131072,
		"tokenizer_class":              "PreTrainedTokenizerFast",
	}
	if tokenizerJSON, err = marshal(tok); err != nil {
		return nil, nil, err
	}
	if configJSON, err = marshal(cfg); err != nil {
		return nil, nil, err
	}
	return tokenizerJSON, configJSON, nil
}

// marshal writes indented JSON without HTML escaping (so "<|...|>" stays
// readable); map keys come out sorted, so the bytes are deterministic.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("tokenizer: Synth: %v", err)
	}
	return buf.Bytes(), nil
}

// pairEntry is a candidate merge; the heap yields the most frequent pair,
// ties going to the smallest ids.
type pairEntry struct {
	count int
	pair  [2]int32
}

type pairHeap []pairEntry

func (h pairHeap) Len() int { return len(h) }
func (h pairHeap) Less(i, j int) bool {
	if h[i].count != h[j].count {
		return h[i].count > h[j].count
	}
	if h[i].pair[0] != h[j].pair[0] {
		return h[i].pair[0] < h[j].pair[0]
	}
	return h[i].pair[1] < h[j].pair[1]
}
func (h pairHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pairHeap) Push(x any)   { *h = append(*h, x.(pairEntry)) }
func (h *pairHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
