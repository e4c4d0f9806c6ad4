package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/tli-project/tli/internal/atomicfs"
	"github.com/tli-project/tli/lora"
	"github.com/tli-project/tli/tli"
)

func init() {
	register("plot", "draw 2-D maps (PCA, t-SNE) of the Swahili and English embeddings, before and after", runPlot)
}

func runPlot(args []string) error {
	fs := newFlagSet("plot", "")
	pf := addPlotFlags(fs)
	mf := addModelFlags(fs, "f32")
	adapterDir := fs.String("adapter", "", "PEFT adapter folder: also draw the maps after training")
	pairsFlag := fs.String("pairs", "", "pairs to draw (default: the embedded training list)")
	layer := fs.Int("layer", 2, "layer whose embeddings are drawn")
	pooling := fs.String("pooling", string(tli.PoolContent), "pooling: content, mean or last")
	methods := fs.String("methods", "pca,tsne", "projections to draw: pca, tsne or both")
	mapf := addMapFlags(fs)
	out := fs.String("out", "", "output folder for the PNG maps")
	force := fs.Bool("force", false, "write into an existing, non-empty --out")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := pf.apply(); err != nil {
		return err
	}
	p, err := tli.ParsePooling(*pooling)
	if err != nil {
		return usageErrorf("--pooling: %v", err)
	}
	mapOpts, err := mapf.options()
	if err != nil {
		return err
	}
	var ms []string
	for _, s := range strings.Split(*methods, ",") {
		if s = strings.TrimSpace(s); s != "pca" && s != "tsne" {
			return usageErrorf("--methods: unknown projection %q (want pca, tsne)", s)
		}
		ms = append(ms, strings.TrimSpace(s))
	}
	pairs, err := readPairs("--pairs", *pairsFlag, tli.DefaultTrainPairs())
	if err != nil {
		return err
	}
	if len(pairs) < 2 {
		return usageErrorf("--pairs: need at least 2 pairs to draw a map")
	}
	if err := mf.resolve(); err != nil {
		return err
	}
	st, err := stageOut(*out, *force, atomicfs.Input{Flag: "--model", Path: *mf.dir}, atomicfs.Input{Flag: "--adapter", Path: *adapterDir}, atomicfs.Input{Flag: "--pairs", Path: *pairsFlag})
	if err != nil {
		return err
	}
	defer st.Abort()
	cfg, err := peekConfig(*mf.dir)
	if err != nil {
		return err
	}
	if *layer < 0 || *layer > cfg.NumLayers {
		return usageErrorf("--layer %d is outside [0, %d]", *layer, cfg.NumLayers)
	}
	m, tok, err := mf.load(*layer)
	if err != nil {
		return err
	}
	defer m.Close()
	dev, closeDev, err := mf.openDevice(m)
	if err != nil {
		return err
	}
	defer closeDev()
	groups := []tli.Group{{Name: "pairs", Pairs: pairs}}
	e := &tli.ModelEmbedder{Model: m, Tok: tok}
	if dev != nil {
		e.Device = dev
	}
	before, err := tli.EmbedGroups(e, groups, []int{*layer}, []tli.Pooling{p})
	if err != nil {
		return err
	}
	var after tli.GroupVectors
	if *adapterDir != "" {
		a, err := lora.Load(*adapterDir, m.Config)
		if err != nil {
			return fmt.Errorf("--adapter: %w", err)
		}
		if after, err = tli.EmbedAdapted(m, dev, tok, a, groups, []int{*layer}, []tli.Pooling{p}); err != nil {
			return err
		}
	}
	plots, err := tli.PlotMapsWith(st.Path(), groups[0], *layer, p, before, after, ms, mapOpts)
	if err != nil {
		return err
	}
	if err := st.CommitInto(); err != nil {
		return err
	}
	for _, pl := range plots {
		fmt.Println("wrote", absPath(filepath.Join(*out, filepath.Base(pl.Path))))
	}
	return nil
}
