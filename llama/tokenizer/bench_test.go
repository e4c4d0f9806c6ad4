package tokenizer

import (
	"encoding/json"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tli-project/tli/internal/peer"
)

const englishProse = `Targeted lexical injection teaches a language model that a word in one language
and its translation in another should sit close together in the model's hidden space. The method
is simple: pick a layer where the two are already near each other, add a small low-rank adapter,
and train it with a contrastive loss so that each pair is pulled together while unrelated words are
pushed apart. Because the adapter is small, training takes minutes rather than days, and because the
change is local, the rest of the model keeps what it knew. The results are measured as the similarity
of pooled hidden states, and every number starts from token ids: if the tokenizer splits a word
differently from the one the model was trained with, the results describe other words.`

const swahiliProse = `Lugha ya Kiswahili inazungumzwa na watu wengi katika Afrika Mashariki na Kati.
Ni lugha rasmi nchini Tanzania, Kenya na Uganda, na inatumika shuleni, bungeni, redioni na sokoni.
Watoto hujifunza kusoma na kuandika kwa Kiswahili katika shule za msingi, na walimu hutumia vitabu
vingi vilivyoandikwa kwa lugha hii. Habari za asubuhi husikika kila siku kwenye redio, na magazeti
huchapisha makala kuhusu siasa, uchumi, michezo na utamaduni. Wakulima huzungumza kuhusu mvua,
mavuno na bei ya mahindi sokoni, na wavuvi husimulia hadithi za bahari na samaki wakubwa.`

func llama3(b *testing.B) *Tokenizer {
	_, modules := peer.NodeModules(b)
	tk, err := LoadDir(filepath.Join(modules, "@lenml", "tokenizer-llama3", "models"))
	if err != nil {
		b.Fatal(err)
	}
	return tk
}

// BenchmarkEncode measures single-thread encoding with the Llama 3
// tokenizer: prose (with the word cache warm, as in steady use) and one
// long string without spaces (10 KB and 100 KB, which bypasses the cache and
// exercises the O(n log n) merge).
func BenchmarkEncode(b *testing.B) {
	tk := llama3(b)
	for _, c := range benchCases() {
		b.Run(c.name, func(b *testing.B) {
			n := len(tk.Encode(c.text, false))
			b.SetBytes(int64(len(c.text)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				tk.Encode(c.text, false)
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

type benchCase struct{ name, text string }

func benchCases() []benchCase {
	rng := rand.New(rand.NewSource(1))
	noSpace := func(n int) string {
		var sb strings.Builder
		for sb.Len() < n {
			sb.WriteByte(byte('a' + rng.Intn(26)))
		}
		return sb.String()
	}
	return []benchCase{
		{"english", strings.Repeat(englishProse+"\n\n", 20)},
		{"swahili", strings.Repeat(swahiliProse+"\n\n", 20)},
		{"nospace-10KB", noSpace(10 << 10)},
		{"nospace-100KB", noSpace(100 << 10)},
	}
}

// TestWriteBenchTexts writes the benchmark texts for testdata/bench.mjs
// when TLI_BENCH_TEXTS names a file (it does nothing otherwise).
func TestWriteBenchTexts(t *testing.T) {
	path := os.Getenv("TLI_BENCH_TEXTS")
	if path == "" {
		t.Skip("TLI_BENCH_TEXTS not set")
	}
	texts := map[string]string{}
	for _, c := range benchCases() {
		texts[c.name] = c.text
	}
	data, err := json.Marshal(texts)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkLoad measures reading the Llama 3 tokenizer.json (9 MB, 280k
// merges).
func BenchmarkLoad(b *testing.B) {
	_, modules := peer.NodeModules(b)
	dir := filepath.Join(modules, "@lenml", "tokenizer-llama3", "models")
	for i := 0; i < b.N; i++ {
		if _, err := LoadDir(dir); err != nil {
			b.Fatal(err)
		}
	}
}
