package tokenizer

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// DefaultChunkBytes is about how much text EncodeReader encodes at a time.
const DefaultChunkBytes = 256 << 10

// StreamOptions tune EncodeReader.
type StreamOptions struct {
	// AllowInvalidUTF8 replaces invalid UTF-8 as Encode does (one U+FFFD
	// per maximal ill-formed subsequence) instead of failing with an
	// *InvalidUTF8Error.
	AllowInvalidUTF8 bool
	// ChunkBytes is the text encoded at a time (0: DefaultChunkBytes);
	// tests make it tiny to cut the text wherever it can be cut.
	ChunkBytes int
}

// InvalidUTF8Error reports the first invalid UTF-8 in EncodeReader's input.
type InvalidUTF8Error struct {
	Offset int64 // byte offset in the text
	Line   int64 // 1-based line of that byte
}

func (e *InvalidUTF8Error) Error() string {
	return fmt.Sprintf("invalid UTF-8 at byte %d (line %d)", e.Offset, e.Line)
}

// EncodeReader reads UTF-8 text from r and calls emit with its ids, in
// order, as they are produced: together they are exactly Encode(text,
// addSpecial) of the whole text. emit may keep nothing of the slice it is
// given. Memory stays about opt.ChunkBytes whatever the length of the text
// when the text can be cut: EncodeReader only cuts it where the tokenizer
// provably gives the same ids to the two parts as to the whole (after a
// newline that ends a line, or at a space between two ASCII letters; see
// cutRules). Text it cannot cut, such as a long line without spaces, is
// held whole until it can.
func (t *Tokenizer) EncodeReader(r io.Reader, addSpecial bool, opt StreamOptions, emit func(ids []int) error) error {
	chunk := opt.ChunkBytes
	if chunk <= 0 {
		chunk = DefaultChunkBytes
	}
	cuts := t.cutRules()
	var out []int
	emit32 := func(ids []int32) error {
		if len(ids) == 0 {
			return nil
		}
		out = out[:0]
		for _, id := range ids {
			out = append(out, int(id))
		}
		return emit(out)
	}
	var pre, post []int32
	if addSpecial && t.post != nil {
		pre, post = t.post.affixes()
	}
	if err := emit32(pre); err != nil {
		return err
	}
	sc := &bpeScratch{}
	var ids []int32
	first := true
	encode := func(text []byte) error {
		ids = t.encodeText(ids[:0], validUTF8(string(text)), first, !first, sc)
		first = false
		return emit32(ids)
	}

	const readSize = 64 << 10
	buf := make([]byte, 0, min(chunk, 64<<20)+readSize)
	var (
		off     int64 = 0 // offset of buf[0] in the text
		line    int64 = 1 // line of buf[0]
		valid   int       // buf[:valid] has been checked
		scanned int       // cut positions below scanned have been looked at
		lastCut int       // the last cut position found in buf, 0 if none
	)
	for eof := false; !eof; {
		if cap(buf)-len(buf) < readSize/2 {
			nb := make([]byte, len(buf), max(2*cap(buf), len(buf)+readSize))
			copy(nb, buf)
			buf = nb
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		switch {
		case err == io.EOF:
			eof = true
		case err != nil:
			return err
		}
		// Check the new bytes; a sequence cut by the end of the buffer waits
		// for the next read.
		for valid < len(buf) {
			c := buf[valid]
			if c < utf8.RuneSelf {
				valid++
				continue
			}
			if !eof && !utf8.FullRune(buf[valid:]) {
				break
			}
			r, size := utf8.DecodeRune(buf[valid:])
			if r == utf8.RuneError && size == 1 {
				if !opt.AllowInvalidUTF8 {
					return &InvalidUTF8Error{Offset: off + int64(valid), Line: line + int64(countNewlines(buf[:valid]))}
				}
				size = maximalSubpart(string(buf[valid:min(valid+4, len(buf))]))
			}
			valid += size
		}
		for p := max(scanned, 1); p < valid-1; p++ {
			if cuts.at(buf, p) {
				lastCut = p
			}
		}
		scanned = max(scanned, valid-1)
		if len(buf) >= chunk && lastCut > 0 {
			if err := encode(buf[:lastCut]); err != nil {
				return err
			}
			off += int64(lastCut)
			line += int64(countNewlines(buf[:lastCut]))
			buf = buf[:copy(buf, buf[lastCut:])]
			valid -= lastCut
			scanned -= lastCut
			lastCut = 0
		}
	}
	if len(buf) > 0 {
		if err := encode(buf); err != nil {
			return err
		}
	}
	return emit32(post)
}

func countNewlines(b []byte) int {
	n := 0
	for _, c := range b {
		if c == '\n' {
			n++
		}
	}
	return n
}

// cutRules says where EncodeReader may cut text: at a position p such
// that encoding text[:p] and then text[p:] as a continuation (nothing
// prepended to it: see encodeText) gives the ids of the whole text. Two
// kinds of positions are used, each only when the tokenizer's components
// allow it:
//
//   - newline: text[p-1] is '\n', the character before it is not white
//     space and text[p] is a printable ASCII character that starts no added
//     token. The Llama 3, Qwen2 and GPT-2 pre-tokenizers end a piece
//     there: the white space around the newline stops at text[p], which is
//     not white space, and nothing else matches across a newline (GPT-2's
//     `\s+(?!\S)` is why the character before must not be white space
//     too). BLOOM's pattern matches words alone and leaves the rest as
//     pieces: its piece ends at the newline only if text[p] starts a word,
//     so text[p] must also not be one of the marks its class leaves out
//     (noLineStart: "!(),.?|"; "\n(" would be one piece). A
//     SentencePiece-style model (no pre-tokenizer, or Metaspace)
//     keeps text[p-1:p+1] in one word, which is cut safely when no merge
//     and no token other than "\n" itself involves the newline, so that
//     the two sides of the newline are merged independently, or when "\n"
//     is an added token matched on the raw text (Gemma), so that no word
//     holds a newline.
//   - space: text[p] is ' ' between two ASCII letters. The pre-tokenizers
//     end a piece before the space (a letter run stops there and the space
//     starts " letters"); a SentencePiece-style model cuts safely when no
//     token holds an ASCII letter followed by what the space becomes (the
//     normalizer's and Metaspace's replacement, U+2581 for Llama 2 and
//     Gemma).
//
// Added tokens must not reach across the cut: none may contain a newline
// (for newline cuts) unless it is made of newlines alone (it then can only
// be "\n" ending at the cut), none may contain a space (for space cuts),
// nor, if matched on the normalised text, the space's replacement, none
// may start at text[p], and none may end just before the cut's white space
// (then the text after it starts a new section, to which Prepend and the
// like apply, in the whole text too): for newline cuts only rstrip tokens,
// which swallow the newline, can, and tokens of newlines when nothing is
// prepended to sections (see prependsToSections). Normalizers must act
// character by character around the cut (Prepend, which the continuation
// skips, Unicode normalisation forms, Replace of a literal without
// newlines or ASCII graphic characters; before the byte-level
// pre-tokenizers only the Unicode forms, see keepsASCII); other tokenizers
// are never cut, which is exact but holds the whole text in memory.
type cutRules struct {
	newline, space bool
	noLineStart    [128]bool // ASCII bytes that may not follow a newline cut
	added          [256]bool // bytes that start an added token, raw or normalised
	// With prefixSpace (ByteLevel's add_prefix_space), a newline cut also
	// needs text[p-2] to end no added token (see at).
	prefixSpace bool
	addedEnd    [256]bool // last bytes of the added tokens
	rstrip      []string  // added tokens with rstrip
	rstripEnd   [256]bool // their last bytes
}

// afterRstrip reports whether b ends with an rstrip token, which swallows
// the white space after it: the text after that starts a new section
// (Prepend and the like apply to it) instead of continuing one. A token
// cannot reach back before b[0], a cut that no token crosses.
func (c *cutRules) afterRstrip(b []byte) bool {
	if len(b) == 0 || !c.rstripEnd[b[len(b)-1]] {
		return false
	}
	for _, k := range c.rstrip {
		if len(b) >= len(k) && string(b[len(b)-len(k):]) == k {
			return true
		}
	}
	return false
}

func (t *Tokenizer) cutRules() *cutRules {
	t.cutOnce.Do(func() { t.cuts = t.computeCutRules() })
	return &t.cuts
}

// at reports whether b may be cut before b[p]; it needs b[p-1] and b[p+1]
// (0 < p < len(b)-1).
func (c *cutRules) at(b []byte, p int) bool {
	switch {
	case b[p-1] == '\n':
		if !c.newline || b[p] <= ' ' || b[p] >= 0x7f || c.added[b[p]] || c.noLineStart[b[p]] {
			return false
		}
		if p >= 2 {
			r, _ := utf8.DecodeLastRune(b[:p-1])
			if classOf(r) == clsSpace {
				return false
			}
		}
		// add_prefix_space puts a space before a newline that starts a
		// section (the text, or what follows an added token): the GPT-2
		// pattern then splits " \n" differently at the end of the text.
		if c.prefixSpace && (p < 2 || c.addedEnd[b[p-2]]) {
			return false
		}
		return !c.afterRstrip(b[:p-1])
	case b[p] == ' ':
		// An added token ending before the space would make the space start
		// a new section in the whole text (Prepend and the like apply).
		return c.space && isASCIILetter(b[p-1]) && isASCIILetter(b[p+1]) && !c.addedEnd[b[p-1]]
	}
	return false
}

func isASCIILetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

func (t *Tokenizer) computeCutRules() cutRules {
	var c cutRules
	space := " " // what a space between letters becomes before the model
	prepends := t.prependsToSections()
	if splitsAtCuts(t.pre) {
		if t.normalizer != nil && !keepsASCII(t.normalizer) {
			return c
		}
		c.newline, c.space = true, true
		first := t.pre
		if q, ok := first.(preSequence); ok {
			first = q[0]
		}
		if b, ok := first.(*byteLevelPre); ok {
			c.prefixSpace = b.addPrefixSpace
		}
		if sp, ok := first.(*splitPre); ok {
			if _, ok := sp.m.(bloomMatcher); ok {
				for c2 := 0; c2 < 128; c2++ {
					c.noLineStart[c2] = !bloomASCII[c2]
				}
			}
		}
	} else {
		if !keepsWholeWords(t.pre) || !cutsCleanly(t.normalizer) {
			return c
		}
		if t.normalizer != nil {
			space = normalizeText(t.normalizer, " ", true)
		}
		if mp, ok := t.pre.(*metaspacePre); ok {
			space = strings.ReplaceAll(space, " ", mp.replacement)
		}
		c.newline = t.model.newlineIsolated() || (!prepends && t.newlineIsAdded())
		if space != "" { // else the letters on both sides would meet
			_, n := utf8.DecodeRuneInString(space)
			space = space[:n]
			c.space = t.model.letterBeforeIsolated(space)
		}
	}
	for _, set := range []*addedSet{t.rawAdded, t.normAdded} {
		if set == nil {
			continue
		}
		for i, k := range set.keys {
			tok := set.toks[i]
			c.added[k[0]] = true
			c.addedEnd[k[len(k)-1]] = true
			// A token of newlines alone can only be "\n" at a newline cut,
			// which ends the text before the cut: the text after it is a new
			// section, not a continuation, unless nothing is prepended to
			// sections.
			if strings.Contains(k, "\n") && (strings.Trim(k, "\n") != "" || prepends || set != t.rawAdded ||
				tok.singleWord || tok.lstrip || tok.rstrip) {
				c.newline = false
			}
			// A token matched on the raw text reaches across a space cut
			// only if it holds the space itself.
			if strings.Contains(k, " ") || (set != t.rawAdded && strings.Contains(k, space)) {
				c.space = false
			}
			if tok.rstrip {
				if set == t.normAdded { // matched on normalised text: not checked at cuts
					c.newline, c.space = false, false
				}
				c.rstrip = append(c.rstrip, k)
				c.rstripEnd[k[len(k)-1]] = true
			}
		}
	}
	return c
}

// prependsToSections reports whether the normalizer or the pre-tokenizer
// adds something at the start of every section of text (Prepend, Metaspace
// with prepend_scheme "always", ByteLevel's add_prefix_space), which they
// do not add to a continuation.
func (t *Tokenizer) prependsToSections() bool {
	var norms func(n normalizer) bool
	norms = func(n normalizer) bool {
		switch n := n.(type) {
		case prependNorm:
			return true
		case normSequence:
			for _, m := range n {
				if norms(m) {
					return true
				}
			}
		}
		return false
	}
	var pres func(p preTokenizer) bool
	pres = func(p preTokenizer) bool {
		switch p := p.(type) {
		case *metaspacePre:
			return p.prepend == prependAlways
		case *byteLevelPre:
			return p.addPrefixSpace
		case preSequence:
			for _, q := range p {
				if pres(q) {
					return true
				}
			}
		}
		return false
	}
	return norms(t.normalizer) || pres(t.pre)
}

// newlineIsAdded reports whether "\n" is an added token matched on the raw
// text (as in Gemma), so that a single newline never reaches the model.
func (t *Tokenizer) newlineIsAdded() bool {
	if t.rawAdded == nil {
		return false
	}
	a, n := t.rawAdded.longestAt("\n", 0)
	return a != nil && n == 1 && !a.singleWord
}

// keepsASCII reports whether n is made of Unicode normalisation forms,
// which leave ASCII characters as they are, cut the text before each of
// them (see inert in normalizeUnicode) and never end what they make of a
// character that is not white space with white space (see
// TestNormalizeKeepsSpace), so that the pre-tokenizer sees the same
// characters around a cut and the same white space before a newline.
func keepsASCII(n normalizer) bool {
	switch n := n.(type) {
	case unicodeNorm:
		return true
	case normSequence:
		for _, m := range n {
			if !keepsASCII(m) {
				return false
			}
		}
		return true
	}
	return false
}

// splitsAtCuts reports whether p is a pre-tokenizer that ends a piece at
// every cut position: the Llama 3, Qwen2, GPT-2 or BLOOM pattern first
// (later ones in a Sequence see the same pieces whole or cut; for BLOOM's,
// see noLineStart).
func splitsAtCuts(p preTokenizer) bool {
	if q, ok := p.(preSequence); ok && len(q) > 0 {
		p = q[0]
	}
	switch p := p.(type) {
	case *splitPre:
		switch p.m.(type) {
		case llama3Matcher, qwen2Matcher, gpt2Matcher, bloomMatcher:
			return p.behavior == behIsolated && !p.invert
		}
	case *byteLevelPre:
		return p.useRegex
	}
	return false
}

// keepsWholeWords reports whether p leaves the model whole words that may
// hold a cut position: no pre-tokenizer, Metaspace, or ByteLevel without
// its regex.
func keepsWholeWords(p preTokenizer) bool {
	switch p := p.(type) {
	case nil:
		return true
	case *metaspacePre:
		return true
	case *byteLevelPre:
		return !p.useRegex
	}
	return false
}

// cutsCleanly reports whether n normalises the two sides of a cut position
// as it would the whole: it acts character by character there and keeps
// the newline and the ASCII letters and graphic characters beside it.
func cutsCleanly(n normalizer) bool {
	switch n := n.(type) {
	case nil, prependNorm, unicodeNorm:
		return true
	case *replaceNorm:
		if n.re != nil || strings.Contains(n.literal, "\n") {
			return false
		}
		for i := 0; i < len(n.literal); i++ {
			if c := n.literal[i]; c > ' ' && c < 0x7f {
				return false
			}
		}
		return true
	case normSequence:
		for _, m := range n {
			if !cutsCleanly(m) {
				return false
			}
		}
		return true
	}
	return false
}

// newlineIsolated reports whether a newline is always a symbol of its own
// that no merge touches: it is known (a token or a byte-fallback token), no
// other token contains it and no merge has it on either side.
func (m *bpeModel) newlineIsolated() bool {
	nl, ok := m.vocab["\n"]
	if !ok && m.byteFallback && m.fallbackIDs['\n'] >= 0 {
		nl, ok = m.fallbackIDs['\n'], true
	}
	if !ok {
		return false
	}
	for k := range m.vocab {
		if len(k) > 1 && strings.Contains(k, "\n") {
			return false
		}
	}
	for pair := range m.merges {
		if int32(pair>>32) == nl || int32(uint32(pair)) == nl {
			return false
		}
	}
	return true
}

// letterBeforeIsolated reports whether the model never joins an ASCII
// letter with the character sp that follows it (what the normalizer and
// pre-tokenizer make of a space): every ASCII letter and sp are known, and
// no token holds an ASCII letter followed by sp.
func (m *bpeModel) letterBeforeIsolated(sp string) bool {
	if !m.knows(sp) {
		return false
	}
	for c := byte('A'); c <= 'z'; c++ {
		if isASCIILetter(c) && !m.knows(string(c)) {
			return false
		}
	}
	for k := range m.vocab {
		for i := 1; i < len(k); {
			j := strings.Index(k[i:], sp)
			if j < 0 {
				break
			}
			if isASCIILetter(k[i+j-1]) {
				return false
			}
			i += j + 1
		}
	}
	return true
}

// knows reports whether the character ch becomes known symbols (not the
// unknown token, not dropped).
func (m *bpeModel) knows(ch string) bool {
	if m.byteMode {
		for i := 0; i < len(ch); i++ {
			if m.byteIDs[ch[i]] < 0 {
				return false
			}
		}
		return true
	}
	if _, ok := m.vocab[ch]; ok {
		return true
	}
	return m.byteFallback && m.hasFallback(ch)
}
