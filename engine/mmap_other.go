//go:build !unix

package engine

import "os"

// mapFile reads the whole file into memory on systems without mmap support
// in tli (Windows, wasm): the data is owned by the Go heap.
func mapFile(path string) (*Mapping, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return &Mapping{Data: data, Path: path, unmap: func() error { return nil }}, nil
}
