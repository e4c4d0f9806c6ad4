// Package engine owns tensors (f32, bf16, f16), their storage (heap or
// memory-mapped from a checkpoint), the worker pool shared by every op and
// kernel, and the forward (and backward) ops of a Llama layer: embedding
// gather, RMSNorm, rotary embeddings, packed causal GQA attention, SwiGLU,
// residual adds; and those the other families need beside them: LayerNorm,
// bias rows, tanh GELU (plain and gated), and attention with another scale,
// a sliding window, ALiBi slopes or soft-capped scores (AttentionOptions).
//
// engine depends only on kernels. It knows nothing of checkpoints, tokenizers,
// autograd tapes, adapters or the TLI method.
package engine
