//go:build unix

package atomicfs

import (
	"errors"
	"syscall"
)

// canProbe says whether alive can tell a dead process from a live one.
const canProbe = true

// alive reports whether process pid exists (signal 0 probes without
// sending; EPERM means it exists under another user).
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
