package tli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/internal/atomicfs"
	"github.com/tli-project/tli/llama"
)

// A sweep runs the method once per cell of a grid of training settings
// (the paper's ablations: target layer, rank, seeds, ...). Each cell is a
// complete run (train, then evaluate the trained and control pairs) in its
// own folder DIR/cells/NAME, written whole or not at all, so shards of the
// grid can run in separate processes on a shared file system (a Slurm
// array, a Kubernetes Indexed Job) and a rerun skips what is done. Gather
// reads the cells and writes one table whose bytes depend only on the
// cells' results.

// CellSettings is what one cell of a sweep varies: the training options
// and the word classes selected from the trained and control lists (""
// selects every pair).
type CellSettings struct {
	Train                          TrainOptions
	TrainCategory, ControlCategory string
}

// SweepAxis describes a setting a sweep can vary: its name (the flag's,
// without dashes), how the current value is written, and how a value is
// applied.
type SweepAxis struct {
	Name  string
	Usage string
	Get   func(CellSettings) string
	Set   func(c *CellSettings, v string) error
	// Sep separates the values of the axis in a list (default ",").
	Sep string
}

// trainAxis is an axis over a TrainOptions setting.
func trainAxis(name, usage string, get func(TrainOptions) string, set func(*TrainOptions, string) error) SweepAxis {
	return SweepAxis{Name: name, Usage: usage,
		Get: func(c CellSettings) string { return get(c.Train) },
		Set: func(c *CellSettings, v string) error { return set(&c.Train, v) }}
}

// SweepAxes are the axes, in the order cells are enumerated (the first
// varies slowest) and columns are written.
var SweepAxes = []SweepAxis{
	trainAxis("layer", "target layer(s)", func(o TrainOptions) string { return strconv.Itoa(o.Layer) },
		func(o *TrainOptions, v string) error { return setInt(&o.Layer, v) }),
	trainAxis("rank", "LoRA rank(s) r", func(o TrainOptions) string { return strconv.Itoa(o.LoRA.R) },
		func(o *TrainOptions, v string) error { return setInt(&o.LoRA.R, v) }),
	trainAxis("alpha", "LoRA alpha(s)", func(o TrainOptions) string { return fmtFloat(o.LoRA.Alpha) },
		func(o *TrainOptions, v string) error { return setFloat(&o.LoRA.Alpha, v) }),
	{Name: "targets", Usage: "LoRA target module sets, ';' between sets (q_proj,v_proj;q_proj,k_proj,v_proj,o_proj); default: the model family's PEFT default", Sep: ";",
		Get: func(c CellSettings) string { return FormatTargets(c.Train.LoRA.TargetModules) },
		Set: func(c *CellSettings, v string) error {
			c.Train.LoRA.TargetModules = ParseTargets(v)
			return nil
		}},
	trainAxis("margin", "triplet margin(s)", func(o TrainOptions) string { return fmtFloat(o.Margin) },
		func(o *TrainOptions, v string) error { return setFloat(&o.Margin, v) }),
	trainAxis("lr", "peak learning rate(s)", func(o TrainOptions) string { return fmtFloat(o.LR) },
		func(o *TrainOptions, v string) error { return setFloat(&o.LR, v) }),
	trainAxis("epochs", "epoch count(s)", func(o TrainOptions) string { return strconv.Itoa(o.Epochs) },
		func(o *TrainOptions, v string) error { return setInt(&o.Epochs, v) }),
	trainAxis("pooling", "pooling(s) of training and evaluation: content, mean, last", func(o TrainOptions) string { return string(o.Pooling) },
		func(o *TrainOptions, v string) error {
			p, err := ParsePooling(v)
			o.Pooling = p
			return err
		}),
	{Name: "train-category", Usage: "word class(es) of the trained pairs to train on (the pair list's category column; FreeDict: n, v, adj, ...); empty: all",
		Get: func(c CellSettings) string { return c.TrainCategory },
		Set: func(c *CellSettings, v string) error { c.TrainCategory = v; return checkCategory(v) }},
	{Name: "control-category", Usage: "word class(es) of the control pairs to evaluate on; empty: all",
		Get: func(c CellSettings) string { return c.ControlCategory },
		Set: func(c *CellSettings, v string) error { c.ControlCategory = v; return checkCategory(v) }},
	trainAxis("seed", "seed(s)", func(o TrainOptions) string { return strconv.FormatUint(o.Seed, 10) },
		func(o *TrainOptions, v string) error {
			s, err := strconv.ParseUint(v, 10, 64)
			o.Seed = s
			return err
		}),
}

func setInt(dst *int, v string) error {
	n, err := strconv.Atoi(v)
	if err != nil {
		return fmt.Errorf("want an integer")
	}
	*dst = n
	return nil
}

func setFloat(dst *float64, v string) error {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return fmt.Errorf("want a number")
	}
	*dst = f
	return nil
}

// sweepAxis returns the axis called name.
func sweepAxis(name string) (SweepAxis, bool) {
	for _, a := range SweepAxes {
		if a.Name == name {
			return a, true
		}
	}
	return SweepAxis{}, false
}

// AxisValues is one varied axis of a sweep and its values, as written.
type AxisValues struct {
	Name   string   `json:"name"`
	Values []string `json:"values"`
}

// SplitAxis splits a flag's value into the axis's values.
func SplitAxis(name, value string) []string {
	a, _ := sweepAxis(name)
	sep := a.Sep
	if sep == "" {
		sep = ","
	}
	var out []string
	for _, v := range strings.Split(value, sep) {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// SweepSpec is a sweep's grid: the options every cell starts from and the
// axes it varies (in SweepAxes order; an axis with one value is not
// varied and belongs in Base).
type SweepSpec struct {
	Base CellSettings
	Axes []AxisValues
}

// Cell is one point of the grid.
type Cell struct {
	Index  int
	Name   string   // the folder name under cells/
	Values []string // one per axis of the spec
	CellSettings
}

// Cells returns the grid's cells in a fixed order: the Cartesian product of
// the axes, the first axis varying slowest. Every value must apply to the
// options (errors name the axis and value); duplicate values are errors.
func (s SweepSpec) Cells() ([]Cell, error) {
	order := map[string]int{}
	for i, a := range SweepAxes {
		order[a.Name] = i
	}
	last := -1
	for _, ax := range s.Axes {
		i, ok := order[ax.Name]
		if !ok {
			return nil, optErr("Axes", "%q is not an axis (want some of %s)", ax.Name, axisNames())
		}
		if i <= last {
			return nil, optErr("Axes", "%q is out of order or repeated (axes go in the order %s)", ax.Name, axisNames())
		}
		last = i
		if len(ax.Values) == 0 {
			return nil, optErr(axisField(ax.Name), "has no values")
		}
		seen := map[string]bool{}
		for _, v := range ax.Values {
			if seen[v] {
				return nil, optErr(axisField(ax.Name), "lists %q twice", v)
			}
			seen[v] = true
		}
	}
	n := 1
	for _, ax := range s.Axes {
		n *= len(ax.Values)
		if n > MaxSweepCells {
			return nil, optErr("Axes", "make more than %d cells (tli.MaxSweepCells)", MaxSweepCells)
		}
	}
	cells := make([]Cell, n)
	for i := range cells {
		c := Cell{Index: i, CellSettings: s.Base}
		c.Train.LoRA.TargetModules = append([]string(nil), s.Base.Train.LoRA.TargetModules...)
		rest := i
		c.Values = make([]string, len(s.Axes))
		for k := len(s.Axes) - 1; k >= 0; k-- {
			ax := s.Axes[k]
			c.Values[k] = ax.Values[rest%len(ax.Values)]
			rest /= len(ax.Values)
		}
		var parts []string
		for k, ax := range s.Axes {
			a, _ := sweepAxis(ax.Name)
			if err := a.Set(&c.CellSettings, c.Values[k]); err != nil {
				return nil, optErr(axisField(ax.Name), "%q: %v", c.Values[k], err)
			}
			parts = append(parts, ax.Name+"-"+nameSafe(c.Values[k]))
		}
		c.Name = strings.Join(parts, "_")
		if c.Name == "" {
			c.Name = "base"
		}
		cells[i] = c
	}
	return cells, nil
}

// SweepPart is one grid of a preset, run in its own folder OUT/Name.
type SweepPart struct {
	Name string
	Axes []AxisValues
}

// SweepPresets are named sets of grids. paper-ablations is the paper's
// three suggested experiments: the target layer (2, 10, 31), the rank (4,
// 16, 64) and training on one word class while evaluating on another (the
// pair lists must carry categories, e.g. from tli pairs --freedict).
var SweepPresets = map[string][]SweepPart{
	"paper-ablations": {
		{Name: "layer", Axes: []AxisValues{{Name: "layer", Values: []string{"2", "10", "31"}}}},
		{Name: "rank", Axes: []AxisValues{{Name: "rank", Values: []string{"4", "16", "64"}}}},
		{Name: "word-class", Axes: []AxisValues{{Name: "train-category", Values: []string{"n", "v"}}, {Name: "control-category", Values: []string{"n", "v"}}}},
	},
}

// MaxSweepCells bounds a grid.
const MaxSweepCells = 10000

func axisNames() string {
	var n []string
	for _, a := range SweepAxes {
		n = append(n, a.Name)
	}
	return strings.Join(n, ", ")
}

// axisField is the TrainOptions field an axis sets, for OptionError.
func axisField(name string) string {
	return map[string]string{"layer": "Layer", "rank": "LoRA.R", "alpha": "LoRA.Alpha", "targets": "LoRA.TargetModules",
		"margin": "Margin", "lr": "LR", "epochs": "Epochs", "pooling": "Pooling", "seed": "Seed",
		"train-category": "TrainCategory", "control-category": "ControlCategory"}[name]
}

// nameSafe keeps a value readable in a folder name: letters, digits and
// . + - _ stay, ',' becomes '+', anything else '-'.
func nameSafe(v string) string {
	var b strings.Builder
	for _, r := range v {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '+', r == '-', r == '_':
			b.WriteRune(r)
		case r == ',':
			b.WriteByte('+')
		default:
			b.WriteByte('-')
		}
	}
	return b.String()
}

// Shard selects the cells a process runs: those with Index mod N == I.
type Shard struct{ I, N int }

// All is the shard of every cell.
var All = Shard{0, 1}

// Has reports whether the shard runs cell index i.
func (s Shard) Has(i int) bool { return i%s.N == s.I }

func (s Shard) String() string { return fmt.Sprintf("%d/%d", s.I, s.N) }

// ParseShard reads "I/N" with 0 <= I < N.
func ParseShard(v string) (Shard, error) {
	is, ns, ok := strings.Cut(v, "/")
	i, err1 := strconv.Atoi(is)
	n, err2 := strconv.Atoi(ns)
	if !ok || err1 != nil || err2 != nil || n < 1 || i < 0 || i >= n {
		return Shard{}, fmt.Errorf("%q: want I/N with 0 <= I < N", v)
	}
	return Shard{i, n}, nil
}

// ShardFromEnv finds the shard a scheduler gave this process: a Slurm
// array task (SLURM_ARRAY_TASK_ID of SLURM_ARRAY_TASK_COUNT tasks; IDs
// from SLURM_ARRAY_TASK_MIN on) or a Kubernetes Indexed Job
// (JOB_COMPLETION_INDEX, with shards > 0 the number of completions).
// ok is false when neither is set.
func ShardFromEnv(getenv func(string) string, shards int) (s Shard, source string, ok bool, err error) {
	if id := getenv("SLURM_ARRAY_TASK_ID"); id != "" {
		i, err := strconv.Atoi(id)
		if err != nil {
			return s, "", false, fmt.Errorf("SLURM_ARRAY_TASK_ID %q is not a number", id)
		}
		n, err := strconv.Atoi(getenv("SLURM_ARRAY_TASK_COUNT"))
		if err != nil {
			return s, "", false, fmt.Errorf("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT %q is not a number", getenv("SLURM_ARRAY_TASK_COUNT"))
		}
		if m := getenv("SLURM_ARRAY_TASK_MIN"); m != "" {
			if lo, err := strconv.Atoi(m); err == nil {
				i -= lo
			}
		}
		if shards > 0 {
			n = shards
		}
		if n < 1 || i < 0 || i >= n {
			return s, "", false, fmt.Errorf("Slurm array task %d of %d: want array indices 0..%d (sbatch --array=0-%d)", i, n, n-1, n-1)
		}
		return Shard{i, n}, "Slurm array", true, nil
	}
	if id := getenv("JOB_COMPLETION_INDEX"); id != "" {
		i, err := strconv.Atoi(id)
		if err != nil {
			return s, "", false, fmt.Errorf("JOB_COMPLETION_INDEX %q is not a number", id)
		}
		if shards < 1 {
			return s, "", false, fmt.Errorf("JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job): give the number of completions as --shards N")
		}
		if i < 0 || i >= shards {
			return s, "", false, fmt.Errorf("JOB_COMPLETION_INDEX %d is outside [0, %d) (--shards %d)", i, shards, shards)
		}
		return Shard{i, shards}, "Kubernetes Indexed Job", true, nil
	}
	return s, "", false, nil
}

// SweepOptions are the inputs of Sweep.
type SweepOptions struct {
	Spec   SweepSpec
	Groups []Group // trained pairs, then control pairs
	Out    string  // the sweep folder: sweep-spec.json, scan-POOLING/, cells/
	Shard  Shard
	Model  string // name in reports and the spec
	Pairs  string // names of the pair lists, in the spec
	Stdout io.Writer
	// OnCell is called before a cell runs (done = false) and after (done =
	// true); OnStep during its training.
	OnCell func(c Cell, done bool)
	OnStep func(StepLog)
	// Prepare computes and writes the base model's vectors and scans for
	// every pooling of the grid, and runs no cell: a job a Slurm array can
	// depend on, so that its tasks do not all compute them at once.
	Prepare bool
	// EvalScope is the cells' evaluation (see RunOptions.EvalScope); ""
	// means EvalToTrain: a cell's result is read at its training layer, and
	// the adapted pass stops there.
	EvalScope EvalScope
	// Device, when not nil, holds the model's weights and runs the base
	// vectors and every cell (see RunOptions.Device); nil: the CPU.
	Device Device
}

func (o SweepOptions) evalScope() EvalScope {
	if o.EvalScope == "" {
		return EvalToTrain
	}
	return o.EvalScope
}

// sweepSpecFile is the description of the grid a sweep folder holds:
// every shard checks it holds its own grid.
const sweepSpecFile = "sweep-spec.json"

type specJSON struct {
	Model   string            `json:"model"`
	Pairs   string            `json:"pairs"`
	Base    map[string]string `json:"base"`
	Fixed   map[string]any    `json:"fixed"`
	Axes    []AxisValues      `json:"axes"`
	Cells   []string          `json:"cells"`
	Version int               `json:"version"`
}

func (o SweepOptions) specBytes(cells []Cell, num llama.Numerics) ([]byte, error) {
	base := map[string]string{}
	for _, a := range SweepAxes {
		base[a.Name] = a.Get(o.Spec.Base)
	}
	b := o.Spec.Base.Train
	sj := specJSON{Model: o.Model, Pairs: o.Pairs, Base: base, Axes: o.Spec.Axes, Version: 1,
		Fixed: map[string]any{"batch": b.Batch, "warmup": b.Warmup, "dropout": b.LoRA.Dropout, "shuffle": b.Shuffle, "max_steps": b.MaxSteps, "eval_layers": string(o.evalScope())}}
	if n := num.String(); n != "f32" { // the base vectors depend on it (absent from older specs: f32)
		sj.Fixed["numerics"] = n
	}
	for _, c := range cells {
		sj.Cells = append(sj.Cells, c.Name)
	}
	if sj.Axes == nil {
		sj.Axes = []AxisValues{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(sj); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// CellResult is what a cell records in cell.json and gather reads.
type CellResult struct {
	Index        int               `json:"index"`
	Name         string            `json:"name"`
	Values       map[string]string `json:"values"`
	Layer        int               `json:"layer"`
	Steps        int               `json:"steps"`
	Groups       []map[string]any  `json:"groups"` // the training layer's summary of each group
	TrainSeconds float64           `json:"train_seconds"`
}

const cellFile = "cell.json"

// Sweep runs the cells of o.Shard that are not complete in o.Out/cells
// (a complete cell folder is skipped: a rerun, or a requeued array task,
// goes on where it stopped). m must hold every layer. It returns the
// cells it ran and those it skipped as complete.
func Sweep(ctx context.Context, m *llama.Model, tok Encoder, o SweepOptions) (ran, skipped []Cell, err error) {
	w := o.Stdout
	if w == nil {
		w = io.Discard
	}
	if o.Shard.N == 0 {
		o.Shard = All
	}
	cells, err := o.Spec.Cells()
	if err != nil {
		return nil, nil, err
	}
	for _, c := range cells {
		groups, _, err := c.Select(o.Groups)
		if err != nil {
			return nil, nil, fmt.Errorf("cell %s: %w", c.Name, err)
		}
		if err := c.Train.Validate(m.Config, len(groups[0].Pairs)); err != nil {
			return nil, nil, fmt.Errorf("cell %s: %w", c.Name, err)
		}
	}
	spec, err := o.specBytes(cells, m.Numerics)
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(filepath.Join(o.Out, "cells"), 0o755); err != nil {
		return nil, nil, err
	}
	specPath := filepath.Join(o.Out, sweepSpecFile)
	if old, err := os.ReadFile(specPath); err == nil {
		if !bytes.Equal(old, spec) {
			return nil, nil, fmt.Errorf("%s describes another sweep (model, pairs, settings or axes differ): use another --out, or the same flags as the sweep that wrote it", specPath)
		}
	} else if err := atomicfs.WriteFile(specPath, spec); err != nil {
		return nil, nil, err
	}
	all := LayerRange(m.Config.NumLayers)
	var base GroupVectors
	for _, c := range cells {
		if o.Prepare {
			if base[c.Train.Pooling] == nil {
				if base, err = sweepBase(ctx, m, tok, o, base, c.Train.Pooling, all, w); err != nil {
					return nil, nil, err
				}
			}
			continue
		}
		if !o.Shard.Has(c.Index) {
			continue
		}
		final := filepath.Join(o.Out, "cells", c.Name)
		if _, err := os.Stat(filepath.Join(final, cellFile)); err == nil {
			skipped = append(skipped, c)
			continue
		}
		if err := ctx.Err(); err != nil {
			return ran, skipped, ErrInterrupted
		}
		if p := c.Train.Pooling; base[p] == nil {
			if base, err = sweepBase(ctx, m, tok, o, base, p, all, w); err != nil {
				return ran, skipped, err
			}
		}
		if o.OnCell != nil {
			o.OnCell(c, false)
		}
		groups, idx, err := c.Select(o.Groups)
		if err != nil {
			return ran, skipped, err
		}
		if err := runCell(ctx, m, tok, o, c, groups, subsetVectors(base, idx), final); err != nil {
			return ran, skipped, err
		}
		ran = append(ran, c)
		if o.OnCell != nil {
			o.OnCell(c, true)
		}
	}
	return ran, skipped, nil
}

// sweepBase adds the base model's vectors for pooling p to base: read from
// the sweep folder, or computed and written there (with the scan). Shards
// started together (an array without a --prepare job) compute them once:
// the first takes a lock file beside the vectors (see baseLock) and the
// others wait for its result.
func sweepBase(ctx context.Context, m *llama.Model, tok Encoder, o SweepOptions, base GroupVectors, p Pooling, all []int, w io.Writer) (GroupVectors, error) {
	if base == nil {
		base = GroupVectors{}
	}
	path := baseFile(o.Out, p)
	load := func() (GroupVectors, error) { return loadBase(path, p, o.Groups, all, m.Config.HiddenSize) }
	gv, err := load()
	waited, computed := false, false
	for err != nil {
		if !os.IsNotExist(err) {
			fmt.Fprintf(w, "%v; computing them again\n", err)
		}
		unlock, held, lerr := baseLock(path + ".lock")
		if lerr != nil {
			return base, lerr
		}
		if !held {
			// Another shard is computing them: wait for its file.
			if !waited {
				fmt.Fprintf(w, "== base model vectors (%s pooling): another shard is computing them (%s); waiting\n", p, path+".lock")
				waited = true
			}
			select {
			case <-ctx.Done():
				return base, ErrInterrupted
			case <-time.After(lockPoll):
			}
			gv, err = load()
			continue
		}
		fmt.Fprintf(w, "== base model vectors: %d + %d pairs, layers 0..%d, %s pooling\n", len(o.Groups[0].Pairs), groupLen(o.Groups, 1), m.Config.NumLayers, p)
		gv, err = EmbedGroups(embedder(m, o.Device, tok), o.Groups, all, []Pooling{p})
		if err == nil {
			err = saveBase(path, gv, p, o.Groups, all)
		}
		unlock()
		if err != nil {
			return base, err
		}
		computed = true
	}
	if !computed {
		fmt.Fprintf(w, "== base model vectors (%s pooling) from %s\n", p, path)
	}
	base[p] = gv[p]
	if err := writeSweepScan(filepath.Join(o.Out, "scan-"+string(p)), base, o, p); err != nil {
		return base, err
	}
	return base, nil
}

// Timing of the base-vector lock: the holder refreshes the lock file's
// modification time every lockBeat; a lock not refreshed for lockStale
// belongs to a process that died and is taken over; waiters look for the
// result every lockPoll.
var (
	lockBeat  = 20 * time.Second
	lockStale = 2 * time.Minute
	lockPoll  = 5 * time.Second
)

// holderGone reports whether the lock file at path was written by a
// process of this host that no longer runs (killed, crashed): then the lock
// is stale at once, without waiting for lockStale.
func holderGone(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	var host string
	var pid int
	if _, err := fmt.Sscanf(string(b), "%s %d", &host, &pid); err != nil || pid <= 0 {
		return false
	}
	if me, _ := os.Hostname(); host != me {
		return false
	}
	return !processAlive(pid)
}

// baseLock tries to take the lock file path (created with O_EXCL, which
// shared filesystems honour). held is false when another live process holds
// it. A stale lock (its holder stopped refreshing it, or is a process of
// this host that no longer runs) is moved aside under
// a unique name and removed, so that of several waiters only one takes it
// over. unlock stops the refreshing and removes the file.
func baseLock(path string) (unlock func(), held bool, err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		if !os.IsExist(err) {
			return nil, false, fmt.Errorf("base vectors lock: %w", err)
		}
		st, serr := os.Stat(path)
		if serr != nil {
			return nil, false, nil // just released: look again
		}
		if time.Since(st.ModTime()) < lockStale && !holderGone(path) {
			return nil, false, nil // held: look again later
		}
		aside := fmt.Sprintf("%s.stale-%d-%d", path, os.Getpid(), time.Now().UnixNano())
		if os.Rename(path, aside) == nil {
			os.Remove(aside)
		}
		return nil, false, nil // the next attempt may create it
	}
	host, _ := os.Hostname()
	fmt.Fprintf(f, "%s %d %s\n", host, os.Getpid(), time.Now().UTC().Format(time.RFC3339))
	f.Close()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(lockBeat)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				os.Chtimes(path, now, now)
			}
		}
	}()
	return func() {
		close(stop)
		<-done
		os.Remove(path)
	}, true, nil
}

// baseFile is where a sweep keeps the base model's vectors of its pairs
// for pooling p: computed by the first process that needs them (one pass
// over every layer) and read by the others, as they are, so every shard
// compares against the same bytes.
func baseFile(out string, p Pooling) string {
	return filepath.Join(out, "base-"+string(p)+".safetensors")
}

// baseName names the tensor of a group's side at a layer.
func baseName(group, side string, layer int) string {
	return fmt.Sprintf("%s.%s.%d", group, side, layer)
}

func saveBase(path string, gv GroupVectors, p Pooling, groups []Group, layers []int) error {
	var ts []llama.NamedTensor
	for _, g := range groups {
		for _, k := range layers {
			v, ok := gv.Get(p, k, g.Name)
			if !ok {
				return fmt.Errorf("tli: base vectors: no %s pairs at layer %d", g.Name, k)
			}
			for _, side := range []struct {
				name string
				rows [][]float32
			}{{"src", v.Src}, {"tgt", v.Tgt}} {
				d := 0
				if len(side.rows) > 0 {
					d = len(side.rows[0])
				}
				flat := make([]float32, 0, len(side.rows)*d)
				for _, r := range side.rows {
					flat = append(flat, r...)
				}
				ts = append(ts, llama.NamedTensor{Name: baseName(g.Name, side.name, k), Tensor: engine.FromF32(flat, len(side.rows), d)})
			}
		}
	}
	return llama.WriteSafetensorsOrdered(path, ts, map[string]string{"pooling": string(p), "pairs": pairsDigest(groups)})
}

// pairsDigest identifies the pair lists a base file was computed for.
func pairsDigest(groups []Group) string {
	h := sha256.New()
	for _, g := range groups {
		fmt.Fprintf(h, "%s\x00%d\x00", g.Name, len(g.Pairs))
		for _, pr := range g.Pairs {
			fmt.Fprintf(h, "%s\x00%s\x00", pr.Source, pr.Target)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// loadBase reads a base file written by saveBase for these groups and
// layers; any mismatch is an error (the caller computes them again).
func loadBase(path string, p Pooling, groups []Group, layers []int, d int) (GroupVectors, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	ts, meta, err := llama.ReadSafetensors(path)
	if err != nil {
		return nil, err
	}
	if meta["pooling"] != string(p) || meta["pairs"] != pairsDigest(groups) {
		return nil, fmt.Errorf("%s: written for other pairs or another pooling", path)
	}
	gv := GroupVectors{p: {}}
	for _, k := range layers {
		gv[p][k] = map[string]PairVectors{}
		for _, g := range groups {
			var pv PairVectors
			for _, side := range []*[][]float32{&pv.Src, &pv.Tgt} {
				name := baseName(g.Name, map[bool]string{true: "src", false: "tgt"}[side == &pv.Src], k)
				t, ok := ts[name]
				if !ok || t.DType != engine.F32 || len(t.Shape) != 2 || t.Shape[0] != len(g.Pairs) || t.Shape[1] != d {
					return nil, fmt.Errorf("%s: tensor %s missing or not [%d×%d] f32", path, name, len(g.Pairs), d)
				}
				rows := make([][]float32, len(g.Pairs))
				for i := range rows {
					rows[i] = t.F32[i*d : (i+1)*d : (i+1)*d]
				}
				*side = rows
			}
			gv[p][k][g.Name] = pv
		}
	}
	return gv, nil
}

// writeSweepScan writes the base model's scan for pooling p once per sweep
// folder (the first shard to get there; all would write the same bytes).
func writeSweepScan(dir string, base GroupVectors, o SweepOptions, p Pooling) error {
	if _, err := os.Stat(filepath.Join(dir, "scan.csv")); err == nil {
		return nil
	}
	stats, err := ScanVectors(base, o.Groups[0].Name, p)
	if err != nil {
		return err
	}
	d, err := atomicfs.NewDir(dir)
	if err != nil {
		return err
	}
	defer d.Abort()
	res := &ScanResult{Model: o.Model, Pairs: o.Pairs, Pooling: p, Layers: stats}
	if err := WriteScan(d.Path(), res, io.Discard); err != nil {
		return err
	}
	if err := d.Commit(false); err != nil && !errors.Is(err, os.ErrExist) {
		if _, serr := os.Stat(filepath.Join(dir, "scan.csv")); serr == nil {
			return nil // another shard wrote it first
		}
		return err
	}
	return nil
}

// Select selects the cell's word classes from the trained and control
// groups; idx maps each group to the indices of the pairs kept (nil for a
// group kept whole).
func (c Cell) Select(all []Group) ([]Group, map[string][]int, error) {
	out := append([]Group(nil), all...)
	idx := map[string][]int{}
	for gi, cat := range []string{c.TrainCategory, c.ControlCategory} {
		if cat == "" || gi >= len(out) {
			continue
		}
		var keep []Pair
		var at []int
		for i, p := range out[gi].Pairs {
			if p.Category == cat {
				keep, at = append(keep, p), append(at, i)
			}
		}
		if _, err := SelectCategory(out[gi].Pairs, cat); err != nil {
			return nil, nil, fmt.Errorf("%s pairs: %v", out[gi].Name, err)
		}
		out[gi] = Group{Name: out[gi].Name, Pairs: keep}
		idx[out[gi].Name] = at
	}
	return out, idx, nil
}

// subsetVectors keeps, for each group in idx, the rows of the selected
// pairs; other groups are shared as they are.
func subsetVectors(gv GroupVectors, idx map[string][]int) GroupVectors {
	if len(idx) == 0 {
		return gv
	}
	out := GroupVectors{}
	for p, byLayer := range gv {
		out[p] = map[int]map[string]PairVectors{}
		for k, byGroup := range byLayer {
			out[p][k] = map[string]PairVectors{}
			for g, v := range byGroup {
				at, ok := idx[g]
				if !ok {
					out[p][k][g] = v
					continue
				}
				var sub PairVectors
				for _, i := range at {
					sub.Src = append(sub.Src, v.Src[i])
					sub.Tgt = append(sub.Tgt, v.Tgt[i])
				}
				out[p][k][g] = sub
			}
		}
	}
	return out
}

// runCell trains and evaluates one cell in a folder beside final and moves
// it in when complete (cell.json last inside it).
func runCell(ctx context.Context, m *llama.Model, tok Encoder, o SweepOptions, c Cell, groups []Group, base GroupVectors, final string) error {
	d, err := atomicfs.NewDir(final)
	if err != nil {
		return err
	}
	defer d.Abort()
	cellName := filepath.Join("cells", c.Name)
	res, err := Run(ctx, m, tok, RunOptions{
		Train: c.Train, ScanPooling: c.Train.Pooling, EvalPooling: c.Train.Pooling, EvalScope: o.evalScope(), Groups: groups,
		Out: d.Path(), OutName: cellName, Model: o.Model, PairsName: o.Pairs, Base: base, SkipScanFiles: true,
		Commands: []string{"tli sweep cell " + c.Name}, OnStep: o.OnStep, Device: o.Device,
	})
	if err != nil {
		if IsInterrupted(err) {
			return err // the cell's partial folder is dropped: it reruns whole
		}
		return fmt.Errorf("cell %s: %w", c.Name, err)
	}
	cr := CellResult{Index: c.Index, Name: c.Name, Values: map[string]string{}, Layer: res.Train.Layer,
		Steps: res.Train.Steps(len(groups[0].Pairs)), TrainSeconds: res.TrainSeconds}
	for k, ax := range o.Spec.Axes {
		cr.Values[ax.Name] = c.Values[k]
	}
	for _, g := range res.Eval.Summary.Groups {
		if g.Layer == res.Train.Layer {
			cr.Groups = append(cr.Groups, groupJSON(g))
		}
	}
	js, err := json.MarshalIndent(cr, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfs.WriteFile(filepath.Join(d.Path(), cellFile), append(js, '\n')); err != nil {
		return err
	}
	if err := d.Commit(false); err != nil {
		if _, serr := os.Stat(filepath.Join(final, cellFile)); serr == nil {
			return nil // another process completed the same cell first
		}
		return err
	}
	return nil
}

// SweepTable is the gathered result of a sweep: one row per cell in grid
// order.
type SweepTable struct {
	Axes  []AxisValues
	Cells []CellResult
}

// sweepGroupCols are the per-group columns of sweep.csv, from each group's
// summary at the cell's training layer.
var sweepGroupCols = []string{"mean_pre", "mean_post", "baseline_pre", "baseline_post", "gap_pre", "gap_post", "p_at_1_pre", "p_at_1_post", "t_p", "wilcoxon_p", "d_z"}

// Gather reads a sweep folder's spec and cells. Missing cells are an error
// naming them (nothing is written); otherwise it writes sweep.csv,
// sweep.json and sweep.md, whose bytes depend only on the cells' results
// (no times, hosts or paths: the same whether the grid ran in one process
// or in shards). Per-cell training times go to timing.csv.
func Gather(dir string) (*SweepTable, error) {
	specPath := filepath.Join(dir, sweepSpecFile)
	raw, err := os.ReadFile(specPath)
	if err != nil {
		return nil, fmt.Errorf("%s: not a sweep folder (%v)", dir, err)
	}
	var sj specJSON
	if err := json.Unmarshal(raw, &sj); err != nil {
		return nil, fmt.Errorf("%s: %v", specPath, err)
	}
	t := &SweepTable{Axes: sj.Axes}
	var missing []string
	for i, name := range sj.Cells {
		b, err := os.ReadFile(filepath.Join(dir, "cells", name, cellFile))
		if err != nil {
			missing = append(missing, name)
			continue
		}
		var cr CellResult
		if err := json.Unmarshal(b, &cr); err != nil || cr.Index != i || cr.Name != name {
			return nil, fmt.Errorf("%s: not the result of cell %d %s (%v)", filepath.Join(dir, "cells", name, cellFile), i, name, err)
		}
		t.Cells = append(t.Cells, cr)
	}
	if len(missing) > 0 {
		show := missing
		if len(show) > 20 {
			show = append(show[:20:20], fmt.Sprintf("... (%d more)", len(missing)-20))
		}
		return t, fmt.Errorf("sweep %s: %d of %d cells are not complete: %s", dir, len(missing), len(sj.Cells), strings.Join(show, ", "))
	}
	if err := t.write(dir); err != nil {
		return t, err
	}
	return t, nil
}

// header is the column list of sweep.csv.
func (t *SweepTable) header() []string {
	var h []string
	for _, a := range t.Axes {
		h = append(h, a.Name)
	}
	h = append(h, "train_layer", "steps")
	for _, g := range []string{"trained", "control"} {
		for _, c := range sweepGroupCols {
			h = append(h, g+"_"+c)
		}
	}
	return h
}

// rows are the cells' values as written in sweep.csv.
func (t *SweepTable) rows() [][]string {
	var out [][]string
	for _, c := range t.Cells {
		var r []string
		for _, a := range t.Axes {
			r = append(r, c.Values[a.Name])
		}
		r = append(r, strconv.Itoa(c.Layer), strconv.Itoa(c.Steps))
		for _, g := range []string{"trained", "control"} {
			m := map[string]any{}
			for _, gj := range c.Groups {
				if gj["group"] == g {
					m = gj
				}
			}
			for _, col := range sweepGroupCols {
				r = append(r, cellValue(m, col))
			}
		}
		out = append(out, r)
	}
	return out
}

// sweepColPaths are where each per-group column of sweep.csv is in a
// group's summary JSON (as groupJSON writes it).
var sweepColPaths = map[string][]string{
	"mean_pre": {"mean_pre"}, "mean_post": {"mean_post"},
	"baseline_pre": {"pre", "mismatched_mean"}, "baseline_post": {"post", "mismatched_mean"},
	"gap_pre": {"pre", "gap"}, "gap_post": {"post", "gap"},
	"p_at_1_pre": {"pre", "precision_at_1"}, "p_at_1_post": {"post", "precision_at_1"},
	"t_p": {"ttest", "p"}, "wilcoxon_p": {"wilcoxon", "p"}, "d_z": {"cohens_dz"},
}

// cellValue takes column col from a group's summary JSON (as groupJSON
// writes it, read back).
func cellValue(g map[string]any, col string) string {
	get := func(path ...string) any {
		var v any = g
		for _, p := range path {
			mm, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = mm[p]
		}
		return v
	}
	v := get(sweepColPaths[col]...)
	switch x := v.(type) {
	case float64:
		return fmtFloat(x)
	case string:
		return x
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func (t *SweepTable) write(dir string) error {
	h, rows := t.header(), t.rows()
	var csvb bytes.Buffer
	csvb.WriteString(strings.Join(h, ",") + "\n")
	for _, r := range rows {
		csvb.WriteString(strings.Join(csvQuote(r), ",") + "\n")
	}
	if err := atomicfs.WriteFile(filepath.Join(dir, "sweep.csv"), csvb.Bytes()); err != nil {
		return err
	}
	type jrow map[string]string
	var js []jrow
	for _, r := range rows {
		m := jrow{}
		for i, c := range h {
			m[c] = r[i]
		}
		js = append(js, m)
	}
	jb, err := json.MarshalIndent(map[string]any{"schema": SchemaVersion, "axes": t.Axes, "columns": h, "cells": js}, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfs.WriteFile(filepath.Join(dir, "sweep.json"), append(jb, '\n')); err != nil {
		return err
	}
	// Plots: gain against each numeric axis, trained against control.
	plots := []string{}
	for _, a := range t.Axes {
		if a.Name != "layer" && a.Name != "rank" && a.Name != "alpha" && a.Name != "margin" && a.Name != "lr" && a.Name != "epochs" {
			continue
		}
		name := plotFile("gain_vs_" + a.Name)
		if err := PlotSweepGain(filepath.Join(dir, name), t, a.Name, "Gain of the alignment gap by "+a.Name); err != nil {
			return err
		}
		plots = append(plots, name)
	}
	if len(t.Cells) > 0 {
		if err := PlotTrainedVsControl(filepath.Join(dir, plotFile("trained_vs_control")), t, "Gain of the gap: control against trained pairs, one point per cell"); err == nil {
			plots = append(plots, plotFile("trained_vs_control"))
		}
	}
	var md strings.Builder
	md.WriteString("# TLI sweep\n\n")
	fmt.Fprintf(&md, "%d cells. Values at each cell's training layer; baseline: mean cosine of mismatched pairs; gap: mean - baseline; P@1: retrieval precision; p: paired t-test and Wilcoxon signed-rank, post vs pre.\n\n", len(rows))
	short := []string{"train_layer", "trained_mean_pre", "trained_mean_post", "trained_gap_pre", "trained_gap_post", "trained_p_at_1_post", "control_mean_post", "control_gap_pre", "control_gap_post", "trained_t_p"}
	var cols []int
	for i, c := range h {
		if i < len(t.Axes) || slices.Contains(short, c) {
			cols = append(cols, i)
		}
	}
	for _, i := range cols {
		md.WriteString("| " + h[i] + " ")
	}
	md.WriteString("|\n")
	for range cols {
		md.WriteString("|---")
	}
	md.WriteString("|\n")
	for _, r := range rows {
		for _, i := range cols {
			v := r[i]
			if f, err := strconv.ParseFloat(v, 64); err == nil && i >= len(t.Axes)+2 {
				v = strconv.FormatFloat(f, 'g', 4, 64)
			}
			md.WriteString("| " + v + " ")
		}
		md.WriteString("|\n")
	}
	for _, pl := range plots {
		fmt.Fprintf(&md, "\n![%s](%s)\n", strings.TrimSuffix(pl, filepath.Ext(pl)), pl)
	}
	md.WriteString("\nAll columns: sweep.csv. Training time per cell: timing.csv (it varies between runs, so it is kept out of these files).\n")
	if err := atomicfs.WriteFile(filepath.Join(dir, "sweep.md"), []byte(md.String())); err != nil {
		return err
	}
	var tb bytes.Buffer
	tb.WriteString("cell,train_seconds\n")
	for _, c := range t.Cells {
		fmt.Fprintf(&tb, "%s,%.3f\n", c.Name, c.TrainSeconds)
	}
	return atomicfs.WriteFile(filepath.Join(dir, "timing.csv"), tb.Bytes())
}

// csvQuote quotes fields holding a comma or a quote (targets lists).
func csvQuote(r []string) []string {
	out := make([]string, len(r))
	for i, f := range r {
		if strings.ContainsAny(f, ",\"\n") {
			f = `"` + strings.ReplaceAll(f, `"`, `""`) + `"`
		}
		out[i] = f
	}
	return out
}
