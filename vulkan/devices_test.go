//go:build vulkan && (amd64 || arm64) && (linux || darwin || windows)

package vulkan

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/tli-project/tli/internal/peer"
)

// devices returns Devices(), skipping the test (failing it under
// TLI_REQUIRE_PEERS=1) when there is no Vulkan loader.
func devices(t *testing.T) []Device {
	t.Helper()
	ds, err := Devices()
	if errors.Is(err, ErrNoLoader) {
		peer.Missing(t, err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// TestLavapipe lists the devices and checks lavapipe's (mesa-vulkan-drivers):
// a CPU device with a compute queue, device-local memory and a subgroup size.
func TestLavapipe(t *testing.T) {
	ds := devices(t)
	var lvp *Device
	for i := range ds {
		t.Logf("%s", ds[i])
		t.Logf("    vendor 0x%04x device 0x%04x  driver version %s  heaps %v  workgroup max %d %v  shared %d B  storage range %d B  push %d B",
			ds[i].VendorID, ds[i].DeviceID, ds[i].DriverVersion, ds[i].Heaps, ds[i].MaxComputeWorkGroupInvocs, ds[i].MaxComputeWorkGroupSize,
			ds[i].MaxComputeSharedMemory, ds[i].MaxStorageBufferRange, ds[i].MaxPushConstantsSize)
		if ds[i].Index != i {
			t.Errorf("device %d has Index %d", i, ds[i].Index)
		}
		if strings.Contains(ds[i].Name, "llvmpipe") && lvp == nil {
			lvp = &ds[i]
		}
	}
	if lvp == nil {
		peer.Missing(t, "no llvmpipe Vulkan device (apt-get install -y mesa-vulkan-drivers libvulkan1)")
	}
	d := *lvp
	if d.Type != "cpu" {
		t.Errorf("llvmpipe type %q, want cpu", d.Type)
	}
	if !d.ComputeQueue || d.ComputeQueueFamily < 0 || d.ComputeQueueCount < 1 {
		t.Errorf("llvmpipe has no compute queue: %+v", d)
	}
	if d.HeapBytes == 0 || len(d.Heaps) == 0 {
		t.Errorf("llvmpipe has no device-local heap: %+v", d.Heaps)
	}
	if d.SubgroupSize < 4 || d.SubgroupSize&(d.SubgroupSize-1) != 0 {
		t.Errorf("llvmpipe subgroup size %d", d.SubgroupSize)
	}
	if !strings.HasPrefix(d.APIVersion, "1.") || d.APIVersion < "1.1" {
		t.Errorf("llvmpipe API version %q", d.APIVersion)
	}
	if d.VendorID != 0x10005 { // VK_VENDOR_ID_MESA
		t.Errorf("llvmpipe vendor 0x%x, want 0x10005 (Mesa)", d.VendorID)
	}
	if !strings.Contains(strings.ToLower(d.Driver), "llvmpipe") {
		t.Errorf("llvmpipe driver %q", d.Driver)
	}
	if d.MaxComputeWorkGroupInvocs < 128 || d.MaxComputeWorkGroupSize[0] < 128 || d.MaxComputeSharedMemory < 16384 || d.MaxStorageBufferRange < 1<<27 {
		t.Errorf("llvmpipe limits below the Vulkan minimums: %+v", d)
	}
	if !d.Storage16Bit || !d.Float16 || !d.Int8 {
		t.Errorf("llvmpipe should report 16-bit storage, fp16 and int8: %+v", d)
	}
	// A second enumeration creates and destroys another instance.
	if again := devices(t); len(again) != len(ds) || again[lvp.Index].Name != d.Name {
		t.Errorf("second enumeration differs: %v", again)
	}
}

// TestSelect resolves --device values on the devices found.
func TestSelect(t *testing.T) {
	ds := devices(t)
	if len(ds) == 0 {
		peer.Missing(t, "no Vulkan device (apt-get install -y mesa-vulkan-drivers libvulkan1)")
	}
	d, err := Select("vulkan")
	if err != nil || !d.ComputeQueue {
		t.Fatalf("Select(vulkan) = %v, %v", d, err)
	}
	t.Logf("vulkan -> %s", d)
	if d0, err := Select("vulkan:0"); err != nil || d0.Index != 0 || d0.Name != ds[0].Name {
		t.Errorf("Select(vulkan:0) = %v, %v", d0, err)
	}
	for _, bad := range []string{"vulkan:99", "vulkan:x", "vulkan:-1", "cpu"} {
		if _, err := Select(bad); err == nil {
			t.Errorf("Select(%q) succeeded", bad)
		} else {
			t.Logf("%s: %v", bad, err)
		}
	}
}

// TestNoLoader checks the error for a missing loader says how to install one.
func TestNoLoader(t *testing.T) {
	_, err := openLoaderFrom([]string{"/nonexistent/libvulkan.so.1"})
	if !errors.Is(err, ErrNoLoader) {
		t.Fatalf("err = %v, want ErrNoLoader", err)
	}
	if !strings.Contains(err.Error(), "not found") || !strings.Contains(err.Error(), "install") {
		t.Errorf("error does not say how to install the loader: %v", err)
	}
	t.Log(err)
}

// TestNoDriver runs Devices in a child process whose loader finds no
// driver: an empty list and no error.
func TestNoDriver(t *testing.T) {
	if os.Getenv("TLI_VULKAN_CHILD") == "1" {
		ds, err := Devices()
		if err != nil {
			t.Fatalf("Devices() with no driver: %v", err)
		}
		if ds == nil || len(ds) != 0 {
			t.Fatalf("Devices() with no driver = %v, want an empty list", ds)
		}
		return
	}
	devices(t) // skips without a loader
	cmd := exec.Command(os.Args[0], "-test.run=^TestNoDriver$", "-test.v")
	cmd.Env = append(os.Environ(), "TLI_VULKAN_CHILD=1",
		"VK_ICD_FILENAMES=/nonexistent/icd.json", "VK_DRIVER_FILES=/nonexistent/icd.json",
		"VK_ADD_DRIVER_FILES=", "VK_LOADER_LAYERS_DISABLE=~all~")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestNoDriver") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}
