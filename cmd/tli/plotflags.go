package main

import (
	"flag"

	"github.com/tli-project/tli/tli"
)

// plotFlags are the flags of every command that writes plots.
type plotFlags struct {
	format *string
	dpi    *int
}

func addPlotFlags(fs *flag.FlagSet) plotFlags {
	return plotFlags{
		format: fs.String("plot-format", "png", "file format of the plots: png, svg or pdf (vector, for papers)"),
		dpi:    fs.Int("dpi", 96, "resolution of PNG plots (300 for print)"),
	}
}

// apply sets the library's plot output from the flags.
func (p plotFlags) apply() error {
	if err := tli.SetPlotOutput(*p.format, *p.dpi); err != nil {
		return usageErrorf("--plot-format/--dpi: %v", err)
	}
	return nil
}

// mapFlags are the settings of the word maps (run, plot).
type mapFlags struct {
	sample     *int
	perplexity *float64
	labels     *int
}

func addMapFlags(fs *flag.FlagSet) mapFlags {
	return mapFlags{
		sample:     fs.Int("sample", 25, "t-SNE maps: the number of pairs drawn, a seeded sample, all labelled (the published setting: 25)"),
		perplexity: fs.Float64("perplexity", 15, "t-SNE perplexity (the published setting: 15)"),
		labels:     fs.Int("labels", 25, "PCA maps: the number of pairs labelled with their words"),
	}
}

func (m mapFlags) options() (tli.MapOptions, error) {
	if *m.sample < 2 || *m.labels < 0 || !(*m.perplexity > 0) {
		return tli.MapOptions{}, usageErrorf("--sample %d, --perplexity %v, --labels %d: want a sample of at least 2 pairs, a positive perplexity and labels >= 0", *m.sample, *m.perplexity, *m.labels)
	}
	return tli.MapOptions{Sample: *m.sample, Perplexity: *m.perplexity, Labels: *m.labels}, nil
}
