//go:build vulkan && (amd64 || arm64) && (linux || darwin || windows)

package vulkan

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// Constants of vulkan_core.h used by the compute path (TestConstants checks
// each against the header).
const (
	vkNotReady                 = 1
	vkTimeout                  = 2
	vkErrorOutOfHostMemory     = -1
	vkErrorOutOfDeviceMemory   = -2
	vkErrorFragmentedPool      = -12
	vkErrorOutOfPoolMemory     = -1000069000
	stDeviceQueueCreateInfo    = 2
	stDeviceCreateInfo         = 3
	stSubmitInfo               = 4
	stMemoryAllocateInfo       = 5
	stFenceCreateInfo          = 8
	stBufferCreateInfo         = 12
	stShaderModuleCreateInfo   = 16
	stShaderStageCreateInfo    = 18
	stComputePipelineCreate    = 29
	stPipelineLayoutCreateInfo = 30
	stSetLayoutCreateInfo      = 32
	stDescriptorPoolCreateInfo = 33
	stDescriptorSetAllocInfo   = 34
	stWriteDescriptorSet       = 35
	stCommandPoolCreateInfo    = 39
	stCommandBufferAllocInfo   = 40
	stCommandBufferBeginInfo   = 42
	stMemoryBarrier            = 46
	poolResetCommandBuffer     = 2
	commandBufferLevelPrimary  = 0
	usageOneTimeSubmit         = 1
	bufferTransferSrc          = 1
	bufferTransferDst          = 2
	bufferStorage              = 0x20
	sharingExclusive           = 0
	descriptorStorageBuffer    = 7
	bindPointCompute           = 1
	stageTransfer              = 0x1000
	stageCompute               = 0x800
	stageHost                  = 0x4000
	accessShaderRead           = 0x20
	accessShaderWrite          = 0x40
	accessTransferRead         = 0x800
	accessTransferWrite        = 0x1000
	accessHostRead             = 0x2000
	accessHostWrite            = 0x4000
)

// Options tune a Context; the zero value is the default.
type Options struct {
	// BlockBytes is the size of each vkDeviceMemory block buffers are
	// suballocated from (default 256 MiB, at most a quarter of the heap).
	// A buffer larger than a block gets a block of its own.
	BlockBytes int64
	// StagingBytes is the size of the host-visible staging buffer uploads
	// and downloads go through when device memory is not host visible
	// (default 64 MiB); larger transfers are split.
	StagingBytes int64
	// MemoryLimit caps the device memory the Context allocates, in bytes
	// (0: the size of the memory heap). Allocations past it fail with an
	// error wrapping ErrOutOfMemory.
	MemoryLimit int64
	// ForceStaging sends uploads and downloads through the staging buffer
	// even when device memory is host visible (lavapipe, integrated GPUs),
	// so that the copy path of discrete GPUs can be tested anywhere.
	ForceStaging bool
}

// deviceFuncs are the device-level functions, from vkGetDeviceProcAddr.
type deviceFuncs struct {
	destroyDevice, getDeviceQueue, deviceWaitIdle, queueSubmit                           uintptr
	createCommandPool, destroyCommandPool, allocateCommandBuffers                        uintptr
	beginCommandBuffer, endCommandBuffer, resetCommandPool                               uintptr
	createFence, destroyFence, waitForFences, resetFences                                uintptr
	allocateMemory, freeMemory, mapMemory, unmapMemory                                   uintptr
	createBuffer, destroyBuffer, getBufferMemoryRequirements, bindBufferMemory           uintptr
	cmdCopyBuffer, cmdPipelineBarrier                                                    uintptr
	createShaderModule, destroyShaderModule                                              uintptr
	createDescriptorSetLayout, destroyDescriptorSetLayout                                uintptr
	createPipelineLayout, destroyPipelineLayout, createComputePipelines, destroyPipeline uintptr
	createDescriptorPool, destroyDescriptorPool, resetDescriptorPool                     uintptr
	allocateDescriptorSets, updateDescriptorSets                                         uintptr
	cmdBindPipeline, cmdBindDescriptorSets, cmdPushConstants, cmdDispatch                uintptr
}

// Context is an opened Vulkan device: a logical device (VkDevice) with one
// compute queue, its command buffer and fence, the device-memory
// suballocator and the compiled pipelines. Kernels (GEMM, RMSNorm, ...)
// record into the Context's command buffer; Sync submits what was recorded
// and waits for it, and Download syncs by itself. Every method takes the
// Context's lock, so goroutines may share it, but kernels run in the order
// they were recorded: ordering them is the callers' business.
//
// Device is taken by the physical-device description (Devices, Select), so
// the opened device is called Context.
type Context struct {
	mu   sync.Mutex
	Info Device // the physical device this Context was opened on
	opt  Options

	in     *instance
	pd     uintptr
	dev    uintptr // VkDevice
	queue  uintptr // VkQueue
	family uint32
	fn     deviceFuncs

	cmdPool    uintptr
	cmd        uintptr // the one primary command buffer
	fence      uintptr
	recording  bool
	submits    int // completed submissions, for tests
	dispatches int // recorded dispatches, for tests

	mem memory

	modules  map[string]uintptr // shader name -> VkShaderModule
	pipes    map[pipeKey]*pipeline
	descPool uintptr
	setsUsed int

	deferred []*Buffer // freed while the pending command buffer may use them

	// rangeLimit is the most bytes one descriptor may bind
	// (maxStorageBufferRange; tests lower it to exercise the splitting).
	rangeLimit uint64

	// live counts the Vulkan objects this Context holds, by kind; trace,
	// when not nil, records every destroy in order (tests).
	live  map[string]int
	trace *[]string
}

// Open creates a logical device with one compute queue on d (a device from
// Devices or Select), with its command pool, command buffer, fence and
// descriptor pool. Close releases all of it. Every failure is an error that
// names the Vulkan call, its VkResult and what was being done.
func Open(d Device, opt Options) (*Context, error) {
	if !d.ComputeQueue || d.ComputeQueueFamily < 0 {
		return nil, fmt.Errorf("vulkan: open %s: the device has no compute queue", d.Name)
	}
	in, err := newInstance()
	if errors.Is(err, errNoDriver) {
		return nil, fmt.Errorf("vulkan: open %s: no Vulkan driver found", d.Name)
	}
	if err != nil {
		return nil, err
	}
	c := &Context{Info: d, opt: opt, in: in, family: uint32(d.ComputeQueueFamily), rangeLimit: uint64(d.MaxStorageBufferRange),
		modules: map[string]uintptr{}, pipes: map[pipeKey]*pipeline{}, live: map[string]int{"instance": 1}}
	if err := c.open(d); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

func (c *Context) open(d Device) error {
	pds, err := c.in.physicalDevices()
	if err != nil {
		return err
	}
	if d.Index < 0 || d.Index >= len(pds) {
		return fmt.Errorf("vulkan: open vulkan:%d (%s): the device is gone (found %d devices)", d.Index, d.Name, len(pds))
	}
	c.pd = pds[d.Index]
	if c.rangeLimit == 0 {
		c.rangeLimit = 1 << 27 // the minimum the specification allows
	}
	if now, err := c.in.describe(d.Index, c.pd); err != nil {
		return err
	} else if now.Name != d.Name {
		return fmt.Errorf("vulkan: open vulkan:%d: the device is now %s, not %s", d.Index, now.Name, d.Name)
	}

	prio := new(float32)
	*prio = 1
	qci := &vkDeviceQueueCreateInfo{sType: stDeviceQueueCreateInfo, queueFamilyIndex: c.family, queueCount: 1, pQueuePriorities: unsafe.Pointer(prio)}
	dci := &vkDeviceCreateInfo{sType: stDeviceCreateInfo, queueCreateInfoCount: 1, pQueueCreateInfos: unsafe.Pointer(qci)}
	exts, err := c.in.deviceExtensions(c.pd)
	if err != nil {
		return err
	}
	if exts["VK_KHR_portability_subset"] { // MoltenVK: must be enabled when offered
		name := cstr("VK_KHR_portability_subset")
		names := []unsafe.Pointer{unsafe.Pointer(&name[0])}
		dci.enabledExtensionCount, dci.ppEnabledExtensionNames = 1, unsafe.Pointer(&names[0])
	}
	create := procAddr(c.in.handle, "vkCreateDevice")
	getDPA := procAddr(c.in.handle, "vkGetDeviceProcAddr")
	if create == 0 || getDPA == 0 {
		return errors.New("vulkan: the Vulkan loader has no vkCreateDevice or vkGetDeviceProcAddr")
	}
	if err := check(purego.SyscallN(create, c.pd, uintptr(unsafe.Pointer(dci)), 0, uintptr(unsafe.Pointer(&c.dev))))("vkCreateDevice", "creating a logical device with one compute queue on "+d.Name); err != nil {
		return err
	}
	c.live["device"]++
	for _, f := range []struct {
		p    *uintptr
		name string
	}{
		{&c.fn.destroyDevice, "vkDestroyDevice"}, {&c.fn.getDeviceQueue, "vkGetDeviceQueue"},
		{&c.fn.deviceWaitIdle, "vkDeviceWaitIdle"}, {&c.fn.queueSubmit, "vkQueueSubmit"},
		{&c.fn.createCommandPool, "vkCreateCommandPool"}, {&c.fn.destroyCommandPool, "vkDestroyCommandPool"},
		{&c.fn.allocateCommandBuffers, "vkAllocateCommandBuffers"},
		{&c.fn.beginCommandBuffer, "vkBeginCommandBuffer"}, {&c.fn.endCommandBuffer, "vkEndCommandBuffer"},
		{&c.fn.resetCommandPool, "vkResetCommandPool"},
		{&c.fn.createFence, "vkCreateFence"}, {&c.fn.destroyFence, "vkDestroyFence"},
		{&c.fn.waitForFences, "vkWaitForFences"}, {&c.fn.resetFences, "vkResetFences"},
		{&c.fn.allocateMemory, "vkAllocateMemory"}, {&c.fn.freeMemory, "vkFreeMemory"},
		{&c.fn.mapMemory, "vkMapMemory"}, {&c.fn.unmapMemory, "vkUnmapMemory"},
		{&c.fn.createBuffer, "vkCreateBuffer"}, {&c.fn.destroyBuffer, "vkDestroyBuffer"},
		{&c.fn.getBufferMemoryRequirements, "vkGetBufferMemoryRequirements"}, {&c.fn.bindBufferMemory, "vkBindBufferMemory"},
		{&c.fn.cmdCopyBuffer, "vkCmdCopyBuffer"}, {&c.fn.cmdPipelineBarrier, "vkCmdPipelineBarrier"},
		{&c.fn.createShaderModule, "vkCreateShaderModule"}, {&c.fn.destroyShaderModule, "vkDestroyShaderModule"},
		{&c.fn.createDescriptorSetLayout, "vkCreateDescriptorSetLayout"}, {&c.fn.destroyDescriptorSetLayout, "vkDestroyDescriptorSetLayout"},
		{&c.fn.createPipelineLayout, "vkCreatePipelineLayout"}, {&c.fn.destroyPipelineLayout, "vkDestroyPipelineLayout"},
		{&c.fn.createComputePipelines, "vkCreateComputePipelines"}, {&c.fn.destroyPipeline, "vkDestroyPipeline"},
		{&c.fn.createDescriptorPool, "vkCreateDescriptorPool"}, {&c.fn.destroyDescriptorPool, "vkDestroyDescriptorPool"},
		{&c.fn.resetDescriptorPool, "vkResetDescriptorPool"},
		{&c.fn.allocateDescriptorSets, "vkAllocateDescriptorSets"}, {&c.fn.updateDescriptorSets, "vkUpdateDescriptorSets"},
		{&c.fn.cmdBindPipeline, "vkCmdBindPipeline"}, {&c.fn.cmdBindDescriptorSets, "vkCmdBindDescriptorSets"},
		{&c.fn.cmdPushConstants, "vkCmdPushConstants"}, {&c.fn.cmdDispatch, "vkCmdDispatch"},
	} {
		b := cstr(f.name)
		*f.p, _, _ = purego.SyscallN(getDPA, c.dev, uintptr(unsafe.Pointer(&b[0])))
		if *f.p == 0 {
			return fmt.Errorf("vulkan: the device %s has no %s", d.Name, f.name)
		}
	}
	purego.SyscallN(c.fn.getDeviceQueue, c.dev, uintptr(c.family), 0, uintptr(unsafe.Pointer(&c.queue)))
	if c.queue == 0 {
		return fmt.Errorf("vulkan: vkGetDeviceQueue returned no queue for family %d on %s", c.family, d.Name)
	}

	pci := &vkCommandPoolCreateInfo{sType: stCommandPoolCreateInfo, queueFamilyIndex: c.family} // reset whole (one buffer)
	if err := c.create(c.fn.createCommandPool, unsafe.Pointer(pci), &c.cmdPool, "commandPool", "vkCreateCommandPool", "creating the command pool"); err != nil {
		return err
	}
	cai := &vkCommandBufferAllocateInfo{sType: stCommandBufferAllocInfo, commandPool: c.cmdPool, level: commandBufferLevelPrimary, commandBufferCount: 1}
	if err := check(purego.SyscallN(c.fn.allocateCommandBuffers, c.dev, uintptr(unsafe.Pointer(cai)), uintptr(unsafe.Pointer(&c.cmd))))("vkAllocateCommandBuffers", "allocating the command buffer"); err != nil {
		return err
	}
	fci := &vkFenceCreateInfo{sType: stFenceCreateInfo}
	if err := c.create(c.fn.createFence, unsafe.Pointer(fci), &c.fence, "fence", "vkCreateFence", "creating the submission fence"); err != nil {
		return err
	}
	sizes := &vkDescriptorPoolSize{type_: descriptorStorageBuffer, descriptorCount: descriptorSetsPerPool * maxBindings}
	dpi := &vkDescriptorPoolCreateInfo{sType: stDescriptorPoolCreateInfo, maxSets: descriptorSetsPerPool, poolSizeCount: 1, pPoolSizes: unsafe.Pointer(sizes)}
	if err := c.create(c.fn.createDescriptorPool, unsafe.Pointer(dpi), &c.descPool, "descriptorPool", "vkCreateDescriptorPool", "creating the descriptor pool"); err != nil {
		return err
	}
	return c.mem.init(c)
}

// check turns the result of a Vulkan call into nil or a *vkError; use as
// check(purego.SyscallN(...))(call, what).
func check(r, _, _ uintptr) func(call, what string) error {
	return func(call, what string) error {
		if int32(r) == vkSuccess {
			return nil
		}
		return &vkError{call: call, what: what, code: int32(r)}
	}
}

// create calls a vkCreate* function of the device (device, info, NULL,
// &handle) and counts the object.
func (c *Context) create(fn uintptr, info unsafe.Pointer, handle *uintptr, kind, call, what string) error {
	if err := check(purego.SyscallN(fn, c.dev, uintptr(info), 0, uintptr(unsafe.Pointer(handle))))(call, what); err != nil {
		return err
	}
	c.live[kind]++
	return nil
}

// destroy calls a vkDestroy*/vkFree* function of the device on handle (if
// not 0) and uncounts it.
func (c *Context) destroy(fn uintptr, handle *uintptr, kind string) {
	if *handle == 0 {
		return
	}
	purego.SyscallN(fn, c.dev, *handle, 0)
	*handle = 0
	c.live[kind]--
	if c.trace != nil {
		*c.trace = append(*c.trace, kind)
	}
}

// Close waits for the device to finish, then destroys every object of the
// Context in reverse order of creation: buffers, memory blocks, pipelines,
// layouts, shader modules, descriptor pool, fence, command pool, device,
// instance. Buffers not yet freed are freed. Close is idempotent.
func (c *Context) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.close()
}

func (c *Context) close() error {
	if c.in == nil {
		return nil
	}
	var err error
	if c.dev != 0 {
		if c.recording {
			err = c.syncLocked()
		}
		if c.fn.deviceWaitIdle != 0 { // 0 when Open failed while loading the functions
			if r, _, _ := purego.SyscallN(c.fn.deviceWaitIdle, c.dev); int32(r) != vkSuccess && err == nil {
				err = &vkError{call: "vkDeviceWaitIdle", what: "waiting for the device before closing it", code: int32(r)}
			}
		}
		c.deferred = nil
		c.mem.release(c)
		for k, p := range c.pipes {
			c.destroy(c.fn.destroyPipeline, &p.pipe, "pipeline")
			c.destroy(c.fn.destroyPipelineLayout, &p.layout, "pipelineLayout")
			c.destroy(c.fn.destroyDescriptorSetLayout, &p.setLayout, "descriptorSetLayout")
			delete(c.pipes, k)
		}
		for k, m := range c.modules {
			c.destroy(c.fn.destroyShaderModule, &m, "shaderModule")
			delete(c.modules, k)
		}
		c.destroy(c.fn.destroyDescriptorPool, &c.descPool, "descriptorPool")
		c.destroy(c.fn.destroyFence, &c.fence, "fence")
		c.cmd = 0 // freed with its pool
		c.destroy(c.fn.destroyCommandPool, &c.cmdPool, "commandPool")
		destroyDevice := c.fn.destroyDevice
		if destroyDevice == 0 {
			destroyDevice = procAddr(c.in.handle, "vkDestroyDevice")
		}
		purego.SyscallN(destroyDevice, c.dev, 0)
		c.dev = 0
		c.live["device"]--
		if c.trace != nil {
			*c.trace = append(*c.trace, "device")
		}
	}
	c.in.destroy()
	c.in = nil
	c.live["instance"]--
	if c.trace != nil {
		*c.trace = append(*c.trace, "instance")
	}
	return err
}

// Live returns how many Vulkan objects of each kind the Context holds
// (device, commandPool, fence, descriptorPool, memory, buffer, pipeline,
// ...): all zero after Close.
func (c *Context) Live() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]int, len(c.live))
	for k, v := range c.live {
		if v != 0 {
			m[k] = v
		}
	}
	return m
}

// begin starts recording the command buffer if it is not recording.
func (c *Context) begin() error {
	if c.in == nil {
		return ErrClosed
	}
	if c.recording {
		return nil
	}
	bi := &vkCommandBufferBeginInfo{sType: stCommandBufferBeginInfo, flags: usageOneTimeSubmit}
	if err := check(purego.SyscallN(c.fn.beginCommandBuffer, c.cmd, uintptr(unsafe.Pointer(bi))))("vkBeginCommandBuffer", "starting to record commands"); err != nil {
		return err
	}
	c.recording = true
	return nil
}

// barrier makes the writes of every transfer and compute command recorded
// so far visible to every later transfer, compute and host access.
func (c *Context) barrier() {
	mb := &vkMemoryBarrier{sType: stMemoryBarrier,
		srcAccessMask: accessShaderWrite | accessTransferWrite,
		dstAccessMask: accessShaderRead | accessShaderWrite | accessTransferRead | accessTransferWrite | accessHostRead}
	purego.SyscallN(c.fn.cmdPipelineBarrier, c.cmd, stageTransfer|stageCompute, stageTransfer|stageCompute|stageHost, 0,
		1, uintptr(unsafe.Pointer(mb)), 0, 0, 0, 0)
}

// Sync submits the recorded commands to the compute queue and waits until
// they have run; then frees the buffers released meanwhile and recycles the
// descriptor sets. It is a no-op when nothing is recorded.
func (c *Context) Sync() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.syncLocked()
}

func (c *Context) syncLocked() error {
	if c.in == nil {
		return ErrClosed
	}
	if !c.recording {
		return nil
	}
	c.recording = false
	if err := check(purego.SyscallN(c.fn.endCommandBuffer, c.cmd))("vkEndCommandBuffer", "finishing the recorded commands"); err != nil {
		purego.SyscallN(c.fn.resetCommandPool, c.dev, c.cmdPool, 0)
		return err
	}
	cmd := new(uintptr)
	*cmd = c.cmd
	si := &vkSubmitInfo{sType: stSubmitInfo, commandBufferCount: 1, pCommandBuffers: unsafe.Pointer(cmd)}
	if err := check(purego.SyscallN(c.fn.queueSubmit, c.queue, 1, uintptr(unsafe.Pointer(si)), c.fence))("vkQueueSubmit", "submitting the recorded commands"); err != nil {
		purego.SyscallN(c.fn.resetCommandPool, c.dev, c.cmdPool, 0)
		return err
	}
	fence := new(uintptr)
	*fence = c.fence
	err := check(purego.SyscallN(c.fn.waitForFences, c.dev, 1, uintptr(unsafe.Pointer(fence)), 1, math.MaxUint64))("vkWaitForFences", "waiting for the submitted commands")
	if err != nil {
		return err // the device is probably lost; keep everything as it is
	}
	c.submits++
	if err := check(purego.SyscallN(c.fn.resetFences, c.dev, 1, uintptr(unsafe.Pointer(fence))))("vkResetFences", "resetting the submission fence"); err != nil {
		return err
	}
	if err := check(purego.SyscallN(c.fn.resetCommandPool, c.dev, c.cmdPool, 0))("vkResetCommandPool", "resetting the command buffer"); err != nil {
		return err
	}
	if c.setsUsed > 0 {
		if err := check(purego.SyscallN(c.fn.resetDescriptorPool, c.dev, c.descPool, 0))("vkResetDescriptorPool", "recycling the descriptor sets"); err != nil {
			return err
		}
		c.setsUsed = 0
	}
	for _, b := range c.deferred {
		c.mem.free(c, b)
	}
	c.deferred = c.deferred[:0]
	return nil
}
