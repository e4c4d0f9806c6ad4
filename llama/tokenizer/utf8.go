package tokenizer

import (
	"strings"
	"unicode/utf8"
)

// validUTF8 returns s with every maximal ill-formed subsequence replaced by
// one U+FFFD, the rule of the Unicode standard (§3.9, "substitution of
// maximal subparts") that Rust's String::from_utf8_lossy, Python and WHATWG
// TextDecoder follow. Valid input is returned as is, without copying.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			b.WriteByte(c)
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r != utf8.RuneError || n > 1 {
			b.WriteString(s[i : i+n])
			i += n
			continue
		}
		i += maximalSubpart(s[i:])
		b.WriteRune(utf8.RuneError)
	}
	return b.String()
}

// maximalSubpart returns the length (>= 1) of the maximal prefix of s that
// starts like a well-formed UTF-8 sequence but is not one.
func maximalSubpart(s string) int {
	c := s[0]
	var need int
	lo, hi := byte(0x80), byte(0xBF)
	switch {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c >= 0xE1 && c <= 0xEC, c == 0xEE, c == 0xEF:
		need = 2
	case c == 0xED:
		need, hi = 2, 0x9F
	case c == 0xF0:
		need, lo = 3, 0x90
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	case c == 0xF4:
		need, hi = 3, 0x8F
	default:
		return 1
	}
	n := 1
	for k := 0; k < need && n < len(s); k++ {
		b := s[n]
		if k == 0 {
			if b < lo || b > hi {
				break
			}
		} else if b < 0x80 || b > 0xBF {
			break
		}
		n++
	}
	return n
}
