//go:build vulkan && (amd64 || arm64) && (linux || darwin || windows)

package vulkan

import (
	"errors"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/tli-project/tli/internal/peer"
)

// openContext opens the device $TLI_VULKAN_DEVICE names (default: the best,
// Select("vulkan")), skipping the test (failing it under
// TLI_REQUIRE_PEERS=1) without a loader or device. Cleanup closes it and
// checks that nothing is left.
func openContext(t testing.TB, opt Options) *Context {
	t.Helper()
	if _, err := Devices(); errors.Is(err, ErrNoLoader) {
		peer.Missing(t, err.Error())
	}
	spec := os.Getenv("TLI_VULKAN_DEVICE")
	if spec == "" {
		spec = "vulkan"
	}
	d, err := Select(spec)
	if err != nil {
		if strings.Contains(err.Error(), "no Vulkan device") {
			peer.Missing(t, err.Error()+" (apt-get install -y mesa-vulkan-drivers libvulkan1)")
		}
		t.Fatal(err)
	}
	c, err := Open(d, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if live := c.Live(); len(live) != 0 {
			t.Errorf("objects left after Close: %v", live)
		}
	})
	return c
}

// TestOpenClose opens a device, uses every kind of object, and checks that
// Close destroys them all, children before their parents.
func TestOpenClose(t *testing.T) {
	c := openContext(t, Options{})
	t.Logf("opened %s", c.Info)
	live := c.Live()
	for _, k := range []string{"instance", "device", "commandPool", "fence", "descriptorPool"} {
		if live[k] != 1 {
			t.Errorf("after Open: %d %s, want 1 (%v)", live[k], k, live)
		}
	}
	var trace []string
	c.trace = &trace
	a, err := c.Alloc(1024)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Alloc(1024)
	if err != nil {
		t.Fatal(err)
	}
	ones := make([]float32, 256)
	for i := range ones {
		ones[i] = 1
	}
	if err := a.UploadF32(0, ones); err != nil {
		t.Fatal(err)
	}
	if err := c.Add(b.All(), a.All(), a.All(), 256); err != nil {
		t.Fatal(err)
	}
	if err := c.Add(b.All(), b.All(), a.All(), 256); err != nil {
		t.Fatal(err)
	}
	got := make([]float32, 256)
	if err := b.DownloadF32(0, got); err != nil {
		t.Fatal(err)
	}
	if got[0] != 3 || got[255] != 3 {
		t.Fatalf("1+1+1 = %v", got[0])
	}
	live = c.Live()
	if live["buffer"] != 2 || live["memory"] < 1 || live["pipeline"] != 1 || live["shaderModule"] != 1 {
		t.Errorf("live objects %v", live)
	}
	a.Free()
	a.Free() // twice: no-op
	if n := c.Live()["buffer"]; n != 1 {
		t.Errorf("%d buffers after one Free, want 1", n)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if len(c.Live()) != 0 {
		t.Fatalf("live after Close: %v", c.Live())
	}
	t.Logf("destroy order: %v", trace)
	pos := func(kind string, last bool) int {
		i := slices.Index(trace, kind)
		if last {
			for j := len(trace) - 1; j >= 0; j-- {
				if trace[j] == kind {
					return j
				}
			}
		}
		return i
	}
	if n := len(trace); n < 2 || trace[n-1] != "instance" || trace[n-2] != "device" {
		t.Fatalf("the device and then the instance must be destroyed last: %v", trace)
	}
	for _, before := range [][2]string{{"buffer", "memory"}, {"pipeline", "shaderModule"}, {"pipeline", "pipelineLayout"},
		{"pipelineLayout", "descriptorSetLayout"}, {"fence", "device"}, {"commandPool", "device"}, {"descriptorPool", "device"}, {"memory", "device"}} {
		if pos(before[0], true) < 0 || pos(before[0], true) > pos(before[1], false) {
			t.Errorf("%s must all be destroyed before the first %s: %v", before[0], before[1], trace)
		}
	}
	if _, err := c.Alloc(16); !errors.Is(err, ErrClosed) {
		t.Errorf("Alloc after Close: %v, want ErrClosed", err)
	}
	if err := b.UploadF32(0, ones); !errors.Is(err, ErrClosed) {
		t.Errorf("Upload after Close: %v, want ErrClosed", err)
	}
	if err := c.Add(b.All(), b.All(), b.All(), 4); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close: %v, want ErrClosed", err)
	}
	b.Free() // after Close: no-op
}

// TestRangeAlloc checks the suballocator's ranges against a byte map under
// random allocations and frees.
func TestRangeAlloc(t *testing.T) {
	const size = 1 << 16
	r := newRangeAlloc(size)
	owner := make([]int, size) // 0: free
	type al struct{ off, n uint64 }
	live := map[int]al{}
	rng := rand.New(rand.NewPCG(1, 2))
	for step := 1; step < 5000; step++ {
		if rng.IntN(3) > 0 || len(live) == 0 {
			n := uint64(1 + rng.IntN(3000))
			align := uint64(1) << rng.IntN(9)
			off, ok := r.alloc(n, align)
			if !ok {
				// Make sure no aligned free gap of n bytes was missed.
				for s := uint64(0); s+n <= size; s += align {
					if !slices.ContainsFunc(owner[s:s+n], func(o int) bool { return o != 0 }) {
						t.Fatalf("step %d: alloc(%d, %d) failed with [%d, %d) free", step, n, align, s, s+n)
					}
				}
				continue
			}
			if off%align != 0 || off+n > size {
				t.Fatalf("step %d: alloc(%d, %d) = %d", step, n, align, off)
			}
			for i := off; i < off+n; i++ {
				if owner[i] != 0 {
					t.Fatalf("step %d: [%d, %d) overlaps allocation %d", step, off, off+n, owner[i])
				}
				owner[i] = step
			}
			live[step] = al{off, n}
		} else {
			for id, a := range live {
				r.release(a.off, a.n)
				for i := a.off; i < a.off+a.n; i++ {
					owner[i] = 0
				}
				delete(live, id)
				break
			}
		}
		var used uint64
		for _, a := range live {
			used += a.n
		}
		if r.freeBytes() != size-used {
			t.Fatalf("step %d: %d bytes free, want %d", step, r.freeBytes(), size-used)
		}
		for i := 1; i < len(r.free); i++ {
			if r.free[i-1].off+r.free[i-1].n >= r.free[i].off {
				t.Fatalf("step %d: free ranges not sorted and merged: %v", step, r.free)
			}
		}
	}
	for id, a := range live {
		r.release(a.off, a.n)
		delete(live, id)
	}
	if len(r.free) != 1 || r.free[0] != (freeRange{0, size}) {
		t.Fatalf("after freeing everything: %v", r.free)
	}
}

// TestUploadDownload moves f32, u16 and u32 data in and out of buffers of
// assorted sizes at assorted offsets, directly (host-visible memory) and
// through a small staging buffer, and checks suballocation alignment and
// that freeing returns the ranges.
func TestUploadDownload(t *testing.T) {
	for _, staging := range []bool{false, true} {
		name := "direct"
		if staging {
			name = "staging"
		}
		t.Run(name, func(t *testing.T) {
			c := openContext(t, Options{ForceStaging: staging, StagingBytes: 1 << 20, BlockBytes: 4 << 20})
			rng := rand.New(rand.NewPCG(3, 4))
			var bufs []*Buffer
			for _, n := range []int{4, 12, 1000, 4096, 3<<20 + 8, 5 << 20} { // the last two: past the staging buffer, the block
				b, err := c.Alloc(n)
				if err != nil {
					t.Fatal(err)
				}
				if b.off%c.mem.minAlign != 0 {
					t.Errorf("buffer at offset %d of its block, not a multiple of %d", b.off, c.mem.minAlign)
				}
				if !staging && b.HostVisible() != (b.blk.ptr != nil) {
					t.Error("HostVisible")
				}
				bufs = append(bufs, b)
				f := make([]float32, n/4)
				for i := range f {
					f[i] = rng.Float32()
				}
				if err := b.UploadF32(0, f); err != nil {
					t.Fatal(err)
				}
				got := make([]float32, len(f))
				if err := b.DownloadF32(0, got); err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(f, got) {
					t.Fatalf("%d bytes: f32 round trip differs", n)
				}
				// u16 at an odd element offset, u32 at the end.
				if n >= 12 {
					h := make([]uint16, n/2-3)
					for i := range h {
						h[i] = uint16(rng.Uint32())
					}
					if err := b.UploadU16(3, h); err != nil {
						t.Fatal(err)
					}
					gh := make([]uint16, len(h))
					if err := b.DownloadU16(3, gh); err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(h, gh) {
						t.Fatalf("%d bytes: u16 round trip differs", n)
					}
					u := []uint32{rng.Uint32(), rng.Uint32()}
					if err := b.UploadU32(n/4-2, u); err != nil {
						t.Fatal(err)
					}
					gu := make([]uint32, 2)
					if err := b.DownloadU32(n/4-2, gu); err != nil || !slices.Equal(u, gu) {
						t.Fatalf("%d bytes: u32 round trip %v %v, %v", n, u, gu, err)
					}
				}
			}
			if err := bufs[0].UploadF32(1, []float32{1}); err == nil {
				t.Error("an upload past the end succeeded")
			} else {
				t.Log(err)
			}
			if err := bufs[0].Download(-4, make([]byte, 4)); err == nil {
				t.Error("a download at a negative offset succeeded")
			}
			allocated, used := c.MemoryInUse()
			t.Logf("%d buffers: %s allocated, %s used, live %v", len(bufs), byteSize(allocated), byteSize(used), c.Live())
			for _, b := range bufs {
				b.Free()
			}
			if err := bufs[1].UploadF32(0, []float32{1}); err == nil {
				t.Error("an upload to a freed buffer succeeded")
			}
			_, used = c.MemoryInUse()
			var want uint64
			if c.mem.staging != nil {
				want = c.mem.staging.n
			}
			if used != want {
				t.Errorf("after freeing every buffer %d bytes are in use, want %d (the staging buffer)", used, want)
			}
			if n := c.Live()["buffer"]; n != map[bool]int{false: 0, true: 1}[c.mem.staging != nil] {
				t.Errorf("%d buffers live after freeing", n)
			}
		})
	}
}

// TestExhaustion asks for more memory than the limit and the heap: errors
// that wrap ErrOutOfMemory, never a crash; freed memory can be reused.
func TestExhaustion(t *testing.T) {
	c := openContext(t, Options{MemoryLimit: 8 << 20, BlockBytes: 2 << 20})
	if _, err := c.Alloc(16 << 20); !errors.Is(err, ErrOutOfMemory) {
		t.Fatalf("16 MiB under an 8 MiB limit: %v, want ErrOutOfMemory", err)
	} else {
		t.Log(err)
	}
	var bufs []*Buffer
	var last error
	for range 100 {
		b, err := c.Alloc(1 << 20)
		if err != nil {
			last = err
			break
		}
		bufs = append(bufs, b)
	}
	if !errors.Is(last, ErrOutOfMemory) || len(bufs) < 6 || len(bufs) > 8 {
		t.Fatalf("1 MiB buffers under an 8 MiB limit: %d, then %v", len(bufs), last)
	}
	t.Logf("%d buffers of 1 MiB, then: %v", len(bufs), last)
	for _, b := range bufs {
		b.Free()
	}
	for range len(bufs) {
		b, err := c.Alloc(1 << 20)
		if err != nil {
			t.Fatalf("after freeing: %v", err)
		}
		defer b.Free()
	}

	big := openContext(t, Options{})
	for _, n := range []int{int(big.Info.HeapBytes) + 1<<20, 1 << 50} {
		if _, err := big.Alloc(n); !errors.Is(err, ErrOutOfMemory) {
			t.Errorf("Alloc(%d) past the heap (%d): %v, want ErrOutOfMemory", n, big.Info.HeapBytes, err)
		} else {
			t.Log(err)
		}
	}
	if _, err := big.Alloc(0); err == nil {
		t.Error("Alloc(0) succeeded")
	}
}

// TestKernelErrors checks that bad spans and shapes are refused with an
// error before anything is recorded.
func TestKernelErrors(t *testing.T) {
	c := openContext(t, Options{})
	other := openContext(t, Options{})
	a, _ := c.Alloc(4096)
	b, _ := c.Alloc(4096)
	x, _ := other.Alloc(4096)
	freed, _ := c.Alloc(64)
	freed.Free()
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"small", c.GEMM(a.All(), a.All(), b.All(), 33, 32, 32, F32, false), "needs"},
		{"misaligned", c.Add(a.Bytes(4, 64), b.All(), b.All(), 16), "alignment"},
		{"outside", c.Add(a.Bytes(4096, 64), b.All(), b.All(), 16), "outside"},
		{"other", c.Add(x.All(), b.All(), b.All(), 16), "another device"},
		{"freed", c.Add(freed.All(), b.All(), b.All(), 16), "freed"},
		{"nil", c.Add(Span{}, b.All(), b.All(), 16), "no buffer"},
		{"zero", c.Add(a.All(), b.All(), b.All(), 0), "must be positive"},
		{"odd", c.Rope(a.All(), b.All(), b.All(), 1, 1, 3), "even"},
		{"gqa", c.Attention(a.All(), a.All(), a.All(), a.All(), b.All(), 1, 1, 3, 2, 4), "multiple"},
		{"weight", c.GEMM(a.All(), a.All(), b.All(), 1, 1, 1, WeightType(7), false), "weight type"},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, tc.err, tc.want)
		} else {
			t.Logf("%s: %v", tc.name, tc.err)
		}
	}
	if c.recording {
		t.Error("a refused kernel recorded commands")
	}
}

// TestDeferredFree frees a buffer a recorded kernel still uses: it must
// stay alive until the Sync.
func TestDeferredFree(t *testing.T) {
	c := openContext(t, Options{})
	a, _ := c.Alloc(1024)
	out, _ := c.Alloc(1024)
	in := make([]float32, 256)
	for i := range in {
		in[i] = float32(i)
	}
	if err := a.UploadF32(0, in); err != nil {
		t.Fatal(err)
	}
	if err := c.Add(out.All(), a.All(), a.All(), 256); err != nil {
		t.Fatal(err)
	}
	a.Free()
	if c.Live()["buffer"] != 2 {
		t.Fatalf("the buffer was destroyed while a recorded kernel uses it: %v", c.Live())
	}
	got := make([]float32, 256)
	if err := out.DownloadF32(0, got); err != nil {
		t.Fatal(err)
	}
	if got[100] != 200 {
		t.Fatalf("got %v", got[100])
	}
	if c.Live()["buffer"] != 1 {
		t.Fatalf("the freed buffer outlived the Sync: %v", c.Live())
	}
}

// TestManyDispatches records more dispatches than one descriptor pool
// holds (the Context syncs and recycles it) and checks that the pipeline
// is built once.
func TestManyDispatches(t *testing.T) {
	c := openContext(t, Options{})
	acc, _ := c.Alloc(4 * 1000)
	one, _ := c.Alloc(4 * 1000)
	ones := make([]float32, 1000)
	for i := range ones {
		ones[i] = 1
	}
	if err := one.UploadF32(0, ones); err != nil {
		t.Fatal(err)
	}
	if err := acc.UploadF32(0, make([]float32, 1000)); err != nil {
		t.Fatal(err)
	}
	before := c.submits
	const n = 2*descriptorSetsPerPool + 17
	for range n {
		if err := c.Add(acc.All(), acc.All(), one.All(), 1000); err != nil {
			t.Fatal(err)
		}
	}
	got := make([]float32, 1000)
	if err := acc.DownloadF32(0, got); err != nil {
		t.Fatal(err)
	}
	if got[0] != n || got[999] != n {
		t.Fatalf("%d additions of 1 = %v, %v", n, got[0], got[999])
	}
	if c.Live()["pipeline"] != 1 {
		t.Errorf("pipelines %v, want 1 (cached)", c.Live())
	}
	t.Logf("%d dispatches in %d submissions", n, c.submits-before)
}
