package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"golang.org/x/text/unicode/norm"
)

// Tokenizer turns text into token ids and back, as the Hugging Face
// tokenizer it was loaded from does.
type Tokenizer struct {
	path string

	normalizer normalizer   // nil: none
	pre        preTokenizer // nil: the whole section is one word
	model      *bpeModel
	post       postProcessor // nil: no special tokens are added
	decoder    decoder       // nil: tokens are joined with spaces

	tokens    []string // id -> token as spelt in tokenizer.json ("" if none)
	hasToken  []bool
	addedByID map[int32]*addedToken
	added     []*addedToken
	rawAdded  *addedSet // tokens matched on the raw text
	normAdded *addedSet // tokens matched on the normalised text

	bos, eos int32 // -1: none

	mu    sync.RWMutex
	cache map[string][]int32
}

// Limits of the word cache: words longer than maxCachedWord bytes are rare
// and not worth keeping; the cache is emptied when it reaches maxCacheWords.
const (
	maxCachedWord = 256
	maxCacheWords = 1 << 17
)

// LoadDir loads dir/tokenizer.json (and dir/tokenizer_config.json if present).
func LoadDir(dir string) (*Tokenizer, error) {
	return Load(filepath.Join(dir, "tokenizer.json"))
}

// Load reads a tokenizer.json file and the tokenizer_config.json beside it,
// if there is one.
func Load(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	cfgPath := filepath.Join(filepath.Dir(path), "tokenizer_config.json")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		if !os.IsNotExist(err) {
			return nil, fmt.Errorf("tokenizer: %w", err)
		}
		cfg, cfgPath = nil, ""
	}
	return parse(path, data, cfgPath, cfg)
}

// FromJSON builds a tokenizer from the contents of tokenizer.json and
// tokenizer_config.json (config may be nil); name is used in error messages.
func FromJSON(name string, tokenizerJSON, configJSON []byte) (*Tokenizer, error) {
	cfgName := ""
	if configJSON != nil {
		cfgName = filepath.Join(filepath.Dir(name), "tokenizer_config.json")
	}
	return parse(name, tokenizerJSON, cfgName, configJSON)
}

// rawJSON is one component of tokenizer.json: its "type" and its fields.
type rawJSON map[string]json.RawMessage

func (r rawJSON) typ() string {
	var s string
	_ = json.Unmarshal(r["type"], &s)
	return s
}

// get decodes field k into v; absent or null fields leave v unchanged.
func (r rawJSON) get(k string, v any) error {
	m, ok := r[k]
	if !ok || string(m) == "null" {
		return nil
	}
	if err := json.Unmarshal(m, v); err != nil {
		return fmt.Errorf("field %q: %v", k, err)
	}
	return nil
}

func (r rawJSON) list(k string) ([]rawJSON, error) {
	var out []rawJSON
	err := r.get(k, &out)
	return out, err
}

type addedJSON struct {
	ID         int32  `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

type fileJSON struct {
	AddedTokens   []addedJSON `json:"added_tokens"`
	Normalizer    rawJSON     `json:"normalizer"`
	PreTokenizer  rawJSON     `json:"pre_tokenizer"`
	Model         rawJSON     `json:"model"`
	PostProcessor rawJSON     `json:"post_processor"`
	Decoder       rawJSON     `json:"decoder"`
}

// loader carries the file names for error messages while parsing.
type loader struct {
	path string
}

func (l *loader) errorf(format string, args ...any) error {
	return fmt.Errorf("tokenizer: %s: %s", l.path, fmt.Sprintf(format, args...))
}

func (l *loader) unsupported(what, typ string) error {
	if typ == "" {
		return l.errorf("%s has no \"type\"", what)
	}
	return l.errorf("%s type %q is not supported", what, typ)
}

func parse(path string, data []byte, cfgPath string, cfg []byte) (*Tokenizer, error) {
	l := &loader{path: path}
	var f fileJSON
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, l.errorf("%v", err)
	}
	t := &Tokenizer{path: path, bos: -1, eos: -1, cache: map[string][]int32{}, addedByID: map[int32]*addedToken{}}
	var err error
	if f.Normalizer != nil {
		if t.normalizer, err = l.normalizer(f.Normalizer); err != nil {
			return nil, err
		}
	}
	byteMode := false
	if f.PreTokenizer != nil {
		if t.pre, byteMode, err = l.preTokenizer(f.PreTokenizer, true); err != nil {
			return nil, err
		}
	}
	if f.Model == nil {
		return nil, l.errorf("no \"model\"")
	}
	if err := l.model(t, f.Model, byteMode); err != nil {
		return nil, err
	}
	var added []*addedToken
	for _, a := range f.AddedTokens {
		if a.ID < 0 {
			return nil, l.errorf("added token %q has negative id %d", a.Content, a.ID)
		}
		tok := &addedToken{id: a.ID, content: a.Content, singleWord: a.SingleWord, lstrip: a.LStrip,
			rstrip: a.RStrip, normalized: a.Normalized, special: a.Special}
		added = append(added, tok)
		t.addedByID[a.ID] = tok
		t.setToken(a.ID, a.Content)
	}
	t.added = added
	t.buildAddedSets(false)
	if f.PostProcessor != nil {
		if t.post, err = l.postProcessor(t, f.PostProcessor); err != nil {
			return nil, err
		}
	}
	if f.Decoder != nil {
		if t.decoder, err = l.decoder(f.Decoder); err != nil {
			return nil, err
		}
	}
	if cfg != nil {
		if err := t.applyConfig(&loader{path: cfgPath}, cfg); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// buildAddedSets prepares the matching of added tokens in text: those with
// normalized set are looked for after normalisation. With splitSpecial
// (split_special_tokens in tokenizer_config.json) special tokens are not
// matched at all and their text is tokenized like any other.
func (t *Tokenizer) buildAddedSets(splitSpecial bool) {
	var raw, normed []*addedToken
	for _, a := range t.added {
		switch {
		case splitSpecial && a.special:
		case a.normalized && t.normalizer != nil:
			normed = append(normed, a)
		default:
			raw = append(raw, a)
		}
	}
	t.rawAdded = newAddedSet(raw, func(a *addedToken) string { return a.content })
	t.normAdded = newAddedSet(normed, func(a *addedToken) string { return t.normalizer.normalize(a.content) })
}

func (t *Tokenizer) setToken(id int32, s string) {
	for int(id) >= len(t.tokens) {
		t.tokens = append(t.tokens, "")
		t.hasToken = append(t.hasToken, false)
	}
	t.tokens[id] = s
	t.hasToken[id] = true
}

// lookup returns the id of a token given as spelt in tokenizer.json.
func (t *Tokenizer) lookup(s string) (int32, bool) {
	for _, a := range t.added {
		if a.content == s {
			return a.id, true
		}
	}
	key := s
	if t.model.byteMode {
		raw, ok := byteLevelRaw(s)
		if !ok {
			return -1, false
		}
		key = raw
	}
	id, ok := t.model.vocab[key]
	return id, ok
}

func (l *loader) normalizer(r rawJSON) (normalizer, error) {
	switch typ := r.typ(); typ {
	case "Sequence":
		list, err := r.list("normalizers")
		if err != nil {
			return nil, l.errorf("normalizer Sequence: %v", err)
		}
		var q normSequence
		for _, c := range list {
			n, err := l.normalizer(c)
			if err != nil {
				return nil, err
			}
			q = append(q, n)
		}
		return q, nil
	case "Prepend":
		var p string
		if err := r.get("prepend", &p); err != nil {
			return nil, l.errorf("normalizer Prepend: %v", err)
		}
		return prependNorm(p), nil
	case "Replace":
		return l.replace("normalizer", r)
	case "NFC":
		return unicodeNorm{norm.NFC}, nil
	case "NFD":
		return unicodeNorm{norm.NFD}, nil
	case "NFKC":
		return unicodeNorm{norm.NFKC}, nil
	case "NFKD":
		return unicodeNorm{norm.NFKD}, nil
	case "Lowercase":
		return lowercaseNorm{}, nil
	case "Strip":
		var left, right bool
		if err := r.get("strip_left", &left); err != nil {
			return nil, l.errorf("normalizer Strip: %v", err)
		}
		if err := r.get("strip_right", &right); err != nil {
			return nil, l.errorf("normalizer Strip: %v", err)
		}
		return stripNorm{left, right}, nil
	default:
		return nil, l.unsupported("normalizer", typ)
	}
}

type patternJSON struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

func (l *loader) replace(what string, r rawJSON) (*replaceNorm, error) {
	var p patternJSON
	var content string
	if err := r.get("pattern", &p); err != nil {
		return nil, l.errorf("%s Replace: %v", what, err)
	}
	if err := r.get("content", &content); err != nil {
		return nil, l.errorf("%s Replace: %v", what, err)
	}
	switch {
	case p.String != nil:
		if *p.String == "" {
			return nil, l.errorf("%s Replace: empty pattern", what)
		}
		return &replaceNorm{literal: *p.String, content: content}, nil
	case p.Regex != nil:
		// Go's RE2 syntax has no look-around and an ASCII \s: patterns that
		// use either are refused rather than run differently.
		if strings.Contains(*p.Regex, `\s`) || strings.Contains(*p.Regex, `(?=`) || strings.Contains(*p.Regex, `(?!`) {
			return nil, l.errorf("%s Replace: regex %q is not supported", what, *p.Regex)
		}
		re, err := regexp.Compile(*p.Regex)
		if err != nil {
			return nil, l.errorf("%s Replace: regex %q is not supported: %v", what, *p.Regex, err)
		}
		return &replaceNorm{re: re, content: content}, nil
	}
	return nil, l.errorf("%s Replace: pattern has neither String nor Regex", what)
}

// The regexes of Split pre-tokenizers that this package implements by hand.
const (
	llama3Regex = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	gpt2Regex   = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
)

// preTokenizer parses a pre-tokenizer; byteLevel reports whether it ends
// with ByteLevel, which makes the model work on raw bytes.
func (l *loader) preTokenizer(r rawJSON, last bool) (p preTokenizer, byteLevel bool, err error) {
	switch typ := r.typ(); typ {
	case "Sequence":
		list, err := r.list("pretokenizers")
		if err != nil {
			return nil, false, l.errorf("pre_tokenizer Sequence: %v", err)
		}
		var q preSequence
		for i, c := range list {
			p, bl, err := l.preTokenizer(c, last && i == len(list)-1)
			if err != nil {
				return nil, false, err
			}
			byteLevel = bl
			if b, ok := p.(*byteLevelPre); ok && !b.addPrefixSpace && !b.useRegex {
				continue // the byte mapping is implicit: nothing left to do
			}
			q = append(q, p)
		}
		if len(q) == 0 {
			return &byteLevelPre{}, byteLevel, nil
		}
		if len(q) == 1 {
			return q[0], byteLevel, nil
		}
		return q, byteLevel, nil
	case "ByteLevel":
		if !last {
			return nil, false, l.errorf("pre_tokenizer ByteLevel must come last in the sequence")
		}
		bl := &byteLevelPre{useRegex: true}
		if err := r.get("add_prefix_space", &bl.addPrefixSpace); err != nil {
			return nil, false, l.errorf("pre_tokenizer ByteLevel: %v", err)
		}
		if err := r.get("use_regex", &bl.useRegex); err != nil {
			return nil, false, l.errorf("pre_tokenizer ByteLevel: %v", err)
		}
		return bl, true, nil
	case "Split":
		var pat patternJSON
		var behavior string
		sp := &splitPre{}
		if err := r.get("pattern", &pat); err != nil {
			return nil, false, l.errorf("pre_tokenizer Split: %v", err)
		}
		if err := r.get("behavior", &behavior); err != nil {
			return nil, false, l.errorf("pre_tokenizer Split: %v", err)
		}
		if err := r.get("invert", &sp.invert); err != nil {
			return nil, false, l.errorf("pre_tokenizer Split: %v", err)
		}
		switch behavior {
		case "Removed":
			sp.behavior = behRemoved
		case "Isolated":
			sp.behavior = behIsolated
		case "MergedWithPrevious":
			sp.behavior = behMergedWithPrevious
		case "MergedWithNext":
			sp.behavior = behMergedWithNext
		case "Contiguous":
			sp.behavior = behContiguous
		default:
			return nil, false, l.errorf("pre_tokenizer Split: behavior %q is not supported", behavior)
		}
		switch {
		case pat.String != nil && *pat.String != "":
			sp.m = stringMatcher(*pat.String)
		case pat.Regex != nil && *pat.Regex == llama3Regex:
			sp.m = llama3Matcher{}
		case pat.Regex != nil && *pat.Regex == gpt2Regex:
			sp.m = gpt2Matcher{}
		case pat.Regex != nil:
			return nil, false, l.errorf("pre_tokenizer Split: regex %q is not supported (only the Llama 3 and GPT-2 patterns are)", *pat.Regex)
		default:
			return nil, false, l.errorf("pre_tokenizer Split: empty pattern")
		}
		return sp, false, nil
	case "Metaspace":
		m, err := l.metaspace(r)
		if err != nil {
			return nil, false, err
		}
		return &metaspacePre{replacement: string(m.replacement), prepend: m.prepend, splitWords: m.split}, false, nil
	default:
		return nil, false, l.unsupported("pre_tokenizer", typ)
	}
}

type metaspaceCfg struct {
	replacement rune
	prepend     int
	split       bool
}

func (l *loader) metaspace(r rawJSON) (metaspaceCfg, error) {
	m := metaspaceCfg{replacement: '▁', prepend: prependAlways, split: true}
	var rep string
	var scheme string
	addPrefix := true
	hasScheme := false
	if err := r.get("replacement", &rep); err != nil {
		return m, l.errorf("Metaspace: %v", err)
	}
	if err := r.get("split", &m.split); err != nil {
		return m, l.errorf("Metaspace: %v", err)
	}
	if err := r.get("add_prefix_space", &addPrefix); err != nil {
		return m, l.errorf("Metaspace: %v", err)
	}
	if v, ok := r["prepend_scheme"]; ok && string(v) != "null" {
		hasScheme = true
		if err := r.get("prepend_scheme", &scheme); err != nil {
			return m, l.errorf("Metaspace: %v", err)
		}
	}
	if rep != "" {
		rs := []rune(rep)
		if len(rs) != 1 {
			return m, l.errorf("Metaspace: replacement %q is not one character", rep)
		}
		m.replacement = rs[0]
	}
	if !addPrefix && hasScheme && scheme != "never" {
		return m, l.errorf("Metaspace: add_prefix_space false does not match prepend_scheme %q", scheme)
	}
	if hasScheme {
		switch scheme {
		case "always":
			m.prepend = prependAlways
		case "first":
			m.prepend = prependFirst
		case "never":
			m.prepend = prependNever
		default:
			return m, l.errorf("Metaspace: prepend_scheme %q is not supported", scheme)
		}
	} else if !addPrefix {
		m.prepend = prependNever
	}
	return m, nil
}

func (l *loader) model(t *Tokenizer, r rawJSON, byteMode bool) error {
	typ := r.typ()
	if typ == "" {
		if _, ok := r["merges"]; ok {
			typ = "BPE"
		}
	}
	if typ != "BPE" {
		return l.unsupported("model", typ)
	}
	var vocab map[string]int32
	if err := r.get("vocab", &vocab); err != nil {
		return l.errorf("model: %v", err)
	}
	var dropout *float64
	var unk, prefix, suffix *string
	m := &bpeModel{unkID: -1, byteMode: byteMode}
	for _, e := range []struct {
		k string
		v any
	}{{"dropout", &dropout}, {"unk_token", &unk}, {"continuing_subword_prefix", &prefix},
		{"end_of_word_suffix", &suffix}, {"fuse_unk", &m.fuseUnk}, {"byte_fallback", &m.byteFallback},
		{"ignore_merges", &m.ignoreMerges}} {
		if err := r.get(e.k, e.v); err != nil {
			return l.errorf("model: %v", err)
		}
	}
	if dropout != nil && *dropout > 0 {
		return l.errorf("model: BPE dropout %g is not supported (ids would be random)", *dropout)
	}
	if prefix != nil && *prefix != "" {
		return l.errorf("model: BPE continuing_subword_prefix %q is not supported", *prefix)
	}
	if suffix != nil && *suffix != "" {
		return l.errorf("model: BPE end_of_word_suffix %q is not supported", *suffix)
	}
	for s, id := range vocab {
		if id < 0 {
			return l.errorf("model: token %q has negative id %d", s, id)
		}
		t.setToken(id, s)
	}
	if unk != nil {
		id, ok := vocab[*unk]
		if !ok {
			return l.errorf("model: unk_token %q is not in the vocabulary", *unk)
		}
		m.unkID = id
	}
	// The vocabulary keyed as the model sees words.
	if byteMode {
		m.vocab = make(map[string]int32, len(vocab))
		for s, id := range vocab {
			if raw, ok := byteLevelRaw(s); ok {
				m.vocab[raw] = id
			}
		}
	} else {
		m.vocab = vocab
	}
	for b := 0; b < 256; b++ {
		m.byteIDs[b], m.fallbackIDs[b] = -1, -1
		if id, ok := vocab[string(byteToRune[b])]; ok && byteMode {
			m.byteIDs[b] = id
		}
		if id, ok := vocab[fmt.Sprintf("<0x%02X>", b)]; ok {
			m.fallbackIDs[b] = id
		}
	}
	pairs, err := l.merges(r["merges"])
	if err != nil {
		return err
	}
	m.merges = make(map[uint64]uint64, len(pairs))
	for rank, p := range pairs {
		a, okA := vocab[p[0]]
		b, okB := vocab[p[1]]
		c, okC := vocab[p[0]+p[1]]
		if !okA || !okB || !okC {
			return l.errorf("model: merge %d (%q %q) uses a token that is not in the vocabulary", rank, p[0], p[1])
		}
		m.merges[pairKey(a, b)] = uint64(rank)<<32 | uint64(uint32(c))
	}
	t.model = m
	return nil
}

// merges reads BPE merges, serialised either as "a b" strings (tokenizers
// before 0.20) or as ["a", "b"] pairs.
func (l *loader) merges(raw json.RawMessage) ([][2]string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	// The first element tells the serialisation: '[' opens a pair.
	if raw[0] != '[' {
		return nil, l.errorf("model: merges: want a list")
	}
	rest := bytes.TrimSpace(raw[1:])
	if len(rest) == 0 || rest[0] == ']' {
		return nil, nil
	}
	if rest[0] == '[' {
		var pairs [][2]string
		if err := json.Unmarshal(raw, &pairs); err != nil {
			return nil, l.errorf("model: merges: %v", err)
		}
		return pairs, nil
	}
	var lines []string
	if err := json.Unmarshal(raw, &lines); err != nil {
		return nil, l.errorf("model: merges: %v", err)
	}
	pairs := make([][2]string, len(lines))
	for i, s := range lines {
		a, b, ok := strings.Cut(s, " ")
		if !ok || strings.Contains(b, " ") {
			return nil, l.errorf("model: merge %d %q is not two tokens separated by one space", i, s)
		}
		pairs[i] = [2]string{a, b}
	}
	return pairs, nil
}

func (l *loader) postProcessor(t *Tokenizer, r rawJSON) (postProcessor, error) {
	switch typ := r.typ(); typ {
	case "Sequence":
		list, err := r.list("processors")
		if err != nil {
			return nil, l.errorf("post_processor Sequence: %v", err)
		}
		var q postSequence
		for _, c := range list {
			p, err := l.postProcessor(t, c)
			if err != nil {
				return nil, err
			}
			q = append(q, p)
		}
		return q, nil
	case "ByteLevel":
		return byteLevelPost{}, nil
	case "TemplateProcessing":
		var single []map[string]struct {
			ID string `json:"id"`
		}
		var specials map[string]struct {
			IDs []int32 `json:"ids"`
		}
		if err := r.get("single", &single); err != nil {
			return nil, l.errorf("post_processor TemplateProcessing: %v", err)
		}
		if err := r.get("special_tokens", &specials); err != nil {
			return nil, l.errorf("post_processor TemplateProcessing: %v", err)
		}
		tp := &templatePost{}
		for _, item := range single {
			if s, ok := item["Sequence"]; ok {
				if s.ID != "A" {
					return nil, l.errorf("post_processor TemplateProcessing: single template uses sequence %q", s.ID)
				}
				tp.items = append(tp.items, nil)
				continue
			}
			s, ok := item["SpecialToken"]
			if !ok {
				return nil, l.errorf("post_processor TemplateProcessing: template item is neither Sequence nor SpecialToken")
			}
			sp, ok := specials[s.ID]
			if !ok {
				return nil, l.errorf("post_processor TemplateProcessing: special token %q is not in special_tokens", s.ID)
			}
			tp.items = append(tp.items, append([]int32{}, sp.IDs...))
		}
		return tp, nil
	default:
		return nil, l.unsupported("post_processor", typ)
	}
}

func (l *loader) decoder(r rawJSON) (decoder, error) {
	switch typ := r.typ(); typ {
	case "Sequence":
		list, err := r.list("decoders")
		if err != nil {
			return nil, l.errorf("decoder Sequence: %v", err)
		}
		var q decSequence
		for _, c := range list {
			d, err := l.decoder(c)
			if err != nil {
				return nil, err
			}
			q = append(q, d)
		}
		return q, nil
	case "ByteLevel":
		return byteLevelDec{}, nil
	case "ByteFallback":
		return byteFallbackDec{}, nil
	case "Fuse":
		return fuseDec{}, nil
	case "Replace":
		return l.replace("decoder", r)
	case "Strip":
		var content string
		d := stripDec{}
		if err := r.get("content", &content); err != nil {
			return nil, l.errorf("decoder Strip: %v", err)
		}
		if err := r.get("start", &d.start); err != nil {
			return nil, l.errorf("decoder Strip: %v", err)
		}
		if err := r.get("stop", &d.stop); err != nil {
			return nil, l.errorf("decoder Strip: %v", err)
		}
		rs := []rune(content)
		if len(rs) != 1 {
			return nil, l.errorf("decoder Strip: content %q is not one character", content)
		}
		d.content = rs[0]
		return d, nil
	case "Metaspace":
		m, err := l.metaspace(r)
		if err != nil {
			return nil, err
		}
		return metaspaceDec{replacement: m.replacement, prepend: m.prepend}, nil
	default:
		return nil, l.unsupported("decoder", typ)
	}
}

// applyConfig reads tokenizer_config.json: the BOS and EOS tokens and, for
// the tokenizer classes whose transformers implementation rebuilds the
// post-processor from them, add_bos_token and add_eos_token.
func (t *Tokenizer) applyConfig(l *loader, data []byte) error {
	var c rawJSON
	if err := json.Unmarshal(data, &c); err != nil {
		return l.errorf("%v", err)
	}
	tokenName := func(k string) (string, bool, error) {
		m, ok := c[k]
		if !ok || string(m) == "null" {
			return "", false, nil
		}
		var s string
		if json.Unmarshal(m, &s) == nil {
			return s, true, nil
		}
		var obj struct {
			Content string `json:"content"`
		}
		if err := json.Unmarshal(m, &obj); err != nil {
			return "", false, l.errorf("%s: want a string or an object with \"content\"", k)
		}
		return obj.Content, true, nil
	}
	resolve := func(k string) (int32, error) {
		s, ok, err := tokenName(k)
		if err != nil || !ok {
			return -1, err
		}
		id, found := t.lookup(s)
		if !found {
			return -1, l.errorf("%s %q is not a token of %s", k, s, t.path)
		}
		return id, nil
	}
	var err error
	if t.bos, err = resolve("bos_token"); err != nil {
		return err
	}
	if t.eos, err = resolve("eos_token"); err != nil {
		return err
	}
	var splitSpecial bool
	if err := c.get("split_special_tokens", &splitSpecial); err != nil {
		return l.errorf("%v", err)
	}
	if splitSpecial {
		t.buildAddedSets(true)
	}
	var class string
	if err := c.get("tokenizer_class", &class); err != nil {
		return l.errorf("%v", err)
	}
	switch class {
	case "LlamaTokenizer", "LlamaTokenizerFast", "CodeLlamaTokenizer", "CodeLlamaTokenizerFast",
		"GemmaTokenizer", "GemmaTokenizerFast":
		// transformers' update_post_processor: single = [bos] $A [eos].
		addBOS, addEOS := true, false
		if err := c.get("add_bos_token", &addBOS); err != nil {
			return l.errorf("%v", err)
		}
		if err := c.get("add_eos_token", &addEOS); err != nil {
			return l.errorf("%v", err)
		}
		var aps *bool
		if err := c.get("add_prefix_space", &aps); err != nil {
			return l.errorf("%v", err)
		}
		if aps != nil {
			return l.errorf("add_prefix_space makes transformers rebuild the tokenizer from the SentencePiece model; that is not supported")
		}
		tp := &templatePost{}
		if addBOS {
			if t.bos < 0 {
				return l.errorf("add_bos_token is set but there is no bos_token")
			}
			tp.items = append(tp.items, []int32{t.bos})
		}
		tp.items = append(tp.items, nil)
		if addEOS {
			if t.eos < 0 {
				return l.errorf("add_eos_token is set but there is no eos_token")
			}
			tp.items = append(tp.items, []int32{t.eos})
		}
		t.post = tp
	}
	return nil
}

// Encode returns the ids of text. With addSpecial the post-processor adds
// its special tokens (BOS for Llama); special-token text inside the string
// is always recognised, as transformers does by default.
func (t *Tokenizer) Encode(text string, addSpecial bool) []int {
	ids := t.encode(text, addSpecial)
	out := make([]int, len(ids))
	for i, id := range ids {
		out[i] = int(id)
	}
	return out
}

func (t *Tokenizer) encode(text string, addSpecial bool) []int32 {
	text = validUTF8(text)
	sc := &bpeScratch{}
	ids := make([]int32, 0, len(text)/3+4)
	var pieces []string
	var segs []segment
	if t.rawAdded != nil {
		segs = t.rawAdded.split(text)
	} else if text != "" {
		segs = []segment{{0, len(text), nil}}
	}
	for _, sg := range segs {
		if sg.tok != nil {
			ids = append(ids, sg.tok.id)
			continue
		}
		s := text[sg.start:sg.end]
		if t.normalizer != nil {
			s = t.normalizer.normalize(s)
		}
		sub := []segment{{0, len(s), nil}}
		if t.normAdded != nil {
			sub = t.normAdded.split(s)
		}
		for k, ss := range sub {
			if ss.tok != nil {
				ids = append(ids, ss.tok.id)
				continue
			}
			part := s[ss.start:ss.end]
			if part == "" {
				continue
			}
			pieces = pieces[:0]
			if t.pre != nil {
				pieces = t.pre.split(pieces, part, sg.start == 0 && k == 0)
			} else {
				pieces = append(pieces, part)
			}
			for _, p := range pieces {
				ids = t.encodeWord(ids, p, sc)
			}
		}
	}
	if addSpecial && t.post != nil {
		ids = t.post.process(ids)
	}
	return ids
}

// encodeWord appends the ids of one pre-token, through the word cache.
func (t *Tokenizer) encodeWord(dst []int32, w string, sc *bpeScratch) []int32 {
	if len(w) > maxCachedWord {
		return t.model.encodeWord(dst, w, sc)
	}
	t.mu.RLock()
	cached, ok := t.cache[w]
	t.mu.RUnlock()
	if ok {
		return append(dst, cached...)
	}
	n := len(dst)
	dst = t.model.encodeWord(dst, w, sc)
	ids := append([]int32(nil), dst[n:]...)
	t.mu.Lock()
	if len(t.cache) >= maxCacheWords {
		t.cache = make(map[string][]int32)
	}
	t.cache[strings.Clone(w)] = ids
	t.mu.Unlock()
	return dst
}

// Decode returns the text of ids. With skipSpecial the special added tokens
// are left out. Unknown ids are skipped. Unlike transformers' decode it does
// not apply clean_up_tokenization_spaces, so that Decode(Encode(s)) == s.
func (t *Tokenizer) Decode(ids []int, skipSpecial bool) string {
	toks := make([]string, 0, len(ids))
	for _, id := range ids {
		if id < 0 || id >= len(t.tokens) || !t.hasToken[id] {
			continue
		}
		if a, ok := t.addedByID[int32(id)]; ok {
			if skipSpecial && a.special {
				continue
			}
			toks = append(toks, a.content)
			continue
		}
		toks = append(toks, t.tokens[id])
	}
	if t.decoder == nil {
		return strings.Join(toks, " ")
	}
	return strings.Join(t.decoder.decodeChain(toks), "")
}

// BOS returns the id of the beginning-of-sequence token named by
// tokenizer_config.json.
func (t *Tokenizer) BOS() (int, bool) { return int(t.bos), t.bos >= 0 }

// EOS returns the id of the end-of-sequence token named by
// tokenizer_config.json.
func (t *Tokenizer) EOS() (int, bool) { return int(t.eos), t.eos >= 0 }

// IsSpecial reports whether id is a special added token (BOS, EOS, chat
// markers...), which pooling over a word's tokens leaves out.
func (t *Tokenizer) IsSpecial(id int) bool {
	if id < 0 || id > 1<<31-1 {
		return false
	}
	a, ok := t.addedByID[int32(id)]
	return ok && a.special
}

// VocabSize returns one more than the largest id of the vocabulary and the
// added tokens: the number of embedding rows the model needs.
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// TokenString returns the token of id as spelt in tokenizer.json (byte-level
// tokens keep their byte-level characters, e.g. "Ġthe"), or "" if there is
// none.
func (t *Tokenizer) TokenString(id int) string {
	if id < 0 || id >= len(t.tokens) {
		return ""
	}
	return t.tokens[id]
}

// TokenID returns the id of a token spelt as in tokenizer.json.
func (t *Tokenizer) TokenID(token string) (int, bool) {
	id, ok := t.lookup(token)
	return int(id), ok
}
