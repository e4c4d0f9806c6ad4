package tli

import (
	"io"

	"github.com/tli-project/tli/internal/atomicfs"
)

// WriteFileAtomic writes data to path so that readers see either the old file
// or the complete new one, never a torn write (see internal/atomicfs). The
// new file has mode 0644.
func WriteFileAtomic(path string, data []byte) error {
	return atomicfs.WriteFile(path, data)
}

// WriteAtomic is WriteFileAtomic for content produced by a function: write is
// handed a buffered writer on the temporary file. If write returns an error,
// path is left untouched and the temporary file is removed.
func WriteAtomic(path string, write func(w io.Writer) error) error {
	return atomicfs.Write(path, write)
}
