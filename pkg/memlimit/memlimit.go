// Package memlimit keeps a batch process's heap close to what it holds.
//
// Go lets the heap grow to twice the live heap before collecting (GOGC=100). For a build that
// holds a table of 100,000 files and streams hundreds of megabytes through compressors, that
// doubling is most of its peak memory, and a fixed soft limit low enough to prevent it would
// make the collector run without pause on a context twice as big. Follow sets the soft memory
// limit after every collection to the live heap plus a fixed headroom plus the runtime's own
// memory (never below a floor), so the headroom stays the same whatever the context size and
// the collector never chases a limit below what the process really needs.
package memlimit

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// Follow keeps the soft memory limit at max(floor, live heap + headroom + the runtime's own
// memory), re-set after every garbage collection, until stop is called (which restores the
// limit found at the start). It does nothing when the GOMEMLIMIT environment variable is set:
// the user's limit wins.
//
// The runtime's own memory (goroutine stacks, the collector's metadata, which grows with the
// heap) counts against Go's limit but is not heap the collector can free: left out, a
// headroom of 12 MiB over a 20 MiB heap leaves about 3 MiB to allocate between collections.
func Follow(getenv func(string) string, floor, headroom int64) (stop func()) {
	if getenv("GOMEMLIMIT") != "" {
		return func() {}
	}
	before := debug.SetMemoryLimit(-1)
	debug.SetMemoryLimit(floor)
	var stopped atomic.Bool
	sample := []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
	}
	var tune func()
	tune = func() {
		if stopped.Load() {
			return
		}
		metrics.Read(sample)
		var v [6]uint64
		for i := range sample {
			if sample[i].Value.Kind() != metrics.KindUint64 {
				onGC(tune)
				return
			}
			v[i] = sample[i].Value.Uint64()
		}
		heap := v[2] + v[3] + v[4] + v[5]
		var runtimeOwn uint64
		if v[1] > heap {
			runtimeOwn = v[1] - heap
		}
		debug.SetMemoryLimit(limitFor(v[0], runtimeOwn, floor, headroom))
		onGC(tune)
	}
	onGC(tune)
	return func() {
		stopped.Store(true)
		debug.SetMemoryLimit(before)
	}
}

// limitFor is max(floor, live+own+headroom), without overflow.
func limitFor(live, own uint64, floor, headroom int64) int64 {
	const most = uint64(math.MaxInt64)
	if live > most || own > most-live || live+own > most-uint64(headroom) {
		return math.MaxInt64
	}
	return max(floor, int64(live+own)+headroom)
}

// sentinel is big enough not to be a tiny allocation, whose finalizer could wait for its
// neighbours to die.
type sentinel struct{ _ [64]byte }

// onGC runs f (on the finalizer goroutine) after the next garbage collection.
func onGC(f func()) {
	runtime.SetFinalizer(&sentinel{}, func(*sentinel) { f() })
}
