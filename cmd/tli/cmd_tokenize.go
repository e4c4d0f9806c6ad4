package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tli-project/tli/llama/tokenizer"
)

func init() {
	register("tokenize", "encode strings to token ids (or decode ids) with a checkpoint's tokenizer", runTokenize)
}

// tokenizeOut is where tokenize prints its JSON (tests replace it).
var tokenizeOut io.Writer = os.Stdout

// allowHint ends the message for invalid UTF-8 in the input.
const allowHint = "; --allow-invalid-utf8 replaces it with U+FFFD"

// runTokenize prints a JSON list of id lists, one per input string, with the
// special tokens the tokenizer adds (BOS for Llama); with --decode the input
// is a JSON list of id lists and it prints a JSON list of strings.
//
// Input of any length is encoded in bounded memory: --file (a JSON list of
// strings) and --text-file (plain text) are read as a stream, each string is
// encoded in chunks cut where the ids do not change
// (tokenizer.EncodeReader), and ids are written as they are produced. A
// regular file is checked whole (UTF-8, JSON syntax) before anything is
// written, so that a bad input gives one error line and no output; a pipe
// is checked as it is read, and its output stops at the first error.
func runTokenize(args []string) error {
	fs := newFlagSet("tokenize", "(--model DIR | --tokenizer FILE) (--text S | --file STRINGS.json | --text-file FILE) [--decode]")
	model := fs.String("model", "", "checkpoint folder holding tokenizer.json, or a Hugging Face repo id org/name[@revision] in the local cache (HF_HUB_CACHE, HF_HOME/hub or ~/.cache/huggingface/hub)")
	tokFile := fs.String("tokenizer", "", "tokenizer.json file (tokenizer_config.json beside it is read too)")
	text := fs.String("text", "", "one string to encode (with --decode: a JSON list of id lists)")
	file := fs.String("file", "", "JSON file: a list of strings (with --decode: a list of id lists)")
	textFile := fs.String("text-file", "", "plain UTF-8 text file, encoded as one string")
	decode := fs.Bool("decode", false, "decode id lists to strings instead of encoding")
	noSpecial := fs.Bool("no-special", false, "encode without the special tokens the post-processor adds")
	skipSpecial := fs.Bool("skip-special", false, "with --decode, leave special tokens out of the text")
	fs.Bool("json", true, "the result is JSON on stdout (always, for tokenize; accepted so that every command takes --json)")
	allowInvalid := fs.Bool("allow-invalid-utf8", false, "encode invalid UTF-8 (and \\ud800-style escapes in --file) as U+FFFD instead of refusing it")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["model"] == set["tokenizer"] {
		return usageErrorf("give exactly one of --model and --tokenizer")
	}
	inputs := 0
	for _, k := range []string{"text", "file", "text-file"} {
		if set[k] {
			inputs++
		}
	}
	if inputs != 1 {
		return usageErrorf("give exactly one of --text, --file and --text-file")
	}
	if *decode {
		switch {
		case set["text-file"]:
			return usageErrorf("--text-file is text to encode; --decode reads id lists from --text or --file")
		case set["no-special"]:
			return usageErrorf("--no-special is for encoding; with --decode, --skip-special leaves special tokens out")
		case set["allow-invalid-utf8"]:
			return usageErrorf("--allow-invalid-utf8 is for the text to encode, not for --decode")
		}
	} else if set["skip-special"] {
		return usageErrorf("--skip-special is for --decode; to encode without special tokens, use --no-special")
	}
	var tok *tokenizer.Tokenizer
	var err error
	if set["model"] {
		dir := *model
		if _, serr := os.Stat(dir); serr != nil {
			// Not a folder here: a repo id in the Hugging Face cache.
			if dir, _, err = resolveModel(dir); err != nil {
				return err
			}
		}
		tok, err = tokenizer.LoadDir(dir)
	} else {
		tok, err = tokenizer.Load(*tokFile)
	}
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(tokenizeOut, 64<<10)
	switch {
	case *decode && set["text"]:
		err = tokDecodeLists(w, tok, "--text", strings.NewReader(*text), *skipSpecial)
	case *decode:
		err = tokWithFile(*file, func(f *os.File) error { return tokDecodeLists(w, tok, *file, bufio.NewReader(f), *skipSpecial) })
	case set["text"]:
		if !*allowInvalid {
			if off, ok := tokInvalidUTF8(*text); ok {
				return usageErrorf("--text: invalid UTF-8 at byte %d (line %d)%s", off, 1+strings.Count((*text)[:off], "\n"), allowHint)
			}
		}
		err = tokEncodeLists(w, tok, !*noSpecial, *allowInvalid, func(each func(io.Reader) error) error {
			return each(strings.NewReader(*text))
		}, "--text")
	case set["text-file"]:
		err = tokEncodeTextFile(w, tok, *textFile, !*noSpecial, *allowInvalid)
	default:
		err = tokEncodeJSONFile(w, tok, *file, !*noSpecial, *allowInvalid)
	}
	if err != nil {
		return err
	}
	return w.Flush()
}

// tokInvalidUTF8 returns the offset of the first invalid UTF-8 in s.
func tokInvalidUTF8(s string) (int, bool) {
	if utf8.ValidString(s) {
		return 0, false
	}
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			return i, true
		}
		i += n
	}
	return 0, false
}

// tokWithFile opens path and calls f with it.
func tokWithFile(path string, f func(*os.File) error) error {
	fh, err := os.Open(path)
	if err != nil {
		return err
	}
	defer fh.Close()
	if st, err := fh.Stat(); err == nil && st.IsDir() {
		return fmt.Errorf("%s is a directory", path)
	}
	return f(fh)
}

// tokIsRegular reports whether path is a regular file, which can be read twice.
func tokIsRegular(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}

// tokEncodeLists writes the JSON list of the id lists of the strings that
// forEach hands to each, one by one, as a stream.
func tokEncodeLists(w *bufio.Writer, tok *tokenizer.Tokenizer, addSpecial, allowInvalid bool,
	forEach func(each func(io.Reader) error) error, source string) error {
	w.WriteByte('[')
	n := 0
	var num []byte
	err := forEach(func(r io.Reader) error {
		if n > 0 {
			w.WriteByte(',')
		}
		n++
		w.WriteByte('[')
		k := 0
		err := tok.EncodeReader(r, addSpecial, tokenizer.StreamOptions{AllowInvalidUTF8: allowInvalid}, func(ids []int) error {
			num = num[:0]
			for _, id := range ids {
				if k > 0 {
					num = append(num, ',')
				}
				k++
				num = strconv.AppendInt(num, int64(id), 10)
			}
			_, err := w.Write(num) // a failed write (a closed pipe) stops the encoding
			return err
		})
		var ie *tokenizer.InvalidUTF8Error
		if errors.As(err, &ie) {
			return usageErrorf("%s: invalid UTF-8 at byte %d (line %d)%s", source, ie.Offset, ie.Line, allowHint)
		}
		if err != nil {
			return err
		}
		return w.WriteByte(']')
	})
	if err != nil {
		return err
	}
	_, err = w.WriteString("]\n")
	return err
}

// tokEncodeTextFile encodes a plain text file as one string. A regular file is
// checked for invalid UTF-8 first, so that nothing is written for a bad one.
func tokEncodeTextFile(w *bufio.Writer, tok *tokenizer.Tokenizer, path string, addSpecial, allowInvalid bool) error {
	if !allowInvalid && tokIsRegular(path) {
		err := tokWithFile(path, func(f *os.File) error { return tokCheckUTF8(f, path) })
		if err != nil {
			return err
		}
	}
	return tokWithFile(path, func(f *os.File) error {
		return tokEncodeLists(w, tok, addSpecial, allowInvalid, func(each func(io.Reader) error) error { return each(f) }, path)
	})
}

// tokCheckUTF8 reads r through and refuses its first invalid UTF-8.
func tokCheckUTF8(r io.Reader, name string) error {
	buf := make([]byte, 64<<10)
	var off, line int64 = 0, 1
	carry := 0 // bytes of a character cut by the previous read
	for {
		n, err := io.ReadFull(r, buf[carry:])
		n += carry
		eof := err == io.EOF || err == io.ErrUnexpectedEOF
		if err != nil && !eof {
			return err
		}
		end := n
		if !eof { // leave a character cut by the end of the buffer for the next read
			for k := 1; k <= utf8.UTFMax-1 && k <= n; k++ {
				if utf8.RuneStart(buf[n-k]) {
					if !utf8.FullRune(buf[n-k : n]) {
						end = n - k
					}
					break
				}
			}
		}
		if i, bad := tokInvalidUTF8(string(buf[:end])); bad {
			return usageErrorf("%s: invalid UTF-8 at byte %d (line %d)%s", name, off+int64(i), line+int64(bytes.Count(buf[:i], []byte{'\n'})), allowHint)
		}
		line += int64(bytes.Count(buf[:end], []byte{'\n'}))
		off += int64(end)
		if eof {
			return nil
		}
		carry = copy(buf, buf[end:n])
	}
}

// tokEncodeJSONFile encodes the strings of a JSON list file. A regular file is
// checked whole first (syntax, UTF-8), so that nothing is written for a
// bad one.
func tokEncodeJSONFile(w *bufio.Writer, tok *tokenizer.Tokenizer, path string, addSpecial, allowInvalid bool) error {
	if tokIsRegular(path) {
		err := tokWithFile(path, func(f *os.File) error {
			return newTokJSONStrings(f, path, allowInvalid).each(func(r io.Reader) error {
				_, err := io.Copy(io.Discard, r)
				return err
			})
		})
		if err != nil {
			return err
		}
	}
	return tokWithFile(path, func(f *os.File) error {
		return tokEncodeLists(w, tok, addSpecial, allowInvalid, newTokJSONStrings(f, path, allowInvalid).each, path)
	})
}

// tokDecodeLists reads a JSON list of id lists one list at a time and writes
// the JSON list of their texts.
func tokDecodeLists(w *bufio.Writer, tok *tokenizer.Tokenizer, source string, r io.Reader, skipSpecial bool) error {
	bad := func(err error) error { return usageErrorf("%s: want a JSON list of id lists: %v", source, err) }
	dec := json.NewDecoder(r)
	if t, err := dec.Token(); err != nil {
		return bad(err)
	} else if t != json.Delim('[') {
		return bad(fmt.Errorf("found %v", t))
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	w.WriteByte('[')
	for i := 0; dec.More(); i++ {
		var ids []int
		if err := dec.Decode(&ids); err != nil {
			return bad(err)
		}
		for _, id := range ids {
			if id < 0 || id >= tok.VocabSize() {
				if tok.VocabSize() == 0 {
					return fmt.Errorf("%s: list %d: id %d: the vocabulary is empty", source, i, id)
				}
				return fmt.Errorf("%s: list %d: id %d is outside the vocabulary (0..%d)", source, i, id, tok.VocabSize()-1)
			}
		}
		buf.Reset()
		if err := enc.Encode(tok.Decode(ids, skipSpecial)); err != nil {
			return err
		}
		if i > 0 {
			w.WriteByte(',')
		}
		w.Write(bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}))
	}
	if _, err := dec.Token(); err != nil {
		return bad(err)
	}
	end := dec.InputOffset()
	if rest, _ := io.ReadAll(io.LimitReader(dec.Buffered(), 1<<10)); len(bytes.TrimSpace(rest)) > 0 {
		end += int64(len(rest) - len(bytes.TrimLeft(rest, " \t\r\n")))
		return bad(fmt.Errorf("data after the JSON list at byte %d", end))
	}
	if _, err := dec.Token(); err != io.EOF {
		return bad(fmt.Errorf("data after the JSON list at byte %d", end))
	}
	_, err := w.WriteString("]\n")
	return err
}

// tokJSONStrings reads a JSON list of strings as a stream: each string is
// handed over as a reader of its text, decoded as it is read, so that no
// string is ever held whole. It refuses invalid UTF-8 and \u escapes of
// unpaired surrogates (encoding/json would turn both into U+FFFD) unless
// allowInvalid, with which invalid bytes are passed on (the tokenizer
// replaces them as Encode does) and lone surrogates become U+FFFD.
type tokJSONStrings struct {
	r     *bufio.Reader
	name  string
	allow bool
	off   int64 // bytes consumed
	line  int64
	err   error // the first error, which ends everything
}

func newTokJSONStrings(r io.Reader, name string, allowInvalid bool) *tokJSONStrings {
	return &tokJSONStrings{r: bufio.NewReaderSize(r, 64<<10), name: name, allow: allowInvalid, line: 1}
}

// syntaxf records a syntax error at the current offset.
func (l *tokJSONStrings) syntaxf(format string, args ...any) error {
	if l.err == nil {
		l.err = usageErrorf("%s: want a JSON list of strings: %s at byte %d (line %d)", l.name, fmt.Sprintf(format, args...), l.off, l.line)
	}
	return l.err
}

// fail records err, or a read error.
func (l *tokJSONStrings) fail(err error) error {
	if l.err == nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return l.syntaxf("unexpected end of file")
		}
		l.err = fmt.Errorf("%s: %v", l.name, err)
	}
	return l.err
}

func (l *tokJSONStrings) discard(n int) {
	l.r.Discard(n)
	l.off += int64(n)
}

// next skips white space and returns the next byte without consuming it.
func (l *tokJSONStrings) next() (byte, error) {
	for {
		b, err := l.r.Peek(1)
		if err != nil {
			return 0, err
		}
		switch b[0] {
		case '\n':
			l.line++
			fallthrough
		case ' ', '\t', '\r':
			l.discard(1)
			continue
		}
		return b[0], nil
	}
}

func tokDescribe(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return strconv.QuoteRune(rune(c))
	}
	return fmt.Sprintf("byte 0x%02x", c)
}

// each calls f with a reader of each string of the list, in order.
func (l *tokJSONStrings) each(f func(io.Reader) error) error {
	c, err := l.next()
	if err != nil {
		return l.fail(err)
	}
	if c != '[' {
		return l.syntaxf("found %s", tokDescribe(c))
	}
	l.discard(1)
	for first := true; ; first = false {
		c, err := l.next()
		if err != nil {
			return l.fail(err)
		}
		if c == ']' && first {
			l.discard(1)
			break
		}
		if c != '"' {
			return l.syntaxf("found %s where a string should be", tokDescribe(c))
		}
		l.discard(1)
		s := &tokJSONString{l: l}
		if err := f(s); err != nil {
			if l.err != nil {
				return l.err
			}
			return err
		}
		if _, err := io.Copy(io.Discard, s); err != nil {
			return err
		}
		c, err = l.next()
		if err != nil {
			return l.fail(err)
		}
		if c != ',' && c != ']' {
			return l.syntaxf("found %s after a string, want ',' or ']'", tokDescribe(c))
		}
		l.discard(1)
		if c == ']' {
			break
		}
	}
	if c, err := l.next(); err == nil {
		return l.syntaxf("found %s after the list", tokDescribe(c))
	} else if err != io.EOF {
		return l.fail(err)
	}
	return nil
}

// tokJSONString reads the text of one JSON string, whose opening quote has
// been consumed, up to its closing quote.
type tokJSONString struct {
	l    *tokJSONStrings
	pend []byte // decoded bytes not yet returned
	buf  [utf8.UTFMax]byte
	done bool
}

func (s *tokJSONString) Read(p []byte) (int, error) {
	l := s.l
	n := 0
	for n < len(p) {
		if len(s.pend) > 0 {
			k := copy(p[n:], s.pend)
			s.pend = s.pend[k:]
			n += k
			continue
		}
		if s.done || l.err != nil {
			break
		}
		if _, err := l.r.Peek(1); err != nil {
			l.fail(err)
			break
		}
		// Plain bytes are copied straight from the buffer.
		b, _ := l.r.Peek(l.r.Buffered())
		k := 0
		for k < len(b) && k < len(p)-n {
			if c := b[k]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' {
				break
			}
			k++
		}
		if k > 0 {
			copy(p[n:], b[:k])
			n += k
			l.discard(k)
			continue
		}
		switch c := b[0]; {
		case c == '"':
			l.discard(1)
			s.done = true
		case c == '\\':
			s.escape()
		case c < 0x20:
			l.syntaxf("control character %s in a string (write it as an escape)", tokDescribe(c))
		default:
			b, err := l.r.Peek(utf8.UTFMax)
			if err != nil && err != io.EOF {
				l.fail(err)
				break
			}
			r, size := utf8.DecodeRune(b)
			if r == utf8.RuneError && size == 1 {
				if !l.allow {
					l.err = usageErrorf("%s: invalid UTF-8 at byte %d (line %d)%s", l.name, l.off, l.line, allowHint)
					break
				}
			}
			s.pend = append(s.buf[:0], b[:size]...)
			l.discard(size)
		}
	}
	if n > 0 {
		return n, nil
	}
	if s.done {
		return 0, io.EOF
	}
	return 0, l.err
}

// escape decodes the escape at the reader's position into s.pend.
func (s *tokJSONString) escape() {
	l := s.l
	b, _ := l.r.Peek(12) // the longest: a surrogate pair
	if len(b) < 2 {
		l.fail(io.ErrUnexpectedEOF)
		return
	}
	var r rune
	size := 2
	switch b[1] {
	case '"', '\\', '/':
		r = rune(b[1])
	case 'b':
		r = '\b'
	case 'f':
		r = '\f'
	case 'n':
		r = '\n'
	case 'r':
		r = '\r'
	case 't':
		r = '\t'
	case 'u':
		u, ok := tokHex4(b, 2)
		if !ok {
			l.syntaxf("invalid \\u escape")
			return
		}
		r, size = u, 6
		if u >= 0xD800 && u < 0xE000 {
			lo, ok := rune(0), false
			if u < 0xDC00 && len(b) >= 12 && b[6] == '\\' && b[7] == 'u' {
				lo, ok = tokHex4(b, 8)
				ok = ok && lo >= 0xDC00 && lo < 0xE000
			}
			switch {
			case ok:
				r, size = 0x10000+(u-0xD800)<<10+(lo-0xDC00), 12
			case !l.allow:
				l.err = usageErrorf("%s: \\u%04x at byte %d (line %d) is half of a UTF-16 surrogate pair, not a character%s", l.name, u, l.off, l.line, allowHint)
				return
			default:
				r = utf8.RuneError
			}
		}
	default:
		l.syntaxf("invalid escape %s", tokDescribe(b[1]))
		return
	}
	s.pend = utf8.AppendRune(s.buf[:0], r)
	l.discard(size)
}

func tokHex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	// Four hex digits: ParseUint with base 16 takes no sign or prefix.
	v, err := strconv.ParseUint(string(b[i:i+4]), 16, 32)
	return rune(v), err == nil
}
