package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/tli-project/tli/vulkan"
)

func init() {
	register("devices", "list the compute devices tli can use (the CPU, and Vulkan devices in a -tags vulkan build)", runDevices)
}

// devicesOut is where devices prints (tests replace it).
var devicesOut io.Writer = os.Stdout

// runDevices prints the CPU and every Vulkan device the loader reports
// (name, type, driver, memory, subgroup size, fp16/int8/bf16 support). A
// build without the vulkan tag, or a machine without a Vulkan loader, says
// so in one line; that is not an error, the CPU is always there.
func runDevices(args []string) error {
	fs := newFlagSet("devices", "[--json]")
	asJSON := fs.Bool("json", false, "print the devices as JSON on stdout")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	devs, err := vulkan.Devices()
	note := ""
	switch {
	case errors.Is(err, vulkan.ErrNotBuilt), errors.Is(err, vulkan.ErrNoLoader):
		note = err.Error()
	case err != nil:
		return fmt.Errorf("vulkan: %w", err)
	case len(devs) == 0:
		note = "a Vulkan loader is installed but reports no device (is a driver installed, e.g. mesa-vulkan-drivers?)"
	}
	if *asJSON {
		doc := map[string]any{"cpu": currentEnv(), "vulkan": devs}
		if note != "" {
			doc["vulkan_note"] = note
		}
		return printJSON(devicesOut, doc)
	}
	fmt.Fprintln(devicesOut, "cpu       the CPU (tli env for its features and kernels); --device cpu, the default")
	for _, d := range devs {
		fmt.Fprintln(devicesOut, d.String())
	}
	if note != "" {
		fmt.Fprintln(devicesOut, "vulkan:   "+note)
	}
	return nil
}
