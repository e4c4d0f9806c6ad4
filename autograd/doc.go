// Package autograd is a minimal reverse-mode tape that tracks only trainable parameters (LoRA A and B). Frozen weights are constants: gradients flow through them (dX = dY·W) but a weight gradient is never formed. Each op keeps only the activations its backward needs and frees them during backward.
//
// A Var is a row-major matrix; it is tracked when it depends on a Param, and
// only ops with a tracked input are recorded (a layer's input up to its first
// adapter runs as plain inference). The ops cover a Llama decoder layer with
// LoRA (Linear with dropout on the adapter input, RMSNorm, Rope, Attention,
// SiLUMul, Add) and the TLI loss (MeanPool, L2Normalize, MatMulNT,
// TripletMargin). Tape.Backward runs the recorded ops in reverse and adds to
// Param.Grad; a parameter no op reached keeps Grad == nil. Gradients are
// bit-identical for any thread count: every reduction runs in a fixed order.
//
// autograd depends on engine and kernels only; it knows nothing of checkpoints, adapter files or the TLI method.
package autograd
