package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/klauspost/cpuid/v2"

	"github.com/tli-project/tli/kernels"
)

func init() {
	register("env", "print the build, the CPU and the kernel path tli runs with", runEnv)
}

// envOut is where env prints (tests replace it).
var envOut io.Writer = os.Stdout

// runEnv prints what a benchmark figure or a bug report needs: tli's
// version, the Go toolchain, the CPU, the kernel path selected (and the ones
// this CPU could run, for TLI_KERNELS), the cache sizes the blocking uses and
// the worker threads.
func runEnv(args []string) error {
	fs := newFlagSet("env", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	w := envOut
	fmt.Fprintf(w, "tli      %s\n", buildVersion())
	fmt.Fprintf(w, "go       %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	brand := strings.TrimSpace(cpuid.CPU.BrandName)
	if brand == "" {
		brand = "unknown CPU"
	}
	fmt.Fprintf(w, "cpu      %s, %d logical cores\n", brand, runtime.NumCPU())
	var feats []string
	for _, f := range []struct {
		id   cpuid.FeatureID
		name string
	}{{cpuid.AVX2, "avx2"}, {cpuid.FMA3, "fma"}, {cpuid.F16C, "f16c"}, {cpuid.AVX512F, "avx512f"}, {cpuid.AVX512BW, "avx512bw"},
		{cpuid.AVX512VL, "avx512vl"}, {cpuid.AVX512BF16, "avx512_bf16"}, {cpuid.ASIMD, "asimd"}, {cpuid.FPHP, "fphp"}} {
		if cpuid.CPU.Has(f.id) {
			feats = append(feats, f.name)
		}
	}
	if len(feats) > 0 {
		fmt.Fprintf(w, "features %s (those the kernels use)\n", strings.Join(feats, " "))
	}
	how := "the fastest this CPU supports"
	if v := os.Getenv("TLI_KERNELS"); v != "" {
		how = "TLI_KERNELS=" + v
	}
	fmt.Fprintf(w, "kernels  %s (%s; this CPU supports %s)\n", kernels.Path(), how, strings.Join(kernels.Paths(), ", "))
	l2, l3 := kernels.CacheSizes()
	l3s := "unknown"
	if l3 > 0 {
		l3s = fmt.Sprintf("%d MiB", l3>>20)
	}
	fmt.Fprintf(w, "caches   L2 %d KiB per core, last level %s (as the GEMM blocking uses them)\n", l2>>10, l3s)
	fmt.Fprintf(w, "threads  %d (GOMAXPROCS; --threads sets a command's worker pool)\n", runtime.GOMAXPROCS(0))
	return nil
}

// buildVersion is the main module's version and VCS revision, as the Go
// toolchain recorded them.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v += " " + s.Value[:min(12, len(s.Value))]
		case "vcs.modified":
			if s.Value == "true" {
				v += " (modified)"
			}
		}
	}
	return v
}
