package bench

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/tli-project/tli/internal/peer"
)

// runTorchPeer runs bench/<script> with args under the PyTorch interpreter
// and decodes its JSON output into out. It returns false, with a log line,
// when PyTorch is missing; a failing peer stops the benchmark when peers
// are required (CI) and is logged otherwise.
func runTorchPeer(b *testing.B, out any, script string, args ...string) bool {
	py, err := peer.TorchPython()
	if err != nil {
		if peer.Required() {
			b.Fatal(err)
		}
		b.Logf("no PyTorch peer (%v): tli figures only", err)
		return false
	}
	fail := b.Logf
	if peer.Required() {
		fail = b.Fatalf
	}
	res, err := exec.Command(py, append([]string{filepath.Join(peer.Root(), "bench", script)}, args...)...).Output()
	if err != nil {
		fail("%s: %v", script, err)
		return false
	}
	if err := json.Unmarshal(res, out); err != nil {
		fail("%s output %q: %v", script, res, err)
		return false
	}
	return true
}
