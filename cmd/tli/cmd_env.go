package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/klauspost/cpuid/v2"

	"github.com/tli-project/tli/kernels"
	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/tli"
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
	asJSON := fs.Bool("json", false, "print a JSON object instead of text")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	e := currentEnv()
	if *asJSON {
		return printJSON(envOut, e)
	}
	w := envOut
	fmt.Fprintf(w, "tli      %s\n", e.Version)
	fmt.Fprintf(w, "go       %s %s/%s\n", e.Go, e.OS, e.Arch)
	fmt.Fprintf(w, "cpu      %s, %d logical cores\n", e.CPU, e.Cores)
	if len(e.Features) > 0 {
		fmt.Fprintf(w, "features %s (those the kernels use)\n", strings.Join(e.Features, " "))
	}
	how := "the fastest this CPU supports"
	if e.KernelsEnv != "" {
		how = "TLI_KERNELS=" + e.KernelsEnv
	}
	fmt.Fprintf(w, "kernels  %s (%s; this CPU supports %s)\n", e.Kernels, how, strings.Join(e.KernelPaths, ", "))
	l3s := "unknown"
	if e.LastLevelCache > 0 {
		l3s = fmt.Sprintf("%d MiB", e.LastLevelCache>>20)
	}
	fmt.Fprintf(w, "caches   L2 %d KiB per core, last level %s (as the GEMM blocking uses them)\n", e.L2Cache>>10, l3s)
	fmt.Fprintf(w, "threads  %d (GOMAXPROCS; --threads sets a command's worker pool)\n", e.Threads)
	fmt.Fprintf(w, "hf cache %s (where --model org/name is looked up)\n", e.HubCache)
	return nil
}

// environment is what tli env reports.
type environment struct {
	Version        string   `json:"version"`
	Go             string   `json:"go"`
	OS             string   `json:"os"`
	Arch           string   `json:"arch"`
	CPU            string   `json:"cpu"`
	Cores          int      `json:"cores"`
	Features       []string `json:"features"`
	Kernels        string   `json:"kernels"`
	KernelsEnv     string   `json:"tli_kernels,omitempty"`
	KernelPaths    []string `json:"kernel_paths"`
	L2Cache        int      `json:"l2_cache_bytes"`
	LastLevelCache int      `json:"last_level_cache_bytes"`
	Threads        int      `json:"threads"`
	HubCache       string   `json:"hf_hub_cache"`
}

func currentEnv() environment {
	brand := strings.TrimSpace(cpuid.CPU.BrandName)
	if brand == "" {
		brand = "unknown CPU"
	}
	feats := []string{}
	for _, f := range []struct {
		id   cpuid.FeatureID
		name string
	}{{cpuid.AVX2, "avx2"}, {cpuid.FMA3, "fma"}, {cpuid.F16C, "f16c"}, {cpuid.AVX512F, "avx512f"}, {cpuid.AVX512BW, "avx512bw"},
		{cpuid.AVX512VL, "avx512vl"}, {cpuid.AVX512BF16, "avx512_bf16"}, {cpuid.ASIMD, "asimd"}, {cpuid.FPHP, "fphp"}} {
		if cpuid.CPU.Has(f.id) {
			feats = append(feats, f.name)
		}
	}
	l2, l3 := kernels.CacheSizes()
	return environment{Version: buildVersion(), Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH, CPU: brand,
		Cores: runtime.NumCPU(), Features: feats, Kernels: kernels.Path(), KernelsEnv: os.Getenv("TLI_KERNELS"),
		KernelPaths: kernels.Paths(), L2Cache: l2, LastLevelCache: l3, Threads: runtime.GOMAXPROCS(0), HubCache: llama.HubCache()}
}

// printJSON writes v as indented JSON and a newline.
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// printFile copies a JSON file a command wrote to stdout (--json).
func printFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(b)
	return err
}

// buildVersion is the tli build: the release version (or the module
// version) and the VCS revision.
func buildVersion() string { return tli.ThisBuild().String() }
