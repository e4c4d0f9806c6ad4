//go:build (!amd64 && !arm64) || purego

package kernels

// installActArch keeps the pure-Go helpers installAct set: this build has
// no assembly.
func installActArch(name string) {}
