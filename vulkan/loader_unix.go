//go:build vulkan && (amd64 || arm64) && (linux || darwin)

package vulkan

import (
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/ebitengine/purego"
)

// loaderNames are the libraries tried, in order: $TLI_VULKAN_LOADER first.
func loaderNames() []string {
	var names []string
	if p := os.Getenv("TLI_VULKAN_LOADER"); p != "" {
		names = append(names, p)
	}
	switch runtime.GOOS {
	case "darwin":
		return append(names, "libvulkan.1.dylib", "libvulkan.dylib",
			"/opt/homebrew/lib/libvulkan.1.dylib", "/usr/local/lib/libvulkan.1.dylib",
			"libMoltenVK.dylib", "/opt/homebrew/lib/libMoltenVK.dylib", "/usr/local/lib/libMoltenVK.dylib")
	default:
		return append(names, "libvulkan.so.1", "libvulkan.so")
	}
}

// installHint says how to get a Vulkan loader and driver on this system.
func installHint() string {
	switch runtime.GOOS {
	case "darwin":
		return "install it with `brew install vulkan-loader molten-vk` (or the LunarG Vulkan SDK)"
	case "linux":
		return "install the loader and a driver (Debian/Ubuntu: `apt-get install libvulkan1 mesa-vulkan-drivers`; Fedora: `dnf install vulkan-loader mesa-vulkan-drivers`; or your GPU vendor's driver)"
	}
	return "install the Vulkan loader (libvulkan.so.1) and a Vulkan driver"
}

// openLoader opens the Vulkan loader and returns its vkGetInstanceProcAddr.
func openLoader() (uintptr, error) { return openLoaderFrom(loaderNames()) }

// openLoaderFrom opens the first of names that has vkGetInstanceProcAddr.
func openLoaderFrom(names []string) (uintptr, error) {
	var errs []string
	for _, name := range names {
		h, err := purego.Dlopen(name, purego.RTLD_NOW|purego.RTLD_LOCAL)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		sym, err := purego.Dlsym(h, "vkGetInstanceProcAddr")
		if err != nil || sym == 0 {
			errs = append(errs, fmt.Sprintf("%s has no vkGetInstanceProcAddr", name))
			purego.Dlclose(h)
			continue
		}
		return sym, nil
	}
	return 0, fmt.Errorf("%w: %s, or set TLI_VULKAN_LOADER to its path (tried: %s)", ErrNoLoader, installHint(), strings.Join(errs, "; "))
}
