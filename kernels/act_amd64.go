//go:build !purego

package kernels

func installActArch(name string) {}
