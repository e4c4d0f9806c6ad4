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
