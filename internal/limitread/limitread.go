// Package limitread reads whole files that must stay below a size: the
// inputs tli reads into memory (configs, indexes, pair lists, word lists).
// It reads through a limit rather than trusting the size the file system
// reports, so devices and pipes (which report 0, like /dev/zero) are
// stopped too.
package limitread

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// TooLargeError is a file refused for holding more than Limit bytes. Size
// is its size when the file system gave one before reading, else -1.
type TooLargeError struct {
	Path        string
	Size, Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s: larger than %s", e.Path, Size(e.Limit))
}

// ReadFile reads the file at path whole, or returns a *TooLargeError once
// it holds more than limit bytes (a regular file larger than limit is
// refused without reading it).
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var buf bytes.Buffer
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		if st.Size() > limit {
			return nil, &TooLargeError{Path: path, Size: st.Size(), Limit: limit}
		}
		buf.Grow(int(st.Size()) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(io.LimitReader(f, limit+1)); err != nil {
		return nil, err
	}
	if int64(buf.Len()) > limit {
		return nil, &TooLargeError{Path: path, Size: -1, Limit: limit}
	}
	return buf.Bytes(), nil
}

// Size writes a byte count as "64 MiB" or "4 KiB" when it is a whole
// number of them, else "N bytes".
func Size(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
