//go:build vulkan

package main

import (
	"fmt"

	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/tli"
	"github.com/tli-project/tli/vulkan"
)

// openDevice uploads m's weights to the Vulkan device spec names and
// returns it (its forward and training step) and what releases it.
func openDevice(spec string, m *llama.Model) (tli.Device, func() error, error) {
	d, err := vulkan.Select(spec)
	if err != nil {
		return nil, nil, fmt.Errorf("--device %s: %w", spec, err)
	}
	c, err := vulkan.Open(d, vulkan.Options{})
	if err != nil {
		return nil, nil, fmt.Errorf("--device %s: %w", spec, err)
	}
	dm, err := vulkan.Upload(c, m)
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("--device %s: %w", spec, err)
	}
	return dm, func() error {
		err := dm.Close()
		if cerr := c.Close(); err == nil {
			err = cerr
		}
		return err
	}, nil
}
