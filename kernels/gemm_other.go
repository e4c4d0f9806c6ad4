//go:build (!amd64 && !arm64) || purego

package kernels

// impls lists the kernel paths of this build: only the pure-Go one.
func impls() []impl { return []impl{genericImpl} }

// setMinWork is a no-op: the generic kernels split every product by rows.
func setMinWork(n int) int { return n }
