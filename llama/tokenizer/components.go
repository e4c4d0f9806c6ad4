package tokenizer

import (
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// A normalizer rewrites a section of text before pre-tokenization.
type normalizer interface {
	normalize(s string) string
}

type normSequence []normalizer

func (q normSequence) normalize(s string) string {
	for _, n := range q {
		s = n.normalize(s)
	}
	return s
}

// normalizeText applies n to s; with cont (s continues a section of text
// that EncodeReader cut in two) Prepend normalizers add nothing, as they add
// their string once, at the start of the section.
func normalizeText(n normalizer, s string, cont bool) string {
	if !cont {
		return n.normalize(s)
	}
	switch n := n.(type) {
	case prependNorm:
		return s
	case normSequence:
		for _, m := range n {
			s = normalizeText(m, s, cont)
		}
		return s
	}
	return n.normalize(s)
}

// prependNorm prepends a string to non-empty text (Llama 2 prepends U+2581).
type prependNorm string

func (p prependNorm) normalize(s string) string {
	if s == "" {
		return s
	}
	return string(p) + s
}

// replaceNorm replaces every match of a pattern; it is also the Replace
// decoder, applied to each token.
type replaceNorm struct {
	literal string
	re      *regexp.Regexp
	content string
}

func (r *replaceNorm) normalize(s string) string {
	if r.re != nil {
		return r.re.ReplaceAllLiteralString(s, r.content)
	}
	return strings.ReplaceAll(s, r.literal, r.content)
}

func (r *replaceNorm) decodeChain(tokens []string) []string {
	for i, t := range tokens {
		tokens[i] = r.normalize(t)
	}
	return tokens
}

// unicodeNorm is one of the Unicode normalisation forms NFC, NFD, NFKC and
// NFKD, as UAX #15 defines them. x/text/unicode/norm gives the character
// data (decompositions, combining classes, the composite of two
// characters), but its normalising of longer text differs from Hugging
// Face tokenizers and from the JavaScript reference (String.prototype.
// normalize) in two ways: it follows the Stream-Safe Text Format, putting
// U+034F after every 30 non-starters in a row, which also stops the
// reordering and composition of the marks around it; and it composes a
// mark with a starter across a starter that combines backwards (its NFC of
// "O\u0b57\u031b" is "\u01a0\u0b57", not the text itself).
type unicodeNorm struct{ form norm.Form }

func (u unicodeNorm) normalize(s string) string { return normalizeUnicode(s, u.form) }

// normChar is a character with its canonical combining class.
type normChar struct {
	r   rune
	ccc uint8
}

// The Hangul syllables, which decompose and compose by arithmetic.
const (
	hangulBase  = 0xAC00
	hangulCount = 11172
	jamoL       = 0x1100
	jamoV       = 0x1161
	jamoT       = 0x11A7
	jamoVCount  = 21
	jamoTCount  = 28
)

// normalizeUnicode is UAX #15 applied to s. The text is cut before every
// inert character (see inert), which neither changes nor interacts with
// the characters on either side of it; inert runs are kept as they are and
// each piece between them is normalised by normalizePiece.
func normalizeUnicode(s string, form norm.Form) string {
	compose := form == norm.NFC || form == norm.NFKC
	decomp := norm.NFD
	if form == norm.NFKC || form == norm.NFKD {
		decomp = norm.NFKD
	}
	inert := func(i int) (bool, int) {
		if s[i] < utf8.RuneSelf {
			return true, 1
		}
		p := decomp.PropertiesString(s[i:])
		if p.CCC() != 0 || p.Size() == 0 {
			return false, max(p.Size(), 1)
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r >= hangulBase && r < hangulBase+hangulCount {
			// A syllable is composed; only a trailing consonant, which is
			// not inert, composes with it.
			return compose, n
		}
		if p.Decomposition() != nil {
			return false, n
		}
		return !compose || norm.NFC.PropertiesString(s[i:]).BoundaryBefore(), n
	}
	var b strings.Builder
	var cs []normChar
	copied := 0 // s[:copied] is in b
	last := 0   // start of the last inert character
	for i := 0; i < len(s); {
		ok, n := inert(i)
		if ok {
			last = i
			i += n
			continue
		}
		// The piece from the last inert character (with which this one
		// may compose) to the next one.
		start := min(last, i)
		j := i + n
		for j < len(s) {
			ok, n := inert(j)
			if ok {
				break
			}
			j += n
		}
		if b.Len() == 0 {
			b.Grow(len(s) + len(s)/8)
		}
		b.WriteString(s[copied:start])
		cs = normalizePiece(&b, cs, s[start:j], decomp, compose)
		copied = j
		i = j
	}
	if copied == 0 {
		return s
	}
	b.WriteString(s[copied:])
	return b.String()
}

// normalizePiece writes s to b normalised in full: the decomposition of
// every character (canonical, or for compatibility with decomp NFKD), the
// canonical ordering of every run of non-starters (a stable sort by
// combining class) and, with compose, the canonical composition. cs is
// scratch space, returned for the next call.
func normalizePiece(b *strings.Builder, cs []normChar, s string, decomp norm.Form, compose bool) []normChar {
	cs = cs[:0]
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch d := decomp.PropertiesString(s[i:]).Decomposition(); {
		case r >= hangulBase && r < hangulBase+hangulCount:
			k := r - hangulBase
			cs = append(cs, normChar{jamoL + k/(jamoVCount*jamoTCount), 0}, normChar{jamoV + k%(jamoVCount*jamoTCount)/jamoTCount, 0})
			if t := k % jamoTCount; t != 0 {
				cs = append(cs, normChar{jamoT + t, 0})
			}
		case d != nil:
			for k := 0; k < len(d); {
				dr, dn := utf8.DecodeRune(d[k:])
				cs = append(cs, normChar{dr, norm.NFD.Properties(d[k:]).CCC()})
				k += dn
			}
		default:
			cs = append(cs, normChar{r, norm.NFD.PropertiesString(s[i:]).CCC()})
		}
		i += n
	}
	for i := 0; i < len(cs); {
		if cs[i].ccc == 0 {
			i++
			continue
		}
		j := i + 1
		for j < len(cs) && cs[j].ccc != 0 {
			j++
		}
		if j-i > 1 {
			run := cs[i:j]
			sort.SliceStable(run, func(a, b int) bool { return run[a].ccc < run[b].ccc })
		}
		i = j
	}
	out := cs
	if compose {
		out = composeChars(cs)
	}
	for _, c := range out {
		b.WriteRune(c.r)
	}
	return cs
}

// composeChars is UAX #15's canonical composition of decomposed,
// canonically ordered text, in place: a character that is not blocked from
// the last starter (nothing between them, or only characters of a lower
// non-zero class) and forms a primary composite with it is merged into it.
func composeChars(cs []normChar) []normChar {
	out := cs[:0]
	starter := -1  // index in out of the last starter; -1: none yet
	var last uint8 // class of the last character kept
	for _, c := range cs {
		if starter >= 0 && (last == 0 || last < c.ccc) && (c.ccc != 0 || combinesBackward(c.r)) {
			if p, ok := composePair(out[starter].r, c.r); ok {
				out[starter].r = p
				continue
			}
		}
		if c.ccc == 0 {
			starter = len(out)
		}
		last = c.ccc
		out = append(out, c)
	}
	return out
}

// combinesBackward reports whether the starter r may be the second
// character of a primary composite (Hangul vowels and trailing consonants,
// some vowel signs and length marks of Indic scripts).
func combinesBackward(r rune) bool {
	if r < 0x900 {
		return false
	}
	var buf [utf8.UTFMax]byte
	return !norm.NFC.Properties(buf[:utf8.EncodeRune(buf[:], r)]).BoundaryBefore()
}

// composeCache holds the pairs composePair has looked up (a<<32 | c to the
// composite, or -1); it stops growing at maxComposeCache entries.
var (
	composeCache     sync.Map
	composeCacheSize atomic.Int32
)

const maxComposeCache = 1 << 14

// composePair returns the primary composite of the starter a and c, if
// there is one. Hangul is arithmetic; otherwise NFC of the pair is that one
// character: a is either decomposed or a primary composite built from
// characters of classes no higher than c's, so NFC rebuilds a and tries
// the same pair (two characters do not meet the flaw described at
// unicodeNorm).
func composePair(a, c rune) (rune, bool) {
	if a >= jamoL && a < jamoL+19 && c >= jamoV && c < jamoV+jamoVCount {
		return hangulBase + ((a-jamoL)*jamoVCount+c-jamoV)*jamoTCount, true
	}
	if a >= hangulBase && a < hangulBase+hangulCount && (a-hangulBase)%jamoTCount == 0 && c > jamoT && c < jamoT+jamoTCount {
		return a + c - jamoT, true
	}
	key := uint64(a)<<32 | uint64(c)
	if v, ok := composeCache.Load(key); ok {
		p := v.(rune)
		return p, p >= 0
	}
	s := norm.NFC.String(string(a) + string(c))
	p, n := utf8.DecodeRuneInString(s)
	if n != len(s) || p == utf8.RuneError {
		p = -1
	}
	if composeCacheSize.Load() < maxComposeCache {
		if _, loaded := composeCache.LoadOrStore(key, p); !loaded {
			composeCacheSize.Add(1)
		}
	}
	return p, p >= 0
}

type lowercaseNorm struct{}

func (lowercaseNorm) normalize(s string) string { return strings.ToLower(s) }

type stripNorm struct{ left, right bool }

func (p stripNorm) normalize(s string) string {
	if p.left {
		s = strings.TrimLeftFunc(s, isWhiteSpace)
	}
	if p.right {
		s = strings.TrimRightFunc(s, isWhiteSpace)
	}
	return s
}

// A decoder turns token strings back into text, in a chain: each decoder
// maps the list of strings to a new list, and the result is their
// concatenation.
type decoder interface {
	decodeChain(tokens []string) []string
}

type decSequence []decoder

func (q decSequence) decodeChain(tokens []string) []string {
	for _, d := range q {
		tokens = d.decodeChain(tokens)
	}
	return tokens
}

// byteLevelDec maps byte-level characters back to bytes and the bytes to
// text (invalid UTF-8 becomes U+FFFD per maximal subpart). A token holding a
// character outside the byte-level alphabet (an added token, say) is taken
// as its own UTF-8 bytes.
type byteLevelDec struct{}

func (byteLevelDec) decodeChain(tokens []string) []string {
	var buf []byte
	for _, t := range tokens {
		if raw, ok := byteLevelRaw(t); ok {
			buf = append(buf, raw...)
		} else {
			buf = append(buf, t...)
		}
	}
	return []string{validUTF8(string(buf))}
}

// byteFallbackDec turns runs of <0xXX> tokens into the text they spell;
// a run that is not valid UTF-8 gives one U+FFFD per byte, as tokenizers does.
type byteFallbackDec struct{}

func (byteFallbackDec) decodeChain(tokens []string) []string {
	out := make([]string, 0, len(tokens))
	var run []byte
	flush := func() {
		if len(run) == 0 {
			return
		}
		if utf8.Valid(run) {
			out = append(out, string(run))
		} else {
			for range run {
				out = append(out, "\uFFFD")
			}
		}
		run = run[:0]
	}
	for _, t := range tokens {
		if b, ok := fallbackByte(t); ok {
			run = append(run, b)
			continue
		}
		flush()
		out = append(out, t)
	}
	flush()
	return out
}

// fallbackByte parses a "<0xXX>" token.
func fallbackByte(t string) (byte, bool) {
	if len(t) != 6 || !strings.HasPrefix(t, "<0x") || t[5] != '>' {
		return 0, false
	}
	var v byte
	for _, c := range []byte(t[3:5]) {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | (c - '0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | (c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			v = v<<4 | (c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return v, true
}

type fuseDec struct{}

func (fuseDec) decodeChain(tokens []string) []string {
	return []string{strings.Join(tokens, "")}
}

// stripDec removes up to start leading and stop trailing copies of content
// from each token.
type stripDec struct {
	content     rune
	start, stop int
}

func (d stripDec) decodeChain(tokens []string) []string {
	for i, t := range tokens {
		rs := []rune(t)
		lo, hi := 0, len(rs)
		for k := 0; k < d.start && lo < len(rs) && rs[lo] == d.content; k++ {
			lo++
		}
		for k := 0; k < d.stop && hi > lo && rs[hi-1] == d.content; k++ {
			hi--
		}
		tokens[i] = string(rs[lo:hi])
	}
	return tokens
}

// metaspaceDec turns the replacement character back into spaces; in the
// first token it is dropped instead (unless prepend_scheme is "never"), as
// tokenizers does.
type metaspaceDec struct {
	replacement rune
	prepend     int
}

func (d metaspaceDec) decodeChain(tokens []string) []string {
	for i, t := range tokens {
		var b strings.Builder
		for _, r := range t {
			if r == d.replacement {
				if i == 0 && d.prepend != prependNever {
					continue
				}
				r = ' '
			}
			b.WriteRune(r)
		}
		tokens[i] = b.String()
	}
	return tokens
}

// A postProcessor adds the special tokens around an encoded sequence:
// process(ids) is pre + ids + post, where pre, post = affixes().
type postProcessor interface {
	process(ids []int32) []int32
	affixes() (pre, post []int32)
}

func wrap(p postProcessor, ids []int32) []int32 {
	pre, post := p.affixes()
	if len(pre) == 0 && len(post) == 0 {
		return ids
	}
	out := make([]int32, 0, len(pre)+len(ids)+len(post))
	out = append(out, pre...)
	out = append(out, ids...)
	return append(out, post...)
}

type postSequence []postProcessor

func (q postSequence) process(ids []int32) []int32 { return wrap(q, ids) }

func (q postSequence) affixes() (pre, post []int32) {
	for _, p := range q {
		a, b := p.affixes()
		pre = append(append([]int32{}, a...), pre...)
		post = append(post, b...)
	}
	return pre, post
}

// byteLevelPost only adjusts offsets in tokenizers; ids are unchanged.
type byteLevelPost struct{}

func (byteLevelPost) process(ids []int32) []int32 { return ids }

func (byteLevelPost) affixes() (pre, post []int32) { return nil, nil }

// templatePost is TemplateProcessing for single sequences: the template is
// a list of items, each either the sequence itself (exactly one item) or the
// ids of a special token.
type templatePost struct {
	items [][]int32 // nil: the sequence $A
}

func (t *templatePost) process(ids []int32) []int32 { return wrap(t, ids) }

func (t *templatePost) affixes() (pre, post []int32) {
	seen := false
	for _, it := range t.items {
		switch {
		case it == nil:
			seen = true
		case seen:
			post = append(post, it...)
		default:
			pre = append(pre, it...)
		}
	}
	return pre, post
}
