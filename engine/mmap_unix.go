//go:build unix

package engine

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// mapFile maps path with mmap(PROT_READ, MAP_SHARED): pages are read from
// disk on first touch and can be dropped by the kernel under memory
// pressure, so a checkpoint larger than RAM can still be streamed.
func mapFile(path string) (*Mapping, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if size == 0 {
		return &Mapping{Data: []byte{}, Path: path}, nil
	}
	if size != int64(int(size)) {
		return nil, fmt.Errorf("%s: file of %d bytes is too large to map", path, size)
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		// Some file systems refuse mmap: fall back to reading.
		return readFile(path)
	}
	return &Mapping{Data: data, Path: path, Mapped: true, unmap: func() error { return unix.Munmap(data) }}, nil
}

// readFile reads the whole file into memory.
func readFile(path string) (*Mapping, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return &Mapping{Data: data, Path: path, unmap: func() error { return nil }}, nil
}
