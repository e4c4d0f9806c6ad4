//go:build !linux

package main

// setMemoryLimit leaves the runtime's default (GOMEMLIMIT still applies)
// where tli does not read the machine's RAM.
func setMemoryLimit() {}
