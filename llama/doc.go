// Package llama reads Hugging Face Llama checkpoints (config.json, safetensors shards) and tokenizers, and runs the forward pass: every requested hidden_states[k] in one pass (0 = embeddings, k = output of decoder layer k-1, the last after the final norm), stopping at the highest layer asked for; and generation with a KV cache.
//
// llama depends on engine, kernels and autograd (for the training forward); it knows nothing of adapter files or the TLI method.
package llama
