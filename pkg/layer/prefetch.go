package layer

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"

	"golang.org/x/sync/semaphore"
)

// Small files are read ahead of the tar writer, on several goroutines. Each costs an open, a
// read, an fstat and a close, and its content is hashed to be checked: one after the other on
// the tar writer's goroutine, for the thousand files of a source layer, that was the slowest
// stage of a rebuilt layer, and the compressors waited for it.
const (
	prefetchMax    = 256 << 10 // larger files are streamed by the tar writer itself
	prefetchWindow = 1 << 20   // bytes read ahead and not yet written, at most: a few hundred files
)

// prefetcher reads the small files of entries ahead of the writer, in order.
type prefetcher struct {
	slots  map[int]*slot // by entry index
	window *semaphore.Weighted
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// slot is one file read ahead: its content, the sha256 of it (when checked) or why it could
// not be read.
type slot struct {
	done   chan struct{}
	data   []byte
	digest [32]byte
	err    error
}

// newPrefetcher starts reading the small files of entries; stop must be called.
func newPrefetcher(ctx context.Context, entries []Entry, hash bool) *prefetcher {
	p := &prefetcher{slots: map[int]*slot{}, window: semaphore.NewWeighted(prefetchWindow)}
	var order []int
	for i := range entries {
		if e := &entries[i]; e.Type == TypeFile && e.Source != "" && e.Size <= prefetchMax {
			p.slots[i] = &slot{done: make(chan struct{})}
			order = append(order, i)
		}
	}
	if len(order) < 2 {
		p.slots = nil // nothing to overlap
		return p
	}
	ctx, p.cancel = context.WithCancel(ctx)
	jobs := make(chan int, 64)
	// The files are taken in the writer's order and within a window of bytes, so the writer
	// always finds the next ones ready or being read, and memory stays bounded.
	p.wg.Go(func() {
		defer close(jobs)
		for _, i := range order {
			if err := p.window.Acquire(ctx, max(entries[i].Size, 1)); err != nil {
				return
			}
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	})
	// The work is syscalls as much as hashing: one more reader than cores keeps them busy.
	for range runtime.GOMAXPROCS(0) + 1 {
		p.wg.Go(func() {
			for i := range jobs {
				s := p.slots[i]
				s.data, s.digest, s.err = readSmall(ctx, &entries[i], hash)
				close(s.done)
			}
		})
	}
	return p
}

// next gives the file at entry index i, waiting for it: ok is false if it is not read ahead.
func (p *prefetcher) next(ctx context.Context, i int) (s *slot, ok bool, err error) {
	s, ok = p.slots[i]
	if !ok {
		return nil, false, nil
	}
	select {
	case <-s.done:
		return s, true, nil
	case <-ctx.Done():
		return nil, true, ctx.Err()
	}
}

// release gives a written file's bytes back to the window.
func (p *prefetcher) release(e *Entry, s *slot) {
	putSmallBuf(s.data)
	s.data = nil
	p.window.Release(max(e.Size, 1))
}

// stop ends the reading ahead and waits for the readers.
func (p *prefetcher) stop() {
	if p.cancel == nil {
		return
	}
	p.cancel()
	p.wg.Wait()
}

// readSmall reads a whole small file as writeContent would stream it, with the same checks:
// never more than the size the walk saw, and the file unchanged once read.
func readSmall(ctx context.Context, e *Entry, hash bool) (data []byte, digest [32]byte, err error) {
	if err := ctx.Err(); err != nil {
		return nil, digest, err
	}
	f, err := os.Open(e.Source)
	if err != nil {
		return nil, digest, fmt.Errorf("cannot read %s: %w (fix its permissions or exclude it in .dockerignore)", e.Source, unwrapPathErr(err))
	}
	defer f.Close()
	data = getSmallBuf(int(e.Size))
	n, err := io.ReadFull(f, data)
	switch {
	case err == io.ErrUnexpectedEOF || err == io.EOF:
		// shorter than the walk saw: reported by checkUnchanged
	case err != nil:
		putSmallBuf(data)
		return nil, digest, fmt.Errorf("read %s: %w", e.Source, unwrapPathErr(err))
	}
	if err := checkUnchanged(f, e, int64(n)); err != nil {
		putSmallBuf(data)
		return nil, digest, err
	}
	if hash {
		digest = sha256.Sum256(data)
	}
	return data, digest, nil
}

// Buffers for small files, by power-of-two size class from 4 KiB to prefetchMax.
var smallBufs [7]sync.Pool

func smallClass(n int) int {
	c := 0
	for size := 4 << 10; size < n; size <<= 1 {
		c++
	}
	return c
}

func getSmallBuf(n int) []byte {
	c := smallClass(n)
	if b, ok := smallBufs[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, (4<<10)<<c)
}

func putSmallBuf(b []byte) {
	if b == nil {
		return
	}
	c := smallClass(cap(b))
	if cap(b) != (4<<10)<<c {
		return // not one of ours
	}
	smallBufs[c].Put(&b)
}
