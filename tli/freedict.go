package tli

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/tli-project/tli/internal/limitread"
)

// FreeDictName is the base name of the FreeDict Swahili-English database in
// dictd format, as installed by Debian's dict-freedict-swh-eng into
// /usr/share/dictd.
const FreeDictName = "freedict-swh-eng"

// FreeDictDir is where Debian installs dictd databases.
const FreeDictDir = "/usr/share/dictd"

// DictEntry is one parsed entry of the FreeDict Swahili-English dictionary.
//
// The dictd text of an entry, generated from TEI, looks like
//
//	afisa, ofisa /afˈisa/ /ofˈisa/ <n> (pl: {maafisa}, {maofisa})
//
//	officer
//
// or, with several senses and extra equivalents,
//
//	agiza /aɡˈiza/ <v, caus>
//	1.
//	order, command, instruct
//	; direct, instruct, give instructions
//	2.
//	order, place an order
//
// Headwords are the spellings before the first /IPA/ (case as printed, so
// Agosti stays capitalised); POS is the text between < and > ("n", "v, caus",
// "adj"); Senses holds, per numbered sense, the English equivalents in order,
// split at top-level commas and semicolons with parenthesised remarks
// removed ("(paternal) uncle" becomes "uncle"). Indented lines are notes and
// "See also" references, which are skipped. Generated plural entries
// ("Plural of {kiuno}: waist") have PluralOf set to the singular and the
// equivalents after the colon as their senses.
type DictEntry struct {
	Headwords []string
	POS       string
	PluralOf  string
	Senses    [][]string
}

// FreeDict is the parsed dictionary with a lookup by folded headword.
type FreeDict struct {
	Entries []DictEntry
	byHead  map[string][]int
}

// dictd stores offsets and lengths in the index as base-64 numbers, most
// significant digit first, with this alphabet.
const dictdB64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

func decodeDictdB64(s string) (int64, error) {
	if s == "" {
		return 0, fmt.Errorf("empty number")
	}
	var v int64
	for i := 0; i < len(s); i++ {
		d := strings.IndexByte(dictdB64, s[i])
		if d < 0 {
			return 0, fmt.Errorf("invalid base-64 digit %q in %q", s[i], s)
		}
		if v > (1<<62)/64 {
			return 0, fmt.Errorf("number %q too large", s)
		}
		v = v*64 + int64(d)
	}
	return v, nil
}

// MaxFreeDictBytes bounds each file of a FreeDict database LoadFreeDict
// reads: the index, and the dictionary text after decompression (a
// dictzip bomb stops there). The Swahili-English database is a 35 KB index
// and 142 KB of text; 64 MiB leaves room for any FreeDict dictionary.
const MaxFreeDictBytes = 64 << 20

// LoadFreeDict reads freedict-swh-eng.index and freedict-swh-eng.dict.dz (or
// an uncompressed freedict-swh-eng.dict) from dir and parses every entry,
// skipping the 00-database-* metadata entries. Entries indexed under more
// than one headword (spelling variants) appear once. Both files must be
// UTF-8 and at most MaxFreeDictBytes (the .dict.dz once decompressed).
func LoadFreeDict(dir string) (*FreeDict, error) {
	indexPath := filepath.Join(dir, FreeDictName+".index")
	idx, err := limitread.ReadFile(indexPath, MaxFreeDictBytes)
	if tl := (*limitread.TooLargeError)(nil); errors.As(err, &tl) {
		return nil, fmt.Errorf("tli: freedict %s: larger than %s (tli.MaxFreeDictBytes)", indexPath, limitread.Size(MaxFreeDictBytes))
	}
	if err != nil {
		return nil, fmt.Errorf("tli: freedict: %w", err)
	}
	bodyPath, body, err := readDictBody(dir)
	if err != nil {
		return nil, err
	}
	return parseFreeDict(indexPath, idx, bodyPath, body)
}

// parseFreeDict parses a dictd index and the dictionary text it indexes;
// the names are used in errors.
func parseFreeDict(indexPath string, idx []byte, bodyPath string, body []byte) (*FreeDict, error) {
	if off := invalidUTF8(idx); off >= 0 {
		return nil, fmt.Errorf("tli: freedict %s: line %d: invalid UTF-8 at byte offset %d", indexPath, bytes.Count(idx[:off], newline)+1, off)
	}
	if off := invalidUTF8(body); off >= 0 {
		return nil, fmt.Errorf("tli: freedict %s: line %d: invalid UTF-8 at byte offset %d", bodyPath, bytes.Count(body[:off], newline)+1, off)
	}
	d := &FreeDict{byHead: map[string][]int{}}
	seen := map[[2]int64]bool{}
	// Entries of a dictd database do not overlap (spelling variants point
	// at the same entry, seen once), so together they cover at most the
	// text; an index whose entries cover it many times over would make
	// parsing quadratic.
	covered, maxCovered := int64(0), 2*int64(len(body))+4096
	for line, rest := 1, idx; len(rest) > 0; line++ {
		var l []byte
		l, rest, _ = bytes.Cut(rest, newline)
		text := strings.TrimSuffix(string(l), "\r")
		if text == "" {
			continue
		}
		f := strings.Split(text, "\t")
		if len(f) < 3 {
			return nil, fmt.Errorf("tli: freedict %s: line %d: want headword, offset and length separated by tabs, got %s", indexPath, line, quoteShort(text))
		}
		if strings.HasPrefix(f[0], "00database") || strings.HasPrefix(f[0], "00-database") {
			continue
		}
		off, err1 := decodeDictdB64(f[1])
		n, err2 := decodeDictdB64(f[2])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("tli: freedict %s: line %d: bad offset or length: %v", indexPath, line, firstErr(err1, err2))
		}
		if off+n > int64(len(body)) {
			return nil, fmt.Errorf("tli: freedict %s: line %d: entry %s at %d+%d runs past the end of the %d-byte dictionary", indexPath, line, quoteShort(f[0]), off, n, len(body))
		}
		if seen[[2]int64{off, n}] {
			continue
		}
		seen[[2]int64{off, n}] = true
		if covered += n; covered > maxCovered {
			return nil, fmt.Errorf("tli: freedict %s: line %d: the index entries overlap, covering more than twice the %d-byte dictionary", indexPath, line, len(body))
		}
		e, err := parseDictEntry(string(body[off : off+n]))
		if err != nil {
			return nil, fmt.Errorf("tli: freedict %s: line %d (%s): %v", indexPath, line, quoteShort(f[0]), err)
		}
		d.Entries = append(d.Entries, e)
	}
	// Index order is dictd's collation; keep it, it is stable.
	for i, e := range d.Entries {
		for _, h := range e.Headwords {
			d.byHead[foldKey(h)] = append(d.byHead[foldKey(h)], i)
		}
	}
	if len(d.Entries) == 0 {
		return nil, fmt.Errorf("tli: freedict %s: no entries", indexPath)
	}
	return d, nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// readDictBody returns the path and uncompressed text of the dictionary. A
// .dict.dz file is dictzip, which is gzip with a chunk table in an extra
// header field, so plain gzip decompression of the whole file gives the
// text.
func readDictBody(dir string) (string, []byte, error) {
	dz := filepath.Join(dir, FreeDictName+".dict.dz")
	tooBig := func(path string) error {
		return fmt.Errorf("tli: freedict %s: larger than %s (tli.MaxFreeDictBytes) uncompressed", path, limitread.Size(MaxFreeDictBytes))
	}
	f, err := os.Open(dz)
	if err != nil {
		plain := filepath.Join(dir, FreeDictName+".dict")
		b, err2 := limitread.ReadFile(plain, MaxFreeDictBytes)
		if tl := (*limitread.TooLargeError)(nil); errors.As(err2, &tl) {
			return "", nil, tooBig(plain)
		}
		if err2 == nil {
			return plain, b, nil
		}
		return "", nil, fmt.Errorf("tli: freedict: %w", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return "", nil, fmt.Errorf("tli: freedict %s: not gzip/dictzip: %w", dz, err)
	}
	b, err := io.ReadAll(io.LimitReader(zr, MaxFreeDictBytes+1))
	if err != nil {
		return "", nil, fmt.Errorf("tli: freedict %s: %w", dz, err)
	}
	if len(b) > MaxFreeDictBytes {
		return "", nil, tooBig(dz)
	}
	return dz, b, nil
}

var (
	senseNumber = regexp.MustCompile(`^\d+\.$`)
	pluralOf    = regexp.MustCompile(`^Plural of \{([^}]*)\}:\s*(.*)$`)
	inlineSense = regexp.MustCompile(`(?:^|\s)\d+\.\s`)
)

// parseDictEntry parses the text of one entry (see DictEntry).
func parseDictEntry(text string) (DictEntry, error) {
	lines := strings.Split(text, "\n")
	head := lines[0]
	var e DictEntry
	slash := strings.Index(head, " /")
	lt := strings.Index(head, " <")
	cut := slash
	if cut < 0 || (lt >= 0 && lt < cut) {
		cut = lt
	}
	if cut < 0 {
		cut = len(head)
	}
	for _, h := range strings.Split(head[:cut], ",") {
		if h = strings.TrimSpace(h); h != "" {
			e.Headwords = append(e.Headwords, h)
		}
	}
	if len(e.Headwords) == 0 {
		return e, fmt.Errorf("no headword in %q", head)
	}
	if lt >= 0 {
		if gt := strings.IndexByte(head[lt:], '>'); gt > 0 {
			e.POS = head[lt+2 : lt+gt]
		}
	}
	var cur []string
	flush := func() {
		if len(cur) > 0 {
			e.Senses = append(e.Senses, cur)
		}
		cur = nil
	}
	for _, l := range lines[1:] {
		t := strings.TrimSpace(l)
		switch {
		case t == "":
		case senseNumber.MatchString(t):
			flush()
		case strings.HasPrefix(l, " ") && pluralOf.MatchString(t):
			m := pluralOf.FindStringSubmatch(t)
			e.PluralOf = m[1]
			// "1. eyelid 2. eyelash": split the numbered senses.
			for _, s := range inlineSense.Split(" "+m[2], -1) {
				cur = append(cur, splitEquivalents(s)...)
				flush()
			}
		case strings.HasPrefix(l, " "):
			// Usage notes and "See also" references.
		case strings.HasPrefix(t, ";"):
			cur = append(cur, splitEquivalents(t[1:])...)
		default:
			cur = append(cur, splitEquivalents(t)...)
		}
	}
	flush()
	return e, nil
}

// splitEquivalents splits a definition line at commas and semicolons outside
// parentheses and strips parenthesised remarks and surrounding punctuation.
func splitEquivalents(s string) []string {
	var out []string
	var b strings.Builder
	depth := 0
	emit := func() {
		w := strings.Join(strings.Fields(b.String()), " ")
		w = strings.Trim(w, " .;:")
		if w != "" {
			out = append(out, w)
		}
		b.Reset()
	}
	for _, r := range s {
		switch {
		case r == '(':
			depth++
		case r == ')':
			if depth > 0 {
				depth--
			}
		case depth > 0:
		case r == ',' || r == ';':
			emit()
		default:
			b.WriteRune(r)
		}
	}
	emit()
	return out
}

// Lookup returns the entries with headword w (compared without case).
func (d *FreeDict) Lookup(w string) []DictEntry {
	var out []DictEntry
	for _, i := range d.byHead[foldKey(w)] {
		out = append(out, d.Entries[i])
	}
	return out
}

// Translations returns every English equivalent of the Swahili word w, in
// dictionary order without repeats. Swahili forms are tried as given and,
// when nothing is found, with the affixes the dictionary leaves out of its
// headwords: the leading hyphen of bound adjective stems (-zuri -> zuri), the
// infinitive prefix ku-/kw- of verbs (kusoma -> soma, kwenda -> enda), and the
// object-less stem of monosyllabic verbs (kula -> la).
func (d *FreeDict) Translations(w string) []string {
	var out []string
	seen := map[string]bool{}
	for _, form := range swahiliForms(w) {
		for _, e := range d.Lookup(form) {
			for _, s := range e.Senses {
				for _, eq := range s {
					if !seen[eq] {
						seen[eq] = true
						out = append(out, eq)
					}
				}
			}
		}
		if len(out) > 0 {
			break
		}
	}
	return out
}

func swahiliForms(w string) []string {
	w = foldKey(w)
	forms := []string{w}
	if s := strings.TrimPrefix(w, "-"); s != w {
		forms = append(forms, s)
	}
	if strings.HasPrefix(w, "ku") && len(w) > 3 {
		forms = append(forms, w[2:])
	}
	if strings.HasPrefix(w, "kw") && len(w) > 3 {
		forms = append(forms, w[2:])
	}
	return forms
}

// normEnglish folds an English gloss for comparison: lower case, no leading
// "to " (infinitives), "a "/"an "/"the ", no parenthesised remarks and no
// surrounding "!" or "?" (the dictionary glosses karibu as "welcome!").
func normEnglish(s string) string {
	eq := splitEquivalents(s)
	if len(eq) == 0 {
		return ""
	}
	s = strings.ToLower(strings.Trim(strings.Join(eq, ", "), "!? "))
	for _, p := range []string{"to ", "a ", "an ", "the "} {
		s = strings.TrimPrefix(s, p)
	}
	return s
}

// Confirms reports whether the dictionary lists p.Target (or, if it holds
// several comma-separated glosses, one of them) among the translations of
// p.Source. Glosses are compared after normEnglish, so "to read" matches
// "read"; verbs glossed with "be"/"get" ("be loose") also match without it.
func (d *FreeDict) Confirms(p Pair) bool {
	want := map[string]bool{}
	for _, g := range splitEquivalents(p.Target) {
		want[normEnglish(g)] = true
	}
	for _, eq := range d.Translations(p.Source) {
		n := normEnglish(eq)
		if want[n] {
			return true
		}
		for _, pre := range []string{"be ", "get ", "become "} {
			if strings.HasPrefix(n, pre) && want[n[len(pre):]] {
				return true
			}
		}
	}
	return false
}

// FreeDictOptions chooses which pairs ReadFreeDictWith derives from the
// dictionary. The zero value gives one pair per non-plural headword, each
// English word used once.
type FreeDictOptions struct {
	// MaxPairs stops after this many pairs (0: no limit).
	MaxPairs int
	// Plurals keeps the generated plural entries (Plural of {X}).
	Plurals bool
	// SharedTargets keeps pairs whose English side already occurs in an
	// earlier pair; by default they are dropped, so that retrieval metrics
	// (precision@1) have one right answer per word.
	SharedTargets bool
	// MultiWord keeps headwords or translations of more than one word.
	MultiWord bool
	// Infinitives writes verbs (POS starting with "v") as infinitives:
	// ku+stem and "to "+gloss (soma/read becomes kusoma/to read).
	Infinitives bool
}

// ReadFreeDict derives Swahili-English pairs from the FreeDict dictionary in
// dir with the default options: each entry's first headword and the first
// equivalent of its first sense, plurals, multi-word entries and repeated
// English words left out.
func ReadFreeDict(dir string) ([]Pair, error) {
	return ReadFreeDictWith(dir, FreeDictOptions{})
}

// ReadFreeDictWith is ReadFreeDict with options. Pairs come out in the
// dictionary's (alphabetical) order. Entries whose words a pair file could
// not hold (longer than MaxWordBytes, or with a control character) are left
// out, so the pairs always survive WritePairs and ReadPairs unchanged.
func ReadFreeDictWith(dir string, opt FreeDictOptions) ([]Pair, error) {
	d, err := LoadFreeDict(dir)
	if err != nil {
		return nil, err
	}
	return d.Pairs(opt), nil
}

// Pairs derives pairs from the loaded dictionary; see ReadFreeDictWith.
func (d *FreeDict) Pairs(opt FreeDictOptions) []Pair {
	var out []Pair
	usedSrc := map[string]bool{}
	usedTgt := map[string]bool{}
	for _, e := range d.Entries {
		if opt.MaxPairs > 0 && len(out) >= opt.MaxPairs {
			break
		}
		if (e.PluralOf != "" && !opt.Plurals) || len(e.Senses) == 0 || len(e.Senses[0]) == 0 {
			continue
		}
		src, tgt := e.Headwords[0], strings.Trim(e.Senses[0][0], "!? ") // "So!" -> "So"
		if tgt == "" {
			continue
		}
		if !opt.MultiWord && (strings.ContainsAny(src, " ") || strings.ContainsAny(tgt, " ")) {
			continue
		}
		if opt.Infinitives && strings.HasPrefix(e.POS, "v") && !strings.Contains(src, " ") {
			src = infinitive(src)
			tgt = "to " + tgt
		}
		if checkWord("Swahili", src) != nil || checkWord("English", tgt) != nil {
			continue // a word no pair file may hold (see ReadPairs)
		}
		s, t := foldKey(src), foldKey(tgt)
		if usedSrc[s] || (!opt.SharedTargets && usedTgt[t]) {
			continue
		}
		usedSrc[s], usedTgt[t] = true, true
		out = append(out, Pair{Source: src, Target: tgt, Category: posCategory(e.POS)})
	}
	return out
}

// infinitive returns the ku- infinitive of a verb stem. Most stems take ku-,
// vowel-initial ones included (kuanza, kuosha); a few common e- and i-
// stems take kw- (kwenda, kwisha, kwiba).
func infinitive(stem string) string {
	switch strings.ToLower(stem) {
	case "enda", "isha", "iba":
		return "kw" + stem
	}
	return "ku" + stem
}

// Headwords returns every headword of the dictionary, sorted.
func (d *FreeDict) Headwords() []string {
	var out []string
	for h := range d.byHead {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}

// posCategory is the word class of a FreeDict part of speech: its first
// part ("v, caus" is v), as a pair's category.
func posCategory(pos string) string {
	c, _, _ := strings.Cut(pos, ",")
	c = strings.TrimSpace(c)
	if checkCategory(c) != nil {
		return ""
	}
	return c
}
