//go:build !purego

package kernels

// q4Kernels returns the 4-bit kernels of the current path.
func q4Kernels() *q4Set { return q4Generic }

// q4Sets lists the 4-bit kernel sets this CPU runs, for the tests.
func q4Sets() map[string]*q4Set { return map[string]*q4Set{"generic": q4Generic} }
