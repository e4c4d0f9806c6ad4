package peer

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// LlamaCppInstall is the npm command that installs the llama.cpp peer.
const LlamaCppInstall = "npm install --no-audit --no-fund --prefix .cache/node node-llama-cpp@3.21.1"

// LlamaCpp returns the node binary and the node_modules folder holding
// node-llama-cpp (prebuilt llama.cpp binaries; .cache/node/node_modules
// under the repository root, or $TLI_NODE_MODULES), skipping or failing
// the test when either is missing.
func LlamaCpp(t testing.TB) (node, modules string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		Missing(t, "node is not on PATH")
	}
	modules = os.Getenv("TLI_NODE_MODULES")
	if modules == "" {
		modules = filepath.Join(Root(), ".cache", "node", "node_modules")
	}
	if _, err := os.Stat(filepath.Join(modules, "node-llama-cpp", "dist", "index.js")); err != nil {
		Missing(t, "no node-llama-cpp under "+modules+" ("+LlamaCppInstall+")")
	}
	return node, modules
}
