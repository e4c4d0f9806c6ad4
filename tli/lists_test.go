package tli

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tli-project/tli/internal/peer"
)

// contentTokens splits an entry into words, dropping the connectives that
// legitimately recur across entries (Swahili na/ya/wa/cha/la/za/kwa,
// English to/be/the/a/of/get/good/you).
func contentTokens(s string) []string {
	stop := map[string]bool{"to": true, "be": true, "the": true, "a": true, "an": true, "of": true, "na": true, "ya": true,
		"wa": true, "cha": true, "la": true, "za": true, "kwa": true, "get": true, "you": true, "good": true}
	var out []string
	for _, t := range strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return r == ' ' || r == '-' }) {
		if !stop[t] {
			out = append(out, t)
		}
	}
	return out
}

func TestDefaultLists(t *testing.T) {
	train, control := DefaultTrainPairs(), DefaultControlPairs()
	if len(train) != 623 || len(control) != 63 {
		t.Fatalf("%d training and %d control pairs, want 623 and 63", len(train), len(control))
	}
	for name, list := range map[string][]Pair{"train": train, "control": control} {
		src, tgt := map[string]bool{}, map[string]bool{}
		for i, p := range list {
			if p.Source == "" || p.Target == "" || strings.TrimSpace(p.Source) != p.Source || strings.TrimSpace(p.Target) != p.Target {
				t.Errorf("%s %d: bad entry %q", name, i, p)
			}
			s, g := foldKey(p.Source), normEnglish(p.Target)
			if src[s] || tgt[g] {
				t.Errorf("%s %d: %v repeats a word", name, i, p)
			}
			src[s], tgt[g] = true, true
		}
	}
	// Disjoint at the level of words, not just entries: "to read" in one
	// list and "read" in the other would leak the control word.
	swCtl, enCtl := map[string]Pair{}, map[string]Pair{}
	for _, p := range control {
		for _, w := range contentTokens(p.Source) {
			swCtl[w] = p
		}
		for _, w := range contentTokens(p.Target) {
			enCtl[w] = p
		}
	}
	for _, p := range train {
		for _, w := range contentTokens(p.Source) {
			if c, ok := swCtl[w]; ok {
				t.Errorf("Swahili word %q in training pair %v and control pair %v", w, p, c)
			}
		}
		for _, w := range contentTokens(p.Target) {
			if c, ok := enCtl[w]; ok {
				t.Errorf("English word %q in training pair %v and control pair %v", w, p, c)
			}
		}
	}
	// Coverage of the kinds of entries the lists promise.
	kinds := map[string]int{}
	infinitive := regexp.MustCompile(`^kw?[a-z']+$`)
	for _, p := range append(train, control...) {
		switch {
		case strings.Contains(p.Source, " "):
			kinds["multi-word"]++
		case strings.HasPrefix(p.Target, "to ") && infinitive.MatchString(p.Source):
			kinds["ku- infinitive"]++
		case strings.HasPrefix(p.Source, "-"):
			kinds["adjective stem"]++
		}
	}
	for _, n := range []string{"moja", "kumi", "ishirini", "elfu"} {
		found := false
		for _, p := range append(train, control...) {
			found = found || p.Source == n
		}
		if !found {
			t.Errorf("number %q missing", n)
		}
	}
	if kinds["multi-word"] < 20 || kinds["ku- infinitive"] < 100 || kinds["adjective stem"] < 15 {
		t.Errorf("coverage %v", kinds)
	}
	t.Logf("coverage: %v", kinds)
	// DefaultTrainPairs returns a copy.
	train[0].Source = "x"
	if DefaultTrainPairs()[0].Source == "x" {
		t.Error("DefaultTrainPairs shares its slice")
	}
}

// TestDefaultListsFreeDict reports (and bounds) how many default pairs the
// FreeDict dictionary confirms: its 2,675 headwords miss many words (most
// loanwords, multi-word entries, person nouns such as mwindaji "hunter"),
// so the rest were checked by hand.
func TestDefaultListsFreeDict(t *testing.T) {
	d := installedFreeDict(t)
	for name, list := range map[string][]Pair{"train": DefaultTrainPairs(), "control": DefaultControlPairs()} {
		n := 0
		var missing []string
		for _, p := range list {
			if d.Confirms(p) {
				n++
			} else {
				missing = append(missing, p.Source+"="+p.Target)
			}
		}
		frac := float64(n) / float64(len(list))
		t.Logf("%s: FreeDict confirms %d of %d pairs (%.1f%%); not confirmed: %s", name, n, len(list), 100*frac, strings.Join(missing, ", "))
		if frac < 0.9 {
			t.Errorf("%s: only %.1f%% confirmed by FreeDict", name, 100*frac)
		}
	}
}

// TestDefaultListsVersusPaper reports how many default pairs coincide with
// the published lists (common words recur; the lists were not copied).
func TestDefaultListsVersusPaper(t *testing.T) {
	dir := peer.PaperData()
	if dir == "" {
		t.Skip("published TLI data not found beside the repository")
	}
	paper := map[Pair]bool{}
	for _, f := range []string{"word_pairs.json", "control_word_pairs.json"} {
		ps, _, err := ReadPairs(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			paper[Pair{Source: foldKey(p.Source), Target: foldKey(p.Target)}] = true
		}
	}
	same := 0
	all := append(DefaultTrainPairs(), DefaultControlPairs()...)
	for _, p := range all {
		if paper[Pair{Source: foldKey(p.Source), Target: foldKey(p.Target)}] {
			same++
		}
	}
	t.Logf("%d of %d default pairs also appear (same Swahili and English) in the published lists", same, len(all))
	if same > len(all)/2 {
		t.Errorf("%d of %d pairs coincide with the published lists", same, len(all))
	}
}
