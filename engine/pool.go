package engine

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/tli-project/tli/kernels"
)

// Pool is a fixed set of worker goroutines shared by all ops and kernels.
// ParallelFor splits an index range over the workers; nested calls from
// inside a worker run serially, so kernels may call it freely.
type Pool struct {
	n     int
	tasks chan func()
	busy  atomic.Int32
}

var (
	defaultPool atomic.Pointer[Pool]
	poolMu      sync.Mutex
)

func init() { SetThreads(0) }

// SetThreads replaces the shared pool with one of n workers (n <= 0 means
// GOMAXPROCS) and installs it as the kernels' runner.
func SetThreads(n int) {
	poolMu.Lock()
	defer poolMu.Unlock()
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	p := &Pool{n: n, tasks: make(chan func(), n)}
	for i := 0; i < n-1; i++ {
		go func() {
			for f := range p.tasks {
				f()
			}
		}()
	}
	if old := defaultPool.Swap(p); old != nil {
		close(old.tasks)
	}
	kernels.SetRunner(ParallelFor)
}

// Threads is the number of workers of the shared pool.
func Threads() int { return defaultPool.Load().n }

// ParallelFor runs fn(i) for i in [0, n) on the shared pool and waits. The
// range is split into contiguous chunks, one per worker; the caller works too.
func ParallelFor(n int, fn func(i int)) {
	p := defaultPool.Load()
	if n <= 0 {
		return
	}
	workers := p.n
	if workers > n {
		workers = n
	}
	// Nested parallel regions run serially on the calling goroutine.
	if workers <= 1 || !p.busy.CompareAndSwap(0, 1) {
		for i := 0; i < n; i++ {
			fn(i)
		}
		return
	}
	defer p.busy.Store(0)
	var next atomic.Int64
	var wg sync.WaitGroup
	work := func() {
		for {
			i := int(next.Add(1) - 1)
			if i >= n {
				return
			}
			fn(i)
		}
	}
	wg.Add(workers - 1)
	for w := 0; w < workers-1; w++ {
		p.tasks <- func() { defer wg.Done(); work() }
	}
	work()
	wg.Wait()
}
