//go:build vulkan && (amd64 || arm64) && (linux || darwin || windows)

package vulkan

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// Built reports whether this tli was built with the vulkan build tag.
const Built = true

// Constants of vulkan_core.h (TestConstants checks each against the header).
const (
	vkSuccess                    = 0
	vkIncomplete                 = 5
	vkErrorIncompatibleDriver    = -9
	vkErrorInitializationFailed  = -3
	stApplicationInfo            = 0
	stInstanceCreateInfo         = 1
	stFeatures2                  = 1000059000
	stProperties2                = 1000059001
	stSubgroupProperties         = 1000094000
	stSubgroupSizeControlProps   = 1000225000
	stDriverProperties           = 1000196000
	st16BitStorageFeatures       = 1000083000
	st8BitStorageFeatures        = 1000177000
	stFloat16Int8Features        = 1000082000
	stIntegerDotProductFeatures  = 1000280000
	stBfloat16Features           = 1000141000
	stCooperativeMatrixFeatures  = 1000506000
	instanceEnumeratePortability = 1
	queueGraphics                = 1
	queueCompute                 = 2
	queueTransfer                = 4
	heapDeviceLocal              = 1
	memoryDeviceLocal            = 1
	memoryHostVisible            = 2
	memoryHostCoherent           = 4
	shaderStageCompute           = 0x20
	apiVersion11                 = 1<<22 | 1<<12
	apiVersion12                 = 1<<22 | 2<<12
	apiVersion13                 = 1<<22 | 3<<12
)

var (
	loaderOnce sync.Once
	gipa       uintptr // vkGetInstanceProcAddr
	loaderErr  error
)

// loader opens the Vulkan loader once per process.
func loader() (uintptr, error) {
	loaderOnce.Do(func() { gipa, loaderErr = openLoader() })
	return gipa, loaderErr
}

// cstr returns name as a NUL-terminated byte slice.
func cstr(name string) []byte { return append([]byte(name), 0) }

// procAddr returns the function name of instance (0: a global function),
// or 0 when the loader does not have it.
func procAddr(instance uintptr, name string) uintptr {
	b := cstr(name)
	r, _, _ := purego.SyscallN(gipa, instance, uintptr(unsafe.Pointer(&b[0])))
	runtime.KeepAlive(b)
	return r
}

// vkError is a failed Vulkan call: the call, what it was doing, its VkResult.
type vkError struct {
	call string
	what string // e.g. "allocating a 256 MiB device-local memory block"; may be empty
	code int32
}

func (e *vkError) Error() string {
	if e.what != "" {
		return fmt.Sprintf("vulkan: %s failed: %s (%s)", e.call, resultName(e.code), e.what)
	}
	return fmt.Sprintf("vulkan: %s failed: %s", e.call, resultName(e.code))
}

// Is makes the driver's out-of-memory results match ErrOutOfMemory.
func (e *vkError) Is(target error) bool {
	return target == ErrOutOfMemory && (e.code == vkErrorOutOfHostMemory || e.code == vkErrorOutOfDeviceMemory)
}

func resultName(c int32) string {
	names := map[int32]string{
		-1: "VK_ERROR_OUT_OF_HOST_MEMORY", -2: "VK_ERROR_OUT_OF_DEVICE_MEMORY",
		-3: "VK_ERROR_INITIALIZATION_FAILED", -4: "VK_ERROR_DEVICE_LOST",
		-5: "VK_ERROR_MEMORY_MAP_FAILED", -6: "VK_ERROR_LAYER_NOT_PRESENT",
		-7: "VK_ERROR_EXTENSION_NOT_PRESENT", -8: "VK_ERROR_FEATURE_NOT_PRESENT",
		-9: "VK_ERROR_INCOMPATIBLE_DRIVER", -10: "VK_ERROR_TOO_MANY_OBJECTS",
		-11: "VK_ERROR_FORMAT_NOT_SUPPORTED", -12: "VK_ERROR_FRAGMENTED_POOL",
		-13: "VK_ERROR_UNKNOWN", 1: "VK_NOT_READY", 2: "VK_TIMEOUT",
		-1000069000: "VK_ERROR_OUT_OF_POOL_MEMORY", -1000161000: "VK_ERROR_FRAGMENTATION",
	}
	if n, ok := names[c]; ok {
		return n
	}
	return fmt.Sprintf("VkResult %d", c)
}

// instance is a VkInstance with the functions the package calls.
type instance struct {
	handle  uintptr
	version uint32 // the apiVersion the instance was created with

	destroyInstance             uintptr
	enumeratePhysicalDevices    uintptr
	getProperties               uintptr
	getProperties2              uintptr
	getFeatures2                uintptr
	getMemoryProperties         uintptr
	getQueueFamilyProperties    uintptr
	enumerateDeviceExtensionPro uintptr
}

// errNoDriver is returned by newInstance when the loader finds no driver.
var errNoDriver = errors.New("vulkan: no driver")

// newInstance creates a Vulkan 1.1+ instance without layers (with
// VK_KHR_portability_enumeration where the loader has it, so that MoltenVK
// devices are listed).
func newInstance() (*instance, error) {
	if _, err := loader(); err != nil {
		return nil, err
	}
	enumVersion := procAddr(0, "vkEnumerateInstanceVersion")
	if enumVersion == 0 {
		return nil, errors.New("the Vulkan loader only supports Vulkan 1.0; tli needs 1.1 or later (update the Vulkan loader)")
	}
	var loaderVersion uint32
	if r, _, _ := purego.SyscallN(enumVersion, uintptr(unsafe.Pointer(&loaderVersion))); int32(r) != vkSuccess {
		return nil, &vkError{call: "vkEnumerateInstanceVersion", code: int32(r)}
	}
	if loaderVersion < apiVersion11 {
		return nil, fmt.Errorf("the Vulkan loader only supports Vulkan %s; tli needs 1.1 or later", versionString(loaderVersion))
	}
	api := uint32(apiVersion13)
	if loaderVersion < api {
		api = loaderVersion &^ 0xfff
	}
	exts, err := instanceExtensions()
	if err != nil {
		return nil, err
	}
	name := cstr("tli")
	app := &vkApplicationInfo{
		sType:              stApplicationInfo,
		pApplicationName:   unsafe.Pointer(&name[0]),
		applicationVersion: 1,
		pEngineName:        unsafe.Pointer(&name[0]),
		engineVersion:      1,
		apiVersion:         api,
	}
	ci := &vkInstanceCreateInfo{sType: stInstanceCreateInfo, pApplicationInfo: unsafe.Pointer(app)}
	if exts["VK_KHR_portability_enumeration"] {
		ext := cstr("VK_KHR_portability_enumeration")
		names := []unsafe.Pointer{unsafe.Pointer(&ext[0])}
		ci.flags = instanceEnumeratePortability
		ci.enabledExtensionCount = 1
		ci.ppEnabledExtensionNames = unsafe.Pointer(&names[0])
	}
	create := procAddr(0, "vkCreateInstance")
	if create == 0 {
		return nil, errors.New("the Vulkan loader has no vkCreateInstance")
	}
	in := &instance{version: api}
	r, _, _ := purego.SyscallN(create, uintptr(unsafe.Pointer(ci)), 0, uintptr(unsafe.Pointer(&in.handle)))
	runtime.KeepAlive(ci)
	switch int32(r) {
	case vkSuccess:
	case vkErrorIncompatibleDriver:
		return nil, errNoDriver
	default:
		return nil, &vkError{call: "vkCreateInstance", code: int32(r)}
	}
	for _, f := range []struct {
		p    *uintptr
		name string
	}{
		{&in.destroyInstance, "vkDestroyInstance"},
		{&in.enumeratePhysicalDevices, "vkEnumeratePhysicalDevices"},
		{&in.getProperties, "vkGetPhysicalDeviceProperties"},
		{&in.getProperties2, "vkGetPhysicalDeviceProperties2"},
		{&in.getFeatures2, "vkGetPhysicalDeviceFeatures2"},
		{&in.getMemoryProperties, "vkGetPhysicalDeviceMemoryProperties"},
		{&in.getQueueFamilyProperties, "vkGetPhysicalDeviceQueueFamilyProperties"},
		{&in.enumerateDeviceExtensionPro, "vkEnumerateDeviceExtensionProperties"},
	} {
		*f.p = procAddr(in.handle, f.name)
		if *f.p == 0 {
			if in.destroyInstance != 0 {
				in.destroy()
			}
			return nil, fmt.Errorf("the Vulkan loader has no %s", f.name)
		}
	}
	return in, nil
}

func (in *instance) destroy() {
	if in.handle != 0 {
		purego.SyscallN(in.destroyInstance, in.handle, 0)
		in.handle = 0
	}
}

// extensionNames turns a VkExtensionProperties array into a set.
func extensionNames(props []vkExtensionProperties) map[string]bool {
	m := make(map[string]bool, len(props))
	for i := range props {
		m[cString(props[i].extensionName[:])] = true
	}
	return m
}

// instanceExtensions lists the instance extensions of the loader and its
// implicit layers.
func instanceExtensions() (map[string]bool, error) {
	fn := procAddr(0, "vkEnumerateInstanceExtensionProperties")
	if fn == 0 {
		return nil, errors.New("the Vulkan loader has no vkEnumerateInstanceExtensionProperties")
	}
	for {
		var n uint32
		if r, _, _ := purego.SyscallN(fn, 0, uintptr(unsafe.Pointer(&n)), 0); int32(r) != vkSuccess {
			return nil, &vkError{call: "vkEnumerateInstanceExtensionProperties", code: int32(r)}
		}
		props := make([]vkExtensionProperties, n+1)
		r, _, _ := purego.SyscallN(fn, 0, uintptr(unsafe.Pointer(&n)), uintptr(unsafe.Pointer(&props[0])))
		if int32(r) == vkIncomplete {
			continue
		}
		if int32(r) != vkSuccess {
			return nil, &vkError{call: "vkEnumerateInstanceExtensionProperties", code: int32(r)}
		}
		return extensionNames(props[:n]), nil
	}
}

// deviceExtensions lists the extensions of a physical device.
func (in *instance) deviceExtensions(pd uintptr) (map[string]bool, error) {
	for {
		var n uint32
		if r, _, _ := purego.SyscallN(in.enumerateDeviceExtensionPro, pd, 0, uintptr(unsafe.Pointer(&n)), 0); int32(r) != vkSuccess {
			return nil, &vkError{call: "vkEnumerateDeviceExtensionProperties", code: int32(r)}
		}
		props := make([]vkExtensionProperties, n+1)
		r, _, _ := purego.SyscallN(in.enumerateDeviceExtensionPro, pd, 0, uintptr(unsafe.Pointer(&n)), uintptr(unsafe.Pointer(&props[0])))
		if int32(r) == vkIncomplete {
			continue
		}
		if int32(r) != vkSuccess {
			return nil, &vkError{call: "vkEnumerateDeviceExtensionProperties", code: int32(r)}
		}
		return extensionNames(props[:n]), nil
	}
}

// physicalDevices lists the instance's VkPhysicalDevice handles.
func (in *instance) physicalDevices() ([]uintptr, error) {
	for {
		var n uint32
		if r, _, _ := purego.SyscallN(in.enumeratePhysicalDevices, in.handle, uintptr(unsafe.Pointer(&n)), 0); int32(r) != vkSuccess {
			if int32(r) == vkErrorInitializationFailed {
				return nil, nil // the loader found no usable driver
			}
			return nil, &vkError{call: "vkEnumeratePhysicalDevices", code: int32(r)}
		}
		if n == 0 {
			return nil, nil
		}
		pds := make([]uintptr, n)
		r, _, _ := purego.SyscallN(in.enumeratePhysicalDevices, in.handle, uintptr(unsafe.Pointer(&n)), uintptr(unsafe.Pointer(&pds[0])))
		if int32(r) == vkIncomplete {
			continue
		}
		if int32(r) != vkSuccess {
			return nil, &vkError{call: "vkEnumeratePhysicalDevices", code: int32(r)}
		}
		return pds[:n], nil
	}
}

// Devices lists the Vulkan physical devices. Without a Vulkan loader it
// returns an error wrapping ErrNoLoader that says how to install one; with a
// loader but no driver or device, an empty list and no error.
func Devices() ([]Device, error) {
	in, err := newInstance()
	if errors.Is(err, errNoDriver) {
		return []Device{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer in.destroy()
	pds, err := in.physicalDevices()
	if err != nil {
		return nil, err
	}
	devs := make([]Device, 0, len(pds))
	for i, pd := range pds {
		d, err := in.describe(i, pd)
		if err != nil {
			return nil, err
		}
		devs = append(devs, d)
	}
	return devs, nil
}

// chain appends Vulkan structs to a pNext chain.
type chain struct{ next *unsafe.Pointer }

// add links s, whose pNext field is at next, at the end of the chain.
func (c *chain) add(s unsafe.Pointer, next *unsafe.Pointer) {
	*c.next = s
	c.next = next
}

// describe queries one physical device.
func (in *instance) describe(index int, pd uintptr) (Device, error) {
	props := new(vkPhysicalDeviceProperties)
	purego.SyscallN(in.getProperties, pd, uintptr(unsafe.Pointer(props)))
	lim := &props.limits
	d := Device{
		Index:                     index,
		Name:                      cString(props.deviceName[:]),
		Type:                      deviceType(props.deviceType),
		DriverVersion:             driverVersionString(props.vendorID, props.driverVersion, runtime.GOOS == "windows"),
		APIVersion:                versionString(props.apiVersion),
		VendorID:                  props.vendorID,
		DeviceID:                  props.deviceID,
		ComputeQueueFamily:        -1,
		MaxComputeSharedMemory:    lim.maxComputeSharedMemorySize,
		MaxComputeWorkGroupInvocs: lim.maxComputeWorkGroupInvocations,
		MaxComputeWorkGroupSize:   lim.maxComputeWorkGroupSize,
		MaxComputeWorkGroupCount:  lim.maxComputeWorkGroupCount,
		MaxStorageBufferRange:     lim.maxStorageBufferRange,
		MaxPushConstantsSize:      lim.maxPushConstantsSize,
		MaxStorageBuffersPerStage: lim.maxPerStageDescriptorStorageBuffers,
		MaxMemoryAllocationCount:  lim.maxMemoryAllocationCount,
		MinStorageBufferAlign:     lim.minStorageBufferOffsetAlignment,
	}
	d.Driver = d.DriverVersion

	mem := new(vkPhysicalDeviceMemoryProperties)
	purego.SyscallN(in.getMemoryProperties, pd, uintptr(unsafe.Pointer(mem)))
	for _, h := range mem.memoryHeaps[:min(mem.memoryHeapCount, uint32(len(mem.memoryHeaps)))] {
		local := h.flags&heapDeviceLocal != 0
		d.Heaps = append(d.Heaps, Heap{Bytes: h.size, DeviceLocal: local})
		if local && h.size > d.HeapBytes {
			d.HeapBytes = h.size
		}
	}

	var nq uint32
	purego.SyscallN(in.getQueueFamilyProperties, pd, uintptr(unsafe.Pointer(&nq)), 0)
	if nq > 0 {
		qs := make([]vkQueueFamilyProperties, nq)
		purego.SyscallN(in.getQueueFamilyProperties, pd, uintptr(unsafe.Pointer(&nq)), uintptr(unsafe.Pointer(&qs[0])))
		for i, q := range qs[:nq] {
			if q.queueFlags&queueCompute == 0 || q.queueCount == 0 {
				continue
			}
			// The first compute family, or a compute-only one found later.
			if !d.ComputeQueue || (q.queueFlags&queueGraphics == 0 && qs[d.ComputeQueueFamily].queueFlags&queueGraphics != 0) {
				d.ComputeQueue, d.ComputeQueueFamily, d.ComputeQueueCount = true, i, int(q.queueCount)
			}
		}
	}

	devAPI := props.apiVersion
	if devAPI < apiVersion11 || in.version < apiVersion11 {
		return d, nil // no vkGetPhysicalDeviceProperties2 for a Vulkan 1.0 device
	}
	exts, err := in.deviceExtensions(pd)
	if err != nil {
		return d, err
	}
	has := func(version uint32, ext string) bool {
		return (devAPI >= version && in.version >= version) || exts[ext]
	}

	p2 := &vkPhysicalDeviceProperties2{sType: stProperties2}
	pc := chain{&p2.pNext}
	sg := &vkPhysicalDeviceSubgroupProperties{sType: stSubgroupProperties}
	pc.add(unsafe.Pointer(sg), &sg.pNext)
	sgc := &vkPhysicalDeviceSubgroupSizeControlProperties{sType: stSubgroupSizeControlProps}
	if has(apiVersion13, "VK_EXT_subgroup_size_control") {
		pc.add(unsafe.Pointer(sgc), &sgc.pNext)
	}
	drv := &vkPhysicalDeviceDriverProperties{sType: stDriverProperties}
	haveDriver := has(apiVersion12, "VK_KHR_driver_properties")
	if haveDriver {
		pc.add(unsafe.Pointer(drv), &drv.pNext)
	}
	purego.SyscallN(in.getProperties2, pd, uintptr(unsafe.Pointer(p2)))
	runtime.KeepAlive(sg)
	runtime.KeepAlive(sgc)
	runtime.KeepAlive(drv)
	if sg.supportedStages&shaderStageCompute != 0 {
		d.SubgroupSize = int(sg.subgroupSize)
	}
	d.MinSubgroupSize, d.MaxSubgroupSize = int(sgc.minSubgroupSize), int(sgc.maxSubgroupSize)
	if haveDriver {
		name, info := cString(drv.driverName[:]), cString(drv.driverInfo[:])
		switch {
		case name != "" && info != "":
			d.Driver = name + " " + info
		case name != "":
			d.Driver = name + " " + d.DriverVersion
		}
	}

	f2 := &vkPhysicalDeviceFeatures2{sType: stFeatures2}
	fc := chain{&f2.pNext}
	s16 := &vkPhysicalDevice16BitStorageFeatures{sType: st16BitStorageFeatures}
	fc.add(unsafe.Pointer(s16), &s16.pNext)
	s8 := &vkPhysicalDevice8BitStorageFeatures{sType: st8BitStorageFeatures}
	if has(apiVersion12, "VK_KHR_8bit_storage") {
		fc.add(unsafe.Pointer(s8), &s8.pNext)
	}
	f16 := &vkPhysicalDeviceShaderFloat16Int8Features{sType: stFloat16Int8Features}
	if has(apiVersion12, "VK_KHR_shader_float16_int8") {
		fc.add(unsafe.Pointer(f16), &f16.pNext)
	}
	dot := &vkPhysicalDeviceShaderIntegerDotProductFeatures{sType: stIntegerDotProductFeatures}
	if has(apiVersion13, "VK_KHR_shader_integer_dot_product") {
		fc.add(unsafe.Pointer(dot), &dot.pNext)
	}
	bf := &vkPhysicalDeviceShaderBfloat16FeaturesKHR{sType: stBfloat16Features}
	if exts["VK_KHR_shader_bfloat16"] {
		fc.add(unsafe.Pointer(bf), &bf.pNext)
	}
	cm := &vkPhysicalDeviceCooperativeMatrixFeaturesKHR{sType: stCooperativeMatrixFeatures}
	if exts["VK_KHR_cooperative_matrix"] {
		fc.add(unsafe.Pointer(cm), &cm.pNext)
	}
	purego.SyscallN(in.getFeatures2, pd, uintptr(unsafe.Pointer(f2)))
	runtime.KeepAlive(s16)
	runtime.KeepAlive(s8)
	runtime.KeepAlive(f16)
	runtime.KeepAlive(dot)
	runtime.KeepAlive(bf)
	runtime.KeepAlive(cm)
	d.Storage16Bit = s16.storageBuffer16BitAccess != 0
	d.Storage8Bit = s8.storageBuffer8BitAccess != 0
	d.Float16 = f16.shaderFloat16 != 0
	d.Int8 = f16.shaderInt8 != 0
	d.IntegerDot = dot.shaderIntegerDotProduct != 0
	d.BFloat16 = bf.shaderBFloat16Type != 0
	d.BFloat16Dot = bf.shaderBFloat16DotProduct != 0
	d.CooperativeMatrix = cm.cooperativeMatrix != 0
	return d, nil
}
