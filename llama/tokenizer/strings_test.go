package tokenizer

import (
	"bufio"
	"math/rand"
	"os"
	"strings"
	"unicode"
	"unicode/utf8"
)

// builtinWords is a word list used with (or, without dictd, instead of) the
// freedict Swahili headwords.
var builtinWords = strings.Fields(`
habari jambo asante karibu rafiki nyumba shule mwalimu mwanafunzi kitabu
maji chakula chai kahawa mkate nyama samaki matunda ndizi embe nanasi
mtoto watoto mama baba dada kaka bibi babu familia jirani mji kijiji
barabara gari basi treni ndege meli bahari mto ziwa mlima msitu mti maua
jua mwezi nyota mvua upepo baridi joto leo kesho jana asubuhi mchana jioni
usiku saa dakika wiki mwaka sikukuu kazi pesa soko duka bei nunua uza
kula kunywa kulala kuamka kusoma kuandika kusema kusikia kuona kwenda kuja
kukimbia kutembea kucheza kuimba kucheka kulia kupenda kuchukia kufikiri
nzuri mbaya kubwa ndogo refu fupi nyingi chache mpya zamani safi chafu
moja mbili tatu nne tano sita saba nane tisa kumi ishirini mia elfu
ndiyo hapana labda sasa bado tena pia lakini kwa sababu ili kama
hospitali daktari dawa mgonjwa afya serikali rais bunge sheria haki uhuru
elimu sayansi teknolojia kompyuta simu intaneti habari gazeti redio
Tanzania Kenya Uganda Afrika Mashariki Kiswahili Kiingereza Dar Nairobi
ninakupenda tunakwenda wanasoma alikuwa atakuja hawajui sijui tutaonana
kiti meza dirisha mlango ukuta paa sakafu kitanda jiko bafu choo bustani
the of and to in is you that it he was for on are as with his they at
be this have from or one had by word but not what all were we when your
can said there use an each which she do how their if will up other about
out many then them these so some her would make like him into time has
look two more write go see number no way could people my than first water
been call who oil its now find long down day did get come made may part
language translation dictionary injection lexical embedding tokenizer
running jumped happiness unbelievable internationalization antidisestablishmentarianism
don't can't won't shouldn't I'm you're we've they'll she'd it's
colour color favourite theatre centre analyse programme realise
`)

// dictWords returns the headwords of the freedict Swahili-English and
// English-Swahili dictionaries (dict-freedict-swh-eng, dict-freedict-eng-swh),
// or nil when they are not installed.
func dictWords() []string {
	var words []string
	for _, name := range []string{"freedict-swh-eng.index", "freedict-eng-swh.index"} {
		f, err := os.Open("/usr/share/dictd/" + name)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			head, _, _ := strings.Cut(sc.Text(), "\t")
			if head == "" || strings.HasPrefix(head, "00database") || !utf8.ValidString(head) {
				continue
			}
			words = append(words, head)
		}
		f.Close()
	}
	return words
}

func capitalise(w string) string {
	r, n := utf8.DecodeRuneInString(w)
	return string(unicode.ToUpper(r)) + w[n:]
}

// parityStrings returns the test strings for the parity tests: every word
// alone, after a space and capitalised, then hand-picked hard cases and
// seeded random strings. None holds U+0085, U+FEFF or U+017F, where the
// JavaScript reference knowingly differs from Hugging Face (see doc.go).
func parityStrings() []string {
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	words := append(dictWords(), builtinWords...)
	for _, w := range words {
		add(w)
		add(" " + w)
		add(capitalise(w))
		add(" " + capitalise(w))
	}
	sentences := []string{
		"Habari ya asubuhi! Leo ni siku nzuri ya kwenda sokoni.",
		"Watoto wanacheza mpira nje ya shule, na mwalimu anawaangalia.",
		"Serikali ya Tanzania imetangaza mpango mpya wa elimu bure kwa wote.",
		"The quick brown fox jumps over the lazy dog.",
		"In 2024, researchers showed that lexical injection improves translation by 12.5%.",
		"She said, \"I'll be there at 10:30 a.m.\" — but she wasn't.",
		"Hello, World! How are you doing today?\nI'm fine, thanks.\r\nGoodbye.",
		"def f(x):\n    return x ** 2  # square\n\n\tpass",
		"Mwalimu alisema: \"Soma kitabu hiki kabla ya Jumatatu.\"",
		"Kiswahili ni lugha ya Afrika Mashariki; inazungumzwa na watu milioni 200.",
	}
	for _, s := range sentences {
		add(s)
	}
	hard := []string{
		"", " ", "  ", "   ", "\t", "\n", "\r", "\r\n", "\n\n", "\n\n\n", " \n", "\n ", " \n ", "  \n  ",
		"a ", "a  ", "a   ", "a \n", "a\n", "a\n\n", " a", "  a", "   a", "a  b", "a   b", "a\tb", "\ta", "\t\ta",
		"a\t\tb", " \t \n", "x \n y", "a\r\nb", "a\rb", "a\n\r\nb", "\u00a0", "a\u00a0b", "a\u00a0\u00a0b",
		"a \u00a0b", "\u3000", "a\u3000b", "\u2003x", "x\u2028y", "x\u2029y", "\v", "a\fb", "  \t\n\t  x",
		"0", "1", "12", "123", "1234", "12345", "1234567", "12345678901", "3.14159", "1,000,000", "2024-06-15",
		"10:30", "+255 712 345 678", "0.5%", "$100", "€99,99", "٣٤٥", "١٢٣٤", "½", "x²", "Ⅻ", "१२३४", "๑๒๓",
		"a1", "1a", "abc123def", "v2.0.1", "1st 2nd 3rd", "100km", "12 34 56",
		"!", "!!", "!!!", "...", "?!?!", "—", "–", "«»", "(a)", "[[x]]", "!!!\n\n", " ...\r\n", "<<>>",
		"@#$%^&*", "```go\n", "a.b.c", "e.g.", "--flag", "#hashtag", "@user", "http://example.com/a?b=c&d=e",
		"foo@bar.com", "C++", "x=y+z", "// comment", "/* c */", "\"quoted\"", "'single'", "‘curly’", "“double”",
		"it's", "IT'S", "It'S", "we're", "we'RE", "They'Ve", "I'M", "i'm", "you'LL", "You'll", "he'D", "he'd",
		"'s", "'S", "'", "''", "'''", "'sup", "'Sup", "rock'n'roll", "don't", "DON'T", "Don'T", "don’t",
		"'ll've", "o'clock", "'re'", "x'", " 's", "'\n", "'1", "ma'am", "y'all",
		"café", "naïve", "Ñandú", "Zürich", "façade", "Ærøskøbing", "Dvořák", "łódź", "cafe\u0301",
		"São Paulo", "Việt Nam", "İstanbul", "ß", "Straße", "ﬁ", "Å",
		"Привет, мир!", "Съешь же ещё этих мягких французских булок", "Καλημέρα κόσμε", "ΑΒΓ αβγ",
		"مرحبا بالعالم", "مَرْحَبًا", "שלום עולם", "नमस्ते दुनिया", "हिन्दी", "สวัสดีชาวโลก", "你好，世界",
		"日本語のテキスト", "한국어 텍스트", "ภาษาไทย", "ኢትዮጵያ", "ᐊᐃᓐᖓᐃ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𠜎𠜱",
		"👍", "👨‍👩‍👧‍👦", "🏳️‍🌈", "👍🏽", "I ❤️ NY", "🇹🇿🇰🇪", "😀😃😄", " 🎉", "a🎉b", "🎉 🎉",
		"e\u0301", "a\u0308\u0304", "Z̤̮ͅa̘l̹g̞o", "\u0301", " \u0301", "\u0301a", "x\u0301y",
		"a\u200bb", "a\u200cb", "a\u200db", "\u2060x", "\u200b", " \u200b ", "\u200e\u200f", "\u00ad",
		"<|begin_of_text|>Hello", "Hi <|end_of_text|>", "<|eot_id|>", "<s>hello</s>", "<unk>", "a<s>b",
		"<|begin_of_text|", "<|reserved_special_token_5|>x", " <s> ", "<s><s>", "</s>", "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
		"<|begin_of_text|><|begin_of_text|>", "x <|end_of_text|> y", "<0x0A>", "▁", "▁▁a", "a▁b", "Ġ", "Ċ",
		"\x00", "a\x00b", "\x01\x02\x1f", "\x7f",
		// Qwen's and Gemma's added tokens, special or not.
		"<|im_start|>user\nHabari<|im_end|>\n<|im_start|>assistant\n", "<|endoftext|>", "x<|im_end|>y", "<|im_start|",
		"<think>\n\n</think>\n\nJibu", "<tool_call>{\"a\": 1}</tool_call>", "<|vision_start|><|image_pad|><|vision_end|>",
		"<bos>Hi<eos>", "<start_of_turn>user\nHabari<end_of_turn>\n<start_of_turn>model\n", "<pad><unk><mask>[multimodal]",
		"<start_of_image><image_soft_token><end_of_image>", "<table><tr><td>1</td></tr></table>", "<unused0> <unused99>x",
		"a\t\t\tb\t", "x\n\n\n\n\ny", "▁▁▁x  y", "<b>bold</b> <i>",
		// Normalisation: Hangul jamo and Oriya vowel signs that compose,
		// a singleton, and runs of more than 30 combining marks (UAX #15's
		// stream-safe limit, which the references do not apply).
		"\u1100\u1161\u11a8 \u1100\u1161", "\u0b47\u0b3e", "\u212b \u2126", "e\u0323\u0302",
		"a" + strings.Repeat("\u0301", 40) + "b", "e" + strings.Repeat("\u0316\u0301", 20) + " x",
		strings.Repeat("\u0308", 35), "o" + strings.Repeat("\u0301\u0323\u031b", 12),
	}
	for _, s := range hard {
		add(s)
	}
	add(strings.Repeat("abcdefghij", 500))
	add(strings.Repeat("habariyaasubuhi", 334))
	add(strings.Repeat("1234567890", 500))
	add(strings.Repeat("!?", 2500))
	add(strings.Repeat("ab", 2500) + " " + strings.Repeat("é", 2500))
	add(strings.Repeat("\n", 100) + strings.Repeat(" ", 100) + "x")
	add(strings.Repeat("日本", 1000))

	// Seeded random strings over an alphabet chosen to hit the regex edges.
	alphabet := []string{"a", "b", "Z", "é", "ж", "中", "ا", "क", "ा", "1", "٣", "½", " ", " ", " ", "  ",
		"\t", "\n", "\r", "\r\n", "'", "s", "t", "re", "ll", "D", ".", ",", "!", "?", "-", "(", ")", "\"",
		"\u00a0", "\u3000", "\u200d", "\u0301", "👍", "🏽", "<s>", "<|eot_id|>", "▁", "_", "$", "\x00"}
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 600; i++ {
		n := 1 + rng.Intn(24)
		var b strings.Builder
		for k := 0; k < n; k++ {
			b.WriteString(alphabet[rng.Intn(len(alphabet))])
		}
		add(b.String())
	}
	return out
}

// normalizeStrings returns texts for the Unicode normalisation forms alone:
// seeded random strings of starters, characters that decompose or compose
// (canonically or for compatibility, Hangul included) and combining marks
// of many classes, some with runs of far more than the 30 non-starters
// that UAX #15's stream-safe format allows.
func normalizeStrings() []string {
	alphabet := []string{"a", "e", "o", "u", "A", "O", "\u00e9", "\u00ea", "\u01d7", "\u1ec7", "\u212b", "\u2126", "\u0344",
		"\u0301", "\u0300", "\u0302", "\u0308", "\u0316", "\u0323", "\u031b", "\u0327", "\u0345", "\u05b0", "\u0f71", "\u0f72",
		"\u0f73", "\u1100", "\u1161", "\u11a8", "\uac00", "\u0b47", "\u0b3e", "\u0b57", "\ufb01", "\u2460", "\u00bd", "\u3000",
		"\uff21", "\u1e9b", "\u0387", "\u034f", " ", "x", "O\u0b57\u031b", "\u0b47", "\u09c7", "\u09be", "\u09d7", "\u0dd9",
		"\u0dcf", "\u0dca", "\u1025", "\u102e", "\u1b05", "\u1b35", "\u0bc6", "\u0bbe", "\u0bd7", "\u0cbf", "\u0cd5", "\u0d46",
		"\u0d3e", "\u0d57", "\u0928\u093c", "\u0958", "\ud55c\u11ab", "\u1112\u1161\u11ab", "\u1100\u0301\u1161"}
	marks := []string{"\u0301", "\u0300", "\u0316", "\u0323", "\u031b", "\u0308", "\u0345", "\u0344", "\u0f73", "\u05b0"}
	rng := rand.New(rand.NewSource(3))
	var out []string
	for i := 0; i < 400; i++ {
		var b strings.Builder
		for n := 1 + rng.Intn(12); n > 0; n-- {
			b.WriteString(alphabet[rng.Intn(len(alphabet))])
			if rng.Intn(4) == 0 { // a run of marks, often past 30
				for k := rng.Intn(70); k > 0; k-- {
					b.WriteString(marks[rng.Intn(len(marks))])
				}
			}
		}
		out = append(out, b.String())
	}
	return out
}
