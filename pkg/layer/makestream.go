package layer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/fnv"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"
)

// errWalkTable reports that a streamed walk met something wrong (an unreadable directory, a
// name or a file an image cannot hold): the table walk, which reports exactly the error a
// sequential walk meets first, is to run instead.
var errWalkTable = errors.New("the walk met an error: walking again to report it")

// errTooMany stops a table walk that found more than streamAbove entries: the context is
// streamed instead.
var errTooMany = errors.New("too many entries for a table")

// streamAbove is the number of entries from which Make streams the context (makeStream)
// rather than holding a table of every entry: below it the table costs a few MB and one walk.
const streamAbove = 32 << 10

// streamSource returns the one directory a build is made of, and its destination.
func streamSource(sources []Source) (Source, string, bool) {
	if !sortedWalkSupported || len(sources) != 1 || sources[0].Path == "" {
		return Source{}, "", false
	}
	dest, err := destPath(sources[0].Dest)
	if err != nil {
		return Source{}, "", false
	}
	if fi, err := os.Stat(sources[0].Path); err != nil || !fi.IsDir() {
		return Source{}, "", false
	}
	return sources[0], dest, true
}

// entryWalk calls fn for every entry of a directory in path order (sortedWalk): makeStream
// runs it twice.
type entryWalk func(ctx context.Context, fn func(*Entry) error) error

// sourceWalk is the sorted walk of a directory source into dest.
func sourceWalk(src Source, dest string) entryWalk {
	return func(ctx context.Context, fn func(*Entry) error) error {
		return sortedWalk(ctx, src.Path, dest, src.Ignore, src.Class, 0, fn)
	}
}

// destAncestors are the directories above dest, shallowest first: the parents the table path
// adds (finish), with mode 0755.
func destAncestors(dest string) []string {
	var out []string
	for d := path.Dir(dest); d != "." && d != "/" && dest != ""; d = path.Dir(d) {
		out = append(out, d)
	}
	slices.Reverse(out)
	return out
}

// makeStream is Make for one big directory without a table of its entries. The context is
// walked twice in path order (sortedWalk): the first walk feeds the planner, which keeps 16
// bytes per source entry, and keeps the few entries that get layers of their own
// (dependencies, large files, generated); the second cuts the source into the planned chunks
// as it goes, and each chunk's entries are let go once its layer is made and its stat cache
// records are written. The layers are those Plan gives for the same entries.
//
// An error of the first walk is errWalkTable (Make walks again with a table, to report it);
// the context changing between the walks is ErrFileChanged. jobs bounds the files hashed at
// once.
func makeStream(ctx context.Context, walk entryWalk, dest string, cache *Cache, stat *StatCache, opts Options, popts PlanOptions, jobs int, res *Result) error {
	b, err := NewBuilder(cache, opts)
	if err != nil {
		return err
	}
	start := time.Now()
	pl := newPlanner(popts)
	dirs := map[string]Entry{}
	var side []Entry // entries not of the source partition, in path order
	lk := linker{}
	feed := func(e Entry) {
		lk.mark(&e)
		if e.Type == TypeDir {
			e.Path = strings.Clone(e.Path)
			dirs[e.Path] = e
		}
		if pl.add(&e) != rankSource {
			e.Path = strings.Clone(e.Path)
			side = append(side, e)
		}
	}
	for _, d := range destAncestors(dest) {
		feed(Entry{Path: d, Type: TypeDir, Mode: 0o755})
	}
	if err := walk(ctx, func(e *Entry) error {
		feed(*e)
		return nil
	}); err != nil {
		return err
	}
	res.Walk = time.Since(start)
	start = time.Now()

	own := pl.ownLayers()
	ends := pl.sourceEnds(own)
	// The second walk must find what the first planned: the same source entries, sizes and
	// large files. A digest of them, not their list, is kept to check it.
	want := recsDigest(pl.recs)
	pl.recs, pl.large = nil, nil
	// Large files left out of their own layers come back with the source in the second walk.
	side = slices.DeleteFunc(side, func(e Entry) bool { return pl.rank(&e) == rankLarge && !own[e.Path] })
	nothingToReuse := cache.empty() && (opts.Remote == nil || opts.Remote.Empty())
	// The stat cache is read in path order: the side entries with a cursor of their own.
	sideStat := OpenStatCache(stat.file)
	defer sideStat.Close()
	hashed, err := hashEntries(ctx, side, sideStat, jobs*2, nothingToReuse)
	if err != nil {
		return err
	}
	res.Hashed += hashed
	// The side groups, in layer order, are slices of side reordered by rank.
	bySide := slices.Clone(side)
	rank := make([]uint8, len(side))
	var bounds [5]int
	for i := range side {
		rank[i] = pl.rank(&side[i])
		bounds[rank[i]+1]++
	}
	for r := 1; r < 5; r++ {
		bounds[r] += bounds[r-1]
	}
	permute(bySide, rank, bounds)
	side = nil
	var groups []Group
	if bounds[0] < bounds[1] {
		groups = append(groups, Group{Name: "dependencies", Class: ClassDeps, Entries: bySide[bounds[0]:bounds[1]:bounds[1]], dirs: dirs})
	}
	for i := bounds[1]; i < bounds[2]; i++ {
		groups = append(groups, Group{Name: largeName(&bySide[i]), Class: ClassLarge, Entries: bySide[i : i+1 : i+1], dirs: dirs})
	}
	nBefore := len(groups)
	var top *Group
	if bounds[3] < bounds[4] {
		top = &Group{Name: "generated", Class: ClassTop, Entries: bySide[bounds[3]:bounds[4]:bounds[4]], dirs: dirs}
	}

	run, err := stat.newRun()
	if err != nil {
		return fmt.Errorf("save stat cache: %w", err)
	}
	defer run.discard()

	// One layer is made at a time, and no other chunk is held meanwhile: the compressor
	// already runs on every core, and a second layer in the making (its compressor, buffers,
	// entries and tar listing) was a fifth of a large cold build's peak RSS (51 against 44 MB
	// on the large workload), for 0–6 % of its time (6–17 % when a tenth of the files changed,
	// where the second writer overlapped the first one's reading and hashing of files).
	building := semaphore.NewWeighted(1)
	held := semaphore.NewWeighted(1)
	// abort ends the builds and the records' writer when the walk fails: they would wait for
	// chunks that never come.
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	eg, ectx := errgroup.WithContext(sctx)
	abort := func(err error) error {
		stop()
		if gerr := eg.Wait(); gerr != nil && errors.Is(err, context.Canceled) && !errors.Is(gerr, context.Canceled) {
			return gerr // the walk or a wait was canceled because a build failed: its error
		}
		return err
	}
	build := func(g Group, out **Layer, done chan struct{}) error {
		if err := building.Acquire(ectx, 1); err != nil {
			return err
		}
		eg.Go(func() error {
			defer building.Release(1)
			ls, err := b.Build(ectx, []Group{g})
			if err != nil {
				return err
			}
			*out = ls[0]
			if done != nil {
				close(done)
			}
			return nil
		})
		return nil
	}
	sideLayers := make([]*Layer, len(groups)+1)
	if top != nil {
		groups = append(groups, *top)
	}
	for i := range groups {
		if err := build(groups[i], &sideLayers[i], nil); err != nil {
			return abort(err)
		}
	}
	chunkLayers := make([]*Layer, len(ends))
	done := make([]chan struct{}, len(ends))
	for i := range done {
		done[i] = make(chan struct{})
	}
	eg.Go(func() error {
		// Each chunk's records in turn (the chunks are in path order), then its entries go.
		for k := range ends {
			select {
			case <-done[k]:
			case <-ectx.Done():
				return ectx.Err()
			}
			l := chunkLayers[k]
			for i := range l.group.Entries {
				if err := run.add(&l.group.Entries[i]); err != nil {
					return err
				}
			}
			l.release()
			held.Release(1)
		}
		return nil
	})

	changed := func(what string) error {
		return fmt.Errorf("%w: %s between the walk that planned the layers and the one that built them: run the build again", ErrFileChanged, what)
	}
	lk = linker{}
	var chunk []Entry
	n, srcIdx, k := 0, 0, 0
	seen := recsDigester()
	var hashTime time.Duration
	next := func(e Entry) error {
		n++
		lk.mark(&e)
		r := pl.rank(&e)
		if r == rankDeps || r == rankTop {
			return nil
		}
		seen.add(cutRec{pathHash(e.Path), e.Size})
		if r == rankLarge && own[e.Path] {
			return nil
		}
		if k == len(ends) {
			return changed(fmt.Sprintf("/%s appeared", e.Path))
		}
		if chunk == nil {
			chunk = make([]Entry, 0, ends[k]-srcIdx)
		}
		chunk = append(chunk, e)
		if srcIdx++; srcIdx < ends[k] {
			return nil
		}
		t := time.Now()
		h, err := hashEntries(ectx, chunk, stat, jobs*2, nothingToReuse)
		if err != nil {
			return err
		}
		res.Hashed += h
		hashTime += time.Since(t)
		if err := held.Acquire(ectx, 1); err != nil {
			return err
		}
		err = build(Group{Name: sourceName(k, len(ends)), Class: ClassSource, Entries: chunk, dirs: dirs}, &chunkLayers[k], done[k])
		chunk = nil
		k++
		return err
	}
	for _, d := range destAncestors(dest) {
		if err := next(Entry{Path: d, Type: TypeDir, Mode: 0o755}); err != nil {
			return abort(err)
		}
	}
	werr := walk(ectx, func(e *Entry) error { return next(*e) })
	switch {
	case errors.Is(werr, errWalkTable):
		werr = changed(werr.Error())
	case werr == nil && (seen.sum() != want || k != len(ends)):
		werr = changed("files appeared, went or changed size")
	}
	if werr != nil {
		return abort(werr)
	}
	if err := eg.Wait(); err != nil {
		return err
	}
	res.Entries, res.Streamed = n, true
	res.Hash += hashTime
	res.Hashed += int(b.hashed.Load())
	res.Layers = append(res.Layers, sideLayers[:nBefore]...)
	res.Layers = append(res.Layers, chunkLayers...)
	if top != nil {
		res.Layers = append(res.Layers, sideLayers[nBefore])
	}
	res.Write = time.Since(start) - hashTime

	// Saved only after the layers were written: a file that changed under us is not remembered.
	saved := slices.Clone(bySide)
	sortEntries(saved)
	stat.entries = n
	if err := run.save(saved, stat.hits+sideStat.hits); err != nil {
		return fmt.Errorf("save stat cache: %w", err)
	}
	return nil
}

// recsDigester sums a sequence of cutRecs.
type recsSum struct{ h hash.Hash64 }

func recsDigester() recsSum { return recsSum{fnv.New64a()} }

func (s recsSum) add(r cutRec) {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:], r.hash)
	binary.LittleEndian.PutUint64(b[8:], uint64(r.size))
	s.h.Write(b[:])
}

func (s recsSum) sum() uint64 { return s.h.Sum64() }

func recsDigest(recs []cutRec) uint64 {
	s := recsDigester()
	for _, r := range recs {
		s.add(r)
	}
	return s.sum()
}
