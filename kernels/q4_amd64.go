//go:build !purego

package kernels

// q4Kernels returns the 4-bit kernels of the current path.
func q4Kernels() *q4Set { return q4Generic }
