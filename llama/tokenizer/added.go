package tokenizer

import (
	"sort"
	"strings"
	"unicode"
)

// addedToken is an entry of added_tokens in tokenizer.json: a string that is
// matched in the text before the model sees it and always becomes one id.
type addedToken struct {
	id         int32
	content    string
	singleWord bool
	lstrip     bool
	rstrip     bool
	normalized bool
	special    bool
}

// addedSet finds added tokens in text, leftmost first and, at one position,
// longest first (tokenizers uses Aho-Corasick with LeftmostLongest). The
// tokens are kept sorted by content, which makes a trie without building
// one: at a position the candidates are narrowed byte by byte with binary
// searches, so a match costs O(m log n) for m bytes of text that start
// some token, never more than MaxAddedTokenBytes (times the normaliser's
// growth) per position.
type addedSet struct {
	first [256]bool // bytes that start some token
	keys  []string  // sorted, distinct contents
	toks  []*addedToken
}

func newAddedSet(toks []*addedToken, content func(*addedToken) string) *addedSet {
	s := &addedSet{}
	byText := map[string]*addedToken{}
	for _, t := range toks {
		c := content(t)
		if c == "" {
			continue
		}
		if _, dup := byText[c]; dup {
			continue // the first one wins
		}
		byText[c] = t
		s.keys = append(s.keys, c)
		s.first[c[0]] = true
	}
	if len(s.keys) == 0 {
		return nil
	}
	sort.Strings(s.keys)
	s.toks = make([]*addedToken, len(s.keys))
	for i, k := range s.keys {
		s.toks[i] = byText[k]
	}
	return s
}

// longestAt returns the longest token that starts at s[i:].
func (a *addedSet) longestAt(s string, i int) (*addedToken, int) {
	keys := a.keys
	lo, hi := 0, len(keys) // keys[lo:hi] all start with s[i:i+d]
	best, bestN := -1, 0
	for d := 0; lo < hi; d++ {
		if len(keys[lo]) == d { // the shortest sorts first
			best, bestN = lo, d
			lo++
		}
		if lo == hi || i+d >= len(s) {
			break
		}
		if hi-lo == 1 { // one candidate left: compare the rest at once
			if k := keys[lo]; strings.HasPrefix(s[i:], k) {
				best, bestN = lo, len(k)
			}
			break
		}
		c := s[i+d]
		l := lo + sort.Search(hi-lo, func(k int) bool { return keys[lo+k][d] >= c })
		h := l + sort.Search(hi-l, func(k int) bool { return keys[l+k][d] > c })
		lo, hi = l, h
	}
	if best < 0 {
		return nil, 0
	}
	return a.toks[best], bestN
}

// segment is a part of the text: either plain text (tok == nil) or one
// added token.
type segment struct {
	start, end int
	tok        *addedToken
}

// split cuts s into text and added-token segments. lstrip and rstrip make a
// token swallow the white space beside it; a single_word token only counts
// when no word character touches it.
func (a *addedSet) split(s string) []segment {
	var segs []segment
	last := 0 // end of the previous token
	for i := 0; i < len(s); {
		if !a.first[s[i]] {
			i++
			continue
		}
		t, n := a.longestAt(s, i)
		if t == nil {
			i++
			continue
		}
		start, stop := i, i+n
		if t.singleWord {
			before := start == 0 || !endsWithWordChar(s[:start])
			after := stop == len(s) || !startsWithWordChar(s[stop:])
			if !before || !after {
				i = stop // like find_iter, go on after the rejected match
				continue
			}
		}
		if t.lstrip {
			ns := len(strings.TrimRightFunc(s[:start], isWhiteSpace))
			if ns < last {
				ns = last
			}
			start = ns
		}
		if t.rstrip {
			stop = len(s) - len(strings.TrimLeftFunc(s[stop:], isWhiteSpace))
		}
		if start > last {
			segs = append(segs, segment{last, start, nil})
		}
		segs = append(segs, segment{start, stop, t})
		last = stop
		i = stop
	}
	if last < len(s) {
		segs = append(segs, segment{last, len(s), nil})
	}
	return segs
}

func isWhiteSpace(r rune) bool { return unicode.IsSpace(r) }

// isWordChar is \w of Rust's regex crate: alphabetic, marks, decimal digits,
// connector punctuation and the joiners.
func isWordChar(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsMark(r) || unicode.Is(unicode.Nd, r) ||
		unicode.Is(unicode.Pc, r) || r == 0x200C || r == 0x200D || unicode.Is(unicode.Other_Alphabetic, r)
}

func endsWithWordChar(s string) bool {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] < 0x80 || s[i] >= 0xC0 {
			r, _ := next(s, i)
			return isWordChar(r)
		}
	}
	return false
}

func startsWithWordChar(s string) bool {
	if s == "" {
		return false
	}
	r, _ := next(s, 0)
	return isWordChar(r)
}
