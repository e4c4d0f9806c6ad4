//go:build vulkan && (amd64 || arm64) && (linux || darwin || windows)

package vulkan

import (
	"embed"
	"fmt"
	"unsafe"

	"github.com/ebitengine/purego"
)

// spirv holds the compute shaders, compiled from shaders/*.comp by go
// generate (generate.go) and committed.
//
//go:embed shaders/*.spv
var spirv embed.FS

// shaderInfo is the interface of one shader: its storage-buffer bindings
// (0..bindings-1, in the order the kernel passes its spans) and the bytes of
// its push constants.
type shaderInfo struct {
	bindings int
	push     uint32
}

// shaderInfos lists every shader of shaders/ (TestShadersListed checks the
// list against the directory).
var shaderInfos = map[string]shaderInfo{
	"gemm":              {bindings: 3, push: 36},
	"gemm_kn":           {bindings: 3, push: 44},
	"rmsnorm":           {bindings: 4, push: 12},
	"rmsnorm_back":      {bindings: 5, push: 12},
	"silu_mul":          {bindings: 3, push: 8},
	"silu_mul_back":     {bindings: 5, push: 8},
	"add":               {bindings: 3, push: 8},
	"mul":               {bindings: 3, push: 8},
	"rope":              {bindings: 3, push: 16},
	"embed":             {bindings: 3, push: 24},
	"attention":         {bindings: 5, push: 24},
	"attention_back_q":  {bindings: 7, push: 24},
	"attention_back_kv": {bindings: 8, push: 24},
	"mean_pool":         {bindings: 4, push: 16},
	"mean_pool_back":    {bindings: 4, push: 16},
	"l2norm":            {bindings: 2, push: 12},
	"l2norm_back":       {bindings: 3, push: 12},
}

const (
	descriptorSetsPerPool = 256 // dispatches per submission before Sync recycles the sets
	maxBindings           = 8
	maxSpec               = 8
)

// pipeKey names a pipeline: a shader and its specialization constants.
type pipeKey struct {
	shader string
	spec   [maxSpec]uint32
	nspec  int
}

// pipeline is a compute pipeline with its layouts.
type pipeline struct {
	setLayout, layout, pipe uintptr
	info                    shaderInfo
}

// module returns the shader module of a shader, creating it once.
func (c *Context) module(name string) (uintptr, error) {
	if m, ok := c.modules[name]; ok {
		return m, nil
	}
	code, err := spirv.ReadFile("shaders/" + name + ".spv")
	if err != nil {
		return 0, fmt.Errorf("vulkan: shader %s: %v", name, err)
	}
	if len(code) == 0 || len(code)%4 != 0 {
		return 0, fmt.Errorf("vulkan: shader %s: %d bytes is not SPIR-V", name, len(code))
	}
	words := make([]uint32, len(code)/4) // 4-byte aligned copy
	copy(asBytes(words), code)
	ci := &vkShaderModuleCreateInfo{sType: stShaderModuleCreateInfo, codeSize: uintptr(len(code)), pCode: unsafe.Pointer(&words[0])}
	var m uintptr
	if err := c.create(c.fn.createShaderModule, unsafe.Pointer(ci), &m, "shaderModule", "vkCreateShaderModule", "loading shader "+name); err != nil {
		return 0, err
	}
	c.modules[name] = m
	return m, nil
}

// pipeline returns the compute pipeline of shader name with the given
// specialization constants (constant_id 0, 1, ...), creating it on first use
// and caching it for the life of the Context.
func (c *Context) pipeline(name string, spec ...uint32) (*pipeline, error) {
	if len(spec) > maxSpec {
		return nil, fmt.Errorf("vulkan: shader %s: %d specialization constants, at most %d", name, len(spec), maxSpec)
	}
	info, ok := shaderInfos[name]
	if !ok {
		return nil, fmt.Errorf("vulkan: no shader %s", name)
	}
	if lim := c.Info.MaxStorageBuffersPerStage; uint32(info.bindings) > lim {
		return nil, fmt.Errorf("vulkan: shader %s binds %d storage buffers, the device allows %d per shader stage (maxPerStageDescriptorStorageBuffers)", name, info.bindings, lim)
	}
	key := pipeKey{shader: name, nspec: len(spec)}
	copy(key.spec[:], spec)
	if p, ok := c.pipes[key]; ok {
		return p, nil
	}
	mod, err := c.module(name)
	if err != nil {
		return nil, err
	}
	what := fmt.Sprintf("building the pipeline of shader %s %v", name, spec)
	p := &pipeline{info: info}
	binds := make([]vkDescriptorSetLayoutBinding, info.bindings)
	for i := range binds {
		binds[i] = vkDescriptorSetLayoutBinding{binding: uint32(i), descriptorType: descriptorStorageBuffer, descriptorCount: 1, stageFlags: shaderStageCompute}
	}
	dsl := &vkDescriptorSetLayoutCreateInfo{sType: stSetLayoutCreateInfo, bindingCount: uint32(len(binds)), pBindings: unsafe.Pointer(&binds[0])}
	if err := c.create(c.fn.createDescriptorSetLayout, unsafe.Pointer(dsl), &p.setLayout, "descriptorSetLayout", "vkCreateDescriptorSetLayout", what); err != nil {
		return nil, err
	}
	fail := func(err error) (*pipeline, error) {
		c.destroy(c.fn.destroyPipelineLayout, &p.layout, "pipelineLayout")
		c.destroy(c.fn.destroyDescriptorSetLayout, &p.setLayout, "descriptorSetLayout")
		return nil, err
	}
	sets := new(uintptr)
	*sets = p.setLayout
	pcr := &vkPushConstantRange{stageFlags: shaderStageCompute, size: info.push}
	pli := &vkPipelineLayoutCreateInfo{sType: stPipelineLayoutCreateInfo, setLayoutCount: 1, pSetLayouts: unsafe.Pointer(sets), pushConstantRangeCount: 1, pPushConstantRanges: unsafe.Pointer(pcr)}
	if err := c.create(c.fn.createPipelineLayout, unsafe.Pointer(pli), &p.layout, "pipelineLayout", "vkCreatePipelineLayout", what); err != nil {
		return fail(err)
	}
	entry := cstr("main")
	ci := &vkComputePipelineCreateInfo{sType: stComputePipelineCreate, layout: p.layout, basePipelineIndex: -1,
		stage: vkPipelineShaderStageCreateInfo{sType: stShaderStageCreateInfo, stage: shaderStageCompute, module: mod, pName: unsafe.Pointer(&entry[0])}}
	if len(spec) > 0 {
		data := append([]uint32(nil), spec...)
		entries := make([]vkSpecializationMapEntry, len(spec))
		for i := range entries {
			entries[i] = vkSpecializationMapEntry{constantID: uint32(i), offset: uint32(4 * i), size: 4}
		}
		ci.stage.pSpecializationInfo = unsafe.Pointer(&vkSpecializationInfo{mapEntryCount: uint32(len(entries)), pMapEntries: unsafe.Pointer(&entries[0]),
			dataSize: uintptr(4 * len(data)), pData: unsafe.Pointer(&data[0])})
	}
	if err := check(purego.SyscallN(c.fn.createComputePipelines, c.dev, 0, 1, uintptr(unsafe.Pointer(ci)), 0, uintptr(unsafe.Pointer(&p.pipe))))("vkCreateComputePipelines", what); err != nil {
		return fail(err)
	}
	c.live["pipeline"]++
	c.pipes[key] = p
	return p, nil
}

// Span is a byte range of a Buffer that a kernel reads or writes. Its
// offset must be a multiple of the device's minStorageBufferOffsetAlignment
// (Device.MinStorageBufferAlign; at most 256 on every known device).
type Span struct {
	B        *Buffer
	Off, Len int // bytes
}

// All is the whole buffer.
func (b *Buffer) All() Span { return Span{b, 0, int(b.size)} }

// Bytes is n bytes from byte off.
func (b *Buffer) Bytes(off, n int) Span { return Span{b, off, n} }

// F32 is n float32 from element i (bytes [4i, 4i+4n)).
func (b *Buffer) F32(i, n int) Span { return Span{b, 4 * i, 4 * n} }

// U16 is n uint16 (bf16, f16) from element i (bytes [2i, 2i+2n)).
func (b *Buffer) U16(i, n int) Span { return Span{b, 2 * i, 2 * n} }

// U32 is n uint32 from element i (bytes [4i, 4i+4n)).
func (b *Buffer) U32(i, n int) Span { return Span{b, 4 * i, 4 * n} }

// binding is a checked range of a buffer, as bound to a descriptor.
type binding struct {
	buf       uintptr
	off, size uint64
}

// check checks that s is a live span of c, aligned, holding at least need
// bytes.
func (c *Context) check(s Span, need uint64, name string) error {
	switch {
	case s.B == nil:
		return fmt.Errorf("%s: no buffer", name)
	case s.B.c != c:
		return fmt.Errorf("%s: the buffer belongs to another device context", name)
	case s.B.freed:
		return fmt.Errorf("%s: the buffer was freed", name)
	case s.Off < 0 || s.Len < 0 || uint64(s.Off)+uint64(s.Len) > s.B.size:
		return fmt.Errorf("%s: bytes [%d, %d) are outside the buffer (%d bytes)", name, s.Off, s.Off+s.Len, s.B.size)
	case uint64(s.Off)%c.mem.minAlign != 0:
		return fmt.Errorf("%s: offset %d is not a multiple of the device's storage buffer alignment (%d)", name, s.Off, c.mem.minAlign)
	case uint64(s.Len) < need:
		return fmt.Errorf("%s: %d bytes, the kernel needs %d", name, s.Len, need)
	}
	return nil
}

// sub binds bytes [off, off+n) of the checked span s: the descriptor
// starts at the aligned offset at or below, and base is the distance from
// there to the range in elements of elem bytes (the shader adds it to its
// indices). The bound size is rounded up to 4 bytes (shaders read 16-bit
// data as 32-bit words) and must stay within maxStorageBufferRange.
func (c *Context) sub(s Span, off, n, elem uint64, name string) (binding, uint32, error) {
	start := uint64(s.Off) + off
	aligned := start - start%c.mem.minAlign
	size := min(alignUp(max(start+n-aligned, 4), 4), s.B.size-aligned)
	if size > c.rangeLimit {
		return binding{}, 0, fmt.Errorf("%s: %s bound, past the device's maxStorageBufferRange (%s)", name, byteSize(size), byteSize(c.rangeLimit))
	}
	return binding{s.B.buf, aligned, size}, uint32((start - aligned) / elem), nil
}

// bind checks s and binds its first need bytes.
func (c *Context) bind(s Span, need uint64, name string) (binding, error) {
	if err := c.check(s, need, name); err != nil {
		return binding{}, err
	}
	b, _, err := c.sub(s, 0, need, 4, name)
	return b, err
}

// dispatch records one dispatch of p over groups (x, y, z) workgroups with
// the bindings and push constants, followed by a barrier that makes its
// writes visible to later commands.
func (c *Context) dispatch(p *pipeline, binds []binding, push []uint32, x, y, z uint32) error {
	if len(binds) != p.info.bindings || uint32(4*len(push)) != p.info.push {
		return fmt.Errorf("vulkan: internal error: %d bindings and %d push bytes for a shader with %d and %d", len(binds), 4*len(push), p.info.bindings, p.info.push)
	}
	lim := c.Info.MaxComputeWorkGroupCount
	if x > lim[0] || y > lim[1] || z > lim[2] {
		return fmt.Errorf("vulkan: dispatch of %d×%d×%d workgroups is past the device's limit %v", x, y, z, lim)
	}
	if x == 0 || y == 0 || z == 0 {
		return nil
	}
	if c.setsUsed == descriptorSetsPerPool {
		if err := c.syncLocked(); err != nil {
			return err
		}
	}
	if err := c.begin(); err != nil {
		return err
	}
	layouts := new(uintptr)
	*layouts = p.setLayout
	ai := &vkDescriptorSetAllocateInfo{sType: stDescriptorSetAllocInfo, descriptorPool: c.descPool, descriptorSetCount: 1, pSetLayouts: unsafe.Pointer(layouts)}
	set := new(uintptr)
	if err := check(purego.SyscallN(c.fn.allocateDescriptorSets, c.dev, uintptr(unsafe.Pointer(ai)), uintptr(unsafe.Pointer(set))))("vkAllocateDescriptorSets", "allocating a descriptor set for a dispatch"); err != nil {
		return err
	}
	c.setsUsed++
	infos := make([]vkDescriptorBufferInfo, len(binds))
	writes := make([]vkWriteDescriptorSet, len(binds))
	for i, b := range binds {
		infos[i] = vkDescriptorBufferInfo{buffer: b.buf, offset: b.off, range_: b.size}
		writes[i] = vkWriteDescriptorSet{sType: stWriteDescriptorSet, dstSet: *set, dstBinding: uint32(i), descriptorCount: 1,
			descriptorType: descriptorStorageBuffer, pBufferInfo: unsafe.Pointer(&infos[i])}
	}
	purego.SyscallN(c.fn.updateDescriptorSets, c.dev, uintptr(len(writes)), uintptr(unsafe.Pointer(&writes[0])), 0, 0)
	purego.SyscallN(c.fn.cmdBindPipeline, c.cmd, bindPointCompute, p.pipe)
	purego.SyscallN(c.fn.cmdBindDescriptorSets, c.cmd, bindPointCompute, p.layout, 0, 1, uintptr(unsafe.Pointer(set)), 0, 0)
	if len(push) > 0 {
		purego.SyscallN(c.fn.cmdPushConstants, c.cmd, p.layout, shaderStageCompute, 0, uintptr(4*len(push)), uintptr(unsafe.Pointer(&push[0])))
	}
	purego.SyscallN(c.fn.cmdDispatch, c.cmd, uintptr(x), uintptr(y), uintptr(z))
	c.dispatches++
	c.barrier()
	return nil
}
