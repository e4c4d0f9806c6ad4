//go:build !unix

package tli

import "os"

// processAlive reports whether process pid exists; where FindProcess
// cannot tell (it succeeds for any pid on some systems), assume it does.
func processAlive(pid int) bool {
	_, err := os.FindProcess(pid)
	return err == nil
}
