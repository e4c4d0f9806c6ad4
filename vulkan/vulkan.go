// Package vulkan is tli's optional Vulkan compute path.
//
// It is compiled in only with the build tag vulkan (go build -tags vulkan):
// the Vulkan loader is opened at run time with github.com/ebitengine/purego
// (libvulkan.so.1 on Linux, vulkan-1.dll on Windows, libvulkan.1.dylib on
// macOS), without cgo, but purego makes the binary dynamically linked
// against libc, so the default build (no tag) keeps tli one static binary and
// every function here returns ErrNotBuilt.
//
// Devices reports each physical device's name, type, driver, API version,
// device-local memory, compute queue, subgroup size and the shader
// arithmetic it supports (fp16, int8, bf16, integer dot product,
// cooperative matrices); Select resolves a --device value.
//
// Open turns a device into a Context, the compute path (device.go): one
// compute queue, a command buffer that kernels record into and Sync
// submits, device memory suballocated from a few large blocks (memory.go:
// Alloc, Buffer.Upload/Download, Free; exhaustion is an error wrapping
// ErrOutOfMemory), compute pipelines built from the embedded SPIR-V with
// specialization constants and cached (pipeline.go), and the kernels
// (kernels.go): tiled GEMM with f32, bf16 or f16 weights, RMSNorm, SiLU·mul,
// residual add, rotary embedding, embedding gather and causal attention
// over packed sequences. The shaders are GLSL in shaders/, compiled by go
// generate (generate.go). Close destroys everything the Context made.
package vulkan

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrNotBuilt is returned by every function of a tli built without the
// vulkan build tag.
var ErrNotBuilt = errors.New("this tli was built without Vulkan support: build with -tags vulkan (see README)")

// ErrNoLoader is wrapped by the error Devices returns when the Vulkan loader
// library cannot be opened.
var ErrNoLoader = errors.New("the Vulkan loader (libvulkan) was not found")

// ErrOutOfMemory is wrapped by every error of a request for device memory
// that cannot be met: the driver's VK_ERROR_OUT_OF_DEVICE_MEMORY or
// VK_ERROR_OUT_OF_HOST_MEMORY, a request larger than the memory heap, or
// one past Options.MemoryLimit.
var ErrOutOfMemory = errors.New("out of device memory")

// ErrClosed is returned by a Context, or one of its buffers, used after Close.
var ErrClosed = errors.New("vulkan: the device context is closed")

// Device is one Vulkan physical device.
type Device struct {
	Index         int    // position in vkEnumeratePhysicalDevices (the N of --device vulkan:N)
	Name          string // deviceName, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)"
	Type          string // "discrete", "integrated", "virtual", "cpu" or "other"
	Driver        string // driver name and info when the device reports them (Vulkan 1.2), else the decoded driver version
	DriverVersion string // driverVersion decoded by the vendor's convention
	APIVersion    string // the Vulkan version the device supports, e.g. "1.3.230"
	VendorID      uint32
	DeviceID      uint32

	// HeapBytes is the size of the largest device-local memory heap (the
	// device's own memory; on integrated and CPU devices, shared system
	// memory). Heaps lists every heap.
	HeapBytes uint64
	Heaps     []Heap

	ComputeQueue       bool // a queue family supports compute
	ComputeQueueFamily int  // the first such family (a compute-only one when there is one), -1 when none
	ComputeQueueCount  int  // queues in that family

	SubgroupSize    int // default subgroup size; 0 when unknown (a Vulkan 1.0 device)
	MinSubgroupSize int // subgroup size control range; 0 when not reported
	MaxSubgroupSize int

	Float16           bool // shaderFloat16 arithmetic
	Int8              bool // shaderInt8 arithmetic
	Storage16Bit      bool // storageBuffer16BitAccess: f16/bf16 loads from storage buffers
	Storage8Bit       bool // storageBuffer8BitAccess
	IntegerDot        bool // shaderIntegerDotProduct (int8 dot products)
	BFloat16          bool // shaderBFloat16Type (VK_KHR_shader_bfloat16)
	BFloat16Dot       bool // shaderBFloat16DotProduct
	CooperativeMatrix bool // cooperativeMatrix (VK_KHR_cooperative_matrix)

	MaxComputeSharedMemory    uint32    // maxComputeSharedMemorySize, bytes
	MaxComputeWorkGroupInvocs uint32    // maxComputeWorkGroupInvocations
	MaxComputeWorkGroupSize   [3]uint32 // maxComputeWorkGroupSize
	MaxComputeWorkGroupCount  [3]uint32 // maxComputeWorkGroupCount
	MaxStorageBufferRange     uint32    // maxStorageBufferRange, bytes
	MaxPushConstantsSize      uint32    // maxPushConstantsSize, bytes
	MaxStorageBuffersPerStage uint32    // maxPerStageDescriptorStorageBuffers (AttentionBackward binds 8)
	MaxMemoryAllocationCount  uint32    // maxMemoryAllocationCount
	MinStorageBufferAlign     uint64    // minStorageBufferOffsetAlignment, bytes
}

// Heap is one memory heap of a device.
type Heap struct {
	Bytes       uint64
	DeviceLocal bool
}

// String is the device on one line, as tli devices prints it.
func (d Device) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "vulkan:%d  %s  (%s; Vulkan %s; driver %s)  %s device-local", d.Index, d.Name, d.Type, d.APIVersion, d.Driver, gib(d.HeapBytes))
	if d.ComputeQueue {
		fmt.Fprintf(&b, "  compute queue family %d", d.ComputeQueueFamily)
	} else {
		b.WriteString("  no compute queue")
	}
	if d.SubgroupSize > 0 {
		fmt.Fprintf(&b, "  subgroup %d", d.SubgroupSize)
		if d.MinSubgroupSize > 0 && d.MinSubgroupSize != d.MaxSubgroupSize {
			fmt.Fprintf(&b, " (%d-%d)", d.MinSubgroupSize, d.MaxSubgroupSize)
		}
	}
	var f []string
	for _, x := range []struct {
		on   bool
		name string
	}{{d.Float16, "fp16"}, {d.Storage16Bit, "fp16-storage"}, {d.Int8, "int8"}, {d.IntegerDot, "int8-dot"}, {d.BFloat16, "bf16"}, {d.BFloat16Dot, "bf16-dot"}, {d.CooperativeMatrix, "coopmat"}} {
		if x.on {
			f = append(f, x.name)
		}
	}
	if len(f) == 0 {
		f = append(f, "no fp16/int8/bf16")
	}
	fmt.Fprintf(&b, "  %s", strings.Join(f, " "))
	return b.String()
}

func gib(n uint64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%d MiB", n>>20)
}

// versionString decodes a VK_MAKE_API_VERSION number.
func versionString(v uint32) string {
	return fmt.Sprintf("%d.%d.%d", v>>22&0x7f, v>>12&0x3ff, v&0xfff)
}

// driverVersionString decodes driverVersion by the vendor's convention
// (NVIDIA and Intel on Windows do not use VK_MAKE_API_VERSION).
func driverVersionString(vendor, v uint32, windows bool) string {
	switch {
	case vendor == 0x10de: // NVIDIA: 10.8.8.6 bits
		return fmt.Sprintf("%d.%d.%d.%d", v>>22, v>>14&0xff, v>>6&0xff, v&0x3f)
	case vendor == 0x8086 && windows: // Intel on Windows: 18.14 bits
		return fmt.Sprintf("%d.%d", v>>14, v&0x3fff)
	}
	return versionString(v)
}

// deviceType names a VkPhysicalDeviceType.
func deviceType(t uint32) string {
	switch t {
	case 1:
		return "integrated"
	case 2:
		return "discrete"
	case 3:
		return "virtual"
	case 4:
		return "cpu"
	}
	return "other"
}

// cString returns the NUL-terminated string at the start of b.
func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// Select returns the device a --device value names: "vulkan" is the best
// device with a compute queue (discrete, then integrated, virtual, cpu,
// other; the lowest index among equals), "vulkan:N" is device N. Without
// the vulkan build tag it returns ErrNotBuilt; without a loader, the
// loader's error; with no usable device, an error that says so.
func Select(spec string) (Device, error) {
	index := -1
	switch {
	case spec == "vulkan":
	case strings.HasPrefix(spec, "vulkan:"):
		n, err := strconv.Atoi(strings.TrimPrefix(spec, "vulkan:"))
		if err != nil || n < 0 {
			return Device{}, fmt.Errorf("--device %q: want vulkan or vulkan:N with N a device index (see tli devices)", spec)
		}
		index = n
	default:
		return Device{}, fmt.Errorf("--device %q: not a Vulkan device (want vulkan or vulkan:N)", spec)
	}
	ds, err := Devices()
	if err != nil {
		return Device{}, err
	}
	if len(ds) == 0 {
		return Device{}, errors.New("no Vulkan device found (is a Vulkan driver installed? see tli devices)")
	}
	if index >= 0 {
		if index >= len(ds) {
			return Device{}, fmt.Errorf("--device %s: no such Vulkan device (found %d: vulkan:0 to vulkan:%d; see tli devices)", spec, len(ds), len(ds)-1)
		}
		if !ds[index].ComputeQueue {
			return Device{}, fmt.Errorf("--device %s: %s has no compute queue", spec, ds[index].Name)
		}
		return ds[index], nil
	}
	rank := map[string]int{"discrete": 0, "integrated": 1, "virtual": 2, "cpu": 3, "other": 4}
	best := -1
	for i, d := range ds {
		if d.ComputeQueue && (best < 0 || rank[d.Type] < rank[ds[best].Type]) {
			best = i
		}
	}
	if best < 0 {
		return Device{}, errors.New("no Vulkan device has a compute queue (see tli devices)")
	}
	return ds[best], nil
}
