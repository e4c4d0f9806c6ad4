// Package autograd is a minimal reverse-mode tape that tracks only trainable parameters (LoRA A and B). Frozen weights are constants: gradients flow through them (dX = dY·W) but a weight gradient is never formed. Each op keeps only the activations its backward needs and frees them during backward.
//
// autograd depends on engine and kernels only; it knows nothing of checkpoints, adapter files or the TLI method.
package autograd
