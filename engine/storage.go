package engine

import (
	"fmt"
	"math"
	"unsafe"
)

// Mapping is a read-only view of a whole file's bytes: memory-mapped where
// the operating system allows it (unix), read into memory elsewhere. Tensors
// made from a Mapping with TensorFromBytes may point into Data, so they stay
// valid only until Close.
type Mapping struct {
	Data   []byte
	Path   string
	Mapped bool // true when Data is an mmap (pages load lazily, on demand)
	unmap  func() error
}

// MapFile maps path read-only. An empty file gives an empty Data.
func MapFile(path string) (*Mapping, error) {
	return mapFile(path)
}

// Close releases the mapping. Tensors pointing into it must not be used
// afterwards. Close is safe to call more than once.
func (m *Mapping) Close() error {
	if m == nil || m.unmap == nil {
		return nil
	}
	f := m.unmap
	m.unmap = nil
	m.Data = nil
	return f()
}

// Release hints that the bytes b (a part of Data) will not be read again,
// so their pages can leave memory: a loader calls it after converting a
// tensor into the heap, which keeps the resident set of loading an F32
// checkpoint as BF16 near the size of the BF16 weights. It does nothing
// for read (not mapped) files.
func (m *Mapping) Release(b []byte) { release(m, b) }

// TensorFromBytes returns a tensor of dtype dt and the given shape whose
// elements are the little-endian bytes b. When b is suitably aligned for
// the element type the tensor's slice points into b (no copy, so it shares
// b's lifetime and must be treated as read-only); otherwise the data are
// copied. safetensors only guarantees alignment to the header's end, so an
// f32 tensor in a file may be only 2-byte aligned.
func TensorFromBytes(dt DType, shape []int, b []byte) (*Tensor, error) {
	n := Numel(shape)
	if n < 0 || len(b) != n*dt.Size() {
		return nil, fmt.Errorf("engine: %d bytes for %v %s tensor, want %d", len(b), shape, dt, n*dt.Size())
	}
	t := &Tensor{DType: dt, Shape: append([]int(nil), shape...)}
	if n == 0 {
		if dt == F32 {
			t.F32 = []float32{}
		} else {
			t.Half = []uint16{}
		}
		return t, nil
	}
	p := unsafe.Pointer(&b[0])
	switch dt {
	case F32:
		if uintptr(p)%4 == 0 {
			t.F32 = unsafe.Slice((*float32)(p), n)
		} else {
			t.F32 = make([]float32, n)
			for i := range t.F32 {
				t.F32[i] = math.Float32frombits(uint32(b[4*i]) | uint32(b[4*i+1])<<8 | uint32(b[4*i+2])<<16 | uint32(b[4*i+3])<<24)
			}
		}
	case BF16, F16:
		if uintptr(p)%2 == 0 {
			t.Half = unsafe.Slice((*uint16)(p), n)
		} else {
			t.Half = make([]uint16, n)
			for i := range t.Half {
				t.Half[i] = uint16(b[2*i]) | uint16(b[2*i+1])<<8
			}
		}
	default:
		return nil, fmt.Errorf("engine: unknown dtype %v", dt)
	}
	return t, nil
}

// Bytes returns the tensor's data as little-endian bytes (a view, not a
// copy, on the little-endian machines tli targets); for a Q4 tensor, its
// packed codes.
func (t *Tensor) Bytes() []byte {
	switch {
	case t.DType == F32 && len(t.F32) > 0:
		return unsafe.Slice((*byte)(unsafe.Pointer(&t.F32[0])), 4*len(t.F32))
	case t.DType == Q4 && t.Q != nil:
		return t.Q.Packed
	case t.DType != F32 && len(t.Half) > 0:
		return unsafe.Slice((*byte)(unsafe.Pointer(&t.Half[0])), 2*len(t.Half))
	}
	return nil
}

// FirstNonFinite returns the flat index of the first NaN or ±Inf element of
// t, or -1 when every element is finite. It scans in parallel.
func (t *Tensor) FirstNonFinite() int {
	if t.DType == Q4 { // codes are finite; a scale may not be
		for b, v := range t.Q.Absmax {
			if math.Float32bits(v)&0x7f800000 == 0x7f800000 {
				return b * t.Q.Blocksize
			}
		}
		return -1
	}
	n := t.Numel()
	const chunk = 1 << 16
	chunks := (n + chunk - 1) / chunk
	first := make([]int, chunks)
	ParallelFor(chunks, func(c int) {
		first[c] = -1
		lo, hi := c*chunk, min((c+1)*chunk, n)
		switch t.DType {
		case F32:
			for i, v := range t.F32[lo:hi] {
				if math.Float32bits(v)&0x7f800000 == 0x7f800000 {
					first[c] = lo + i
					return
				}
			}
		case BF16:
			for i, h := range t.Half[lo:hi] {
				if h&0x7f80 == 0x7f80 {
					first[c] = lo + i
					return
				}
			}
		case F16:
			for i, h := range t.Half[lo:hi] {
				if h&0x7c00 == 0x7c00 {
					first[c] = lo + i
					return
				}
			}
		}
	})
	for _, f := range first {
		if f >= 0 {
			return f
		}
	}
	return -1
}
