//go:build vulkan && (amd64 || arm64) && (linux || darwin || windows)

package vulkan

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestShadersListed checks that shaderInfos lists exactly the embedded
// shaders and that each one is valid SPIR-V (magic number).
func TestShadersListed(t *testing.T) {
	entries, err := spirv.ReadDir("shaders")
	if err != nil {
		t.Fatal(err)
	}
	var embedded, listed []string
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), filepath.Ext(e.Name()))
		embedded = append(embedded, name)
		code, _ := spirv.ReadFile("shaders/" + e.Name())
		if len(code) < 20 || code[0] != 0x03 || code[1] != 0x02 || code[2] != 0x23 || code[3] != 0x07 {
			t.Errorf("%s is not SPIR-V", e.Name())
		}
	}
	for name := range shaderInfos {
		listed = append(listed, name)
	}
	slices.Sort(embedded)
	slices.Sort(listed)
	if !slices.Equal(embedded, listed) {
		t.Errorf("embedded shaders %v, shaderInfos %v", embedded, listed)
	}
}
