package vulkan

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tli-project/tli/internal/peer"
)

// generateLines returns the glslc command lines of generate.go.
func generateLines(t *testing.T) [][]string {
	t.Helper()
	src, err := os.ReadFile("generate.go")
	if err != nil {
		t.Fatal(err)
	}
	var lines [][]string
	for _, l := range strings.Split(string(src), "\n") {
		if rest, ok := strings.CutPrefix(l, "//go:generate "); ok {
			f := strings.Fields(rest)
			if f[0] != "glslc" {
				t.Fatalf("generate.go: a go:generate line that is not glslc: %s", l)
			}
			lines = append(lines, f)
		}
	}
	return lines
}

// TestSPIRVUpToDate compiles every shader again with the lines of
// generate.go, into a temporary folder, and fails when the result differs
// from the committed .spv (run go generate ./vulkan/ and commit). It also
// checks that every .comp has its line and its .spv.
func TestSPIRVUpToDate(t *testing.T) {
	lines := generateLines(t)
	comps, _ := filepath.Glob("shaders/*.comp")
	spvs, _ := filepath.Glob("shaders/*.spv")
	var outs, ins []string
	for _, f := range lines {
		o := slices.Index(f, "-o")
		if o < 0 || o+1 >= len(f) {
			t.Fatalf("generate.go: no -o in %v", f)
		}
		outs = append(outs, f[o+1])
		ins = append(ins, f[len(f)-1])
	}
	slices.Sort(outs)
	slices.Sort(ins)
	if !slices.Equal(ins, comps) {
		t.Errorf("generate.go compiles %v, shaders/ has %v", ins, comps)
	}
	if !slices.Equal(outs, spvs) {
		t.Errorf("generate.go writes %v, shaders/ has %v", outs, spvs)
	}
	glslc, err := exec.LookPath("glslc")
	if err != nil {
		peer.Missing(t, "glslc not found, cannot check the committed SPIR-V (apt-get install glslc)")
	}
	tmp := t.TempDir()
	for _, f := range lines {
		args := slices.Clone(f[1:])
		o := slices.Index(args, "-o")
		committed := args[o+1]
		args[o+1] = filepath.Join(tmp, filepath.Base(committed))
		out, err := exec.Command(glslc, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("glslc %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		fresh, err := os.ReadFile(args[o+1])
		if err != nil {
			t.Fatal(err)
		}
		old, err := os.ReadFile(committed)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fresh, old) {
			t.Errorf("%s is stale: glslc makes %d bytes that differ from the committed %d (run go generate ./vulkan/ and commit)", committed, len(fresh), len(old))
		}
	}
	v, _ := exec.Command(glslc, "--version").Output()
	t.Logf("%d shaders up to date (%s)", len(lines), strings.SplitN(string(v), "\n", 2)[0])
}
