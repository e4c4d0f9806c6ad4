package tokenizer

import (
	"regexp"
	"strings"
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

type unicodeNorm struct{ form norm.Form }

func (u unicodeNorm) normalize(s string) string { return u.form.String(s) }

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
