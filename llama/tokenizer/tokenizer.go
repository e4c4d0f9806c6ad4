package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"

	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/tli-project/tli/internal/limitread"
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

	tokens    idTable // id -> token as spelt in tokenizer.json
	addedByID map[int32]*addedToken
	added     []*addedToken
	rawAdded  *addedSet // tokens matched on the raw text
	normAdded *addedSet // tokens matched on the normalised text

	bos, eos int32 // -1: none

	isolated *splitPre // pre, when it is a Split with behavior Isolated

	mu    sync.RWMutex
	cache map[string][]int32

	cutOnce sync.Once
	cuts    cutRules // where EncodeReader may cut the text (see stream.go)
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
// tokenizer.json is read through MaxFileBytes and tokenizer_config.json
// through MaxConfigBytes.
func Load(path string) (*Tokenizer, error) {
	data, err := readJSONFile(path, MaxFileBytes, "MaxFileBytes")
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(filepath.Dir(path), "tokenizer_config.json")
	cfg, err := readJSONFile(cfgPath, MaxConfigBytes, "MaxConfigBytes")
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
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
	ID         jsonID `json:"id"`
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

// loader carries the file names for error messages while parsing, and
// counts the components of the kind being parsed and how deep Sequences
// nest.
type loader struct {
	path  string
	count int
	depth int
}

// component counts one more component of kind; it is refused past
// MaxComponents.
func (l *loader) component(kind string) error {
	l.count++
	if l.count > MaxComponents {
		return l.errorf("%s: more than %d components (tokenizer.MaxComponents)", kind, MaxComponents)
	}
	return nil
}

// sequence enters a Sequence of kind; leave undoes it.
func (l *loader) sequence(kind string) (leave func(), err error) {
	if l.depth >= MaxSequenceDepth {
		return nil, l.errorf("%s: Sequence nested more than %d deep (tokenizer.MaxSequenceDepth)", kind, MaxSequenceDepth)
	}
	l.depth++
	return func() { l.depth-- }, nil
}

// reset starts counting a new kind of component.
func (l *loader) reset() *loader {
	l.count, l.depth = 0, 0
	return l
}

// checkPattern refuses a string of a component longer than MaxPatternBytes.
func (l *loader) checkPattern(what, s string) error {
	if len(s) > MaxPatternBytes {
		return l.errorf("%s is %d bytes; at most %d (tokenizer.MaxPatternBytes)", what, len(s), MaxPatternBytes)
	}
	return nil
}

// jsonError reports an error of encoding/json on the whole file data with
// the byte and line it happened at (the offending byte, or the last byte of
// a value of the wrong type).
func (l *loader) jsonError(data []byte, err error) error {
	var off int64 = -1
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = se.Offset - 1
	case errors.As(err, &te):
		off = te.Offset - 1
	}
	if off < 0 || off >= int64(len(data)) {
		return l.errorf("%v", err)
	}
	return l.errorf("%v at byte %d (line %d)", err, off, lineOf(data, int(off)))
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
	if len(data) > MaxFileBytes {
		return nil, l.errorf("larger than %s (tokenizer.MaxFileBytes)", limitread.Size(MaxFileBytes))
	}
	if err := startsLikeObject(path, data, true); err != nil {
		return nil, err
	}
	if err := checkJSONText(path, data); err != nil {
		return nil, err
	}
	var f fileJSON
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, l.jsonError(data, err)
	}
	t := &Tokenizer{path: path, bos: -1, eos: -1, cache: map[string][]int32{}, addedByID: map[int32]*addedToken{}}
	var err error
	if f.Normalizer != nil {
		if t.normalizer, err = l.reset().normalizer(f.Normalizer); err != nil {
			return nil, err
		}
	}
	byteMode := false
	if f.PreTokenizer != nil {
		if t.pre, byteMode, err = l.reset().preTokenizer(f.PreTokenizer, true); err != nil {
			return nil, err
		}
	}
	if neverSplits(t.normalizer, t.pre) {
		t.pre = nil
	}
	if sp, ok := t.pre.(*splitPre); ok && sp.behavior == behIsolated {
		t.isolated = sp
	}
	if f.Model == nil {
		return nil, l.errorf("no \"model\"")
	}
	vocab, err := l.model(t, f.Model, byteMode)
	if err != nil {
		return nil, err
	}
	if err := l.ids(t, vocab, f.AddedTokens); err != nil {
		return nil, err
	}
	t.buildAddedSets(false)
	if f.PostProcessor != nil {
		if t.post, err = l.reset().postProcessor(t, f.PostProcessor); err != nil {
			return nil, err
		}
	}
	if f.Decoder != nil {
		if t.decoder, err = l.reset().decoder(f.Decoder); err != nil {
			return nil, err
		}
	}
	if cfg != nil {
		cl := &loader{path: cfgPath}
		if len(cfg) > MaxConfigBytes {
			return nil, cl.errorf("larger than %s (tokenizer.MaxConfigBytes)", limitread.Size(MaxConfigBytes))
		}
		if err := startsLikeObject(cfgPath, cfg, true); err != nil {
			return nil, err
		}
		if err := checkJSONText(cfgPath, cfg); err != nil {
			return nil, err
		}
		if err := t.applyConfig(cl, cfg); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// neverSplits reports whether the pre-tokenizer p is a Split on a string
// that the normalizer n has removed from every text, so that each section
// stays one word, as without a pre-tokenizer: Gemma 3 splits on " " after
// replacing every " " with "▁". n must end with the Replace of a single
// character by a string without it (the character cannot reappear: the
// pieces around each replacement are valid UTF-8 without it).
func neverSplits(n normalizer, p preTokenizer) bool {
	sp, ok := p.(*splitPre)
	if !ok || sp.invert {
		return false
	}
	lit, ok := sp.m.(stringMatcher)
	if !ok {
		return false
	}
	if q, ok := n.(normSequence); ok && len(q) > 0 {
		n = q[len(q)-1]
	}
	r, ok := n.(*replaceNorm)
	if !ok || r.re != nil || utf8.RuneCountInString(r.literal) != 1 || strings.Contains(r.content, r.literal) {
		return false
	}
	return strings.Contains(string(lit), r.literal)
}

// ids builds the table of token strings by id from the vocabulary and the
// added tokens, refusing two tokens with one id, and the added tokens, whose
// ids must be those Hugging Face tokenizers gives them: it does not read
// their ids from the file but takes the vocabulary's id for a token that is
// in it and numbers the others in file order from the vocabulary size (it
// only warns when the file says otherwise).
func (l *loader) ids(t *Tokenizer, vocab map[string]int32, added []addedJSON) error {
	if len(added) > MaxAddedTokens {
		return l.errorf("%d added tokens; at most %d (tokenizer.MaxAddedTokens)", len(added), MaxAddedTokens)
	}
	maxID := int32(-1)
	for _, id := range vocab {
		maxID = max(maxID, id)
	}
	addedIDs := make([]int32, len(added))
	for i, a := range added {
		who := fmt.Sprintf("added token %q", clip(a.Content))
		if a.Content == "" {
			who = fmt.Sprintf("added token %d (with no content)", i)
		}
		id, err := a.ID.check(l, who)
		if err != nil {
			return err
		}
		if a.Content == "" {
			return l.errorf("added token %d (id %d) has no content", i, id)
		}
		if len(a.Content) > MaxAddedTokenBytes {
			return l.errorf("added token %q (id %d) is %d bytes; at most %d (tokenizer.MaxAddedTokenBytes)", clip(a.Content), id, len(a.Content), MaxAddedTokenBytes)
		}
		addedIDs[i] = id
		maxID = max(maxID, id)
	}
	t.tokens = newIDTable(len(vocab)+len(added), maxID)
	dup := false
	for s, id := range vocab {
		if _, taken := t.tokens.set(id, s); taken {
			dup = true
		}
	}
	if dup {
		// Name the same pair whatever the map order: the lowest such id and
		// its two smallest tokens.
		type entry struct {
			id int32
			s  string
		}
		all := make([]entry, 0, len(vocab))
		for s, id := range vocab {
			all = append(all, entry{id, s})
		}
		sort.Slice(all, func(i, j int) bool {
			if all[i].id != all[j].id {
				return all[i].id < all[j].id
			}
			return all[i].s < all[j].s
		})
		for i := 1; i < len(all); i++ {
			if all[i].id == all[i-1].id {
				return l.errorf("model: vocab: tokens %q and %q both have id %d; every token needs its own id", clip(all[i-1].s), clip(all[i].s), all[i].id)
			}
		}
	}
	seen := make(map[string]int32, len(added))
	vocabLen := int64(len(vocab))
	next := vocabLen      // tokenizers since 0.20: one add_tokens call for all
	maxAdded := int64(-1) // tokenizers 0.19: next id = max(added so far)+1 past the vocabulary
	for i, a := range added {
		id := addedIDs[i]
		c := clip(a.Content)
		if prev, ok := seen[a.Content]; ok {
			return l.errorf("added token %q appears twice (ids %d and %d)", c, prev, id)
		}
		seen[a.Content] = id
		if vid, ok := vocab[a.Content]; ok {
			if vid != id {
				return l.errorf("added token %q has id %d, but the vocabulary gives it id %d", c, id, vid)
			}
		} else {
			if old, taken := t.tokens.set(id, a.Content); taken {
				return l.errorf("added token %q has id %d, which is already the id of %q; every token needs its own id", c, id, clip(old))
			}
			old019 := vocabLen
			if maxAdded >= 0 && (maxAdded >= vocabLen || vocabLen == 0) {
				old019 = maxAdded + 1
			}
			if next != old019 {
				return l.errorf("added token %q has id %d, which depends on the version of Hugging Face tokenizers (%d or %d: the vocabulary has gaps)", c, id, next, old019)
			}
			if int64(id) != next {
				return l.errorf("added token %q has id %d, but Hugging Face tokenizers numbers added tokens that are not in the vocabulary in file order from the vocabulary size (%d), which gives it id %d", c, id, vocabLen, next)
			}
			next++
		}
		maxAdded = max(maxAdded, int64(id))
		tok := &addedToken{id: id, content: a.Content, singleWord: a.SingleWord, lstrip: a.LStrip,
			rstrip: a.RStrip, normalized: a.Normalized, special: a.Special}
		t.added = append(t.added, tok)
		t.addedByID[id] = tok
	}
	return nil
}

// clip cuts s for an error message.
func clip(s string) string {
	if len(s) <= 60 {
		return s
	}
	cut := 60
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
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

// idTable holds the token of each id as spelt in tokenizer.json. It is a
// slice, allocated once, when the ids nearly fill 0..max, and a map
// otherwise, so that a file with a few far-apart ids costs no more than one
// with dense ids.
type idTable struct {
	dense  []string
	has    []bool
	sparse map[int32]string
	size   int // largest id + 1
}

func newIDTable(count int, maxID int32) idTable {
	size := int(maxID) + 1
	if size <= 2*count+1024 {
		return idTable{dense: make([]string, size), has: make([]bool, size), size: size}
	}
	return idTable{sparse: make(map[int32]string, count), size: size}
}

func (t *idTable) get(id int) (string, bool) {
	if id < 0 || id >= t.size {
		return "", false
	}
	if t.sparse != nil {
		s, ok := t.sparse[int32(id)]
		return s, ok
	}
	return t.dense[id], t.has[id]
}

// set makes s the token of id, unless id already has one: then it returns
// that one and true.
func (t *idTable) set(id int32, s string) (string, bool) {
	if old, ok := t.get(int(id)); ok {
		return old, true
	}
	if t.sparse != nil {
		t.sparse[id] = s
	} else {
		t.dense[id], t.has[id] = s, true
	}
	return "", false
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
	if err := l.component("normalizer"); err != nil {
		return nil, err
	}
	switch typ := r.typ(); typ {
	case "Sequence":
		leave, err := l.sequence("normalizer")
		if err != nil {
			return nil, err
		}
		defer leave()
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
		if err := l.checkPattern("normalizer Prepend: prepend", p); err != nil {
			return nil, err
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
	if err := l.checkPattern(what+" Replace: content", content); err != nil {
		return nil, err
	}
	for _, p := range []*string{p.String, p.Regex} {
		if p != nil {
			if err := l.checkPattern(what+" Replace: pattern", *p); err != nil {
				return nil, err
			}
		}
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
	qwen2Regex  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	gpt2Regex   = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
	bloomRegex  = ` ?[^(\s|[.,!?…。，、।۔،])]+`
)

// preTokenizer parses a pre-tokenizer; byteLevel reports whether it ends
// with ByteLevel, which makes the model work on raw bytes.
func (l *loader) preTokenizer(r rawJSON, last bool) (p preTokenizer, byteLevel bool, err error) {
	if err := l.component("pre_tokenizer"); err != nil {
		return nil, false, err
	}
	switch typ := r.typ(); typ {
	case "Sequence":
		leave, err := l.sequence("pre_tokenizer")
		if err != nil {
			return nil, false, err
		}
		defer leave()
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
			if err := l.checkPattern("pre_tokenizer Split: pattern", *pat.String); err != nil {
				return nil, false, err
			}
			sp.m = stringMatcher(*pat.String)
		case pat.Regex != nil && *pat.Regex == llama3Regex:
			sp.m = llama3Matcher{}
		case pat.Regex != nil && *pat.Regex == qwen2Regex:
			sp.m = qwen2Matcher{}
		case pat.Regex != nil && *pat.Regex == gpt2Regex:
			sp.m = gpt2Matcher{}
		case pat.Regex != nil && *pat.Regex == bloomRegex:
			sp.m = bloomMatcher{}
		case pat.Regex != nil:
			return nil, false, l.errorf("pre_tokenizer Split: regex %q is not supported (only the Llama 3, Qwen2, GPT-2 and BLOOM patterns are)", clip(*pat.Regex))
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

func (l *loader) model(t *Tokenizer, r rawJSON, byteMode bool) (map[string]int32, error) {
	typ := r.typ()
	if typ == "" {
		if _, ok := r["merges"]; ok {
			typ = "BPE"
		}
	}
	if typ != "BPE" {
		return nil, l.unsupported("model", typ)
	}
	vocab, err := l.vocab(r)
	if err != nil {
		return nil, err
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
			return nil, l.errorf("model: %v", err)
		}
	}
	if dropout != nil && *dropout > 0 {
		return nil, l.errorf("model: BPE dropout %g is not supported (ids would be random)", *dropout)
	}
	if prefix != nil && *prefix != "" {
		return nil, l.errorf("model: BPE continuing_subword_prefix %q is not supported", clip(*prefix))
	}
	if suffix != nil && *suffix != "" {
		return nil, l.errorf("model: BPE end_of_word_suffix %q is not supported", clip(*suffix))
	}
	if unk != nil {
		id, ok := vocab[*unk]
		if !ok {
			return nil, l.errorf("model: unk_token %q is not in the vocabulary", clip(*unk))
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
		return nil, err
	}
	m.merges = make(map[uint64]uint64, len(pairs))
	for rank, p := range pairs {
		a, okA := vocab[p[0]]
		b, okB := vocab[p[1]]
		c, okC := vocab[p[0]+p[1]]
		if !okA || !okB || !okC {
			return nil, l.errorf("model: merge %d (%q %q) uses a token that is not in the vocabulary", rank, clip(p[0]), clip(p[1]))
		}
		m.merges[pairKey(a, b)] = uint64(rank)<<32 | uint64(uint32(c))
	}
	t.model = m
	return vocab, nil
}

// vocab reads the vocabulary of a BPE model: every id must be an integer
// in [0, MaxVocab).
func (l *loader) vocab(r rawJSON) (map[string]int32, error) {
	// Sized for the entries the file appears to have, so that the map is
	// not rehashed as it grows.
	vocab := make(map[string]int32, sizeHint(r["vocab"], ':', 1))
	// encoding/json leaves a null id at 0 without an error: such files take
	// the slow path, which sees every value.
	if err := r.get("vocab", &vocab); err != nil || hasNullValue(r["vocab"]) {
		// Read it again to say which token has what id.
		var raw map[string]jsonID
		if err := r.get("vocab", &raw); err != nil {
			return nil, l.errorf("model: %v", err)
		}
		vocab = make(map[string]int32, len(raw))
		for s, v := range raw {
			vocab[s] = -1
			if v.bad == "" && v.n >= 0 && v.n < MaxVocab {
				vocab[s] = int32(v.n)
			}
		}
		if bad, ok := firstBad(vocab); ok {
			_, err := raw[bad].check(l, fmt.Sprintf("model: vocab: token %q", clip(bad)))
			return nil, err
		}
		if err != nil {
			return nil, l.errorf("model: vocab: %v", err) // not reached: raw held the bad value
		}
	}
	if len(vocab) > MaxVocab {
		return nil, l.errorf("model: vocab has %d tokens; at most %d (tokenizer.MaxVocab)", len(vocab), MaxVocab)
	}
	if bad, ok := firstBad(vocab); ok {
		return nil, l.errorf("model: vocab: token %q has id %d; want an integer from 0 to %d (below tokenizer.MaxVocab)", clip(bad), vocab[bad], MaxVocab-1)
	}
	long, found := "", false
	for s := range vocab {
		if len(s) > MaxTokenBytes && (!found || s < long) {
			long, found = s, true
		}
	}
	if found {
		return nil, l.errorf("model: vocab: token %q is %d bytes; at most %d (tokenizer.MaxTokenBytes)", clip(long), len(long), MaxTokenBytes)
	}
	return vocab, nil
}

// sizeHint estimates, for preallocation, how many elements a JSON list or
// object has from the count of byte c in it, per for each element (the
// byte inside strings only adds to the estimate). It is capped, so that a
// hostile file cannot make the loader allocate more than a real one does.
func sizeHint(raw []byte, c byte, per int) int {
	const maxHint = 1 << 20 // above every released tokenizer (Gemma 3: 514,906 merges)
	return min(bytes.Count(raw, []byte{c})/per, maxHint)
}

// hasNullValue reports whether the JSON data has a null outside its
// strings (the only bare 'n' in valid JSON).
func hasNullValue(data []byte) bool {
	in := false
	for i := 0; i < len(data); i++ {
		switch c := data[i]; {
		case in && c == '\\':
			i++
		case c == '"':
			in = !in
		case !in && c == 'n':
			return true
		}
	}
	return false
}

// firstBad returns the smallest token whose id is out of range, so that the
// same one is named whatever the map order.
func firstBad(vocab map[string]int32) (string, bool) {
	bad, found := "", false
	for s, id := range vocab {
		if (id < 0 || id >= MaxVocab) && (!found || s < bad) {
			bad, found = s, true
		}
	}
	return bad, found
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
	// The slices are sized for the elements the text appears to have, so
	// that encoding/json does not grow them step by step.
	if rest[0] == '[' {
		pairs := make([][2]string, 0, sizeHint(raw, '[', 1))
		if err := json.Unmarshal(raw, &pairs); err != nil {
			return nil, l.errorf("model: merges: %v", err)
		}
		if len(pairs) > MaxMerges {
			return nil, l.errorf("model: %d merges; at most %d (tokenizer.MaxMerges)", len(pairs), MaxMerges)
		}
		return pairs, nil
	}
	lines := make([]string, 0, sizeHint(raw, '"', 2))
	if err := json.Unmarshal(raw, &lines); err != nil {
		return nil, l.errorf("model: merges: %v", err)
	}
	if len(lines) > MaxMerges {
		return nil, l.errorf("model: %d merges; at most %d (tokenizer.MaxMerges)", len(lines), MaxMerges)
	}
	pairs := make([][2]string, len(lines))
	for i, s := range lines {
		a, b, ok := strings.Cut(s, " ")
		if !ok || strings.Contains(b, " ") {
			return nil, l.errorf("model: merge %d %q is not two tokens separated by one space", i, clip(s))
		}
		pairs[i] = [2]string{a, b}
	}
	return pairs, nil
}

func (l *loader) postProcessor(t *Tokenizer, r rawJSON) (postProcessor, error) {
	if err := l.component("post_processor"); err != nil {
		return nil, err
	}
	switch typ := r.typ(); typ {
	case "Sequence":
		leave, err := l.sequence("post_processor")
		if err != nil {
			return nil, err
		}
		defer leave()
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
		pre, post := q.affixes()
		if n := len(pre) + len(post); n > MaxTemplateIDs {
			return nil, l.errorf("post_processor Sequence adds %d special tokens; at most %d (tokenizer.MaxTemplateIDs)", n, MaxTemplateIDs)
		}
		return q, nil
	case "ByteLevel":
		return byteLevelPost{}, nil
	case "TemplateProcessing":
		var single []map[string]struct {
			ID string `json:"id"`
		}
		var specials map[string]struct {
			IDs []jsonID `json:"ids"`
		}
		if err := r.get("single", &single); err != nil {
			return nil, l.errorf("post_processor TemplateProcessing: %v", err)
		}
		if err := r.get("special_tokens", &specials); err != nil {
			return nil, l.errorf("post_processor TemplateProcessing: %v", err)
		}
		tp := &templatePost{}
		sequences, nIDs := 0, 0
		for _, item := range single {
			if s, ok := item["Sequence"]; ok {
				if s.ID != "A" {
					return nil, l.errorf("post_processor TemplateProcessing: single template uses sequence %q", clip(s.ID))
				}
				sequences++
				tp.items = append(tp.items, nil)
				continue
			}
			s, ok := item["SpecialToken"]
			if !ok {
				return nil, l.errorf("post_processor TemplateProcessing: template item is neither Sequence nor SpecialToken")
			}
			sp, ok := specials[s.ID]
			if !ok {
				return nil, l.errorf("post_processor TemplateProcessing: special token %q is not in special_tokens", clip(s.ID))
			}
			if nIDs += len(sp.IDs); nIDs > MaxTemplateIDs {
				return nil, l.errorf("post_processor TemplateProcessing: the single template adds more than %d special tokens (tokenizer.MaxTemplateIDs)", MaxTemplateIDs)
			}
			ids := make([]int32, len(sp.IDs))
			for i, v := range sp.IDs {
				who := fmt.Sprintf("post_processor TemplateProcessing: special token %q", clip(s.ID))
				id, err := v.check(l, who)
				if err != nil {
					return nil, err
				}
				if _, ok := t.tokens.get(int(id)); !ok {
					return nil, l.errorf("%s has id %d, which is not a token of the vocabulary or the added tokens", who, id)
				}
				ids[i] = id
			}
			tp.items = append(tp.items, ids)
		}
		if sequences != 1 {
			return nil, l.errorf("post_processor TemplateProcessing: the single template has %d sequences ($A); want exactly one", sequences)
		}
		return tp, nil
	default:
		return nil, l.unsupported("post_processor", typ)
	}
}

func (l *loader) decoder(r rawJSON) (decoder, error) {
	if err := l.component("decoder"); err != nil {
		return nil, err
	}
	switch typ := r.typ(); typ {
	case "Sequence":
		leave, err := l.sequence("decoder")
		if err != nil {
			return nil, err
		}
		defer leave()
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
		return l.jsonError(data, err)
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
	case "BloomTokenizer", "BloomTokenizerFast":
		// transformers' BloomTokenizerFast turns every "add_prefix_space":
		// false of the pre-tokenizer and decoder into true when the key is
		// true; the files themselves have false, the default.
		var aps bool
		if err := c.get("add_prefix_space", &aps); err != nil {
			return l.errorf("%v", err)
		}
		if aps {
			return l.errorf("add_prefix_space true makes transformers' BloomTokenizerFast rewrite the pre-tokenizer; that is not supported")
		}
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
	ids := make([]int32, 0, len(text)/3+4)
	ids = t.encodeText(ids, text, true, false, &bpeScratch{})
	if addSpecial && t.post != nil {
		ids = t.post.process(ids)
	}
	return ids
}

// encodeText appends the ids of text (valid UTF-8) to ids, without the
// post-processor. first says that text begins the input; cont that it
// continues a section of text that EncodeReader cut in two, so that
// nothing is prepended to it (Prepend, Metaspace, add_prefix_space).
func (t *Tokenizer) encodeText(ids []int32, text string, first, cont bool, sc *bpeScratch) []int32 {
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
		secCont := cont && sg.start == 0
		if t.normalizer != nil {
			s = normalizeText(t.normalizer, s, secCont)
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
			switch {
			case t.pre == nil:
				pieces = append(pieces, part)
			case t.pre == t.isolated:
				// The Llama 3 pre-tokenizer: encode each piece as it is
				// found, without a list of the pieces of the whole text.
				t.isolated.each(part, func(p string) { ids = t.encodeWord(ids, p, sc) })
			case secCont && k == 0:
				pieces = t.pre.splitCont(pieces, part)
			default:
				pieces = t.pre.split(pieces, part, first && sg.start == 0 && k == 0)
			}
			for _, p := range pieces {
				ids = t.encodeWord(ids, p, sc)
			}
		}
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
		tok, ok := t.tokens.get(id)
		if !ok {
			continue
		}
		if a, ok := t.addedByID[int32(id)]; ok {
			if skipSpecial && a.special {
				continue
			}
			toks = append(toks, a.content)
			continue
		}
		toks = append(toks, tok)
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
	if id < 0 || id >= MaxVocab {
		return false
	}
	a, ok := t.addedByID[int32(id)]
	return ok && a.special
}

// VocabSize returns one more than the largest id of the vocabulary and the
// added tokens: the number of embedding rows the model needs.
func (t *Tokenizer) VocabSize() int { return t.tokens.size }

// TokenString returns the token of id as spelt in tokenizer.json (byte-level
// tokens keep their byte-level characters, e.g. "Ġthe"), or "" if there is
// none.
func (t *Tokenizer) TokenString(id int) string {
	s, _ := t.tokens.get(id)
	return s
}

// TokenID returns the id of a token spelt as in tokenizer.json.
func (t *Tokenizer) TokenID(token string) (int, bool) {
	id, ok := t.lookup(token)
	return int(id), ok
}
