//go:build !purego

package kernels

// impls lists the kernel paths of this build.
func impls() []impl { return []impl{genericImpl} }

func l2Size() int { return 512 << 10 }
