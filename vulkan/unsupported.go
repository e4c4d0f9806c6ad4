//go:build vulkan && !((amd64 || arm64) && (linux || darwin || windows))

package vulkan

import (
	"fmt"
	"runtime"
)

// Built reports whether this tli was built with the vulkan build tag.
const Built = true

// Devices returns an error: the Vulkan path needs a 64-bit amd64 or arm64
// build on Linux, macOS or Windows.
func Devices() ([]Device, error) {
	return nil, fmt.Errorf("tli's Vulkan support needs amd64 or arm64 on Linux, macOS or Windows, not %s/%s", runtime.GOOS, runtime.GOARCH)
}
