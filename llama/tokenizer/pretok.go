package tokenizer

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// A preTokenizer cuts a normalised section of text into pieces that the
// model encodes one by one. first reports whether s begins the input text
// (Metaspace's prepend_scheme "first" needs it). splitCont splits s that
// continues a section EncodeReader cut in two: nothing is prepended to it.
type preTokenizer interface {
	split(dst []string, s string, first bool) []string
	splitCont(dst []string, s string) []string
}

// preSequence applies its pre-tokenizers in turn, each to every piece the
// previous one produced.
type preSequence []preTokenizer

func (q preSequence) split(dst []string, s string, first bool) []string {
	return q.run(dst, s, first, false)
}

// splitCont continues a section: only the first pre-tokenizer sees the cut
// piece; the later ones see the same pieces as for the whole text.
func (q preSequence) splitCont(dst []string, s string) []string {
	return q.run(dst, s, false, true)
}

func (q preSequence) run(dst []string, s string, first, cont bool) []string {
	cur := []string{s}
	for k, p := range q {
		var next []string
		for i, c := range cur {
			if cont && k == 0 {
				next = p.splitCont(next, c)
			} else {
				next = p.split(next, c, first && i == 0)
			}
		}
		cur = next
	}
	return append(dst, cur...)
}

// A matcher finds the next match of a pattern in s at or after from. Matches
// are never empty.
type matcher interface {
	find(s string, from int) (start, end int, ok bool)
}

// Split delimiter behaviours, as in tokenizers' SplitDelimiterBehavior.
const (
	behRemoved = iota
	behIsolated
	behMergedWithPrevious
	behMergedWithNext
	behContiguous
)

// splitPre is the Split pre-tokenizer: the text is cut at every match of the
// pattern (or of its complement with invert) and the matches are kept,
// dropped or glued to a neighbour according to behavior.
type splitPre struct {
	m        matcher
	behavior int
	invert   bool
}

type span struct {
	start, end int
	match      bool
}

func (p *splitPre) splitCont(dst []string, s string) []string { return p.split(dst, s, false) }

// each calls f with every piece of s, for behavior Isolated: every match
// and every gap is its own piece.
func (p *splitPre) each(s string, f func(string)) {
	prev := 0
	for prev < len(s) {
		st, en, ok := p.m.find(s, prev)
		if !ok {
			break
		}
		if st > prev {
			f(s[prev:st])
		}
		f(s[st:en])
		prev = en
	}
	if prev < len(s) {
		f(s[prev:])
	}
}

func (p *splitPre) split(dst []string, s string, _ bool) []string {
	if p.behavior == behIsolated {
		p.each(s, func(piece string) { dst = append(dst, piece) })
		return dst
	}
	// The matchers never match the empty string.
	var spans []span
	prev := 0
	for prev < len(s) {
		st, en, ok := p.m.find(s, prev)
		if !ok {
			break
		}
		if st > prev {
			spans = append(spans, span{prev, st, false})
		}
		spans = append(spans, span{st, en, true})
		prev = en
	}
	if prev < len(s) {
		spans = append(spans, span{prev, len(s), false})
	}
	if p.invert {
		for i := range spans {
			spans[i].match = !spans[i].match
		}
	}
	var out []span
	switch p.behavior {
	case behRemoved:
		for _, sp := range spans {
			if !sp.match {
				out = append(out, sp)
			}
		}
	case behIsolated:
		out = spans
	case behMergedWithPrevious:
		prevMatch := false
		for _, sp := range spans {
			if sp.match && !prevMatch && len(out) > 0 {
				out[len(out)-1].end = sp.end
			} else {
				out = append(out, sp)
			}
			prevMatch = sp.match
		}
	case behMergedWithNext:
		prevMatch := false
		for i := len(spans) - 1; i >= 0; i-- {
			sp := spans[i]
			if sp.match && !prevMatch && len(out) > 0 {
				out[len(out)-1].start = sp.start
			} else {
				out = append(out, sp)
			}
			prevMatch = sp.match
		}
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	case behContiguous:
		prevMatch := false
		for _, sp := range spans {
			if sp.match == prevMatch && len(out) > 0 {
				out[len(out)-1].end = sp.end
			} else {
				out = append(out, sp)
			}
			prevMatch = sp.match
		}
	}
	for _, sp := range out {
		if sp.end > sp.start {
			dst = append(dst, s[sp.start:sp.end])
		}
	}
	return dst
}

// stringMatcher matches a literal string.
type stringMatcher string

func (m stringMatcher) find(s string, from int) (int, int, bool) {
	if len(m) == 0 {
		return 0, 0, false
	}
	i := strings.Index(s[from:], string(m))
	if i < 0 {
		return 0, 0, false
	}
	return from + i, from + i + len(m), true
}

// Character classes of the pre-tokenizer regexes. \s is the Unicode
// White_Space property (as in Oniguruma, which tokenizers uses), \p{L} and
// \p{N} the general categories.
const (
	clsOther  = iota // [^\s\p{L}\p{N}]
	clsLetter        // \p{L}
	clsNumber        // \p{N}
	clsSpace         // \s
)

var asciiClass [128]uint8

func init() {
	for c := 0; c < 128; c++ {
		r := rune(c)
		switch {
		case unicode.IsLetter(r):
			asciiClass[c] = clsLetter
		case unicode.IsNumber(r):
			asciiClass[c] = clsNumber
		case unicode.IsSpace(r):
			asciiClass[c] = clsSpace
		default:
			asciiClass[c] = clsOther
		}
	}
}

func classOf(r rune) uint8 {
	if r < 128 {
		return asciiClass[r]
	}
	switch {
	case unicode.IsLetter(r):
		return clsLetter
	case unicode.IsNumber(r):
		return clsNumber
	case unicode.IsSpace(r):
		return clsSpace
	}
	return clsOther
}

// next decodes the rune at s[i:] (i < len(s)).
func next(s string, i int) (rune, int) {
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRuneInString(s[i:])
}

// runOf returns the end of the run of characters of class cls starting at i.
func runOf(s string, i int, cls uint8) int {
	for i < len(s) {
		r, n := next(s, i)
		if classOf(r) != cls {
			break
		}
		i += n
	}
	return i
}

// contraction returns the end of a match of (?i:'s|'t|'re|'ve|'m|'ll|'d)
// given that s[i-1] is the apostrophe, or 0. Case folding follows Unicode,
// so U+017F (long s) matches 's'.
func contraction(s string, i int, fold bool) int {
	if i >= len(s) {
		return 0
	}
	lower := func(c byte) byte {
		if fold && c >= 'A' && c <= 'Z' {
			return c + 32
		}
		return c
	}
	at := func(k int) byte {
		if k < len(s) {
			return lower(s[k])
		}
		return 0
	}
	switch at(i) {
	case 's', 't', 'm', 'd':
		return i + 1
	case 'r':
		if at(i+1) == 'e' {
			return i + 2
		}
	case 'v':
		if at(i+1) == 'e' {
			return i + 2
		}
	case 'l':
		if at(i+1) == 'l' {
			return i + 2
		}
	}
	if fold && strings.HasPrefix(s[i:], "\u017f") {
		return i + 2
	}
	return 0
}

// llama3Matcher is the Llama 3 pre-tokenizer pattern
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// written out by hand because Go's regexp has no look-ahead. Every
// character starts a match, so the matches tile the text.
type llama3Matcher struct{}

func (llama3Matcher) find(s string, i int) (int, int, bool) {
	if i >= len(s) {
		return 0, 0, false
	}
	return i, llama3End(s, i), true
}

// qwen2Matcher is the pre-tokenizer pattern of Qwen2, Qwen2.5 and Qwen3,
// which is Llama 3's with single digits (\p{N} for \p{N}{1,3}):
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
type qwen2Matcher struct{}

func (qwen2Matcher) find(s string, i int) (int, int, bool) {
	if i >= len(s) {
		return 0, 0, false
	}
	return i, llamaEnd(s, i, 1), true
}

func llama3End(s string, i int) int { return llamaEnd(s, i, 3) }

// llamaEnd returns the end of the match at s[i] of the Llama 3 pattern
// with \p{N}{1,digits} for its numbers.
func llamaEnd(s string, i, digits int) int {
	r, n := next(s, i)
	// (?i:'s|'t|'re|'ve|'m|'ll|'d)
	if r == '\'' {
		if e := contraction(s, i+1, true); e > 0 {
			return e
		}
	}
	c := classOf(r)
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if c == clsLetter {
		return runOf(s, i+n, clsLetter)
	}
	if c != clsNumber && r != '\r' && r != '\n' && i+n < len(s) {
		if r2, n2 := next(s, i+n); classOf(r2) == clsLetter {
			return runOf(s, i+n+n2, clsLetter)
		}
	}
	// \p{N}{1,digits}
	if c == clsNumber {
		j := i + n
		for k := 1; k < digits && j < len(s); k++ {
			r2, n2 := next(s, j)
			if classOf(r2) != clsNumber {
				break
			}
			j += n2
		}
		return j
	}
	// ` ?[^\s\p{L}\p{N}]+[\r\n]*`
	j := i
	if r == ' ' {
		j = i + 1
	}
	if j < len(s) {
		if r2, n2 := next(s, j); classOf(r2) == clsOther {
			j = runOf(s, j+n2, clsOther)
			for j < len(s) && (s[j] == '\r' || s[j] == '\n') {
				j++
			}
			return j
		}
	}
	// Here r is white space.
	return spaceEnd(s, i, true)
}

// spaceEnd matches, at a white-space character s[i], the tail
// `\s*[\r\n]+|\s+(?!\S)|\s+` (with newlines) or `\s+(?!\S)|\s+` (without).
func spaceEnd(s string, i int, newlines bool) int {
	end, lastNL, lastStart, count := i, -1, i, 0
	for end < len(s) {
		r, n := next(s, end)
		if classOf(r) != clsSpace {
			break
		}
		if r == '\r' || r == '\n' {
			lastNL = end + 1
		}
		lastStart = end
		end += n
		count++
	}
	// \s*[\r\n]+ : up to and including the last newline of the run.
	if newlines && lastNL >= 0 {
		return lastNL
	}
	// \s+(?!\S) : the whole run at the end of the text, else all but its
	// last character.
	if end == len(s) {
		return end
	}
	if count >= 2 {
		return lastStart
	}
	// \s+
	return end
}

// gpt2Matcher is the GPT-2 pattern used by the ByteLevel pre-tokenizer:
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
type gpt2Matcher struct{}

func (gpt2Matcher) find(s string, i int) (int, int, bool) {
	if i >= len(s) {
		return 0, 0, false
	}
	return i, gpt2End(s, i), true
}

func gpt2End(s string, i int) int {
	r, n := next(s, i)
	if r == '\'' {
		if e := contraction(s, i+1, false); e > 0 {
			return e
		}
	}
	j := i
	if r == ' ' && i+1 < len(s) {
		j = i + 1
		r, n = next(s, j)
	}
	switch classOf(r) {
	case clsLetter:
		return runOf(s, j+n, clsLetter)
	case clsNumber:
		return runOf(s, j+n, clsNumber)
	case clsOther:
		return runOf(s, j+n, clsOther)
	}
	// White space (and a lone space before white space).
	return spaceEnd(s, i, false)
}

// bloomMatcher is the pattern of BLOOM's Split pre-tokenizer
//
//	` ?[^(\s|[.,!?…。，、।۔،])]+`
//
// In Oniguruma, which tokenizers uses, a '[' inside a character class
// opens a nested class whose members join the outer one, and '(', '|' and
// ')' are literal there: the class is every character except white space
// (\s, the White_Space property), '(', '|', ')' and . , ! ? … 。 ， 、 । ۔ ،
// (bloomWord; '[' and ']' are in it). A match is an optional space and a
// run of such characters; the white space and marks between matches are
// left, with behavior Isolated, as pieces of their own. (JavaScript cannot
// compile the pattern; @lenml/tokenizers rewrites it to
// ` ?[^\s.,!?…。，、।۔،]+`, which leaves '(', '|' and ')' in the words.)
type bloomMatcher struct{}

// bloomMarks are the characters other than white space that BLOOM's class
// leaves out.
const bloomMarks = "!(),.?|\u060c\u06d4\u0964\u2026\u3001\u3002\uff0c"

var bloomASCII [128]bool // ASCII characters of BLOOM's words

func init() {
	for c := 0; c < 128; c++ {
		bloomASCII[c] = !unicode.IsSpace(rune(c)) && !strings.ContainsRune(bloomMarks, rune(c))
	}
}

// bloomWord reports whether r is in the class of BLOOM's pattern.
func bloomWord(r rune) bool {
	if r < 128 {
		return bloomASCII[r]
	}
	switch r {
	case 0x060c, 0x06d4, 0x0964, 0x2026, 0x3001, 0x3002, 0xff0c:
		return false
	}
	return !unicode.IsSpace(r)
}

// bloomRun returns the end of the run of BLOOM word characters from i.
func bloomRun(s string, i int) int {
	for i < len(s) {
		r, n := next(s, i)
		if !bloomWord(r) {
			break
		}
		i += n
	}
	return i
}

// find returns the leftmost match at or after from: a space starts one
// only before a word character (else ' ?' matches nothing and the space,
// white space, is no word character).
func (bloomMatcher) find(s string, from int) (int, int, bool) {
	for i := from; i < len(s); {
		r, n := next(s, i)
		if r == ' ' {
			if i+1 < len(s) {
				if r2, n2 := next(s, i+1); bloomWord(r2) {
					return i, bloomRun(s, i+1+n2), true
				}
			}
		} else if bloomWord(r) {
			return i, bloomRun(s, i+n), true
		}
		i += n
	}
	return 0, 0, false
}

// byteLevelPre is the ByteLevel pre-tokenizer. The mapping of bytes to
// byte-level characters is left implicit: a tokenizer whose pre-tokenizer
// ends with ByteLevel runs its model on raw bytes.
type byteLevelPre struct {
	addPrefixSpace bool
	useRegex       bool
}

func (p *byteLevelPre) split(dst []string, s string, _ bool) []string {
	if p.addPrefixSpace && !strings.HasPrefix(s, " ") {
		s = " " + s
	}
	return p.splitCont(dst, s)
}

func (p *byteLevelPre) splitCont(dst []string, s string) []string {
	if !p.useRegex {
		return append(dst, s)
	}
	for i := 0; i < len(s); {
		e := gpt2End(s, i)
		dst = append(dst, s[i:e])
		i = e
	}
	return dst
}

// Metaspace prepend schemes.
const (
	prependAlways = iota
	prependFirst
	prependNever
)

// metaspacePre is the Metaspace pre-tokenizer of SentencePiece-style
// tokenizers: spaces become the replacement character (normally U+2581), one
// is prepended per prepend_scheme, and with split the text is cut before
// every replacement character.
type metaspacePre struct {
	replacement string
	prepend     int
	splitWords  bool
}

func (p *metaspacePre) split(dst []string, s string, first bool) []string {
	return p.run(dst, s, first, false)
}

func (p *metaspacePre) splitCont(dst []string, s string) []string { return p.run(dst, s, false, true) }

func (p *metaspacePre) run(dst []string, s string, first, cont bool) []string {
	s = strings.ReplaceAll(s, " ", p.replacement)
	if !cont && !strings.HasPrefix(s, p.replacement) {
		if p.prepend == prependAlways || (p.prepend == prependFirst && first) {
			s = p.replacement + s
		}
	}
	if !p.splitWords {
		return append(dst, s)
	}
	sp := splitPre{m: stringMatcher(p.replacement), behavior: behMergedWithNext}
	return sp.split(dst, s, first)
}
