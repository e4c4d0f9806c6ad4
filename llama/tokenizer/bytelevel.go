package tokenizer

// The byte-level alphabet of GPT-2: every byte is shown as a printable
// character so that BPE vocabularies are ordinary strings. Printable Latin-1
// bytes stand for themselves; the others are moved to U+0100 and up, in byte
// order (space becomes 'Ġ', newline 'Ċ').
var (
	byteToRune [256]rune
	runeToByte = map[rune]byte{}
	// byteOrder lists the bytes in the order GPT-2 (and Llama 3) give them
	// ids 0..255.
	byteOrder [256]byte
)

func init() {
	n := 0
	add := func(b int, r rune) {
		byteToRune[b] = r
		runeToByte[r] = byte(b)
		byteOrder[n] = byte(b)
		n++
	}
	printable := func(b int) bool {
		return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
	}
	for b := 0; b < 256; b++ {
		if printable(b) {
			add(b, rune(b))
		}
	}
	extra := 0
	for b := 0; b < 256; b++ {
		if !printable(b) {
			add(b, rune(256+extra))
			extra++
		}
	}
}

// byteLevelString maps raw bytes to their byte-level characters.
func byteLevelString(raw string) string {
	out := make([]rune, len(raw))
	for i := 0; i < len(raw); i++ {
		out[i] = byteToRune[raw[i]]
	}
	return string(out)
}

// byteLevelRaw maps a byte-level string back to raw bytes; ok is false when
// it holds a character outside the byte-level alphabet.
func byteLevelRaw(s string) (raw string, ok bool) {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		b, found := runeToByte[r]
		if !found {
			return "", false
		}
		out = append(out, b)
	}
	return string(out), true
}
