package main

import (
	"fmt"
	"os"

	"github.com/tli-project/tli/internal/atomicfs"
	"github.com/tli-project/tli/tli"
)

func init() {
	register("pairs", "build or check a word-pair list (from a FreeDict dictionary, a file, or the embedded lists)", runPairs)
}

func runPairs(args []string) error {
	fs := newFlagSet("pairs", "")
	freedict := fs.String("freedict", "", "folder holding freedict-swh-eng.index and .dict.dz (Debian dict-freedict-swh-eng: "+tli.FreeDictDir+")")
	in := fs.String("pairs", "", "check this pair file (duplicates, empty entries, shared words) and print it normalised")
	builtin := fs.String("builtin", "", "print an embedded list: train or control")
	maxPairs := fs.Int("max", 0, "at most this many pairs from the dictionary (0: all)")
	plurals := fs.Bool("plurals", false, "keep the dictionary's generated plural entries")
	multi := fs.Bool("multi-word", false, "keep multi-word headwords and translations")
	inf := fs.Bool("infinitives", false, "write verbs as infinitives (kusoma / to read)")
	out := fs.String("out", "", "write the list here (published JSON format); default: standard output")
	force := fs.Bool("force", false, "replace an existing --out file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var pairs []tli.Pair
	var err error
	switch {
	case *freedict != "" && *in == "" && *builtin == "":
		pairs, err = tli.ReadFreeDictWith(*freedict, tli.FreeDictOptions{MaxPairs: *maxPairs, Plurals: *plurals, MultiWord: *multi, Infinitives: *inf})
	case *in != "" && *freedict == "" && *builtin == "":
		pairs, err = readPairs("--pairs", *in, nil)
	case *builtin == "train" && *freedict == "" && *in == "":
		pairs = tli.DefaultTrainPairs()
	case *builtin == "control" && *freedict == "" && *in == "":
		pairs = tli.DefaultControlPairs()
	default:
		return usageErrorf("give exactly one of --freedict DIR, --pairs FILE or --builtin train|control")
	}
	if err != nil {
		return err
	}
	if *out != "" {
		if err := checkOutFile("--out", *out, *force, atomicfs.Input{Flag: "--pairs", Path: *in}, atomicfs.Input{Flag: "--freedict", Path: *freedict}); err != nil {
			return err
		}
		if err := tli.WritePairs(*out, pairs); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "wrote %d pairs to %s\n", len(pairs), *out)
		return nil
	}
	return tli.EncodePairs(os.Stdout, pairs, "json")
}
