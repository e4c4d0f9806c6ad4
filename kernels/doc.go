// Package kernels holds the SIMD compute kernels of tli: matrix products
// (GEMM) in the layouts a Llama forward and backward pass need, and the small
// vector helpers (dot, axpy, scale, sum of squares) that the norms, softmax and
// LoRA paths use.
//
// Layout follows the Go standard library's assembly packages: gemm_amd64.go
// declares and dispatches, gemm_amd64.s and gemm_arm64.s hold the assembly,
// gemm_generic.go holds the pure-Go path (also chosen with the purego build
// tag and on every other architecture). The path is chosen once at start-up
// from golang.org/x/sys/cpu; TLI_KERNELS=generic|avx2|avx512|neon forces one.
//
// kernels depends on nothing else in tli. It must not import engine or any
// package above it: parallelism is injected with SetRunner.
//
// Conventions: all matrices are row-major with explicit leading dimensions
// (strides, in elements). bf16 and f16 values travel as their raw uint16 bits.
// With acc=false the destination is overwritten; with acc=true the product is
// added to it.
package kernels
