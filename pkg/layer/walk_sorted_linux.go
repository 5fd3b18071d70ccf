package layer

import (
	"container/heap"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/moby/patternmatcher"
	"golang.org/x/sys/unix"
)

// sortedWalkBudget is how many entries a sorted walk reads ahead of the one it hands over:
// enough for its readers never to wait on a directory of ordinary size, a few hundred KB. A
// directory is read whole, however many entries it holds (they are sorted before any is
// handed over).
const sortedWalkBudget = 2 << 10

// sortedWalk calls fn for every entry under root, as walkDir finds them, in path order,
// holding only a bounded window of them: directories are read ahead, several at a time, in
// the order their entries are handed over. The entry given to fn is valid only during the
// call. An error of the walk itself gives errWalkTable (wrapped); fn's error is returned as
// it is. budget bounds the entries read ahead (0: sortedWalkBudget).
func sortedWalk(ctx context.Context, root, dest string, ign *patternmatcher.PatternMatcher, class Class, budget int, fn func(*Entry) error) error {
	if budget <= 0 {
		budget = sortedWalkBudget
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return fmt.Errorf("%w: %v", errWalkTable, err)
	}
	w, matchers, err := openWalker(ctx, realRoot, dest, ign, class)
	if err != nil {
		return fmt.Errorf("%w: %v", errWalkTable, err)
	}
	defer unix.Close(w.rootFd)
	s := &sorted{w: w, results: map[string]*listing{}, budget: budget}
	s.cond.L = &s.mu
	if target := joinDest(dest, "."); target != "" {
		// The destination directory itself, as walkDir makes it ("." for /, which sorts
		// among the root's names).
		s.rootEntry = &Entry{Path: target, Type: TypeDir, Mode: 0o755, Class: class}
	}
	rootKey := w.destPrefix
	heap.Push(&s.pending, pendingDir{key: rootKey})
	var wg sync.WaitGroup
	for _, m := range matchers {
		ww := &walkWorker{w: w, ign: m, paths: pathArena{size: 8 << 10}}
		wg.Go(func() { s.read(ww) })
	}
	defer func() {
		s.mu.Lock()
		s.stop = true
		s.cond.Broadcast()
		s.mu.Unlock()
		wg.Wait()
	}()
	return s.emit(rootKey, fn)
}

// sorted is the state of a sorted walk: the directories waiting to be read, nearest first, and
// the listings read but not handed over yet.
type sorted struct {
	w       *walker
	mu      sync.Mutex
	cond    sync.Cond
	pending pendingHeap
	results map[string]*listing
	// buffered counts the entries in results; readers stop at budget, except for the
	// directory the consumer waits for.
	buffered, budget int
	waiting          string
	failed, stop     bool
	// rootEntry is the destination directory, handed over with the root's listing.
	rootEntry *Entry
}

// listing is one directory's entries, in path order, and its subdirectories to descend into.
type listing struct {
	entries []Entry
	subdirs []pendingDir
}

// pendingDir is a directory to read; key is its entries' common prefix (image path and "/"),
// which is where its entries come in path order.
type pendingDir struct {
	key string
	job dirJob
}

type pendingHeap []pendingDir

func (h pendingHeap) Len() int           { return len(h) }
func (h pendingHeap) Less(i, j int) bool { return h[i].key < h[j].key }
func (h pendingHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *pendingHeap) Push(x any)        { *h = append(*h, x.(pendingDir)) }
func (h *pendingHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// read is a reader's loop: take the nearest directory, read it, file its listing.
func (s *sorted) read(ww *walkWorker) {
	for {
		s.mu.Lock()
		for !s.stop && !s.failed && !(len(s.pending) > 0 && (s.buffered < s.budget || s.pending[0].key == s.waiting)) {
			s.cond.Wait()
		}
		if s.stop || s.failed {
			s.mu.Unlock()
			return
		}
		d := heap.Pop(&s.pending).(pendingDir)
		s.mu.Unlock()

		ww.subdirs = ww.subdirs[:0]
		ww.readDir(d.job)
		l := &listing{}
		n := 0
		for _, c := range ww.chunks {
			n += len(c)
		}
		l.entries = make([]Entry, 0, n)
		for i, c := range ww.chunks {
			l.entries = append(l.entries, c...)
			clear(c)
			ww.chunks[i] = c[:0]
		}
		ww.chunks = ww.chunks[:min(len(ww.chunks), 1)]
		if d.job.rel == "" && s.rootEntry != nil {
			l.entries = append(l.entries, *s.rootEntry)
		}
		slices.SortFunc(l.entries, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
		for _, j := range ww.subdirs {
			l.subdirs = append(l.subdirs, pendingDir{key: s.w.destPrefix + j.rel + "/", job: j})
		}
		slices.SortFunc(l.subdirs, func(a, b pendingDir) int { return strings.Compare(a.key, b.key) })

		s.w.mu.Lock()
		bad := s.w.err != nil || s.w.ctxErr != nil
		s.w.mu.Unlock()
		s.mu.Lock()
		if bad {
			s.failed = true
		} else {
			s.results[d.key] = l
			s.buffered += len(l.entries)
			for _, sd := range l.subdirs {
				heap.Push(&s.pending, sd)
			}
		}
		s.cond.Broadcast()
		s.mu.Unlock()
	}
}

// take waits for the listing of the directory at key and hands it over.
func (s *sorted) take(key string) (*listing, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.results[key] == nil && !s.failed {
		if s.waiting != key {
			s.waiting = key
			s.cond.Broadcast()
		}
		s.cond.Wait()
	}
	if s.failed {
		s.w.mu.Lock()
		defer s.w.mu.Unlock()
		if s.w.ctxErr != nil {
			return nil, s.w.ctxErr
		}
		return nil, fmt.Errorf("%w: %v", errWalkTable, s.w.err)
	}
	l := s.results[key]
	delete(s.results, key)
	if s.buffered >= s.budget {
		s.cond.Broadcast()
	}
	s.buffered -= len(l.entries)
	return l, nil
}

// emit hands over the directory at key and everything below it, in path order: its entries,
// each subdirectory's at the place of its key.
func (s *sorted) emit(key string, fn func(*Entry) error) error {
	l, err := s.take(key)
	if err != nil {
		return err
	}
	es, subs := l.entries, l.subdirs
	for i, j := 0, 0; i < len(es) || j < len(subs); {
		if j == len(subs) || i < len(es) && es[i].Path < subs[j].key {
			if err := fn(&es[i]); err != nil {
				return err
			}
			es[i] = Entry{} // what fn kept is its own: the listing pins nothing
			i++
			continue
		}
		if err := s.emit(subs[j].key, fn); err != nil {
			return err
		}
		j++
	}
	return nil
}
