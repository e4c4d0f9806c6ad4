// Package memtest measures memory for tests that bound it.
package memtest

import (
	"runtime"
	"time"
)

// PeakHeap runs f and returns the largest growth of the live heap
// (HeapAlloc) above its level before f, after a collection, sampled every
// millisecond while f runs.
func PeakHeap(f func()) uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	done, peakc := make(chan struct{}), make(chan uint64)
	go func() {
		var peak uint64
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > base && ms.HeapAlloc-base > peak {
				peak = ms.HeapAlloc - base
			}
			select {
			case <-done:
				peakc <- peak
				return
			case <-tick.C:
			}
		}
	}()
	f()
	close(done)
	return <-peakc
}
