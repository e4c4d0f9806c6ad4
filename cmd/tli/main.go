// Command tli runs Targeted Lexical Injection (arXiv 2506.15415) on Llama
// checkpoints: scan, train, eval, merge, run, demo, and the model tools
// (synth, embed, tokenize, probe) they are built from.
//
// Each subcommand lives in its own cmd_NAME.go file and registers itself in
// init with register.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// command is one subcommand of tli.
type command struct {
	name    string
	summary string
	// run parses args (everything after the subcommand name) and does the work.
	run func(args []string) error
}

var commands = map[string]*command{}

func register(name, summary string, run func(args []string) error) {
	if _, dup := commands[name]; dup {
		panic("tli: command registered twice: " + name)
	}
	commands[name] = &command{name: name, summary: summary, run: run}
}

// errHelpShown ends a command whose -h printed its flags: exit status 0.
var errHelpShown = errors.New("help shown")

// errUsage marks an error caused by bad flags or arguments: tli exits with
// status 2 for it (status 1 for everything else).
var errUsage = errors.New("usage")

// usageErrorf returns an error that prints as the formatted text and counts
// as a usage error.
func usageErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

// newFlagSet returns a FlagSet for a subcommand that reports errors instead of
// exiting, so that main prints one clear line.
func newFlagSet(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("tli "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	_ = synopsis
	return fs
}

// flagAliases are other names users reach for: short forms, and the names
// PEFT and transformers' TrainingArguments give the same settings. Each is
// added to a command that has the flag it stands for.
var flagAliases = map[string]string{
	"m": "model", "o": "out", "t": "threads",
	"lora-r": "rank", "lora-alpha": "alpha", "lora-dropout": "dropout", "target-modules": "targets",
	"learning-rate": "lr", "num-train-epochs": "epochs", "per-device-train-batch-size": "batch", "warmup-steps": "warmup",
}

// addAliases defines each alias of flagAliases whose flag fs has, sharing
// that flag's value.
func addAliases(fs *flag.FlagSet) {
	names := make([]string, 0, len(flagAliases))
	for a := range flagAliases {
		names = append(names, a)
	}
	sort.Strings(names)
	for _, a := range names {
		if f := fs.Lookup(flagAliases[a]); f != nil && fs.Lookup(a) == nil {
			fs.Var(f.Value, a, "alias of --"+f.Name)
		}
	}
}

// parseFlags parses args with fs, printing the subcommand's help on -h and
// turning other parse failures into usage errors. Positional arguments are
// refused: every input of tli is a named flag.
func parseFlags(fs *flag.FlagSet, args []string) error {
	addAliases(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printFlagHelp(os.Stdout, fs)
			return errHelpShown
		}
		return usageErrorf("%v", err)
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q (all inputs are flags; see %s -h)", fs.Arg(0), fs.Name())
	}
	return nil
}

// printFlagHelp lists fs's flags as the README writes them: --name (with
// its aliases), the kind of value, the usage and the default.
func printFlagHelp(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: %s [flags]\n\nflags:\n", fs.Name())
	aliases := map[string][]string{}
	fs.VisitAll(func(f *flag.Flag) {
		if c, ok := flagAliases[f.Name]; ok && fs.Lookup(c) != nil && strings.HasPrefix(f.Usage, "alias of") {
			aliases[c] = append(aliases[c], f.Name)
		}
	})
	fs.VisitAll(func(f *flag.Flag) {
		if _, ok := flagAliases[f.Name]; ok && strings.HasPrefix(f.Usage, "alias of") {
			return
		}
		var names []string
		for _, a := range aliases[f.Name] {
			if len(a) == 1 {
				names = append(names, "-"+a)
			} else {
				names = append(names, "--"+a)
			}
		}
		names = append([]string{"--" + f.Name}, names...)
		kind, usage := flag.UnquoteUsage(f)
		line := "  " + strings.Join(names, ", ")
		if kind != "" {
			line += " " + kind
		}
		fmt.Fprintf(w, "%s\n    \t%s", line, strings.ReplaceAll(usage, "\n", "\n    \t"))
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "tli: Targeted Lexical Injection for Llama models, in pure Go.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "usage: tli <command> [flags]   (tli help <command> for its flags; tli version)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
}

func main() {
	setMemoryLimit()
	os.Exit(runMain(os.Args[1:], os.Stderr))
}

// runMain runs one tli invocation and returns its exit status; tests call it.
func runMain(args []string, stderr io.Writer) int {
	if len(args) >= 2 && args[0] == "help" {
		args = []string{args[1], "-h"} // tli help CMD is tli CMD -h
	}
	if len(args) == 1 && (args[0] == "version" || args[0] == "--version") {
		fmt.Fprintf(os.Stdout, "tli %s\n", buildVersion())
		return 0
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(os.Stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "tli: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	if err := c.run(args[1:]); err != nil {
		if errors.Is(err, errHelpShown) {
			return 0
		}
		msg := strings.TrimPrefix(err.Error(), errUsage.Error()+": ")
		fmt.Fprintf(stderr, "tli %s: %s\n", c.name, msg)
		if errors.Is(err, errUsage) {
			return 2
		}
		return 1
	}
	return 0
}
