package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/internal/atomicfs"
	"github.com/tli-project/tli/internal/limitread"
	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/llama/tokenizer"
	"github.com/tli-project/tli/tli"
	"github.com/tli-project/tli/vulkan"
)

func init() {
	if llama.SynthTokenizer == nil {
		llama.SynthTokenizer = tokenizer.Synth
	}
}

// modelFlags are the flags every command that reads a checkpoint shares.
type modelFlags struct {
	dir      *string // --model; a checkpoint folder once resolve has run
	repo     *string // the Hugging Face repo id --model named ("" for a folder), set by resolve
	resolved *bool
	dtype    *string
	threads  *int
	fast     *bool
	progress *string
	device   *string // --device: cpu, or vulkan[:N] (a -tags vulkan build)
	// --activations, --quant, --double-quant: the numeric setting.
	activations, quant *string
	doubleQuant        *bool
	// paper, when not nil, is the published setting --paper-compat chose
	// for this command, which the numeric flags may not contradict.
	paper *llama.Numerics
}

func addModelFlags(fs interface {
	String(string, string, string) *string
	Int(string, int, string) *int
	Bool(string, bool, string) *bool
}, dtype string) modelFlags {
	return modelFlags{
		dir:         fs.String("model", "", modelUsage),
		repo:        new(string),
		resolved:    new(bool),
		dtype:       fs.String("dtype", dtype, "how weights are held in memory: f32 or bf16 (bf16 halves memory; products stay f32)"),
		threads:     fs.Int("threads", 0, "worker threads (0: all cores)"),
		fast:        fs.Bool("fast", false, "with --dtype bf16: round activations to bf16 in matrix products, as PyTorch's bf16 matmul (about 2x faster; relative errors near 1e-2)"),
		progress:    fs.String("progress", "auto", "progress on stderr: auto (a bar on a terminal, lines otherwise), bar, plain, jsonl (one JSON object per update) or none"),
		device:      fs.String("device", "cpu", "where to compute: cpu, or vulkan / vulkan:N (a -tags vulkan build; tli devices lists them)"),
		activations: fs.String("activations", "f32", "dtype of the residual stream and every op's output, and of the weights before any quantisation (transformers' torch_dtype): f32 (exact), bf16 or fp16 (the published setting)"),
		quant:       fs.String("quant", "", "quantise every decoder Linear weight at load as bitsandbytes 4-bit: nf4 or fp4 (blocksize 64, products in bf16); a checkpoint saved 4-bit needs none"),
		doubleQuant: fs.Bool("double-quant", false, "with --quant: quantise the block scales too (bnb_4bit_use_double_quant)"),
	}
}

// defaultModelFlags are the model flags' defaults for the checkpoint in dir.
func defaultModelFlags(dir string) modelFlags {
	dtype, threads, fast, prog, device, act := "f32", 0, false, "auto", "cpu", "f32"
	return modelFlags{dir: &dir, repo: new(string), resolved: new(bool), dtype: &dtype, threads: &threads, fast: &fast, progress: &prog, device: &device,
		activations: &act, quant: new(string), doubleQuant: new(bool)}
}

// modelUsage is --model's help.
const modelUsage = "checkpoint folder in Hugging Face layout (config.json, *.safetensors, tokenizer.json), or a Hugging Face repo id org/name[@revision] in the local cache (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub), as transformers finds it offline"

// resolveModel turns a --model argument into a checkpoint folder and the
// Hugging Face repo id it names ("" for a folder), or a usage error of one
// line saying what was expected.
func resolveModel(arg string) (dir, repo string, err error) {
	if arg == "" {
		return "", "", usageErrorf("--model is required")
	}
	dir, repo, err = llama.ResolveModel(arg)
	if err != nil {
		return "", "", usageErrorf("--model %v", err)
	}
	return dir, repo, nil
}

// resolve turns --model into a checkpoint folder (a repo id through the
// Hugging Face cache) the first time it is called; commands call it before
// they use --model as a path.
func (f modelFlags) resolve() error {
	if *f.resolved {
		return nil
	}
	dir, repo, err := resolveModel(*f.dir)
	if err != nil {
		return err
	}
	*f.dir, *f.repo, *f.resolved = dir, repo, true
	return nil
}

// name is the model as reports name it: the repo id --model gave, else
// the folder as given.
func (f modelFlags) name() string {
	if *f.repo != "" {
		return *f.repo
	}
	return *f.dir
}

// baseModelID is what an adapter's base_model_name_or_path says: override
// (--base-model-id) when given, else the repo id --model named, else the
// checkpoint folder's name.
func (f modelFlags) baseModelID(override string) string {
	return baseModelName(override, *f.repo, *f.dir)
}

// baseModelName is baseModelID for a folder and repo id.
func baseModelName(override, repo, dir string) string {
	switch {
	case override != "":
		return override
	case repo != "":
		return repo
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return filepath.Base(dir)
}

// check checks the flags' values (before anything is read or written).
func (f modelFlags) check() (engine.DType, error) {
	if err := f.resolve(); err != nil {
		return 0, err
	}
	dt, err := engine.ParseDType(*f.dtype)
	if err != nil || dt == engine.F16 {
		return 0, usageErrorf("--dtype %q: want f32 or bf16", *f.dtype)
	}
	if err := checkThreads(*f.threads); err != nil {
		return 0, err
	}
	if *f.fast && dt != engine.BF16 {
		return 0, usageErrorf("--fast needs --dtype bf16")
	}
	if !slices.Contains(progressModes, *f.progress) {
		return 0, usageErrorf("--progress %q: want one of %s", *f.progress, strings.Join(progressModes, ", "))
	}
	if err := checkDevice(*f.device); err != nil {
		return 0, err
	}
	if _, err := f.numerics(); err != nil {
		return 0, err
	}
	progressMode = *f.progress
	return dt, nil
}

// usePaper makes --paper-compat's setting num the numerics of this
// command's model, refusing numeric flags that contradict it, and prints
// the published setting's banner on stderr.
func (f *modelFlags) usePaper(num llama.Numerics, stage string) error {
	f.paper = &num
	if _, err := f.numerics(); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, tli.PaperBanner(stage))
	return nil
}

// numerics is the numeric setting of --activations, --quant and
// --double-quant, or the published one --paper-compat chose (which the
// numeric flags, --dtype and --fast may not contradict).
func (f modelFlags) numerics() (llama.Numerics, error) {
	if f.paper != nil {
		if *f.activations != "f32" || *f.quant != "" || *f.doubleQuant || *f.dtype != "f32" || *f.fast {
			return llama.Numerics{}, usageErrorf("--paper-compat sets the numerics (%s); drop --activations, --quant, --double-quant, --dtype and --fast, or --paper-compat", *f.paper)
		}
		return *f.paper, nil
	}
	var n llama.Numerics
	switch *f.activations {
	case "f32":
		n.Activations = engine.F32
	case "bf16":
		n.Activations = engine.BF16
	case "fp16", "f16":
		n.Activations = engine.F16
	default:
		return n, usageErrorf("--activations %q: want f32, bf16 or fp16", *f.activations)
	}
	if *f.quant != "" && *f.quant != "nf4" && *f.quant != "fp4" {
		return n, usageErrorf("--quant %q: want nf4 or fp4", *f.quant)
	}
	n.Quant, n.DoubleQuant = *f.quant, *f.doubleQuant
	if n.DoubleQuant && n.Quant == "" {
		return n, usageErrorf("--double-quant needs --quant nf4 or fp4")
	}
	if n.Activations != engine.F32 && (*f.dtype != "f32" || *f.fast) {
		return n, usageErrorf("--activations %s holds the weights in %s and rounds every product; drop --dtype and --fast", *f.activations, *f.activations)
	}
	return n, nil
}

// checkDevice accepts --device cpu; for vulkan or vulkan:N it says what
// is missing (the build tag, the loader, the device), if anything.
func checkDevice(spec string) error {
	if spec == "cpu" {
		return nil
	}
	if spec != "vulkan" && !strings.HasPrefix(spec, "vulkan:") {
		return usageErrorf("--device %q: want cpu, vulkan or vulkan:N", spec)
	}
	if _, err := vulkan.Select(spec); err != nil {
		if msg := err.Error(); strings.HasPrefix(msg, "--device") {
			return usageErrorf("%s", msg)
		}
		return usageErrorf("--device %s: %v", spec, err)
	}
	return nil
}

// openDevice returns the Vulkan device --device names holding m's weights
// (uploaded once), or nil for the CPU; close releases the device.
func (f modelFlags) openDevice(m *llama.Model) (tli.Device, func() error, error) {
	if *f.device == "cpu" {
		return nil, func() error { return nil }, nil
	}
	return openDevice(*f.device, m)
}

// checkThreads checks --threads and sets the worker count.
func checkThreads(n int) error {
	if n < 0 || n > maxThreads() {
		return usageErrorf("--threads %d must be in [0, %d] (0: all %d cores; more threads than cores only slow tli down)", n, maxThreads(), runtime.NumCPU())
	}
	engine.SetThreads(n)
	return nil
}

// load opens the checkpoint with the layers up to maxLayer (-1: all, with
// the LM head) and its tokenizer.
func (f modelFlags) load(maxLayer int) (*llama.Model, *tokenizer.Tokenizer, error) {
	dt, err := f.check()
	if err != nil {
		return nil, nil, err
	}
	tok, err := tokenizer.LoadDir(*f.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("tokenizer: %w", err)
	}
	num, err := f.numerics()
	if err != nil {
		return nil, nil, err
	}
	m, err := f.loadModel(dt, maxLayer, num)
	if err != nil {
		return nil, nil, err
	}
	layerProgress(m)
	return m, tok, nil
}

// loadModel opens the checkpoint with the layers up to maxLayer in the
// numeric setting num.
func (f modelFlags) loadModel(dt engine.DType, maxLayer int, num llama.Numerics) (*llama.Model, error) {
	if num.Quant != "" || num.Activations != engine.F32 {
		fmt.Fprintf(os.Stderr, "loading %s with %s\n", f.name(), num)
	}
	m, err := llama.Load(*f.dir, llama.LoadOptions{DType: dt, MaxLayer: maxLayer, Numerics: num})
	if err != nil {
		return nil, err
	}
	m.FastBF16 = m.FastBF16 || *f.fast
	return m, nil
}

// maxThreads bounds --threads: far more workers than cores only cost
// memory (every worker has its own buffers) and switching.
func maxThreads() int { return max(64, 4*runtime.NumCPU()) }

// checkText refuses text given on the command line that is not valid UTF-8
// (it would be tokenised as U+FFFD, silently changing the input), naming the
// flag and the byte offset.
func checkText(flag, s string) error {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return usageErrorf("%s is not valid UTF-8 (byte %d is 0x%02x)", flag, i, s[i])
			}
		}
	}
	return nil
}

// maxWordsFile bounds a --words list (a list of words is small; this also
// stops /dev/zero or a FIFO from filling memory).
const maxWordsFile = 64 << 20

// readFileLimit reads a whole file of at most limit bytes, and refuses a
// larger one (or an endless stream) by name.
func readFileLimit(path string, limit int64) ([]byte, error) {
	b, err := limitread.ReadFile(path, limit)
	if tl := (*limitread.TooLargeError)(nil); errors.As(err, &tl) {
		return nil, fmt.Errorf("%s: larger than %s, the limit for this input", path, limitread.Size(limit))
	}
	return b, err
}

// readPairs reads a pair file, or returns def when path is "". Duplicates
// and empty entries are reported on stderr (the first occurrence is kept).
func readPairs(flag, path string, def []tli.Pair) ([]tli.Pair, error) {
	if path == "" {
		return def, nil
	}
	pairs, rep, err := tli.ReadPairs(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	if rep != nil && !rep.Clean() {
		fmt.Fprintf(os.Stderr, "tli: %s: %s\n", flag, strings.TrimSpace(rep.String()))
	}
	return pairs, nil
}

// checkPairsTokenize reports pairs whose words tokenise to nothing and fails
// when any is found.
func checkPairsTokenize(flag string, pairs []tli.Pair, tok *tokenizer.Tokenizer) error {
	issues := tli.CheckTokenized(pairs, func(s string) int { return tli.ContentTokens(tok, tok.Encode(s, false)) })
	if len(issues) == 0 {
		return nil
	}
	for _, is := range issues {
		fmt.Fprintf(os.Stderr, "tli: %s: %v\n", flag, is)
	}
	return fmt.Errorf("%s: %d pairs tokenise to nothing (listed above)", flag, len(issues))
}

// checkGroupsTokenize is checkPairsTokenize for the trained and control
// groups, naming their flags.
func checkGroupsTokenize(groups []tli.Group, tok *tokenizer.Tokenizer) error {
	for _, g := range groups {
		flag := map[string]string{"trained": "--pairs", "control": "--control"}[g.Name]
		if err := checkPairsTokenize(flag, g.Pairs, tok); err != nil {
			return err
		}
	}
	return nil
}

// checkOutDir refuses an --out folder that may not be written: a file, an
// input (or a folder holding or inside one), or an existing non-empty folder
// without force (or resume, which continues in it).
func checkOutDir(dir string, force, resume bool, inputs ...atomicfs.Input) error {
	if dir == "" {
		return usageErrorf("--out is required")
	}
	if err := atomicfs.CheckDisjoint("--out", dir, inputs...); err != nil {
		return usageErrorf("%v", err)
	}
	entries, err := os.ReadDir(dir)
	switch {
	case err == nil && len(entries) > 0 && !force && !resume:
		return usageErrorf("--out %s already exists and is not empty (use --force to overwrite)", dir)
	case err != nil && !os.IsNotExist(err):
		if fi, serr := os.Stat(dir); serr == nil && !fi.IsDir() {
			return usageErrorf("--out %s is a file, not a folder", dir)
		}
		return fmt.Errorf("--out: %w", err)
	}
	return nil
}

// stageOut checks --out as checkOutDir does and starts building it beside
// its name: the command writes into the returned folder's Path and calls
// CommitInto (report.md last) when everything is written, so a failed or
// killed command leaves --out as it was. The caller defers Abort.
func stageOut(dir string, force bool, inputs ...atomicfs.Input) (*atomicfs.Dir, error) {
	if err := checkOutDir(dir, force, false, inputs...); err != nil {
		return nil, err
	}
	return atomicfs.NewDir(dir)
}

// checkOutFile refuses a single-file --out that may not be written: an
// existing file without force, a folder, or a path that is, holds or lies
// inside an input.
func checkOutFile(flag, path string, force bool, inputs ...atomicfs.Input) error {
	if err := atomicfs.CheckDisjoint(flag, path, inputs...); err != nil {
		return usageErrorf("%v", err)
	}
	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.IsDir():
		return usageErrorf("%s %s is a folder; give a file name", flag, path)
	case err == nil && !force:
		return usageErrorf("%s %s already exists (use --force to replace it)", flag, path)
	}
	return nil
}

// checkReplaceableCheckpoint refuses to replace an existing, non-empty
// folder that does not look like a checkpoint (no config.json): --force on
// a checkpoint writer swaps the whole folder, which must never take a
// folder of other files with it.
func checkReplaceableCheckpoint(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		return usageErrorf("--out %s is a non-empty folder without config.json: --force replaces only a checkpoint folder; choose another --out", dir)
	}
	return nil
}

// parseLayers reads "all" or a comma-separated list of layer indices in
// [0, numLayers].
func parseLayers(flag, s string, numLayers int) ([]int, error) {
	if s == "all" {
		out := make([]int, numLayers+1)
		for i := range out {
			out[i] = i
		}
		return out, nil
	}
	var out []int
	seen := map[int]bool{}
	for _, f := range strings.Split(s, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, usageErrorf("%s %q: want all or comma-separated layer numbers", flag, s)
		}
		if k < 0 || k > numLayers {
			return nil, usageErrorf("%s: layer %d is outside [0, %d] (0 = embeddings, %d = after the final norm)", flag, k, numLayers, numLayers)
		}
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out, nil
}

// progressMode is how long phases report progress on stderr: "auto" (a
// live bar on a terminal, plain lines otherwise), "bar", "plain", "jsonl"
// (one JSON object per update, for batch logs) or "none". Commands that
// load a model set it from --progress.
var progressMode = "auto"

// progressModes are the values --progress takes.
var progressModes = []string{"auto", "bar", "plain", "jsonl", "none"}

// progress reports one phase (training steps, the layers of a forward
// pass, the cells of a sweep): a bar with ETA on a terminal, plain lines
// (every step for short phases, every twentieth otherwise), or JSON lines.
type progress struct {
	bar   bool // drawing a live bar (mode "bar")
	drawn time.Time
	w     io.Writer
	mode  string
	phase string
	unit  string
	total int
	start time.Time
	// quiet, in plain mode, prints a line only once the phase has run this
	// long, then at most one per quiet (short passes stay silent).
	quiet time.Duration
	last  time.Time
}

func newProgress(w *os.File, total int, what string) *progress {
	return newPhase(w, what, "steps", total)
}

// newPhase starts reporting a phase of total units.
func newPhase(w *os.File, phase, unit string, total int) *progress {
	p := &progress{w: w, mode: progressMode, phase: phase, unit: unit, total: total, start: time.Now()}
	if p.mode == "auto" {
		p.mode = "plain"
		if term.IsTerminal(int(w.Fd())) {
			p.mode = "bar"
		}
	}
	p.bar = p.mode == "bar"
	return p
}

// update reports done units: desc is the bar's description and the plain
// line's text, fields go into the JSON object.
func (p *progress) update(done int, desc string, fields map[string]any) {
	elapsed := time.Since(p.start)
	eta := time.Duration(0)
	if done > 0 {
		eta = time.Duration(float64(elapsed) / float64(done) * float64(p.total-done))
	}
	switch p.mode {
	case "bar":
		// Redraw at most ten times a second, and always the last state.
		if done < p.total && time.Since(p.drawn) < 100*time.Millisecond {
			return
		}
		p.drawn = time.Now()
		fmt.Fprintf(p.w, "\r\033[K%s", barLine(p.phase, desc, done, p.total, elapsed, eta))
	case "plain":
		if p.quiet > 0 {
			if elapsed < p.quiet || (time.Since(p.last) < p.quiet && done < p.total) {
				return
			}
			p.last = time.Now()
			fmt.Fprintf(p.w, "%s %d/%d %s (eta %s)\n", p.unit, done, p.total, desc, eta.Round(time.Second))
			return
		}
		every := 1
		if p.total > 100 {
			every = p.total / 20
		}
		if done%every == 0 || done == p.total || done == 1 {
			fmt.Fprintf(p.w, "%s %d/%d %s (eta %s)\n", p.unit, done, p.total, desc, eta.Round(time.Second))
		}
	case "jsonl":
		obj := map[string]any{"phase": p.phase, "unit": p.unit, "done": done, "total": p.total,
			"elapsed_s": math.Round(elapsed.Seconds()*1000) / 1000, "eta_s": math.Round(eta.Seconds()*1000) / 1000}
		for k, v := range fields {
			obj[k] = v
		}
		b, _ := json.Marshal(obj)
		fmt.Fprintf(p.w, "%s\n", b)
	}
}

// barLine is one line of the live bar: phase, a 20-cell bar, count,
// percent, elapsed time and ETA, and the description.
func barLine(phase, desc string, done, total int, elapsed, eta time.Duration) string {
	const cells = 20
	frac := 1.0
	if total > 0 {
		frac = math.Min(1, float64(done)/float64(total))
	}
	n := int(frac * cells)
	return fmt.Sprintf("%s [%s%s] %d/%d %3.0f%% %s<%s %s", phase, strings.Repeat("=", n), strings.Repeat(" ", cells-n),
		done, total, 100*frac, elapsed.Round(time.Second), eta.Round(time.Second), desc)
}

// step reports a training step.
func (p *progress) step(l tli.StepLog) {
	p.update(l.Step, fmt.Sprintf("epoch %d loss %.4f pos %.4f hardneg %.4f lr %.3g (%.2fs/step)", l.Epoch, l.Loss, l.PosSim, l.HardNegSim, l.LR, l.StepSeconds),
		map[string]any{"epoch": l.Epoch, "loss": l.Loss, "pos_sim": l.PosSim, "hard_neg_sim": l.HardNegSim, "lr": l.LR})
}

func (p *progress) done() {
	if p.bar {
		fmt.Fprintln(p.w) // the bar's last line stays on screen
		p.bar = false
	}
}

// layerProgress reports the layers of every forward pass of m (scan and
// evaluation passes), with tokens per second.
func layerProgress(m *llama.Model) {
	var p *progress
	m.OnLayer = func(done, total, tokens int) {
		if done == 0 || p == nil {
			p = newPhase(os.Stderr, "forward pass", "layer", total)
			p.quiet = 5 * time.Second
			if done == 0 {
				return
			}
		}
		tps := float64(done*tokens) / math.Max(time.Since(p.start).Seconds(), 1e-9)
		p.update(done, fmt.Sprintf("%d tokens, %.0f tokens/s", tokens, tps), map[string]any{"tokens": tokens, "tokens_per_s": math.Round(tps)})
		if done == total {
			p.done()
		}
	}
}

// absPath is filepath.Abs that keeps the input on error (for messages).
func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// peekConfig reads DIR/config.json (to validate layer flags before loading
// any weight).
func peekConfig(dir string) (llama.Config, error) {
	if dir == "" {
		return llama.Config{}, usageErrorf("--model is required")
	}
	return llama.LoadConfig(filepath.Join(dir, "config.json"))
}
