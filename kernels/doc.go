// Package kernels holds the SIMD compute kernels of tli: matrix products
// (GEMM) in the layouts a Llama forward and backward pass need, and the small
// vector helpers (dot, axpy, scale, sum of squares) that the norms, softmax and
// LoRA paths use.
//
// Layout follows the Go standard library's assembly packages: gemm_amd64.go
// and gemm_arm64.go describe the paths and detect the CPU, gemm_amd64.s and
// gemm_arm64.s hold the assembly (generated, with its Go declarations in
// kernels_*.go, by internal/asmgen: `go generate ./kernels/`), gemm_blocked.go
// holds the packing and blocking drivers every path shares, gemm_gokernel.go
// the Go micro-kernel of the generic path, and gemm_generic.go the simple
// reference implementations the tests compare against. gemm_other.go is the
// dispatch of the purego build tag and of other architectures.
//
// Paths: "avx512" (AVX-512F/BW/VL with FMA and F16C; VDPBF16PS for the fast
// bf16 product where AVX512_BF16 is present), "avx2" (AVX2, FMA, F16C), "neon"
// (arm64) and "generic" (pure Go). The fastest supported path is chosen once
// at start-up from golang.org/x/sys/cpu; TLI_KERNELS=generic|avx2|avx512|neon
// forces one (an unsupported choice panics at start-up with the reason), and
// Use switches at run time.
//
// kernels depends on nothing else in tli. It must not import engine or any
// package above it: parallelism is injected with SetRunner.
//
// Conventions: all matrices are row-major with explicit leading dimensions
// (strides, in elements). bf16 and f16 values travel as their raw uint16 bits.
// With acc=false the destination is overwritten; with acc=true the product is
// added to it.
package kernels
