package kernels

import (
	"fmt"
	"os"
	"strings"
)

// Function values chosen at start-up. install (per path) replaces them.
var (
	path           = "generic"
	gemmNT         = gemmNTGeneric
	gemmNN         = gemmNNGeneric
	gemmTN         = gemmTNGeneric
	gemmNTBF16     = gemmNTBF16Generic
	gemmNNBF16     = gemmNNBF16Generic
	gemmNTBF16Fast = gemmNTBF16FastGeneric
	gemmNTF16      = gemmNTF16Generic
	gemmNNF16      = gemmNNF16Generic
	dot            = dotGeneric
	axpy           = axpyGeneric
	scale          = scaleGeneric
	sumSq          = sumSqGeneric
)

// impl is one kernel path: whether this CPU runs it and how to install it.
type impl struct {
	name string
	ok   bool
	set  func()
}

// genericImpl is the pure-Go path, available everywhere: the blocked
// drivers with a Go micro-kernel.
var genericImpl = impl{"generic", true, func() { install(goSimd) }}

// Paths lists the kernel paths this CPU supports, fastest first; the last is
// always "generic".
func Paths() []string {
	var names []string
	for _, p := range impls() {
		if p.ok {
			names = append(names, p.name)
		}
	}
	return names
}

// Use switches every kernel to the named path ("generic", "avx2", "avx512"
// or "neon"). It fails, changing nothing, if the path does not exist on this
// architecture or this CPU lacks the instructions it needs. Use is meant for
// start-up, tests and benchmarks: do not call it while kernels are running.
func Use(name string) error {
	var known []string
	for _, p := range impls() {
		if p.name != name {
			known = append(known, p.name)
			continue
		}
		if !p.ok {
			return fmt.Errorf("kernels: path %q is not supported by this CPU (supported: %s)", name, strings.Join(Paths(), ", "))
		}
		p.set()
		return nil
	}
	return fmt.Errorf("kernels: unknown path %q (this build knows: %s)", name, strings.Join(known, ", "))
}

// init selects the fastest supported path, or the one named by TLI_KERNELS.
func init() {
	if name := os.Getenv("TLI_KERNELS"); name != "" {
		if err := Use(name); err != nil {
			panic(fmt.Sprintf("TLI_KERNELS=%s: %v", name, err))
		}
		return
	}
	if err := Use(Paths()[0]); err != nil {
		panic(err)
	}
}
