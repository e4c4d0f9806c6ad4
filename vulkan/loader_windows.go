//go:build vulkan && (amd64 || arm64) && windows

package vulkan

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/windows"
)

// openLoader opens vulkan-1.dll ($TLI_VULKAN_LOADER first) and returns its
// vkGetInstanceProcAddr. vulkan-1.dll itself is loaded from System32 only
// (where the GPU driver or the Vulkan Runtime installs it), never from the
// current folder.
func openLoader() (uintptr, error) {
	var names []string
	if p := os.Getenv("TLI_VULKAN_LOADER"); p != "" {
		names = append(names, p)
	}
	return openLoaderFrom(append(names, "vulkan-1.dll"))
}

// openLoaderFrom opens the first of names that has vkGetInstanceProcAddr.
func openLoaderFrom(names []string) (uintptr, error) {
	var errs []string
	for _, name := range names {
		var flags uintptr
		if !strings.ContainsAny(name, `\/`) {
			flags = windows.LOAD_LIBRARY_SEARCH_SYSTEM32
		}
		h, err := windows.LoadLibraryEx(name, 0, flags)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		sym, err := windows.GetProcAddress(h, "vkGetInstanceProcAddr")
		if err != nil || sym == 0 {
			errs = append(errs, fmt.Sprintf("%s has no vkGetInstanceProcAddr", name))
			windows.FreeLibrary(h)
			continue
		}
		return sym, nil
	}
	return 0, fmt.Errorf("%w: vulkan-1.dll comes with the GPU driver (or install the LunarG Vulkan Runtime), or set TLI_VULKAN_LOADER to its path (tried: %s)", ErrNoLoader, strings.Join(errs, "; "))
}
