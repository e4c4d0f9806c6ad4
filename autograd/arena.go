package autograd

import (
	"math/bits"
	"sync"
)

// The activations and gradients of a training step are recycled across
// steps. A step allocates the same sizes every time (about 200 MB for two
// 8B layers and 80 tokens), and fresh memory from the Go heap costs a page
// fault and the kernel's zeroing for every 4 KiB on first touch: in the TLI
// step benchmark that was a quarter of the step when the heap grew
// (GOGC=400). Tape.alloc hands out buffers from a free list shared by all
// tapes; Tape.Release gives a finished step's buffers back.

// freeBufs holds released buffers by capacity class.
var freeBufs struct {
	sync.Mutex
	byClass map[int][][]float32
	total   int // float32s held
}

// maxFree bounds the float32s the free list keeps (1 GiB); buffers beyond it
// are left to the garbage collector.
const maxFree = 1 << 28

// sizeClass rounds n up to a capacity of the form m·2^e with 8 ≤ m < 16
// (at most 12.5% larger than n), so that steps whose token counts differ a
// little reuse each other's buffers.
func sizeClass(n int) int {
	if n <= 1024 {
		return 1024
	}
	e := bits.Len(uint(n)) - 4 // n ≥ 2^(e+3)
	m := (n + 1<<e - 1) >> e
	return m << e
}

// alloc returns n zeroed float32s that live until t.Release. A nil tape
// allocates from the heap.
func (t *Tape) alloc(n int) []float32 {
	if t == nil || n == 0 {
		return make([]float32, n)
	}
	c := sizeClass(n)
	var b []float32
	freeBufs.Lock()
	if l := freeBufs.byClass[c]; len(l) > 0 {
		b = l[len(l)-1]
		freeBufs.byClass[c] = l[:len(l)-1]
		freeBufs.total -= c
	}
	freeBufs.Unlock()
	if b == nil {
		b = make([]float32, c)
	} else {
		clear(b[:n])
	}
	t.bufs = append(t.bufs, b)
	return b[:n:n]
}

// Release gives the buffers of every op recorded on t (outputs, saved
// activations, gradients) back for reuse by later tapes. Call it when the
// step is over: no Var made on t, nor its Grad, may be used afterwards.
// Parameters and their gradients are not affected.
func (t *Tape) Release() {
	freeBufs.Lock()
	defer freeBufs.Unlock()
	if freeBufs.byClass == nil {
		freeBufs.byClass = make(map[int][][]float32)
	}
	for i, b := range t.bufs {
		t.bufs[i] = nil
		if freeBufs.total+cap(b) > maxFree {
			continue
		}
		freeBufs.byClass[cap(b)] = append(freeBufs.byClass[cap(b)], b)
		freeBufs.total += cap(b)
	}
	t.bufs = t.bufs[:0]
}

// DropFreeBuffers lets the garbage collector have the buffers released
// tapes left for reuse: call it when training is over.
func DropFreeBuffers() {
	freeBufs.Lock()
	freeBufs.byClass, freeBufs.total = nil, 0
	freeBufs.Unlock()
}
