package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/tli-project/tli/internal/atomicfs"
	"github.com/tli-project/tli/tli"
)

func init() {
	register("scan", "measure Swahili-English alignment at every layer in one pass", runScan)
}

// poolingFlag resolves --pooling against --paper-compat, which picks the
// published choice and cannot be combined with an explicit --pooling.
func poolingFlag(value string, set map[string]bool, paperCompat bool, paperChoice tli.Pooling) (tli.Pooling, error) {
	if paperCompat {
		if set["pooling"] {
			return "", errPaperPooling
		}
		return paperChoice, nil
	}
	p, err := tli.ParsePooling(value)
	if err != nil {
		return "", usageErrorf("--pooling: %v", err)
	}
	return p, nil
}

func runScan(args []string) error {
	fs := newFlagSet("scan", "")
	pf := addPlotFlags(fs)
	mf := addModelFlags(fs, "f32")
	pairsFlag := fs.String("pairs", "", "pairs to scan (default: the embedded training list)")
	out := fs.String("out", "", "output folder: scan.csv, scan.json, scan.png")
	pooling := fs.String("pooling", string(tli.PoolContent), "pooling: content (BOS/EOS left out), mean (all tokens) or last")
	layersFlag := fs.String("layers", "all", "layers to scan: all or K,K,...")
	paper := fs.Bool("paper-compat", false, "the published scan: mean pooling with BOS included, NF4 weights and fp16 activations")
	force := fs.Bool("force", false, "write into an existing, non-empty --out")
	asJSON := fs.Bool("json", false, "print scan.json on stdout instead of the table")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := pf.apply(); err != nil {
		return err
	}
	p, err := poolingFlag(*pooling, setFlagNames(fs), *paper, tli.PoolMean)
	if err != nil {
		return err
	}
	if *paper {
		if err := mf.usePaper(tli.PaperScanNumerics, "scan"); err != nil {
			return err
		}
	}
	pairs, err := readPairs("--pairs", *pairsFlag, tli.DefaultTrainPairs())
	if err != nil {
		return err
	}
	if len(pairs) < 2 {
		return usageErrorf("--pairs: a scan needs at least 2 pairs, got %d", len(pairs))
	}
	if err := mf.resolve(); err != nil {
		return err
	}
	st, err := stageOut(*out, *force, atomicfs.Input{Flag: "--model", Path: *mf.dir}, atomicfs.Input{Flag: "--pairs", Path: *pairsFlag})
	if err != nil {
		return err
	}
	defer st.Abort()
	cfg, err := peekConfig(*mf.dir)
	if err != nil {
		return err
	}
	layers, err := parseLayers("--layers", *layersFlag, cfg.NumLayers)
	if err != nil {
		return err
	}
	m, tok, err := mf.load(maxOf(layers))
	if err != nil {
		return err
	}
	defer m.Close()
	if err := checkPairsTokenize("--pairs", pairs, tok); err != nil {
		return err
	}
	dev, closeDev, err := mf.openDevice(m)
	if err != nil {
		return err
	}
	defer closeDev()
	start := time.Now()
	res, _, err := tli.Scan(&tli.ModelEmbedder{Model: m, Tok: tok, Device: dev}, pairs, layers, p)
	if err != nil {
		return err
	}
	res.Model, res.Pairs = mf.name(), pairsName(*pairsFlag, "embedded training list")
	res.Prov = tli.NewProvenance(m, mf.name())
	if dev != nil {
		res.Prov.Device = dev.Name()
	}
	res.Prov.Settings = map[string]any{"pooling": string(p), "layers": layers, "pairs": res.Pairs}
	res.Prov.Seconds["scan"] = time.Since(start).Seconds()
	if err := tli.WriteScan(st.Path(), res, textOut(*asJSON)); err != nil {
		return err
	}
	if err := st.CommitInto(); err != nil {
		return err
	}
	if *asJSON {
		return printFile(filepath.Join(*out, "scan.json"))
	}
	fmt.Printf("wrote %s/scan.csv, scan.json, scan.png\n", absPath(*out))
	return nil
}

// textOut is where a command prints its tables: stdout, or nowhere when
// --json prints the machine-readable result there instead.
func textOut(asJSON bool) io.Writer {
	if asJSON {
		return io.Discard
	}
	return os.Stdout
}

func maxOf(xs []int) int {
	m := 0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

func pairsName(path, def string) string {
	if path == "" {
		return def
	}
	return path
}
