package tli

import (
	_ "embed"
	"fmt"
)

// The default pair lists, written for this project (not taken from the
// paper's lists, though everyday words such as the days of the week
// naturally recur): 623 training and 63 held-out control pairs, the sizes
// the paper used, in the published JSON format. They mix nouns, verbs as ku-
// infinitives ("kusoma" / "to read" style) and as bare stems ("soma" /
// "read", the dictionary form), adjective stems ("-refu" / "tall"), colours,
// numbers, days, months, function words and multi-word entries ("uwanja wa
// ndege" / "airport"). Each pair was checked by hand; most are also
// confirmed by the FreeDict Swahili-English dictionary (see
// TestDefaultListsFreeDict). No Swahili or English word is shared between
// the lists, nor used twice within one, so retrieval has one right answer.
//
//go:embed data/train_pairs.json
var trainPairsJSON []byte

//go:embed data/control_pairs.json
var controlPairsJSON []byte

// DefaultTrainPairs returns a fresh copy of the default training list.
func DefaultTrainPairs() []Pair { return mustParseEmbedded("data/train_pairs.json", trainPairsJSON) }

// DefaultControlPairs returns a fresh copy of the default held-out control
// list.
func DefaultControlPairs() []Pair {
	return mustParseEmbedded("data/control_pairs.json", controlPairsJSON)
}

// mustParseEmbedded parses an embedded list. The lists are fixed at build
// time and checked by the tests, so a failure is a programming error.
func mustParseEmbedded(name string, data []byte) []Pair {
	pairs, rep, err := ParsePairs(name, data)
	if err != nil {
		panic(fmt.Sprintf("tli: embedded pair list: %v", err))
	}
	if !rep.Clean() {
		panic(fmt.Sprintf("tli: embedded pair list: %s", rep))
	}
	return pairs
}
