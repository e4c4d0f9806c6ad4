//go:build vulkan && (amd64 || arm64) && (linux || darwin || windows)

package vulkan

import (
	"fmt"
	"sort"
	"unsafe"

	"github.com/ebitengine/purego"
)

// Device memory is allocated in a few large vkDeviceMemory blocks (Options.
// BlockBytes each; a buffer larger than a block gets its own) and every
// Buffer is a VkBuffer bound to a range of a block: drivers limit the number
// of allocations (maxMemoryAllocationCount, often 4096) and each one is
// slow, so a model's hundreds of tensors must not be one allocation each.

const (
	defaultBlockBytes   = 256 << 20
	defaultStagingBytes = 64 << 20
	minBlockBytes       = 1 << 20
)

// rangeAlloc hands out aligned ranges of [0, size) first fit and takes them
// back, merging neighbouring free ranges.
type rangeAlloc struct {
	size uint64
	free []freeRange // sorted by offset, never adjacent, never empty
}

type freeRange struct{ off, n uint64 }

func newRangeAlloc(size uint64) rangeAlloc {
	return rangeAlloc{size: size, free: []freeRange{{0, size}}}
}

func alignUp(x, a uint64) uint64 {
	if a <= 1 {
		return x
	}
	return (x + a - 1) / a * a
}

// alloc returns the offset of n bytes aligned to align, or false when no
// free range is large enough.
func (r *rangeAlloc) alloc(n, align uint64) (uint64, bool) {
	for i, f := range r.free {
		start := alignUp(f.off, align)
		end := f.off + f.n
		if start+n > end || start+n < start {
			continue
		}
		var repl []freeRange
		if start > f.off {
			repl = append(repl, freeRange{f.off, start - f.off})
		}
		if start+n < end {
			repl = append(repl, freeRange{start + n, end - start - n})
		}
		r.free = append(r.free[:i], append(repl, r.free[i+1:]...)...)
		return start, true
	}
	return 0, false
}

// release returns [off, off+n) to the free ranges.
func (r *rangeAlloc) release(off, n uint64) {
	i := sort.Search(len(r.free), func(i int) bool { return r.free[i].off > off })
	r.free = append(r.free, freeRange{})
	copy(r.free[i+1:], r.free[i:])
	r.free[i] = freeRange{off, n}
	if i+1 < len(r.free) && r.free[i].off+r.free[i].n == r.free[i+1].off {
		r.free[i].n += r.free[i+1].n
		r.free = append(r.free[:i+1], r.free[i+2:]...)
	}
	if i > 0 && r.free[i-1].off+r.free[i-1].n == r.free[i].off {
		r.free[i-1].n += r.free[i].n
		r.free = append(r.free[:i], r.free[i+1:]...)
	}
}

// freeBytes is the total of the free ranges.
func (r *rangeAlloc) freeBytes() uint64 {
	var t uint64
	for _, f := range r.free {
		t += f.n
	}
	return t
}

// block is one vkDeviceMemory allocation.
type block struct {
	mem   uintptr
	size  uint64
	typ   uint32
	ptr   unsafe.Pointer // mapped address when host visible and coherent, else nil
	ra    rangeAlloc
	users int
}

// memory is the Context's suballocator.
type memory struct {
	types      []vkMemoryType
	heaps      []uint64
	blockBytes uint64
	limit      uint64
	allocated  uint64 // bytes of vkDeviceMemory held
	minAlign   uint64 // minStorageBufferOffsetAlignment
	blocks     map[uint32][]*block
	buffers    map[*Buffer]struct{}
	staging    *Buffer
}

func (m *memory) init(c *Context) error {
	props := new(vkPhysicalDeviceMemoryProperties)
	purego.SyscallN(c.in.getMemoryProperties, c.pd, uintptr(unsafe.Pointer(props)))
	m.types = append([]vkMemoryType(nil), props.memoryTypes[:min(props.memoryTypeCount, 32)]...)
	for _, h := range props.memoryHeaps[:min(props.memoryHeapCount, 16)] {
		m.heaps = append(m.heaps, h.size)
	}
	m.blocks = map[uint32][]*block{}
	m.buffers = map[*Buffer]struct{}{}
	m.minAlign = max(c.Info.MinStorageBufferAlign, 4)
	m.blockBytes = defaultBlockBytes
	if c.opt.BlockBytes > 0 {
		m.blockBytes = max(uint64(c.opt.BlockBytes), minBlockBytes)
	}
	var biggest uint64
	for _, h := range m.heaps {
		biggest = max(biggest, h)
	}
	if biggest/4 >= minBlockBytes {
		m.blockBytes = min(m.blockBytes, biggest/4)
	}
	m.limit = biggest
	if c.opt.MemoryLimit > 0 {
		m.limit = uint64(c.opt.MemoryLimit)
	}
	return nil
}

// Buffer is a storage buffer in device memory: a VkBuffer bound to a range
// of one of the Context's memory blocks. Free gives the range back.
type Buffer struct {
	c     *Context
	buf   uintptr
	blk   *block
	off   uint64 // range in the block
	n     uint64 // bytes bound (the driver's size, at least Size)
	size  uint64 // bytes asked for, rounded up to 4
	freed bool
}

// Size is the buffer's size in bytes (what was asked for, rounded up to a
// multiple of 4).
func (b *Buffer) Size() int { return int(b.size) }

// HostVisible reports whether the buffer's memory can be written and read
// by the CPU directly (lavapipe, integrated GPUs, resizable BAR); then
// Upload and Download copy directly instead of through the staging buffer.
func (b *Buffer) HostVisible() bool { return b.blk.ptr != nil }

// Alloc creates a storage buffer of bytes bytes (rounded up to 4) in
// device-local memory when the device has it. The buffer's offset in its
// block honours the buffer's alignment requirement and
// minStorageBufferOffsetAlignment. A request past the heap's size or
// Options.MemoryLimit, or one the driver cannot meet, is an error wrapping
// ErrOutOfMemory.
func (c *Context) Alloc(bytes int) (*Buffer, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.in == nil {
		return nil, ErrClosed
	}
	if bytes <= 0 {
		return nil, fmt.Errorf("vulkan: allocating a buffer of %d bytes: the size must be positive", bytes)
	}
	return c.mem.alloc(c, uint64(bytes), false)
}

// memoryType picks a memory type among bits: for device buffers the first
// device-local one, for staging the first host-visible coherent one that is
// not device-local, else any host-visible coherent one.
func (m *memory) memoryType(bits uint32, staging bool) (uint32, bool) {
	const hv = memoryHostVisible | memoryHostCoherent
	pick := func(ok func(f uint32) bool) (uint32, bool) {
		for i, t := range m.types {
			if bits&(1<<i) != 0 && ok(t.propertyFlags) {
				return uint32(i), true
			}
		}
		return 0, false
	}
	if staging {
		if i, ok := pick(func(f uint32) bool { return f&hv == hv && f&memoryDeviceLocal == 0 }); ok {
			return i, true
		}
		return pick(func(f uint32) bool { return f&hv == hv })
	}
	if i, ok := pick(func(f uint32) bool { return f&memoryDeviceLocal != 0 }); ok {
		return i, true
	}
	return pick(func(f uint32) bool { return true })
}

func (m *memory) alloc(c *Context, bytes uint64, staging bool) (*Buffer, error) {
	size := alignUp(bytes, 4)
	what := fmt.Sprintf("creating a buffer of %s", byteSize(size))
	if size > m.limit {
		return nil, fmt.Errorf("vulkan: %s: it is larger than the device memory limit (%s): %w", what, byteSize(m.limit), ErrOutOfMemory)
	}
	bci := &vkBufferCreateInfo{sType: stBufferCreateInfo, size: size, usage: bufferStorage | bufferTransferSrc | bufferTransferDst, sharingMode: sharingExclusive}
	b := &Buffer{c: c, size: size}
	if err := c.create(c.fn.createBuffer, unsafe.Pointer(bci), &b.buf, "buffer", "vkCreateBuffer", what); err != nil {
		return nil, err
	}
	req := new(vkMemoryRequirements)
	purego.SyscallN(c.fn.getBufferMemoryRequirements, c.dev, b.buf, uintptr(unsafe.Pointer(req)))
	typ, ok := m.memoryType(req.memoryTypeBits, staging)
	if !ok {
		c.destroy(c.fn.destroyBuffer, &b.buf, "buffer")
		return nil, fmt.Errorf("vulkan: %s: no suitable memory type (types 0x%x)", what, req.memoryTypeBits)
	}
	align := max(req.alignment, m.minAlign)
	blk, off, err := m.place(c, typ, req.size, align, what)
	if err != nil {
		c.destroy(c.fn.destroyBuffer, &b.buf, "buffer")
		return nil, err
	}
	b.blk, b.off, b.n = blk, off, req.size
	blk.users++
	if err := check(purego.SyscallN(c.fn.bindBufferMemory, c.dev, b.buf, blk.mem, uintptr(off)))("vkBindBufferMemory", what); err != nil {
		m.unplace(c, b)
		c.destroy(c.fn.destroyBuffer, &b.buf, "buffer")
		return nil, err
	}
	m.buffers[b] = struct{}{}
	return b, nil
}

// place finds size bytes aligned to align in a block of memory type typ,
// allocating a new block when none has room.
func (m *memory) place(c *Context, typ uint32, size, align uint64, what string) (*block, uint64, error) {
	for _, blk := range m.blocks[typ] {
		if off, ok := blk.ra.alloc(size, align); ok {
			return blk, off, nil
		}
	}
	heap := m.heaps[m.types[typ].heapIndex]
	if size > heap {
		return nil, 0, fmt.Errorf("vulkan: %s: it is larger than the memory heap (%s): %w", what, byteSize(heap), ErrOutOfMemory)
	}
	n := max(m.blockBytes, size)
	if m.allocated+n > m.limit {
		n = max(size, m.limit-min(m.limit, m.allocated)) // a smaller block that still fits under the limit
		if m.allocated+n > m.limit {
			return nil, 0, fmt.Errorf("vulkan: %s: device memory limit reached (%s allocated of %s): %w", what, byteSize(m.allocated), byteSize(m.limit), ErrOutOfMemory)
		}
	}
	blk := &block{size: n, typ: typ, ra: newRangeAlloc(n)}
	ai := &vkMemoryAllocateInfo{sType: stMemoryAllocateInfo, allocationSize: n, memoryTypeIndex: typ}
	if err := c.create(c.fn.allocateMemory, unsafe.Pointer(ai), &blk.mem, "memory", "vkAllocateMemory", fmt.Sprintf("allocating a %s memory block (type %d) for %s", byteSize(n), typ, what)); err != nil {
		return nil, 0, err
	}
	const hv = memoryHostVisible | memoryHostCoherent
	if m.types[typ].propertyFlags&hv == hv {
		if err := check(purego.SyscallN(c.fn.mapMemory, c.dev, blk.mem, 0, uintptr(n), 0, uintptr(unsafe.Pointer(&blk.ptr))))("vkMapMemory", fmt.Sprintf("mapping a %s memory block", byteSize(n))); err != nil {
			c.destroy(c.fn.freeMemory, &blk.mem, "memory")
			return nil, 0, err
		}
	}
	m.allocated += n
	m.blocks[typ] = append(m.blocks[typ], blk)
	off, _ := blk.ra.alloc(size, align)
	return blk, off, nil
}

// unplace gives b's range back; a block left empty is freed unless it is
// the only block of its memory type (kept for the next allocations).
func (m *memory) unplace(c *Context, b *Buffer) {
	blk := b.blk
	blk.ra.release(b.off, b.n)
	blk.users--
	blocks := m.blocks[blk.typ]
	if blk.users > 0 || (len(blocks) == 1 && blk.size == m.blockBytes) {
		return
	}
	for i, x := range blocks {
		if x == blk {
			m.blocks[blk.typ] = append(blocks[:i], blocks[i+1:]...)
			break
		}
	}
	m.freeBlock(c, blk)
}

func (m *memory) freeBlock(c *Context, blk *block) {
	if blk.ptr != nil {
		purego.SyscallN(c.fn.unmapMemory, c.dev, blk.mem)
		blk.ptr = nil
	}
	m.allocated -= blk.size
	c.destroy(c.fn.freeMemory, &blk.mem, "memory")
}

// free destroys b and returns its range (the device must be done with it).
func (m *memory) free(c *Context, b *Buffer) {
	if b.buf == 0 {
		return
	}
	c.destroy(c.fn.destroyBuffer, &b.buf, "buffer")
	m.unplace(c, b)
	delete(m.buffers, b)
}

// release frees every buffer and block (Close, after vkDeviceWaitIdle).
func (m *memory) release(c *Context) {
	for b := range m.buffers {
		b.freed = true
		c.destroy(c.fn.destroyBuffer, &b.buf, "buffer")
	}
	m.buffers = map[*Buffer]struct{}{}
	m.staging = nil
	for typ, blocks := range m.blocks {
		for _, blk := range blocks {
			m.freeBlock(c, blk)
		}
		delete(m.blocks, typ)
	}
}

// MemoryInUse returns the bytes of device memory the Context holds in
// blocks and the bytes of it bound to live buffers.
func (c *Context) MemoryInUse() (allocated, used uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, blocks := range c.mem.blocks {
		for _, blk := range blocks {
			used += blk.size - blk.ra.freeBytes()
		}
	}
	return c.mem.allocated, used
}

// Free releases the buffer: at once when no recorded command may still use
// it, else at the next Sync. Freeing twice, or after Close, does nothing.
func (b *Buffer) Free() {
	c := b.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if b.freed || c.in == nil {
		return
	}
	b.freed = true
	if c.recording {
		c.deferred = append(c.deferred, b)
		return
	}
	c.mem.free(c, b)
}

// Upload copies src into the buffer at byte offset off. It first runs the
// recorded commands (Sync), as they may use the buffer.
func (b *Buffer) Upload(off int, src []byte) error { return b.transfer(off, src, true) }

// Download copies the buffer from byte offset off into dst, after running
// the recorded commands.
func (b *Buffer) Download(off int, dst []byte) error { return b.transfer(off, dst, false) }

// UploadF32 writes src at element i (byte 4i) of the buffer.
func (b *Buffer) UploadF32(i int, src []float32) error { return b.Upload(4*i, asBytes(src)) }

// DownloadF32 reads len(dst) float32 from element i (byte 4i).
func (b *Buffer) DownloadF32(i int, dst []float32) error { return b.Download(4*i, asBytes(dst)) }

// UploadU16 writes src (bf16 or f16 bits) at element i (byte 2i).
func (b *Buffer) UploadU16(i int, src []uint16) error { return b.Upload(2*i, asBytes(src)) }

// DownloadU16 reads len(dst) uint16 from element i (byte 2i).
func (b *Buffer) DownloadU16(i int, dst []uint16) error { return b.Download(2*i, asBytes(dst)) }

// UploadU32 writes src (token ids, offsets) at element i (byte 4i).
func (b *Buffer) UploadU32(i int, src []uint32) error { return b.Upload(4*i, asBytes(src)) }

// DownloadU32 reads len(dst) uint32 from element i (byte 4i).
func (b *Buffer) DownloadU32(i int, dst []uint32) error { return b.Download(4*i, asBytes(dst)) }

// asBytes views a slice of fixed-size numbers as bytes (little endian, as
// every Vulkan device tli runs on).
func asBytes[T float32 | uint16 | uint32](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*int(unsafe.Sizeof(s[0])))
}

func (b *Buffer) transfer(off int, data []byte, upload bool) error {
	c := b.c
	c.mu.Lock()
	defer c.mu.Unlock()
	verb := "downloading from"
	if upload {
		verb = "uploading to"
	}
	switch {
	case c.in == nil:
		return ErrClosed
	case b.freed:
		return fmt.Errorf("vulkan: %s a freed buffer", verb)
	case off < 0 || uint64(off)+uint64(len(data)) > b.size:
		return fmt.Errorf("vulkan: %s bytes [%d, %d) of a buffer of %d bytes: out of range", verb, off, off+len(data), b.size)
	case len(data) == 0:
		return nil
	}
	if err := c.syncLocked(); err != nil {
		return err
	}
	if b.blk.ptr != nil && !c.opt.ForceStaging {
		mapped := unsafe.Slice((*byte)(unsafe.Add(b.blk.ptr, b.off+uint64(off))), len(data))
		if upload {
			copy(mapped, data)
		} else {
			copy(data, mapped)
		}
		return nil
	}
	if c.mem.staging == nil {
		n := uint64(defaultStagingBytes)
		if c.opt.StagingBytes > 0 {
			n = alignUp(uint64(c.opt.StagingBytes), 4)
		}
		s, err := c.mem.alloc(c, n, true)
		if err != nil {
			return fmt.Errorf("vulkan: creating the staging buffer: %w", err)
		}
		c.mem.staging = s
	}
	s := c.mem.staging
	mapped := unsafe.Slice((*byte)(unsafe.Add(s.blk.ptr, s.off)), s.size)
	for done := 0; done < len(data); {
		n := min(len(data)-done, int(s.size))
		if err := c.begin(); err != nil {
			return err
		}
		cp := &vkBufferCopy{size: uint64(n)}
		src, dst := b.buf, s.buf
		if upload {
			copy(mapped, data[done:done+n])
			cp.dstOffset = uint64(off + done)
			src, dst = s.buf, b.buf
		} else {
			cp.srcOffset = uint64(off + done)
		}
		purego.SyscallN(c.fn.cmdCopyBuffer, c.cmd, src, dst, 1, uintptr(unsafe.Pointer(cp)))
		c.barrier()
		if err := c.syncLocked(); err != nil {
			return err
		}
		if !upload {
			copy(data[done:done+n], mapped)
		}
		done += n
	}
	return nil
}

// byteSize is n in B, KiB, MiB or GiB.
func byteSize(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
