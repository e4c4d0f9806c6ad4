//go:build (!amd64 && !arm64) || purego

package kernels

// impls lists the kernel paths of this build: only the pure-Go one.
func impls() []impl { return []impl{genericImpl} }

// l2Size is the L2 size the blocks are sized for.
func l2Size() int { return 512 << 10 }

// l3Size is unknown here (only the AVX-512 path streams C).
func l3Size() int { return 0 }
