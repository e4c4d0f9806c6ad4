package main

import (
	"os"
	"runtime/debug"

	"golang.org/x/sys/unix"
)

// setMemoryLimit gives the Go runtime a soft memory limit of 90% of the
// machine's RAM unless GOMEMLIMIT sets one. Without it the collector lets
// the heap grow to twice what is live: with 14.5 GB of bf16 weights on the
// heap (the 8B shape trained at layer 31) that target is past a 23 GB
// machine, and the kernel kills tli where a collection would have sufficed.
func setMemoryLimit() {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil || si.Totalram == 0 {
		return
	}
	total := uint64(si.Totalram) * uint64(si.Unit)
	debug.SetMemoryLimit(int64(total / 10 * 9))
}
