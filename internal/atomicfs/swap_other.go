//go:build !linux

package atomicfs

// exchange reports false: only Linux swaps two names in one step; elsewhere
// Commit moves the old folder aside and the new one in.
func exchange(a, b string) bool { return false }
