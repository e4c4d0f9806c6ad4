//go:build !vulkan

package vulkan

// Built reports whether this tli was built with the vulkan build tag.
const Built = false

// Devices returns ErrNotBuilt: this tli was built without the vulkan tag.
func Devices() ([]Device, error) { return nil, ErrNotBuilt }
