package tli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tli-project/tli/autograd"
	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/internal/atomicfs"
	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/lora"
)

// TrainOptions are the settings of a TLI training run. PaperTrainOptions
// gives the published ones.
type TrainOptions struct {
	Layer   int     // target layer (HF hidden_states index); the forward stops there
	Epochs  int     // passes over the pairs
	Batch   int     // pairs per step (>= 2: the other pairs are the negatives)
	LR      float64 // peak learning rate of AdamW
	Warmup  int     // linear warm-up steps, then linear decay to 0
	Margin  float64 // triplet margin
	Pooling Pooling // how a word's token states become its embedding
	LoRA    lora.Config
	Seed    uint64 // adapter init, shuffling and dropout
	Shuffle bool   // seeded shuffle per epoch; false keeps file order
	// MaxSteps > 0 stops after that many optimiser steps and makes it the
	// schedule's total, as transformers' Trainer does with max_steps.
	MaxSteps int
	// InitAdapter, when not nil, is the starting adapter (--init-adapter).
	InitAdapter *lora.Adapter
	// OutDir receives epoch_K/, final/, checkpoint/ and train_log.jsonl.
	OutDir string
	// Device, when not nil, runs the model's part of every step (a
	// Vulkan device holding the model's weights); nil: the CPU.
	Device StepModel `json:"-"`
}

// PaperTrainOptions returns the published configuration: layer 2, 5 epochs,
// batch 8, lr 2e-4, 50 warm-up steps, margin 0.4, LoRA r 16 / alpha 32 /
// dropout 0.05 on q_proj and v_proj, mean pooling with BOS included, seed 42.
func PaperTrainOptions() TrainOptions {
	return TrainOptions{Layer: 2, Epochs: 5, Batch: 8, LR: 2e-4, Warmup: 50, Margin: 0.4,
		Pooling: PoolMean, LoRA: lora.PaperConfig(), Seed: 42, Shuffle: true}
}

// DefaultTargetsName stands for the model family's PEFT default
// target_modules (q_proj,v_proj; BLOOM: query_key_value) in flags and
// sweep axes; in TrainOptions it is a nil LoRA.TargetModules, which
// Validate resolves.
const DefaultTargetsName = "default"

// ParseTargets reads a comma-separated module list; "default" (or nothing)
// is nil, the family's default.
func ParseTargets(s string) []string {
	var out []string
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t != "" && t != DefaultTargetsName {
			out = append(out, t)
		}
	}
	return out
}

// FormatTargets is the inverse of ParseTargets.
func FormatTargets(ts []string) string {
	if len(ts) == 0 {
		return DefaultTargetsName
	}
	return strings.Join(ts, ",")
}

// StepLog is one line of train_log.jsonl.
type StepLog struct {
	Epoch       int     `json:"epoch"`
	Step        int     `json:"step"` // optimiser steps done, counting this one
	TotalSteps  int     `json:"total_steps"`
	Loss        float64 `json:"loss"`
	LR          float64 `json:"lr"`
	PosSim      float64 `json:"pos_sim"`      // mean cosine of the batch's pairs
	HardNegSim  float64 `json:"hard_neg_sim"` // mean cosine of each row's hardest negative
	StepSeconds float64 `json:"step_seconds"`
}

// trainerState is what a checkpoint folder adds to the adapter, so that a
// run can resume exactly where it stopped.
type trainerState struct {
	Epoch     int    `json:"epoch"`      // epoch in progress (0-based)
	BatchNext int    `json:"batch_next"` // next batch of that epoch
	Step      int    `json:"step"`       // optimiser steps done
	Total     int    `json:"total_steps"`
	Seed      uint64 `json:"seed"`
	Pairs     int    `json:"pairs"`
	Batch     int    `json:"batch"`
	Layer     int    `json:"layer"`   // target layer (read by tli eval)
	Pooling   string `json:"pooling"` // pooling of the loss
}

// AdapterInfo is what a training run records beside its adapters
// (trainer_state.json): the target layer and the pooling of the loss.
type AdapterInfo struct {
	Layer   int
	Pooling Pooling
}

// ReadAdapterInfo reads trainer_state.json in an adapter folder written by
// Train; ok is false when there is none (an adapter from elsewhere).
func ReadAdapterInfo(dir string) (info AdapterInfo, ok bool, err error) {
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if os.IsNotExist(err) {
		return info, false, nil
	}
	if err != nil {
		return info, false, err
	}
	st, err := parseTrainerState(data, filepath.Join(dir, stateFile))
	if err != nil {
		return info, false, err
	}
	return AdapterInfo{Layer: st.Layer, Pooling: Pooling(st.Pooling)}, st.Layer > 0, nil
}

// parseTrainerState decodes trainer_state.json and checks that its numbers
// are consistent with each other (name is the file, for messages); what it
// must agree with in a run (pairs, batch, seed, layer) is Train's check.
func parseTrainerState(data []byte, name string) (trainerState, error) {
	var st trainerState
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&st); err != nil {
		return st, fmt.Errorf("%s: not a trainer state: %v", name, err)
	}
	if dec.More() {
		return st, fmt.Errorf("%s: unexpected data after the JSON object", name)
	}
	batches := 0
	if st.Batch > 0 {
		batches = (st.Pairs + st.Batch - 1) / st.Batch
	}
	switch {
	case st.Pairs < 0 || st.Batch < 0 || st.Layer < 0:
		return st, fmt.Errorf("%s: pairs %d, batch %d and layer %d must be >= 0", name, st.Pairs, st.Batch, st.Layer)
	case st.Total < 0 || st.Step < 0 || st.Step > st.Total:
		return st, fmt.Errorf("%s: step %d must be in [0, total_steps %d]", name, st.Step, st.Total)
	case st.Epoch < 0 || st.Epoch > MaxEpochs:
		return st, fmt.Errorf("%s: epoch %d must be in [0, %d]", name, st.Epoch, MaxEpochs)
	case st.BatchNext < 0 || st.BatchNext > batches:
		return st, fmt.Errorf("%s: batch_next %d must be in [0, %d] (%d pairs in batches of %d)", name, st.BatchNext, batches, st.Pairs, st.Batch)
	case st.Pooling != "":
		if _, err := ParsePooling(st.Pooling); err != nil {
			return st, fmt.Errorf("%s: %v", name, err)
		}
	}
	return st, nil
}

const (
	stateFile     = "trainer_state.json"
	optimizerFile = "optimizer.safetensors"
)

// MaxEpochs bounds TrainOptions.Epochs: far beyond any useful run, it keeps
// the step count and the schedule in range.
const MaxEpochs = 100000

// ErrInterrupted is returned by Train when its context was cancelled; the
// state at that point was saved in OutDir/checkpoint.
var ErrInterrupted = errors.New("training interrupted; checkpoint written")

// OptionError is an invalid option: Field names the TrainOptions or
// RunOptions field (LoRA fields as LoRA.R, ...), Problem says what is wrong
// with its value and what is valid. The CLI prints it under the flag's name.
type OptionError struct {
	Field   string
	Problem string
}

func (e *OptionError) Error() string { return e.Field + " " + e.Problem }

func optErr(field, format string, args ...any) error {
	return &OptionError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// Validate checks the options against the model and the number of pairs.
// Errors are *OptionError naming the field.
func (o *TrainOptions) Validate(cfg llama.Config, pairs int) error {
	switch {
	case o.Layer < 1 || o.Layer > cfg.NumLayers:
		return optErr("Layer", "%d is outside [1, %d]: layer 0 is the embedding table, which LoRA on attention cannot change", o.Layer, cfg.NumLayers)
	case o.Batch < 2:
		return optErr("Batch", "%d: a batch needs at least 2 pairs (the others are the negatives)", o.Batch)
	case pairs < 2:
		return optErr("Pairs", "has %d pairs; training needs at least 2", pairs)
	case o.Epochs < 1 && o.MaxSteps < 1:
		return optErr("Epochs", "%d: need at least 1 epoch (or MaxSteps)", o.Epochs)
	case !(o.LR > 0) || math.IsInf(o.LR, 0):
		return optErr("LR", "%v must be a positive finite number", o.LR)
	case o.Warmup < 0:
		return optErr("Warmup", "%d must be >= 0", o.Warmup)
	case !(o.Margin >= 0 && o.Margin <= 2):
		return optErr("Margin", "%v must be in [0, 2] (cosines lie in [-1, 1])", o.Margin)
	case o.Epochs > MaxEpochs:
		return optErr("Epochs", "%d is more than %d", o.Epochs, MaxEpochs)
	case o.MaxSteps < 0:
		return optErr("MaxSteps", "%d must be >= 0", o.MaxSteps)
	}
	if _, err := ParsePooling(string(o.Pooling)); err != nil {
		return optErr("Pooling", "%q: %v", o.Pooling, err)
	}
	if len(o.LoRA.TargetModules) == 0 {
		o.LoRA.TargetModules = cfg.DefaultTargets()
	}
	return o.LoRA.Validate(&cfg)
}

// batchOrder returns the pair indices of an epoch in training order: a
// seeded permutation (the same for every thread count and every resume), or
// file order.
func batchOrder(n int, seed uint64, epoch int, shuffle bool) []int {
	if !shuffle {
		order := make([]int, n)
		for i := range order {
			order[i] = i
		}
		return order
	}
	return rand.New(rand.NewPCG(seed, uint64(epoch)+1)).Perm(n)
}

// Train runs TLI training of LoRA adapters on m (which must hold layers
// below opts.Layer) and returns the final adapter. onStep, if not nil, is
// called after every optimiser step. Adapters are written to OutDir/epoch_K
// after every epoch and OutDir/final at the end; resume, if not "", is a
// checkpoint folder (epoch_K or checkpoint) of an earlier run to continue.
func Train(ctx context.Context, m *llama.Model, tok Encoder, pairs []Pair, opts TrainOptions, resume string, onStep func(StepLog)) (*lora.Adapter, error) {
	if err := opts.Validate(m.Config, len(pairs)); err != nil {
		return nil, err
	}
	defer autograd.DropFreeBuffers()
	t, err := prepareTrainer(m, tok, pairs, opts)
	if err != nil {
		return nil, err
	}
	if err := t.start(resume); err != nil {
		return nil, err
	}
	defer t.closeLog()
	for t.st.Step < t.total {
		order := batchOrder(len(pairs), opts.Seed, t.st.Epoch, opts.Shuffle)
		for ; t.st.BatchNext < t.perEpoch && t.st.Step < t.total; t.st.BatchNext++ {
			if ctx.Err() != nil {
				if err := t.save("checkpoint"); err != nil {
					return nil, fmt.Errorf("interrupted, and writing the checkpoint failed: %w", err)
				}
				return t.adapter, ErrInterrupted
			}
			lo := t.st.BatchNext * opts.Batch
			rec, ok, err := t.step(order[lo:min(lo+opts.Batch, len(pairs))])
			if err != nil {
				return nil, err
			}
			if ok && onStep != nil {
				onStep(rec)
			}
		}
		if t.st.BatchNext >= t.perEpoch {
			t.st.Epoch++
			t.st.BatchNext = 0
			if err := t.save(fmt.Sprintf("epoch_%d", t.st.Epoch)); err != nil {
				return nil, err
			}
		}
	}
	if err := t.save("final"); err != nil {
		return nil, err
	}
	// An interrupted run's checkpoint is superseded by final.
	os.RemoveAll(filepath.Join(opts.OutDir, "checkpoint"))
	return t.adapter, nil
}

// trainer is the state of one training run, in the phases Train goes
// through: prepare (tokenise, count steps), start (fresh, from an initial
// adapter, or resumed from a checkpoint), step, save.
type trainer struct {
	m        *llama.Model
	sm       StepModel // where the steps run: opts.Device or the CPU
	tok      Encoder
	opts     TrainOptions
	ids      [][]int // token ids of pair i's words at 2i (Swahili) and 2i+1 (English)
	perEpoch int     // batches per epoch
	total    int     // optimiser steps of the run
	st       trainerState
	adapter  *lora.Adapter
	opt      *lora.AdamW
	params   []*autograd.Param
	adapters llama.Adapters
	logPath  string
	resumed  bool
	log      *os.File
}

// prepareTrainer tokenises every word once and counts the run's steps.
func prepareTrainer(m *llama.Model, tok Encoder, pairs []Pair, opts TrainOptions) (*trainer, error) {
	t := &trainer{m: m, sm: opts.Device, tok: tok, opts: opts, ids: make([][]int, 0, 2*len(pairs)),
		logPath: filepath.Join(opts.OutDir, "train_log.jsonl")}
	if t.sm == nil {
		t.sm = &CPUStep{Model: m}
	}
	for i, p := range pairs {
		for _, w := range []string{p.Source, p.Target} {
			ids := tok.Encode(w, true)
			if ContentTokens(tok, ids) == 0 {
				return nil, fmt.Errorf("pair %d: %q tokenises to no content token", i, w)
			}
			t.ids = append(t.ids, ids)
		}
	}
	t.perEpoch = (len(pairs) + opts.Batch - 1) / opts.Batch
	t.total = t.perEpoch * opts.Epochs
	if opts.MaxSteps > 0 {
		t.total = opts.MaxSteps
	}
	t.st = trainerState{Total: t.total, Seed: opts.Seed, Pairs: len(pairs), Batch: opts.Batch, Layer: opts.Layer, Pooling: string(opts.Pooling)}
	return t, nil
}

// start sets up the adapter and optimizer: resumed from the checkpoint
// folder resume (which must come from the same run: pairs, batch, seed,
// steps and layer), from opts.InitAdapter, or fresh. A resumed run's log
// is cut back to the checkpoint's step (a run killed after that checkpoint
// logged steps that will now be done again).
func (t *trainer) start(resume string) error {
	opts, m := t.opts, t.m
	var err error
	switch {
	case resume != "":
		t.resumed = true
		if t.adapter, err = lora.Load(resume, m.Config); err != nil {
			return fmt.Errorf("--resume: %w", err)
		}
		data, err := os.ReadFile(filepath.Join(resume, stateFile))
		if err != nil {
			return fmt.Errorf("--resume: %s is not a training checkpoint: %w", resume, err)
		}
		saved, err := parseTrainerState(data, filepath.Join(resume, stateFile))
		if err != nil {
			return fmt.Errorf("--resume: %w", err)
		}
		if saved.Pairs != t.st.Pairs || saved.Batch != opts.Batch || saved.Seed != opts.Seed || saved.Total != t.total || saved.Layer != opts.Layer {
			return fmt.Errorf("--resume: checkpoint was made with %d pairs, batch %d, seed %d, %d steps, layer %d; this run has %d, %d, %d, %d, %d",
				saved.Pairs, saved.Batch, saved.Seed, saved.Total, saved.Layer, t.st.Pairs, opts.Batch, opts.Seed, t.total, opts.Layer)
		}
		t.st = saved
		if t.opt, err = lora.LoadAdamW(filepath.Join(resume, optimizerFile), t.adapter.Params()); err != nil {
			return fmt.Errorf("--resume: %w", err)
		}
		// Dropout is a training setting: take it from this run.
		for _, l := range t.adapter.Layers {
			for _, a := range l {
				a.Dropout = float32(opts.LoRA.Dropout)
			}
		}
		if err := truncateLog(t.logPath, t.st.Step); err != nil {
			return err
		}
	case opts.InitAdapter != nil:
		t.adapter, t.opt = opts.InitAdapter, lora.NewAdamW()
	default:
		if t.adapter, err = lora.New(opts.LoRA, m.Config, opts.Seed); err != nil {
			return err
		}
		t.opt = lora.NewAdamW()
	}
	// The adapters saved name the model they were trained on
	// (base_model_name_or_path), also when resumed or started from another
	// adapter.
	if opts.LoRA.BaseModel != "" {
		t.adapter.Config.BaseModel = opts.LoRA.BaseModel
	}
	t.params, t.adapters = t.adapter.Params(), t.adapter.Adapters()
	return nil
}

// step trains on the pairs idx (one batch; the others of the batch are
// each pair's negatives), logs the step and returns its record. A batch of
// one pair has no negative: it is skipped (ok false).
func (t *trainer) step(idx []int) (rec StepLog, ok bool, err error) {
	if len(idx) < 2 {
		return rec, false, nil
	}
	start := time.Now()
	opts := t.opts
	seqs := make([][]int, 0, 2*len(idx))
	for _, i := range idx {
		seqs = append(seqs, t.ids[2*i])
	}
	for _, i := range idx {
		seqs = append(seqs, t.ids[2*i+1])
	}
	var drop *autograd.Dropout
	if opts.LoRA.Dropout > 0 {
		drop = autograd.NewDropout(opts.Seed*0x9e3779b97f4a7c15 + uint64(t.st.Step))
	}
	res, err := Step(t.sm, t.tok, t.adapters, seqs, opts.Layer, opts.Pooling, float32(opts.Margin), drop)
	if err != nil {
		return rec, false, err
	}
	lr := opts.LR * lora.LinearSchedule(t.st.Step, opts.Warmup, t.total)
	t.opt.Step(t.params, lr)
	t.adapter.ZeroGrad()
	t.st.Step++
	rec = StepLog{Epoch: t.st.Epoch + 1, Step: t.st.Step, TotalSteps: t.total, Loss: res.Loss, LR: lr,
		PosSim: res.PosSim, HardNegSim: res.HardNegSim, StepSeconds: time.Since(start).Seconds()}
	if math.IsNaN(rec.Loss) || math.IsInf(rec.Loss, 0) {
		return rec, false, fmt.Errorf("step %d: loss is %v; stopping (lower --lr?)", t.st.Step, rec.Loss)
	}
	return rec, true, t.logStep(rec)
}

// logStep appends rec to train_log.jsonl, which a fresh run starts at its
// first step (a run that fails before any step leaves no log) and a
// resumed one continues.
func (t *trainer) logStep(rec StepLog) error {
	if t.log == nil {
		flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
		if t.resumed {
			flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
		}
		f, err := os.OpenFile(t.logPath, flags, 0o644)
		if err != nil {
			return err
		}
		t.log = f
	}
	line, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	_, err = t.log.Write(append(line, '\n'))
	return err
}

func (t *trainer) closeLog() {
	if t.log != nil {
		t.log.Close()
	}
}

// save writes a checkpoint folder (epoch_K, checkpoint, final): built
// beside its name and renamed into place with the adapter, the optimizer
// state and the trainer state all in it, or not at all. The log is synced
// first, so a checkpoint never runs ahead of it.
func (t *trainer) save(name string) error {
	if t.log != nil {
		if err := t.log.Sync(); err != nil {
			return err
		}
	}
	dir, err := atomicfs.NewDir(filepath.Join(t.opts.OutDir, name))
	if err != nil {
		return err
	}
	defer dir.Abort()
	if err := t.adapter.Save(dir.Path()); err != nil {
		return err
	}
	if err := t.opt.SaveState(filepath.Join(dir.Path(), optimizerFile)); err != nil {
		return err
	}
	data, _ := json.MarshalIndent(t.st, "", "  ")
	if err := atomicfs.WriteFile(filepath.Join(dir.Path(), stateFile), append(data, '\n')); err != nil {
		return err
	}
	return dir.Commit(true)
}

// truncateLog cuts train_log.jsonl back to the lines of steps 1..step, so a
// resumed run does not log a step twice. A missing log is no error (the
// checkpoint may come from another folder); a line that is not a step
// record is.
func truncateLog(path string, step int) error {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	keep := 0
	for n, rest := 1, data; len(rest) > 0; n++ {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line = rest[:i+1]
		} else {
			break // a torn last line (killed mid-write) is dropped
		}
		var rec StepLog
		if err := json.Unmarshal(line, &rec); err != nil {
			return fmt.Errorf("%s: line %d is not a step record: %v", path, n, err)
		}
		if rec.Step > step {
			break
		}
		keep += len(line)
		rest = rest[len(line):]
	}
	if keep == len(data) {
		return nil
	}
	return atomicfs.WriteFile(path, data[:keep])
}

// StepResult is what one TLI loss evaluation reports.
type StepResult struct {
	Loss, PosSim, HardNegSim float64
}

// A StepModel is where the model's part of a TLI step runs: the forward of
// a batch to the target layer with the adapters and the masked mean
// pooling of each sequence, then, given the gradient of the pooled
// vectors, the backward into the adapters' gradients. Step, the loss
// between the two, is written once against it. CPUStep is the CPU's; a
// Vulkan device's model is another (cmd/tli, -tags vulkan).
type StepModel interface {
	// PoolForward runs the packed batch b to hidden_states[layer] with
	// the adapters (dropout on their inputs drawn from drop, in
	// ForwardTrain's order; nil: off) and returns the mean of each
	// sequence's rows whose mask is true (nil: all rows) [S×d].
	PoolForward(b llama.Batch, mask []bool, layer int, adapters llama.Adapters, drop *autograd.Dropout) ([]float32, error)
	// PoolBackward adds to the adapters' parameter gradients those that
	// follow from dpooled [S×d], the gradient of the last PoolForward's
	// result, and releases what that forward kept.
	PoolBackward(dpooled []float32) error
}

// CPUStep is the StepModel of the CPU: llama.Model.ForwardTrain and
// autograd.MeanPool on a tape, whose backward starts from the pooled
// vectors' gradient.
type CPUStep struct {
	Model  *llama.Model
	tape   *autograd.Tape
	pooled *autograd.Var
}

// PoolForward implements StepModel.
func (c *CPUStep) PoolForward(b llama.Batch, mask []bool, layer int, adapters llama.Adapters, drop *autograd.Dropout) ([]float32, error) {
	c.release()
	c.tape = autograd.NewTape()
	c.tape.SetDropout(drop)
	h, err := c.Model.ForwardTrain(c.tape, b, layer, adapters)
	if err != nil {
		c.release()
		return nil, err
	}
	if c.pooled, err = autograd.MeanPool(c.tape, h, b.Offsets, mask); err != nil {
		c.release()
		return nil, err
	}
	return c.pooled.Data, nil
}

// PoolBackward implements StepModel.
func (c *CPUStep) PoolBackward(dpooled []float32) error {
	if c.tape == nil {
		return fmt.Errorf("PoolBackward without a PoolForward")
	}
	defer c.release()
	return c.tape.BackwardFrom(c.pooled, dpooled)
}

func (c *CPUStep) release() {
	if c.tape != nil {
		c.tape.Release()
	}
	c.tape, c.pooled = nil, nil
}

// Step runs the TLI loss forward and backward on one batch: seqs holds the n
// Swahili token sequences followed by their n English ones. The model's part
// runs on sm; the pooled vectors' L2 normalisation, their similarities and
// the triplet loss (a few n×d values) on the host. Gradients are added to
// the adapters' parameters; the optimiser step is the caller's. drop, when
// not nil, is the step's dropout source.
func Step(sm StepModel, tok Encoder, adapters llama.Adapters, seqs [][]int, layer int, p Pooling, margin float32, drop *autograd.Dropout) (StepResult, error) {
	n := len(seqs) / 2
	b := llama.NewBatch(seqs)
	var mask []bool
	switch p {
	case PoolContent:
		mask = make([]bool, len(b.Tokens))
		for t, id := range b.Tokens {
			mask[t] = !tok.IsSpecial(id)
		}
	case PoolLast:
		mask = make([]bool, len(b.Tokens))
		for s := 0; s < b.NumSeqs(); s++ {
			mask[b.Offsets[s+1]-1] = true
		}
	}
	pooledData, err := sm.PoolForward(b, mask, layer, adapters, drop)
	if err != nil {
		return StepResult{}, err
	}
	d := len(pooledData) / len(seqs)
	pooledParam := &autograd.Param{Name: "pooled", Rows: len(seqs), Cols: d, Data: pooledData}
	tape := autograd.NewTape()
	defer tape.Release()
	pooled := autograd.L2Normalize(tape, autograd.Input(tape, pooledParam), 1e-12)
	sim := autograd.MatMulNT(tape, autograd.SliceRows(tape, pooled, 0, n), autograd.SliceRows(tape, pooled, n, 2*n))
	loss := autograd.TripletMargin(tape, sim, margin)
	res := StepResult{Loss: float64(loss.Data[0])}
	for i := 0; i < n; i++ {
		res.PosSim += float64(sim.Data[i*n+i])
		hard := math.Inf(-1)
		for j := 0; j < n; j++ {
			if j != i && float64(sim.Data[i*n+j]) > hard {
				hard = float64(sim.Data[i*n+j])
			}
		}
		res.HardNegSim += hard
	}
	res.PosSim /= float64(n)
	res.HardNegSim /= float64(n)
	if err := tape.Backward(loss); err != nil {
		return StepResult{}, err
	}
	if err := sm.PoolBackward(pooledParam.Grad); err != nil {
		return StepResult{}, err
	}
	return res, nil
}

// The published numerics (the paper's scripts load the model with
// transformers' BitsAndBytesConfig and no torch_dtype, so everything not
// quantised is float16): the scan and training in NF4, the evaluation in
// FP4 (bitsandbytes' default quant_type) with the adapter merged into the
// 4-bit weights.
var (
	PaperScanNumerics = llama.Numerics{Activations: engine.F16, Quant: "nf4"}
	PaperEvalNumerics = llama.Numerics{Activations: engine.F16, Quant: "fp4"}
)

// PaperBanner is the line --paper-compat prints: what the published
// setting is and where this stage stands in it.
func PaperBanner(stage string) string {
	return fmt.Sprintf("paper-compat (%s): the published setting: scan and training with NF4 weights and fp16 activations, pooling the mean with BOS; evaluation with FP4 weights and fp16 activations, the adapter merged into the 4-bit weights (requantised), content pooling", stage)
}
