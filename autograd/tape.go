package autograd

import (
	"fmt"
	"math/rand/v2"

	"github.com/tli-project/tli/engine"
)

// Param is a trainable matrix (a LoRA A or B). Grad is nil until a backward
// reaches the parameter; ZeroGrad sets it back to nil, so an optimiser can
// tell a parameter that took no part in a step (Grad == nil) from one whose
// gradient happens to be zero.
type Param struct {
	Name string
	Rows int
	Cols int
	Data []float32 // Rows×Cols, row-major
	Grad []float32 // Rows×Cols, or nil
}

// NewParam returns a zeroed Rows×Cols parameter.
func NewParam(name string, rows, cols int) *Param {
	return &Param{Name: name, Rows: rows, Cols: cols, Data: make([]float32, rows*cols)}
}

// ZeroGrad forgets the gradient (sets Grad to nil).
func (p *Param) ZeroGrad() { p.Grad = nil }

// grad returns the gradient buffer, allocating a zeroed one on first use.
func (p *Param) grad() []float32 {
	if p.Grad == nil {
		p.Grad = make([]float32, len(p.Data))
	}
	return p.Grad
}

// Var is a Rows×Cols f32 matrix produced by an op. A Var that depends on a
// trainable parameter is "tracked": the tape recorded the op that made it and
// backward will give it a gradient. Other Vars are constants.
type Var struct {
	Data []float32
	Rows int
	Cols int
	// node is where backward accumulates the gradient of a tracked Var (nil
	// for constants). Backward closures hold nodes, not Vars, so a Var's
	// data is kept only by the ops whose backward needs it.
	node *slot
}

// slot accumulates the gradient of one tracked Var.
type slot struct {
	grad []float32
	n    int
	t    *Tape // where the buffer comes from
}

// buf returns the gradient buffer, allocating a zeroed one on first use.
func (s *slot) buf() []float32 {
	if s.grad == nil {
		s.grad = s.t.alloc(s.n)
	}
	return s.grad
}

// Const wraps data (not copied) as a constant Rows×Cols Var.
func Const(data []float32, rows, cols int) *Var {
	if len(data) != rows*cols {
		panic(fmt.Sprintf("autograd.Const: %d values for %d×%d", len(data), rows, cols))
	}
	return &Var{Data: data, Rows: rows, Cols: cols}
}

// Tracked reports whether v depends on a trainable parameter.
func (v *Var) Tracked() bool { return v.node != nil }

// Grad is the gradient accumulated into v during a backward that is still
// running (used by tests); it is nil once the op that produced v has run its
// backward.
func (v *Var) Grad() []float32 {
	if v.node == nil {
		return nil
	}
	return v.node.grad
}

// Value returns element (0, 0): the value of a scalar Var such as a loss.
func (v *Var) Value() float32 { return v.Data[0] }

// node is one recorded op: back receives the gradient of the op's output
// and adds the gradients of its tracked inputs (and parameters).
type node struct {
	out  *slot
	back func(dout []float32)
}

// Tape records the ops whose results depend on trainable parameters, in
// forward order; Backward runs them in reverse. An op whose inputs are all
// constants runs without being recorded. A tape is used for one forward and
// one backward.
type Tape struct {
	// Round is the dtype the ops round their outputs to, where the
	// inference forward in that dtype rounds (engine's *Rounded ops): F32
	// (the default) rounds nothing. Gradients pass through the rounding
	// unchanged (straight through), so a step's loss is that of the
	// rounded forward and its gradients those of the unrounded graph.
	Round engine.DType
	nodes []node
	drop  *Dropout    // dropout source; nil: dropout off (evaluation)
	bufs  [][]float32 // buffers handed out by alloc, returned by Release
}

// NewTape returns an empty tape with dropout off.
func NewTape() *Tape { return &Tape{} }

// SetDropoutSeed turns dropout on, drawing masks from a PCG generator seeded
// with seed. Masks are drawn serially in forward order, so they depend only on
// the seed and the sequence of ops, never on the thread count.
func (t *Tape) SetDropoutSeed(seed uint64) { t.drop = NewDropout(seed) }

// SetDropout draws the dropout masks from d (nil: dropout off).
func (t *Tape) SetDropout(d *Dropout) { t.drop = d }

// Dropout draws the masks of torch.nn.Dropout from a PCG generator, one
// uniform float32 per element, serially: the masks of a forward depend only
// on the seed and the order of the draws. A tape draws one mask per LoRA
// input in forward order (Linear); a device's forward that draws the same
// sizes in the same order from the same seed drops the same elements.
type Dropout struct{ rng *rand.Rand }

// NewDropout returns the dropout source Tape.SetDropoutSeed(seed) uses.
func NewDropout(seed uint64) *Dropout {
	return &Dropout{rng: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))}
}

// Mask fills mask with the next len(mask) draws: 1/(1−p) where an element
// is kept (probability 1−p), 0 where it is dropped.
func (d *Dropout) Mask(mask []float32, p float32) {
	keep := 1 / (1 - p)
	for i := range mask {
		if d.rng.Float32() >= p {
			mask[i] = keep
		} else {
			mask[i] = 0
		}
	}
}

// Len is the number of recorded ops not yet run backward.
func (t *Tape) Len() int { return len(t.nodes) }

func (t *Tape) record(out *Var, back func(dout []float32)) *Var {
	out.node = &slot{n: len(out.Data), t: t}
	t.nodes = append(t.nodes, node{out: out.node, back: back})
	return out
}

// Backward computes the gradients of loss (a tracked 1×1 Var) with respect
// to every parameter that took part in it, adding them to Param.Grad. It runs
// the recorded ops in reverse and drops each op (and so the activations it
// kept) as soon as it has run. The tape is empty afterwards.
func (t *Tape) Backward(loss *Var) error {
	if loss == nil || len(loss.Data) != 1 {
		return fmt.Errorf("autograd: Backward needs a 1×1 loss")
	}
	if loss.node == nil {
		return fmt.Errorf("autograd: the loss does not depend on any trainable parameter")
	}
	loss.node.buf()[0] = 1
	return t.backward()
}

// backward runs the recorded ops in reverse, each from the gradient
// accumulated in its output's slot.
func (t *Tape) backward() error {
	for i := len(t.nodes) - 1; i >= 0; i-- {
		n := t.nodes[i]
		t.nodes[i] = node{}
		if n.out.grad != nil {
			n.back(n.out.grad)
		}
		n.out.grad = nil
	}
	t.nodes = t.nodes[:0]
	return nil
}

// BackwardFrom runs the backward from v, a tracked Var whose gradient is
// grad (len(v.Data) values; a loss computed elsewhere, from v's values,
// gave it), adding the gradients of every parameter v depends on to
// Param.Grad as Backward does. It lets a step's loss be computed on
// another tape, or on the host while v came from a device.
func (t *Tape) BackwardFrom(v *Var, grad []float32) error {
	if v == nil || len(grad) != len(v.Data) {
		return fmt.Errorf("autograd: BackwardFrom needs a gradient of the Var's size")
	}
	if v.node == nil {
		return fmt.Errorf("autograd: the loss does not depend on any trainable parameter")
	}
	copy(v.node.buf(), grad)
	return t.backward()
}

// Input returns p as a tracked Rows×Cols Var sharing p.Data: gradients that
// reach it are added to p.Grad. It makes any op input trainable (tests use it
// to check every op's backward).
func Input(t *Tape, p *Param) *Var {
	v := &Var{Data: p.Data, Rows: p.Rows, Cols: p.Cols}
	return t.record(v, func(dv []float32) {
		engine.Add(p.grad(), dv)
	})
}
