//go:build (!amd64 && !arm64) || purego

package kernels

// installActArch keeps the pure-Go helpers installAct set: this build has
// no assembly.
func installActArch(name string) {}

// The assembly entry points of act.go's helpers, never called in this
// build.
func siluMulAsm(actKern, *float32, *float32, *float32, int) { panic("kernels: no assembly") }

func siluMulBwdAsm(actKern, *float32, *float32, *float32, *float32, *float32, int) {
	panic("kernels: no assembly")
}

func expSumAsm(actKern, *float32, int, float32) float32 { panic("kernels: no assembly") }
