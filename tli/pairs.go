package tli

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Pair is one translation pair: Source is the Swahili word or phrase, Target
// its English translation.
type Pair struct {
	Source, Target string
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

// ReadPairs reads a pair list from path. Accepted formats, chosen by content:
//
//   - the published TLI format, a JSON list of {"swahili": ..., "english": ...};
//   - a JSON list of {"source": ..., "target": ...};
//   - TSV or CSV (tab if the header line has a tab, else comma) with a header
//     naming the columns swahili and english, or source and target (any case;
//     other columns are ignored).
//
// Words are trimmed of surrounding space. Duplicates and empty entries are not
// errors: they are left out of the result and listed in the report (see
// PairReport), so the caller decides whether to go on. Malformed files are
// errors naming the file and the entry or line.
func ReadPairs(path string) ([]Pair, *PairReport, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("tli: read pairs: %w", err)
	}
	raw, err := parsePairs(path, data)
	if err != nil {
		return nil, nil, err
	}
	pairs, rep := screenPairs(raw)
	rep.Path = path
	return pairs, rep, nil
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

func parsePairs(name string, data []byte) ([]rawPair, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 byte order mark
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("tli: pairs file %s is empty", name)
	}
	if trimmed[0] == '[' || trimmed[0] == '{' {
		return parseJSONPairs(name, data)
	}
	return parseDelimitedPairs(name, data)
}

// lineAt returns the 1-based line number of byte offset off in data.
func lineAt(data []byte, off int64) int {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	// Skip the separator and space the decoder has not consumed yet.
	for off < int64(len(data)) && strings.ContainsRune(" \t\r\n,", rune(data[off])) {
		off++
	}
	return bytes.Count(data[:off], []byte("\n")) + 1
}

func parseJSONPairs(name string, data []byte) ([]rawPair, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("tli: pairs file %s: invalid JSON: %w", name, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, fmt.Errorf("tli: pairs file %s: expected a JSON list of {\"swahili\", \"english\"} objects, found %v", name, tok)
	}
	var out []rawPair
	for i := 0; dec.More(); i++ {
		line := lineAt(data, dec.InputOffset())
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			var se *json.SyntaxError
			if errors.As(err, &se) {
				line = lineAt(data, se.Offset)
			}
			return nil, fmt.Errorf("tli: pairs file %s: entry %d (line %d): expected an object with \"swahili\" and \"english\": %w", name, i, line, err)
		}
		src, srcKey, err := pickField(obj, "swahili", "source")
		if err == nil {
			var tgt string
			tgt, _, err = pickField(obj, map[string]string{"swahili": "english", "source": "target"}[srcKey])
			if err == nil {
				out = append(out, rawPair{Pair{strings.TrimSpace(src), strings.TrimSpace(tgt)}, line})
				continue
			}
		}
		return nil, fmt.Errorf("tli: pairs file %s: entry %d (line %d): %w", name, i, line, err)
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("tli: pairs file %s: invalid JSON after entry %d: %w", name, len(out), err)
	}
	return out, nil
}

// pickField returns the string value of the first of keys present in obj
// (keys compared without case) and which key it was.
func pickField(obj map[string]any, keys ...string) (string, string, error) {
	for _, want := range keys {
		for k, v := range obj {
			if !strings.EqualFold(k, want) {
				continue
			}
			if v == nil {
				return "", want, nil // null counts as an empty entry
			}
			s, ok := v.(string)
			if !ok {
				return "", want, fmt.Errorf("field %q is %T, want a string", k, v)
			}
			return s, want, nil
		}
	}
	var have []string
	for k := range obj {
		have = append(have, k)
	}
	sort.Strings(have)
	return "", "", fmt.Errorf("no field \"%s\" (fields: %s)", strings.Join(keys, "\" or \""), strings.Join(have, ", "))
}

func parseDelimitedPairs(name string, data []byte) ([]rawPair, error) {
	header, _, _ := bytes.Cut(data, []byte("\n"))
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = -1
	r.Comma = ','
	if bytes.ContainsRune(header, '\t') || strings.EqualFold(filepath.Ext(name), ".tsv") {
		r.Comma = '\t'
		r.LazyQuotes = true
	}
	cols, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("tli: pairs file %s: line 1: %w", name, err)
	}
	si, ti := -1, -1
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
		return nil, fmt.Errorf("tli: pairs file %s: line 1: header %q must name the columns swahili and english (or source and target)", name, strings.Join(cols, string(r.Comma)))
	}
	var out []rawPair
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("tli: pairs file %s: %w", name, err)
		}
		line, _ := r.FieldPos(0)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue // blank line
		}
		if si >= len(rec) || ti >= len(rec) {
			return nil, fmt.Errorf("tli: pairs file %s: line %d: %d fields, need at least %d", name, line, len(rec), max(si, ti)+1)
		}
		out = append(out, rawPair{Pair{strings.TrimSpace(rec[si]), strings.TrimSpace(rec[ti])}, line})
	}
	return out, nil
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
		key := Pair{s, t}
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
// or, for any other format name, the published JSON format.
func EncodePairs(w io.Writer, pairs []Pair, format string) error {
	switch format {
	case "tsv", "csv":
		cw := csv.NewWriter(w)
		if format == "tsv" {
			cw.Comma = '\t'
		}
		cw.Write([]string{"swahili", "english"})
		for _, p := range pairs {
			cw.Write([]string{p.Source, p.Target})
		}
		cw.Flush()
		return cw.Error()
	}
	type jp struct {
		Swahili string `json:"swahili"`
		English string `json:"english"`
	}
	list := make([]jp, len(pairs))
	for i, p := range pairs {
		list[i] = jp{p.Source, p.Target}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "    ")
	enc.SetEscapeHTML(false)
	return enc.Encode(list)
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
