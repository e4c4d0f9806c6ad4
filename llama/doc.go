// Package llama reads Hugging Face Llama checkpoints (config.json, safetensors shards) and tokenizers, and runs the forward pass: every requested hidden_states[k] in one pass (0 = embeddings, k = output of decoder layer k-1, the last after the final norm), stopping at the highest layer asked for; and generation with a KV cache.
//
// Loading: Load(dir, LoadOptions) maps model.safetensors or the shards of
// model.safetensors.index.json, checks every tensor against config.json
// (shape, dtype, NaN/Inf) and holds Linear weights as f32 or bf16. Weights
// stored in the held dtype point into the mapping, unread: their NaN/Inf
// check runs the first time a pass uses their layer (Verify runs it for
// all), so a checkpoint larger than memory is streamed once per pass and not
// once more at load. Others are converted, and checked, tensor by tensor, so
// an f32 8B checkpoint held as bf16 peaks at the bf16 size (about 16 GB):
// converted pages of the mapping are released as the conversion goes.
// LoadOptions.MaxLayer loads only what hidden states up to that layer need.
//
// Running: Model.Forward runs a packed Batch layer by layer (each weight read
// once per pass) and hands each requested hidden state to a callback;
// HiddenStates collects them; Logits applies the LM head; Generate decodes
// greedily or by temperature/top-p sampling with a KV cache.
//
// Files: ReadSafetensors, WriteSafetensors (and the Ordered and Mixed
// variants with I64 tensors) read and write safetensors files (adapters,
// embedding dumps); Synth writes synthetic checkpoints of the Llama 3 shapes
// with a synthetic tokenizer for tests and benchmarks.
//
// Semantics follow transformers' LlamaModel in eager mode; the plain-PyTorch
// re-implementation internal/ref/llama_ref.py is the reference the parity
// tests compare with.
//
// llama depends on engine, kernels and autograd (for the training forward); it knows nothing of adapter files or the TLI method.
package llama
