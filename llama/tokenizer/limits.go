package tokenizer

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"unicode/utf8"

	"github.com/tli-project/tli/internal/limitread"
)

// Limits on what a tokenizer.json may ask for. They are far above every
// released tokenizer (Llama 3's tokenizer.json is 9 MB with 128,256 ids and
// 280,147 merges; Gemma 3's is 33 MB with 262,145 ids and 514,906 merges)
// and keep a hostile or broken file from making the loader allocate or
// work without bound: a file past one of them is refused with an error
// that names the limit.
const (
	// MaxFileBytes bounds tokenizer.json.
	MaxFileBytes = 256 << 20
	// MaxConfigBytes bounds tokenizer_config.json. Real ones, chat
	// templates included, have a few kilobytes to a few hundred, but its
	// added_tokens_decoder lists every added token (up to MaxAddedTokens,
	// about 200 bytes each: a synthesised Llama 3 shape writes 25 MB), so
	// it gets tokenizer.json's bound.
	MaxConfigBytes = 256 << 20
	// MaxVocab bounds token ids: every id, of the vocabulary, of an added
	// token or of a post-processor's special token, is below it (2^24, as
	// llama.LimitVocab bounds a model's vocab_size).
	MaxVocab = 1 << 24
	// MaxTokenBytes bounds a token of the vocabulary as spelt in the file
	// (Llama 3's longest has 256 bytes), and so what one id decodes to.
	MaxTokenBytes = 4096
	// MaxMerges bounds the BPE merges.
	MaxMerges = 1 << 24
	// MaxAddedTokens bounds the added_tokens list.
	MaxAddedTokens = 1 << 20
	// MaxAddedTokenBytes bounds the content of one added token (real ones
	// are markers such as "<|begin_of_text|>", under 100 bytes); matching
	// costs up to this many steps per byte of text.
	MaxAddedTokenBytes = 1024
	// MaxPatternBytes bounds the strings of normalizers, pre-tokenizers and
	// decoders (patterns, replacements, prefixes), which are applied to
	// every piece of text.
	MaxPatternBytes = 1024
	// MaxSequenceDepth bounds how deep Sequence components (normalizers,
	// pre-tokenizers, post-processors, decoders) may nest.
	MaxSequenceDepth = 16
	// MaxComponents bounds the number of components of each of those four
	// kinds, nested ones included.
	MaxComponents = 256
	// MaxTemplateIDs bounds the special-token ids a post-processor adds
	// around a sequence (Llama adds one, BOS).
	MaxTemplateIDs = 64
)

// readJSONFile reads the JSON object in the file at path, refusing more than
// limit bytes (limitName is the constant, for the message). It reads through
// a limit rather than trusting the size the file system reports, so that
// devices and pipes (which report 0) are stopped too, and it refuses at once
// a file that does not start like a JSON object (/dev/zero, a binary file).
func readJSONFile(path string, limit int64, limitName string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	defer f.Close()
	tooLarge := fmt.Errorf("tokenizer: %s: larger than %s (tokenizer.%s)", path, limitread.Size(limit), limitName)
	var buf bytes.Buffer
	if st, err := f.Stat(); err == nil {
		if st.IsDir() {
			return nil, fmt.Errorf("tokenizer: %s is a directory, not a JSON file", path)
		}
		if st.Mode().IsRegular() {
			if st.Size() > limit {
				return nil, tooLarge
			}
			buf.Grow(int(st.Size()) + 1)
		}
	}
	r := io.LimitReader(f, limit+1)
	chunk := make([]byte, 64<<10)
	checked := false
	for {
		n, err := r.Read(chunk)
		buf.Write(chunk[:n])
		if !checked {
			if err := startsLikeObject(path, buf.Bytes(), false); err != nil {
				return nil, err
			}
			checked = firstNonSpace(buf.Bytes()) >= 0
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("tokenizer: %s: %v", path, err)
		}
	}
	if int64(buf.Len()) > limit {
		return nil, tooLarge
	}
	return buf.Bytes(), nil
}

func firstNonSpace(b []byte) int {
	for i, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r':
		default:
			return i
		}
	}
	return -1
}

// startsLikeObject refuses data whose first non-blank byte is not '{'; with
// complete, data is the whole file and an empty one is refused too.
func startsLikeObject(name string, data []byte, complete bool) error {
	i := firstNonSpace(data)
	if i < 0 {
		if complete {
			return fmt.Errorf("tokenizer: %s: empty, want a JSON object", name)
		}
		return nil
	}
	if data[i] == '{' {
		return nil
	}
	what := fmt.Sprintf("0x%02x", data[i])
	if data[i] >= 0x20 && data[i] < 0x7f {
		what = strconv.QuoteRune(rune(data[i]))
	}
	return fmt.Errorf("tokenizer: %s: not a JSON object (byte %d is %s, want '{')", name, i, what)
}

// checkJSONText refuses, in the text of a JSON file, invalid UTF-8 and \u
// escapes of unpaired UTF-16 surrogates, both of which encoding/json would
// silently turn into U+FFFD (Hugging Face tokenizers refuses them).
func checkJSONText(name string, data []byte) error {
	if !utf8.Valid(data) {
		for i := 0; i < len(data); {
			r, n := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && n == 1 {
				return fmt.Errorf("tokenizer: %s: invalid UTF-8 at byte %d (line %d)", name, i, lineOf(data, i))
			}
			i += n
		}
	}
	// A backslash only occurs in strings in valid JSON, and there it starts
	// an escape; anything else is a syntax error that encoding/json reports.
	for i := 0; ; {
		k := bytes.IndexByte(data[i:], '\\')
		if k < 0 {
			return nil
		}
		i += k
		if i+1 >= len(data) {
			return nil
		}
		if data[i+1] != 'u' {
			i += 2
			continue
		}
		u, ok := hex4(data, i+2)
		if !ok {
			i += 2
			continue
		}
		switch {
		case u >= 0xD800 && u < 0xDC00:
			if i+8 < len(data) && data[i+6] == '\\' && data[i+7] == 'u' {
				if lo, ok := hex4(data, i+8); ok && lo >= 0xDC00 && lo < 0xE000 {
					i += 12
					continue
				}
			}
			fallthrough
		case u >= 0xDC00 && u < 0xE000:
			return fmt.Errorf(`tokenizer: %s: \u%04x at byte %d (line %d) is half of a UTF-16 surrogate pair, not a character`, name, u, i, lineOf(data, i))
		}
		i += 6
	}
}

func hex4(data []byte, i int) (rune, bool) {
	if i+4 > len(data) {
		return 0, false
	}
	// Four hex digits: ParseUint with base 16 takes no sign or prefix.
	v, err := strconv.ParseUint(string(data[i:i+4]), 16, 32)
	return rune(v), err == nil
}

// lineOf returns the 1-based line of byte offset i.
func lineOf(data []byte, i int) int { return 1 + bytes.Count(data[:i], []byte{'\n'}) }

// jsonID is a token id as written in tokenizer.json. Decoding never fails,
// so that the loader, not encoding/json, says what is wrong and with which
// token: set records that the value was there, bad keeps the text of one
// that is not an integer.
type jsonID struct {
	n   int64
	set bool
	bad string
}

func (v *jsonID) UnmarshalJSON(b []byte) error {
	v.set = true
	if n, ok := parseJSONInt(b); ok {
		v.n = n
		return nil
	}
	s := string(b)
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	v.bad = s
	return nil
}

// parseJSONInt parses a JSON number that is an integer written without
// fraction or exponent, as Hugging Face's u32 ids are; values beyond ±2^62
// saturate, which every caller refuses as out of range.
func parseJSONInt(b []byte) (int64, bool) {
	neg := false
	if len(b) > 0 && b[0] == '-' {
		neg, b = true, b[1:]
	}
	if len(b) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < 1<<58 {
			n = n*10 + int64(c-'0')
		} else {
			n = 1 << 62
		}
	}
	if neg {
		n = -n
	}
	return n, true
}

// check returns the id, or an error naming what holds it when it is not an
// integer in [0, MaxVocab).
func (v jsonID) check(l *loader, who string) (int32, error) {
	text := v.bad
	switch {
	case !v.set:
		return 0, l.errorf("%s has no id", who)
	case v.bad == "" && v.n >= 0 && v.n < MaxVocab:
		return int32(v.n), nil
	case v.bad == "":
		text = strconv.FormatInt(v.n, 10)
	}
	return 0, l.errorf("%s has id %s; want an integer from 0 to %d (below tokenizer.MaxVocab)", who, text, MaxVocab-1)
}
