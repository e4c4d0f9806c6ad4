//go:build vulkan && (amd64 || arm64) && windows

package vulkan

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

// openLoader opens vulkan-1.dll ($TLI_VULKAN_LOADER first) and returns its
// vkGetInstanceProcAddr.
func openLoader() (uintptr, error) {
	names := []string{"vulkan-1.dll"}
	if p := os.Getenv("TLI_VULKAN_LOADER"); p != "" {
		names = append([]string{p}, names...)
	}
	return openLoaderFrom(names)
}

// openLoaderFrom opens the first of names that has vkGetInstanceProcAddr.
func openLoaderFrom(names []string) (uintptr, error) {
	var errs []string
	for _, name := range names {
		h, err := syscall.LoadLibrary(name)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		sym, err := syscall.GetProcAddress(h, "vkGetInstanceProcAddr")
		if err != nil || sym == 0 {
			errs = append(errs, fmt.Sprintf("%s has no vkGetInstanceProcAddr", name))
			syscall.FreeLibrary(h)
			continue
		}
		return sym, nil
	}
	return 0, fmt.Errorf("%w: vulkan-1.dll comes with the GPU driver (or install the LunarG Vulkan Runtime), or set TLI_VULKAN_LOADER to its path (tried: %s)", ErrNoLoader, strings.Join(errs, "; "))
}
