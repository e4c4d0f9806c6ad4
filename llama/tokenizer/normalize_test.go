package tokenizer

import (
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

var normForms = []struct {
	name string
	f    norm.Form
}{{"NFC", norm.NFC}, {"NFD", norm.NFD}, {"NFKC", norm.NFKC}, {"NFKD", norm.NFKD}}

// TestNormalizeKeepsSpace checks what EncodeReader's cuts before the
// byte-level pre-tokenizers rely on (see keepsASCII): in every Unicode
// form, no character that is not white space ends with white space once
// normalised, and ASCII is left as it is.
func TestNormalizeKeepsSpace(t *testing.T) {
	var ascii strings.Builder
	for c := 0; c < utf8.RuneSelf; c++ {
		ascii.WriteByte(byte(c))
	}
	for _, form := range normForms {
		if got := normalizeUnicode(ascii.String(), form.f); got != ascii.String() {
			t.Errorf("%s changes ASCII: %q", form.name, got)
		}
		for r := rune(0); r <= utf8.MaxRune; r++ {
			if !utf8.ValidRune(r) || classOf(r) == clsSpace {
				continue
			}
			s := normalizeUnicode(string(r), form.f)
			if last, _ := utf8.DecodeLastRuneInString(s); s == "" || classOf(last) == clsSpace {
				t.Errorf("%s(%U) = %+q ends with white space", form.name, r, s)
			}
		}
	}
}

// TestNormalizeExamples pins cases where x/text/unicode/norm's String
// differs from UAX #15 (see unicodeNorm) and a few ordinary ones.
func TestNormalizeExamples(t *testing.T) {
	marks := strings.Repeat("\u0301", 40)
	for _, c := range []struct{ form, in, want string }{
		{"NFC", "O\u0b57\u031b", "O\u0b57\u031b"},              // not composed across U+0B57
		{"NFC", "a" + marks + "b", "\u00e1" + marks[2:] + "b"}, // no U+034F
		{"NFD", "\u00e1" + marks, "a" + marks + "\u0301"},
		{"NFC", "e" + strings.Repeat("\u0316\u0301", 20), "\u00e9" + strings.Repeat("\u0316", 20) + strings.Repeat("\u0301", 19)},
		{"NFC", "\u1100\u1161\u11a8", "\uac01"},
		{"NFD", "\uac01", "\u1100\u1161\u11a8"},
		{"NFC", "\u1100\u0301\u1161", "\u1100\u0301\u1161"}, // blocked by the mark
		{"NFC", "\u0b47\u0b3e", "\u0b4b"},
		{"NFC", "\u212b", "\u00c5"},
		{"NFKC", "\ufb01 \u2460 \u00bd", "fi 1 1\u20442"},
		{"NFKD", "\u1e9b\u0323", "s\u0323\u0307"},
		{"NFC", "caf\u00e9 cafe\u0301", "caf\u00e9 caf\u00e9"},
	} {
		var f norm.Form
		for _, nf := range normForms {
			if nf.name == c.form {
				f = nf.f
			}
		}
		if got := (unicodeNorm{f}).normalize(c.in); got != c.want {
			t.Errorf("%s(%+q) = %+q, want %+q", c.form, c.in, got, c.want)
		}
	}
}
