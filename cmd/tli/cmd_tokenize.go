package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/tli-project/tli/llama/tokenizer"
)

func init() {
	register("tokenize", "encode strings to token ids (or decode ids) with a checkpoint's tokenizer", runTokenize)
}

// tokenizeOut is where tokenize prints its JSON (tests replace it).
var tokenizeOut io.Writer = os.Stdout

// runTokenize prints a JSON list of id lists, one per input string, with the
// special tokens the tokenizer adds (BOS for Llama); with --decode the input
// is a JSON list of id lists and it prints a JSON list of strings.
func runTokenize(args []string) error {
	fs := newFlagSet("tokenize", "(--model DIR | --tokenizer FILE) (--text S | --file STRINGS.json) [--decode]")
	model := fs.String("model", "", "checkpoint folder holding tokenizer.json")
	tokFile := fs.String("tokenizer", "", "tokenizer.json file (tokenizer_config.json beside it is read too)")
	text := fs.String("text", "", "one string to encode (with --decode: a JSON list of id lists)")
	file := fs.String("file", "", "JSON file: a list of strings (with --decode: a list of id lists)")
	decode := fs.Bool("decode", false, "decode id lists to strings instead of encoding")
	noSpecial := fs.Bool("no-special", false, "encode without the special tokens the post-processor adds")
	skipSpecial := fs.Bool("skip-special", false, "with --decode, leave special tokens out of the text")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["model"] == set["tokenizer"] {
		return usageErrorf("give exactly one of --model and --tokenizer")
	}
	if set["text"] == set["file"] {
		return usageErrorf("give exactly one of --text and --file")
	}
	var tok *tokenizer.Tokenizer
	var err error
	if set["model"] {
		tok, err = tokenizer.LoadDir(*model)
	} else {
		tok, err = tokenizer.Load(*tokFile)
	}
	if err != nil {
		return err
	}
	input := []byte(*text)
	source := "--text"
	if set["file"] {
		if input, err = os.ReadFile(*file); err != nil {
			return err
		}
		source = *file
	}

	var result any
	if *decode {
		var lists [][]int
		if err := json.Unmarshal(input, &lists); err != nil {
			return usageErrorf("%s: want a JSON list of id lists: %v", source, err)
		}
		texts := make([]string, len(lists))
		for i, ids := range lists {
			for _, id := range ids {
				if id < 0 || id >= tok.VocabSize() {
					return fmt.Errorf("%s: list %d: id %d is outside the vocabulary (0..%d)", source, i, id, tok.VocabSize()-1)
				}
			}
			texts[i] = tok.Decode(ids, *skipSpecial)
		}
		result = texts
	} else {
		var texts []string
		if set["text"] {
			texts = []string{*text}
		} else if err := json.Unmarshal(input, &texts); err != nil {
			return usageErrorf("%s: want a JSON list of strings: %v", source, err)
		}
		lists := make([][]int, len(texts))
		for i, s := range texts {
			lists[i] = tok.Encode(s, !*noSpecial)
		}
		result = lists
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(result); err != nil {
		return err
	}
	_, err = tokenizeOut.Write(buf.Bytes())
	return err
}
