//go:build !unix

package atomicfs

// canProbe is false where tli does not probe processes: leftovers of killed
// runs stay (they have hidden names) and may be removed by hand.
const canProbe = false

func alive(pid int) bool { return true }
