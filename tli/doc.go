// Package tli implements Targeted Lexical Injection (arXiv 2506.15415): word-pair lists, pooling, the per-layer scan, the triplet-loss trainer, the before/after evaluation, statistics and reports.
//
// tli sits on top of lora, llama, autograd, engine and kernels; only cmd/tli sits above it.
package tli
