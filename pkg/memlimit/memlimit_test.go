package memlimit

import (
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestLimitFor(t *testing.T) {
	for _, tc := range []struct {
		live, own       uint64
		floor, headroom int64
		want            int64
	}{
		{live: 10 << 20, floor: 48 << 20, headroom: 16 << 20, want: 48 << 20},
		{live: 40 << 20, floor: 48 << 20, headroom: 16 << 20, want: 56 << 20},
		{live: 30 << 20, own: 8 << 20, floor: 48 << 20, headroom: 16 << 20, want: 54 << 20},
		{live: 1 << 30, own: 1 << 20, floor: 48 << 20, headroom: 16 << 20, want: 1<<30 + 17<<20},
		{live: math.MaxUint64, floor: 48 << 20, headroom: 16 << 20, want: math.MaxInt64},
		{live: 1 << 20, own: math.MaxUint64 - 1<<20, floor: 48 << 20, headroom: 16 << 20, want: math.MaxInt64},
		{live: math.MaxInt64 - 8<<20, own: 1 << 20, floor: 48 << 20, headroom: 16 << 20, want: math.MaxInt64},
	} {
		if got := limitFor(tc.live, tc.own, tc.floor, tc.headroom); got != tc.want {
			t.Errorf("limitFor(%d, %d, %d, %d) = %d, want %d", tc.live, tc.own, tc.floor, tc.headroom, got, tc.want)
		}
	}
}

// waitLimit collects until the limit satisfies ok (the finalizer runs after a collection, on
// its own goroutine), or fails after a few seconds.
func waitLimit(t *testing.T, what string, ok func(int64) bool) int64 {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
		l := debug.SetMemoryLimit(-1)
		if ok(l) {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: limit %d MiB", what, l>>20)
		}
	}
}

// The limit follows the live heap up and down, never below the floor, and stop restores the
// limit there was.
func TestFollow(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	const floor, headroom = 48 << 20, 16 << 20
	stop := Follow(func(string) string { return "" }, floor, headroom)
	waitLimit(t, "idle", func(l int64) bool { return l == floor })

	held := make([]byte, 200<<20)
	for i := range held {
		held[i] = byte(i)
	}
	got := waitLimit(t, "holding 200 MiB", func(l int64) bool { return l >= 200<<20+headroom })
	if got > 260<<20 {
		t.Errorf("holding 200 MiB: limit %d MiB, want about 216", got>>20)
	}
	runtime.KeepAlive(held)
	held = nil
	waitLimit(t, "after letting go", func(l int64) bool { return l == floor })

	stop()
	if l := debug.SetMemoryLimit(-1); l != before {
		t.Errorf("after stop: limit %d, want %d", l, before)
	}
	// and it stays put: no collection moves it any more
	runtime.GC()
	runtime.GC()
	time.Sleep(20 * time.Millisecond)
	if l := debug.SetMemoryLimit(-1); l != before {
		t.Errorf("a collection after stop set the limit to %d", l)
	}
}

func TestFollowLeavesGOMEMLIMIT(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	stop := Follow(func(k string) string {
		if k == "GOMEMLIMIT" {
			return "1GiB"
		}
		return ""
	}, 48<<20, 16<<20)
	defer stop()
	runtime.GC()
	time.Sleep(10 * time.Millisecond)
	if l := debug.SetMemoryLimit(-1); l != before {
		t.Errorf("limit %d with GOMEMLIMIT set, want %d", l, before)
	}
}
