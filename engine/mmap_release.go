//go:build linux || darwin

package engine

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// release tells the kernel that the whole pages of b (a part of m.Data) are
// not needed any more (madvise MADV_DONTNEED): they leave the process's
// resident set and, being clean file pages, can be dropped at no cost.
// Reading them again later re-faults them from the file.
func release(m *Mapping, b []byte) {
	if !m.Mapped || len(b) == 0 || len(m.Data) == 0 {
		return
	}
	page := uintptr(os.Getpagesize())
	base := uintptr(unsafe.Pointer(&m.Data[0]))
	p := uintptr(unsafe.Pointer(&b[0]))
	if p < base || p+uintptr(len(b)) > base+uintptr(len(m.Data)) {
		return // not part of this mapping (a copied, misaligned tensor)
	}
	lo := p - base
	hi := lo + uintptr(len(b))
	lo = (lo + page - 1) &^ (page - 1)
	hi &^= page - 1
	if hi <= lo || hi > uintptr(len(m.Data)) {
		return
	}
	_ = unix.Madvise(m.Data[lo:hi], unix.MADV_DONTNEED)
}
