//go:build !vulkan

package main

import (
	"fmt"

	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/tli"
)

// openDevice: this build has no Vulkan path (checkDevice says so first).
func openDevice(spec string, m *llama.Model) (tli.Device, func() error, error) {
	return nil, nil, fmt.Errorf("--device %s: this tli was built without -tags vulkan", spec)
}
