package tokenizer

import (
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
// longest first (tokenizers uses Aho-Corasick with LeftmostLongest).
type addedSet struct {
	first  [256]bool // bytes that start some token
	byText map[string]*addedToken
	maxLen int
}

func newAddedSet(toks []*addedToken, content func(*addedToken) string) *addedSet {
	s := &addedSet{byText: map[string]*addedToken{}}
	for _, t := range toks {
		c := content(t)
		if c == "" {
			continue
		}
		if _, dup := s.byText[c]; !dup {
			s.byText[c] = t
		}
		s.first[c[0]] = true
		if len(c) > s.maxLen {
			s.maxLen = len(c)
		}
	}
	if len(s.byText) == 0 {
		return nil
	}
	return s
}

// longestAt returns the longest token that starts at s[i:].
func (a *addedSet) longestAt(s string, i int) (*addedToken, int) {
	max := len(s) - i
	if max > a.maxLen {
		max = a.maxLen
	}
	for n := max; n > 0; n-- {
		if t, ok := a.byText[s[i:i+n]]; ok {
			return t, n
		}
	}
	return nil, 0
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
