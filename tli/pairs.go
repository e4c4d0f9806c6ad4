package tli

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tli-project/tli/internal/limitread"
)

// Pair is one translation pair: Source is the Swahili word or phrase, Target
// its English translation, Category its word class when the list gives one
// (FreeDict's part of speech: n, v, adj, ...), for experiments that train
// on one class and test on another.
type Pair struct {
	Source, Target string
	Category       string
}

// PairIssue is one entry of a pair list that ReadPairs or CheckTokenized
// flags: where it was (Index counts entries from 0; Line is the 1-based line
// in the file, or 0 when not known), the pair as read and what is wrong.
type PairIssue struct {
	Index   int
	Line    int
	Pair    Pair
	Problem string
}

func (is PairIssue) String() string {
	loc := fmt.Sprintf("entry %d", is.Index)
	if is.Line > 0 {
		loc += fmt.Sprintf(" (line %d)", is.Line)
	}
	return fmt.Sprintf("%s %q -> %q: %s", loc, is.Pair.Source, is.Pair.Target, is.Problem)
}

// PairReport says what ReadPairs found besides the pairs it returned.
//
// Duplicates are entries whose pair (compared after trimming and case
// folding) already appeared earlier: the first occurrence is kept in the
// returned list and the later ones are listed here. Empty are entries with an
// empty Swahili or English side; they are not returned. SharedSource and
// SharedTarget are kept entries whose Swahili (or English) word already
// occurs in an earlier, different pair: they are returned, but make
// retrieval metrics ambiguous, so a caller may want to drop them.
type PairReport struct {
	Path         string
	Entries      int // entries in the file, including the flagged ones
	Kept         int // pairs returned
	Duplicates   []PairIssue
	Empty        []PairIssue
	SharedSource []PairIssue
	SharedTarget []PairIssue
}

// Clean reports whether the file had no duplicates, empty entries or shared
// words.
func (r *PairReport) Clean() bool {
	return len(r.Duplicates)+len(r.Empty)+len(r.SharedSource)+len(r.SharedTarget) == 0
}

// String summarises the report in one line per problem kind, listing at most
// five entries of each.
func (r *PairReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d entries, %d pairs kept", r.Path, r.Entries, r.Kept)
	list := func(name string, is []PairIssue) {
		if len(is) == 0 {
			return
		}
		fmt.Fprintf(&b, "\n  %d %s", len(is), name)
		for i, x := range is {
			if i == 5 {
				fmt.Fprintf(&b, "\n    ...")
				break
			}
			fmt.Fprintf(&b, "\n    %s", x)
		}
	}
	list("duplicate entries (later occurrences dropped)", r.Duplicates)
	list("empty entries (dropped)", r.Empty)
	list("pairs reusing an earlier Swahili word (kept)", r.SharedSource)
	list("pairs reusing an earlier English word (kept)", r.SharedTarget)
	return b.String()
}

// foldKey is the form in which words are compared: trimmed and lower case.
func foldKey(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// Limits on pair files. A pair list is small (the published training list
// is 623 pairs, about 30 KB), so a file far beyond these is a mistake (a
// wrong path, /dev/zero, a corpus instead of a word list) and is refused with
// an error naming the limit instead of being read into memory.
const (
	// MaxPairsFileBytes is the largest pair file ReadPairs and ParsePairs
	// accept: 64 MiB. ReadPairs stops reading there, so a device or pipe
	// that never ends (/dev/zero) is refused too.
	MaxPairsFileBytes = 64 << 20
	// MaxPairs is the most entries a pair file may hold: 1,000,000.
	MaxPairs = 1_000_000
	// MaxWordBytes is the longest word or phrase accepted on either side of
	// a pair, in bytes of UTF-8 after trimming: 1 KiB, room for a long
	// multi-word phrase (the longest default entry is 19 bytes) while keeping
	// a stray paragraph or a whole file glued into one field out of
	// tokenisation.
	MaxWordBytes = 1024
)

// ReadPairs reads a pair list from path. Accepted formats, chosen by content:
//
//   - the published TLI format, a JSON list of {"swahili": ..., "english": ...};
//   - a JSON list of {"source": ..., "target": ...};
//   - TSV or CSV (tab if the header line has a tab or the name ends in .tsv,
//     else comma) with a header naming the columns swahili and english, or
//     source and target (any case; other columns are ignored).
//
// The file must be UTF-8 (a leading byte order mark is skipped). CSV follows
// RFC 4180: a field holding a comma or a quote is quoted as a whole, with
// inner quotes doubled. TSV has no quoting: quotes are ordinary characters,
// except that a field that is entirely one well-formed quoted field
// ("a ""b""", as spreadsheets and EncodePairs write a word with a quote) is
// unquoted.
//
// Words are trimmed of surrounding space. Duplicates and empty entries are not
// errors: they are left out of the result and listed in the report (see
// PairReport), so the caller decides whether to go on. Malformed files are
// errors, one line naming the file, the line (and, for JSON, the entry) and
// what was expected: bad JSON, CSV or UTF-8, data after the JSON list, a
// missing column, a word longer than MaxWordBytes or holding a control
// character (NUL, tab, newline, ...) or U+FFFD (the mark of an earlier
// decoding gone wrong), a file larger than MaxPairsFileBytes or holding more
// than MaxPairs entries.
func ReadPairs(path string) ([]Pair, *PairReport, error) {
	data, err := limitread.ReadFile(path, MaxPairsFileBytes)
	if tl := (*limitread.TooLargeError)(nil); errors.As(err, &tl) {
		return nil, nil, fmt.Errorf("tli: pairs file %s: larger than %s (tli.MaxPairsFileBytes); a pair list is expected to be small", path, limitread.Size(MaxPairsFileBytes))
	}
	if err != nil {
		return nil, nil, fmt.Errorf("tli: read pairs: %w", err)
	}
	return ParsePairs(path, data)
}

// ParsePairs is ReadPairs on bytes already in memory; name is used in errors.
func ParsePairs(name string, data []byte) ([]Pair, *PairReport, error) {
	raw, err := parsePairs(name, data)
	if err != nil {
		return nil, nil, err
	}
	pairs, rep := screenPairs(raw)
	rep.Path = name
	return pairs, rep, nil
}

// rawPair is a pair as read, with where it came from.
type rawPair struct {
	Pair
	line int
}

var utf8BOM = []byte("\xef\xbb\xbf")

func parsePairs(name string, data []byte) ([]rawPair, error) {
	if len(data) > MaxPairsFileBytes {
		return nil, fmt.Errorf("tli: pairs file %s: larger than %s (tli.MaxPairsFileBytes); a pair list is expected to be small", name, limitread.Size(MaxPairsFileBytes))
	}
	bom := 0
	if bytes.HasPrefix(data, utf8BOM) {
		data, bom = data[len(utf8BOM):], len(utf8BOM)
	}
	if off := invalidUTF8(data); off >= 0 {
		hint := "pair files must be UTF-8 text"
		if bom == 0 && (bytes.HasPrefix(data, []byte{0xff, 0xfe}) || bytes.HasPrefix(data, []byte{0xfe, 0xff})) {
			hint = "this looks like UTF-16; save the file as UTF-8"
		}
		return nil, fmt.Errorf("tli: pairs file %s: line %d: invalid UTF-8 at byte offset %d (byte 0x%02x); %s",
			name, bytes.Count(data[:off], newline)+1, off+bom, data[off], hint)
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("tli: pairs file %s is empty", name)
	}
	if trimmed[0] == '[' || trimmed[0] == '{' {
		return parseJSONPairs(name, data)
	}
	header, _, _ := bytes.Cut(data, newline)
	if bytes.IndexByte(header, '\t') >= 0 || strings.EqualFold(filepath.Ext(name), ".tsv") {
		return parseTSVPairs(name, data)
	}
	return parseCSVPairs(name, data)
}

var newline = []byte("\n")

// invalidUTF8 returns the offset of the first byte of data that is not
// valid UTF-8, or -1.
func invalidUTF8(data []byte) int {
	if utf8.Valid(data) {
		return -1
	}
	for i := 0; i < len(data); {
		r, n := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return -1
}

// checkWord says what is wrong with a trimmed word on the given side of a
// pair (Swahili or English), or returns nil: longer than MaxWordBytes,
// invalid UTF-8, a control character, or U+FFFD.
func checkWord(side, w string) error {
	if len(w) > MaxWordBytes {
		return fmt.Errorf("%s side %s is %d bytes long, over the limit of %d bytes (tli.MaxWordBytes) for a word or phrase", side, quoteShort(w), len(w), MaxWordBytes)
	}
	for i, r := range w {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(w[i:], "\uFFFD"):
			return fmt.Errorf("%s side %s: invalid UTF-8 at byte %d of the word", side, quoteShort(w), i)
		case r == utf8.RuneError:
			return fmt.Errorf("%s side %s holds U+FFFD, the replacement character, at byte %d of the word: the text was damaged by a wrong decoding (or, in JSON, holds a lone surrogate such as \\ud800)", side, quoteShort(w), i)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			return fmt.Errorf("%s side %s holds the control character %U at byte %d of the word; a word may not hold control characters (NUL, tab, newline, ...)", side, quoteShort(w), r, i)
		}
	}
	return nil
}

// quoteShort quotes w for an error message, cut to its first 40 bytes.
func quoteShort(w string) string {
	if len(w) <= 40 {
		return strconv.Quote(w)
	}
	cut := 40
	for cut > 0 && !utf8.RuneStart(w[cut]) {
		cut--
	}
	return strconv.Quote(w[:cut]) + "..."
}

// newRawPair trims and checks a pair as read from the given line.
func newRawPair(src, tgt, cat string, line int) (rawPair, error) {
	p := rawPair{Pair{strings.TrimSpace(src), strings.TrimSpace(tgt), strings.TrimSpace(cat)}, line}
	if err := checkWord("Swahili", p.Source); err != nil {
		return p, err
	}
	if err := checkWord("English", p.Target); err != nil {
		return p, err
	}
	return p, checkCategory(p.Category)
}

// MaxCategoryBytes bounds a pair's category.
const MaxCategoryBytes = 64

// checkCategory says what is wrong with a category: too long, or holding
// a control character or a separator a TSV/CSV column cannot hold.
func checkCategory(c string) error {
	if len(c) > MaxCategoryBytes {
		return fmt.Errorf("category %s is %d bytes long, over the limit of %d bytes (tli.MaxCategoryBytes)", quoteShort(c), len(c), MaxCategoryBytes)
	}
	if err := checkWord("category", c); err != nil {
		return err
	}
	return nil
}

// lineCounter turns byte offsets into 1-based line numbers. Offsets asked in
// increasing order cost time linear in the data overall.
type lineCounter struct {
	data []byte
	off  int // data[:off] holds line-1 newlines
	line int
}

func newLineCounter(data []byte) *lineCounter { return &lineCounter{data: data, line: 1} }

func (c *lineCounter) lineOf(off int) int {
	off = min(max(off, 0), len(c.data))
	if off < c.off {
		c.off, c.line = 0, 1
	}
	c.line += bytes.Count(c.data[c.off:off], newline)
	c.off = off
	return c.line
}

// tokenLine returns the line of the first token at or after off, skipping the
// separators and space a json.Decoder has not consumed yet.
func (c *lineCounter) tokenLine(off int64) int {
	o := int(min(max(off, 0), int64(len(c.data))))
	for o < len(c.data) && strings.IndexByte(" \t\r\n,", c.data[o]) >= 0 {
		o++
	}
	return c.lineOf(o)
}

func parseJSONPairs(name string, data []byte) ([]rawPair, error) {
	lc := newLineCounter(data)
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("tli: pairs file %s: line %d: invalid JSON: %v", name, jsonErrLine(lc, dec, err), err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, fmt.Errorf("tli: pairs file %s: line %d: expected a JSON list of {\"swahili\": ..., \"english\": ...} objects, found %s", name, lc.lineOf(0), jsonKind(tok))
	}
	var out []rawPair
	for i := 0; dec.More(); i++ {
		line := lc.tokenLine(dec.InputOffset())
		where := fmt.Sprintf("tli: pairs file %s: entry %d (line %d)", name, i, line)
		if i == MaxPairs {
			return nil, fmt.Errorf("%s: more than %d entries (tli.MaxPairs); a pair list is expected to be small", where, MaxPairs)
		}
		var obj map[string]any
		start := valueStart(data, dec.InputOffset())
		if err := dec.Decode(&obj); err != nil {
			var te *json.UnmarshalTypeError
			var se *json.SyntaxError
			switch {
			case errors.As(err, &te):
				return nil, fmt.Errorf("%s: expected an object with \"swahili\" and \"english\", found %s", where, jsonKindName(te.Value))
			case errors.As(err, &se):
				l := lc.lineOf(int(se.Offset))
				if t := bytes.TrimLeft(data[start:], " \t\r\n"); len(t) > 0 && t[0] == ']' {
					l = lc.lineOf(len(data) - len(t))
					return nil, fmt.Errorf("tli: pairs file %s: line %d: a comma before the closing ] (JSON allows no trailing comma)", name, l)
				}
				if l == line {
					return nil, fmt.Errorf("%s: invalid JSON: %v", where, err)
				}
				return nil, fmt.Errorf("%s: line %d: invalid JSON: %v", where, l, err)
			case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
				return nil, fmt.Errorf("%s: the file ends inside this entry (line %d)", where, lc.lineOf(len(data)))
			}
			return nil, fmt.Errorf("%s: expected an object with \"swahili\" and \"english\": %v", where, err)
		}
		src, srcKey, err := pickField(obj, "swahili", "source")
		if err != nil {
			return nil, fmt.Errorf("%s: %v", where, err)
		}
		tgt, _, err := pickField(obj, map[string]string{"swahili": "english", "source": "target"}[srcKey])
		if err != nil {
			return nil, fmt.Errorf("%s: %v", where, err)
		}
		cat, _, err := pickField(obj, "category")
		if err != nil && !strings.HasPrefix(err.Error(), "no field") {
			return nil, fmt.Errorf("%s: %v", where, err)
		}
		rp, err := newRawPair(src, tgt, cat, line)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", where, err)
		}
		out = append(out, rp)
	}
	if _, err := dec.Token(); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("tli: pairs file %s: line %d: the file ends before the closing ] of the JSON list (after entry %d)", name, lc.lineOf(len(data)), len(out))
		}
		return nil, fmt.Errorf("tli: pairs file %s: line %d: invalid JSON after entry %d: %v", name, jsonErrLine(lc, dec, err), len(out), err)
	}
	end := int(dec.InputOffset())
	if rest := bytes.TrimLeft(data[end:], " \t\r\n"); len(rest) > 0 {
		return nil, fmt.Errorf("tli: pairs file %s: line %d: unexpected data after the JSON list: %s", name, lc.lineOf(len(data)-len(rest)), quoteShort(string(rest)))
	}
	return out, nil
}

// valueStart returns where a json.Decoder starts scanning the next value
// of a list when its input offset is off: past space and one comma.
func valueStart(data []byte, off int64) int {
	o := int(min(max(off, 0), int64(len(data))))
	for o < len(data) && strings.IndexByte(" \t\r\n", data[o]) >= 0 {
		o++
	}
	if o < len(data) && data[o] == ',' {
		o++
	}
	return o
}

// jsonErrLine is the line a decoding error points at.
func jsonErrLine(lc *lineCounter, dec *json.Decoder, err error) int {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return lc.lineOf(int(se.Offset) - 1)
	}
	return lc.tokenLine(dec.InputOffset())
}

// jsonKind names the kind of a decoded JSON value or token for messages.
func jsonKind(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64, json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	case json.Delim:
		switch v {
		case '[':
			return "a list"
		case '{':
			return "an object"
		}
		return fmt.Sprintf("%q", string(v))
	}
	return fmt.Sprintf("%T", v)
}

// jsonKindName turns json.UnmarshalTypeError's Value into a phrase.
func jsonKindName(v string) string {
	switch v {
	case "array":
		return "a list"
	case "bool":
		return "a boolean"
	case "number", "string":
		return "a " + v
	}
	return v
}

// pickField returns the string value of the first of keys present in obj
// (keys compared without case) and which key it was. Two fields that differ
// only in case ("swahili" and "Swahili") are an error, not a guess.
func pickField(obj map[string]any, keys ...string) (string, string, error) {
	for _, want := range keys {
		var found []string
		for k := range obj {
			if strings.EqualFold(k, want) {
				found = append(found, k)
			}
		}
		if len(found) == 0 {
			continue
		}
		if len(found) > 1 {
			sort.Strings(found)
			return "", want, fmt.Errorf("fields %q and %q both given; keep one", found[0], found[1])
		}
		k := found[0]
		switch v := obj[k].(type) {
		case nil:
			return "", want, nil // null counts as an empty entry
		case string:
			return v, want, nil
		default:
			return "", want, fmt.Errorf("field %q is %s, want a string", k, jsonKind(v))
		}
	}
	var have []string
	for k := range obj {
		have = append(have, strconv.Quote(k))
	}
	sort.Strings(have)
	return "", "", fmt.Errorf("no field \"%s\" (fields: %s)", strings.Join(keys, "\" or \""), strings.Join(have, ", "))
}

// pairColumns finds the Swahili and English columns of a header, or returns
// an error naming what it wants.
func pairColumns(cols []string, sep string) (si, ti int, err error) {
	si, ti = -1, -1
	for i, c := range cols {
		switch strings.ToLower(strings.TrimSpace(c)) {
		case "swahili", "source":
			if si < 0 {
				si = i
			}
		case "english", "target":
			if ti < 0 {
				ti = i
			}
		}
	}
	if si < 0 || ti < 0 {
		return si, ti, fmt.Errorf("header %s must name the columns swahili and english (or source and target)", quoteShort(strings.Join(cols, sep)))
	}
	return si, ti, nil
}

// categoryColumn finds the optional category column ("category" or
// "pos"), or -1.
func categoryColumn(cols []string) int {
	for i, c := range cols {
		switch strings.ToLower(strings.TrimSpace(c)) {
		case "category", "pos":
			return i
		}
	}
	return -1
}

// column returns field i of a record, or "" when the record is shorter or
// i is -1.
func column(rec []string, i int) string {
	if i < 0 || i >= len(rec) {
		return ""
	}
	return rec[i]
}

// columnError says that a record of n columns lacks the pair's columns.
func columnError(n int, cols []string, si, ti int, sep string) error {
	return fmt.Errorf("%d column%s, expected at least %d: the header puts %q in column %d and %q in column %d, separated by %s",
		n, map[bool]string{true: "", false: "s"}[n == 1], max(si, ti)+1, strings.TrimSpace(cols[si]), si+1, strings.TrimSpace(cols[ti]), ti+1, sep)
}

// parseTSVPairs reads tab-separated values: one record a line, fields
// separated by tabs, quotes literal except around a field that is entirely
// one well-formed quoted field (see unquoteTSV).
func parseTSVPairs(name string, data []byte) ([]rawPair, error) {
	var out []rawPair
	var cols []string
	si, ti, ci := -1, -1, -1
	for line := 1; len(data) > 0; line++ {
		l, rest, _ := bytes.Cut(data, newline)
		data = rest
		l = bytes.TrimSuffix(l, []byte("\r"))
		if len(bytes.TrimSpace(l)) == 0 {
			continue // blank line
		}
		fields := strings.Split(string(l), "\t")
		for i, f := range fields {
			fields[i] = unquoteTSV(f)
		}
		if cols == nil {
			var err error
			cols = fields
			if si, ti, err = pairColumns(cols, "\t"); err != nil {
				return nil, fmt.Errorf("tli: pairs file %s: line %d: %v", name, line, err)
			}
			ci = categoryColumn(cols)
			continue
		}
		if len(out) == MaxPairs {
			return nil, fmt.Errorf("tli: pairs file %s: line %d: more than %d entries (tli.MaxPairs); a pair list is expected to be small", name, line, MaxPairs)
		}
		if si >= len(fields) || ti >= len(fields) {
			return nil, fmt.Errorf("tli: pairs file %s: line %d: %v", name, line, columnError(len(fields), cols, si, ti, "tabs"))
		}
		rp, err := newRawPair(fields[si], fields[ti], column(fields, ci), line)
		if err != nil {
			return nil, fmt.Errorf("tli: pairs file %s: line %d: %v", name, line, err)
		}
		out = append(out, rp)
	}
	return out, nil
}

// unquoteTSV returns a TSV field trimmed and, when it is entirely one
// well-formed quoted field ("a ""b""": quoted, inner quotes doubled), its
// content; any other quote is an ordinary character.
func unquoteTSV(f string) string {
	f = strings.TrimSpace(f)
	if len(f) < 2 || f[0] != '"' || f[len(f)-1] != '"' {
		return f
	}
	inner := f[1 : len(f)-1]
	for i := 0; i < len(inner); i++ {
		if inner[i] == '"' {
			if i+1 == len(inner) || inner[i+1] != '"' {
				return f // a lone quote: literal text
			}
			i++
		}
	}
	return strings.TrimSpace(strings.ReplaceAll(inner, `""`, `"`))
}

// parseCSVPairs reads comma-separated values as RFC 4180 has them.
func parseCSVPairs(name string, data []byte) ([]rawPair, error) {
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	cols, err := r.Read()
	if err != nil {
		return nil, csvError(name, data, err)
	}
	si, ti, err := pairColumns(cols, ",")
	if err != nil {
		line, _ := r.FieldPos(0)
		return nil, fmt.Errorf("tli: pairs file %s: line %d: %v", name, line, err)
	}
	ci := categoryColumn(cols)
	var out []rawPair
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, csvError(name, data, err)
		}
		line, _ := r.FieldPos(0)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue // blank line
		}
		if len(out) == MaxPairs {
			return nil, fmt.Errorf("tli: pairs file %s: line %d: more than %d entries (tli.MaxPairs); a pair list is expected to be small", name, line, MaxPairs)
		}
		if si >= len(rec) || ti >= len(rec) {
			return nil, fmt.Errorf("tli: pairs file %s: line %d: %v", name, line, columnError(len(rec), cols, si, ti, "commas"))
		}
		rp, err := newRawPair(rec[si], rec[ti], column(rec, ci), line)
		if err != nil {
			return nil, fmt.Errorf("tli: pairs file %s: line %d: %v", name, line, err)
		}
		out = append(out, rp)
	}
	return out, nil
}

// csvError words an encoding/csv error for a person editing the file: the
// line, the column in characters and what the quoting rule is.
func csvError(name string, data []byte, err error) error {
	var pe *csv.ParseError
	if !errors.As(err, &pe) {
		return fmt.Errorf("tli: pairs file %s: %v", name, err)
	}
	col := charColumn(data, pe.Line, pe.Column)
	switch {
	case errors.Is(pe.Err, csv.ErrBareQuote):
		return fmt.Errorf("tli: pairs file %s: line %d, column %d: a quote (\") inside an unquoted field; in CSV, quote the whole field and double the quote (\"say \"\"hi\"\"\"); in TSV, quotes are literal", name, pe.Line, col)
	case errors.Is(pe.Err, csv.ErrQuote) && pe.Line > pe.StartLine && pe.Line >= bytes.Count(data, newline):
		return fmt.Errorf("tli: pairs file %s: line %d: a quoted field opened on line %d is never closed (a quote inside a quoted field is written twice: \"\")", name, pe.Line, pe.StartLine)
	case errors.Is(pe.Err, csv.ErrQuote):
		return fmt.Errorf("tli: pairs file %s: line %d, column %d: a quote inside a quoted field must be doubled (\"\") or end the field, followed by a comma or the end of the line", name, pe.Line, col)
	}
	return fmt.Errorf("tli: pairs file %s: line %d, column %d: %v", name, pe.Line, col, pe.Err)
}

// charColumn turns a 1-based byte column on a 1-based line into a 1-based
// character column.
func charColumn(data []byte, line, col int) int {
	for ; line > 1; line-- {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return col
		}
		data = data[i+1:]
	}
	if col < 1 || col-1 > len(data) {
		return col
	}
	return utf8.RuneCount(data[:col-1]) + 1
}

// screenPairs drops empty and duplicate entries, recording them, and flags
// words shared between different pairs.
func screenPairs(raw []rawPair) ([]Pair, *PairReport) {
	rep := &PairReport{Entries: len(raw)}
	seenPair := map[Pair]bool{}
	seenSrc := map[string]bool{}
	seenTgt := map[string]bool{}
	var out []Pair
	for i, rp := range raw {
		is := PairIssue{Index: i, Line: rp.line, Pair: rp.Pair}
		switch {
		case rp.Source == "" && rp.Target == "":
			is.Problem = "both sides empty"
			rep.Empty = append(rep.Empty, is)
			continue
		case rp.Source == "":
			is.Problem = "empty Swahili side"
			rep.Empty = append(rep.Empty, is)
			continue
		case rp.Target == "":
			is.Problem = "empty English side"
			rep.Empty = append(rep.Empty, is)
			continue
		}
		s, t := foldKey(rp.Source), foldKey(rp.Target)
		key := Pair{Source: s, Target: t}
		if seenPair[key] {
			is.Problem = "duplicate of an earlier entry"
			rep.Duplicates = append(rep.Duplicates, is)
			continue
		}
		seenPair[key] = true
		if seenSrc[s] {
			is.Problem = "Swahili word already used by an earlier pair"
			rep.SharedSource = append(rep.SharedSource, is)
		}
		if seenTgt[t] {
			is.Problem = "English word already used by an earlier pair"
			rep.SharedTarget = append(rep.SharedTarget, is)
		}
		seenSrc[s], seenTgt[t] = true, true
		out = append(out, rp.Pair)
	}
	rep.Kept = len(out)
	return out, rep
}

// WritePairs writes pairs to path atomically, in a format chosen by the
// extension: .tsv (tab-separated, header swahili, english), .csv
// (comma-separated, same header), and anything else as the published JSON
// format, a list of {"swahili", "english"} objects.
func WritePairs(path string, pairs []Pair) error {
	format := strings.TrimPrefix(strings.ToLower(filepath.Ext(path)), ".")
	return WriteAtomic(path, func(w io.Writer) error { return EncodePairs(w, pairs, format) })
}

// EncodePairs writes pairs to w as "tsv", "csv" (header swahili, english)
// or, for any other format name, the published JSON format. A word that
// ReadPairs would refuse (longer than MaxWordBytes, invalid UTF-8, a control
// character or U+FFFD) is an error naming the pair, and nothing is written;
// so is a list longer than MaxPairs. What EncodePairs writes, ReadPairs reads
// back to the same pairs (trimmed, duplicates and empty entries aside).
func EncodePairs(w io.Writer, pairs []Pair, format string) error {
	if len(pairs) > MaxPairs {
		return fmt.Errorf("tli: encode pairs: %d pairs, more than %d (tli.MaxPairs)", len(pairs), MaxPairs)
	}
	withCat := false
	for i, p := range pairs {
		if err := checkWord("Swahili", p.Source); err != nil {
			return fmt.Errorf("tli: encode pairs: pair %d: %v", i, err)
		}
		if err := checkWord("English", p.Target); err != nil {
			return fmt.Errorf("tli: encode pairs: pair %d: %v", i, err)
		}
		if err := checkCategory(p.Category); err != nil {
			return fmt.Errorf("tli: encode pairs: pair %d: %v", i, err)
		}
		withCat = withCat || p.Category != ""
	}
	switch format {
	case "tsv", "csv":
		cw := csv.NewWriter(w)
		if format == "tsv" {
			cw.Comma = '\t'
		}
		header := []string{"swahili", "english"}
		if withCat {
			header = append(header, "category")
		}
		cw.Write(header)
		for _, p := range pairs {
			rec := []string{p.Source, p.Target}
			if withCat {
				rec = append(rec, p.Category)
			}
			cw.Write(rec)
		}
		cw.Flush()
		return cw.Error()
	}
	type jp struct {
		Swahili  string `json:"swahili"`
		English  string `json:"english"`
		Category string `json:"category,omitempty"`
	}
	list := make([]jp, len(pairs))
	for i, p := range pairs {
		list[i] = jp{p.Source, p.Target, p.Category}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "    ")
	enc.SetEscapeHTML(false)
	return enc.Encode(list)
}

// SelectCategory returns the pairs of category cat (all pairs when cat is
// ""); a category no pair has is an error listing the ones present.
func SelectCategory(pairs []Pair, cat string) ([]Pair, error) {
	if cat == "" {
		return pairs, nil
	}
	var out []Pair
	count := map[string]int{}
	for _, p := range pairs {
		count[p.Category]++
		if p.Category == cat {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		var have []string
		for c, n := range count {
			if c == "" {
				c = "(none)"
			}
			have = append(have, fmt.Sprintf("%s: %d", c, n))
		}
		sort.Strings(have)
		return nil, fmt.Errorf("no pair has category %q (the list has %s)", cat, strings.Join(have, ", "))
	}
	return out, nil
}

// CheckTokenized returns the pairs with a side that tokenises to no tokens,
// which would leave nothing to pool. count returns the number of content
// tokens (without BOS/EOS) of a word as the model's tokenizer splits it.
func CheckTokenized(pairs []Pair, count func(string) int) []PairIssue {
	var out []PairIssue
	for i, p := range pairs {
		var bad []string
		if count(p.Source) == 0 {
			bad = append(bad, "Swahili side")
		}
		if count(p.Target) == 0 {
			bad = append(bad, "English side")
		}
		if bad != nil {
			out = append(out, PairIssue{Index: i, Pair: p, Problem: strings.Join(bad, " and ") + " tokenises to no tokens"})
		}
	}
	return out
}
