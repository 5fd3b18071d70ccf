// Package memlimit keeps a batch process's heap close to what it holds.
//
// Go lets the heap grow to twice the live heap before collecting (GOGC=100). For a build that
// holds a table of 100,000 files and streams hundreds of megabytes through compressors, that
// doubling is most of its peak memory, and a fixed soft limit low enough to prevent it would
// make the collector run without pause on a context twice as big. Follow sets the soft memory
// limit after every collection to the live heap plus a fixed headroom (never below a floor), so
// the headroom stays the same whatever the context size and the collector never chases a limit
// below what the process really needs.
package memlimit

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// Follow keeps the soft memory limit at max(floor, live heap + headroom), re-set after every
// garbage collection, until stop is called (which restores the limit found at the start). It
// does nothing when the GOMEMLIMIT environment variable is set: the user's limit wins.
func Follow(getenv func(string) string, floor, headroom int64) (stop func()) {
	if getenv("GOMEMLIMIT") != "" {
		return func() {}
	}
	before := debug.SetMemoryLimit(-1)
	debug.SetMemoryLimit(floor)
	var stopped atomic.Bool
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var tune func()
	tune = func() {
		if stopped.Load() {
			return
		}
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			live := sample[0].Value.Uint64()
			debug.SetMemoryLimit(limitFor(live, floor, headroom))
		}
		onGC(tune)
	}
	onGC(tune)
	return func() {
		stopped.Store(true)
		debug.SetMemoryLimit(before)
	}
}

// limitFor is max(floor, live+headroom), without overflow.
func limitFor(live uint64, floor, headroom int64) int64 {
	if live > uint64(math.MaxInt64-headroom) {
		return math.MaxInt64
	}
	return max(floor, int64(live)+headroom)
}

// sentinel is big enough not to be a tiny allocation, whose finalizer could wait for its
// neighbours to die.
type sentinel struct{ _ [64]byte }

// onGC runs f (on the finalizer goroutine) after the next garbage collection.
func onGC(f func()) {
	runtime.SetFinalizer(&sentinel{}, func(*sentinel) { f() })
}
