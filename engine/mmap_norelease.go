//go:build !(linux || darwin)

package engine

// release does nothing where tli does not use madvise.
func release(m *Mapping, b []byte) {}
