package layer

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/fnv"
	"io"
	"maps"
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
// With the plan of the last streamed build (streamPlan) the first walk is skipped: the one walk
// cuts the chunks with the last plan, and the planner, fed as it goes, checks at the end that
// this context plans the same; if not (rare: a large file among the biggest came or went, the
// context grew or shrank by a step of the forced cut), what was built is set aside (it stays
// in the cache) and the context walked twice.
//
// An error of the first walk is errWalkTable (Make walks again with a table, to report it);
// the context changing between the walks is ErrFileChanged. jobs bounds the files hashed at
// once.
func makeStream(ctx context.Context, walk entryWalk, dest string, cache *Cache, stat *StatCache, opts Options, popts PlanOptions, jobs int, res *Result) error {
	b, err := NewBuilder(cache, opts)
	if err != nil {
		return err
	}
	s := &streamBuild{b: b, walk: walk, dest: dest, cache: cache, stat: stat, popts: popts, jobs: jobs, res: res}
	if last := readStreamPlan(stat.file); last != nil {
		err := s.run(ctx, nil, last)
		if !errors.Is(err, errReplan) {
			res.Walks = 1
			return err
		}
		*res = Result{Walks: 1}
		stat = stat.reopen()
		defer stat.Close()
		s = &streamBuild{b: b, walk: walk, dest: dest, cache: cache, stat: stat, popts: popts, jobs: jobs, res: res}
	}
	start := time.Now()
	p, err := planWalk(ctx, walk, dest, popts)
	if err != nil {
		return err
	}
	res.Walk = time.Since(start)
	res.Walks += 2
	return s.run(ctx, p, nil)
}

// errReplan: the one walk with the last plan found a context that plans otherwise.
var errReplan = errors.New("the context plans otherwise than last time")

// streamPlan is what a streamed build planned, kept beside its stat cache for the next one.
type streamPlan struct {
	Cut    chunkCut `json:"cut"`
	Chunks int      `json:"chunks"`
	Own    []string `json:"own"` // the large files with layers of their own, sorted
}

func streamPlanFile(statFile string) string { return statFile + ".plan" }

// readStreamPlan reads the plan kept beside the stat cache (nil if none is usable).
func readStreamPlan(statFile string) *streamPlan {
	if statFile == "" {
		return nil
	}
	b, err := os.ReadFile(streamPlanFile(statFile))
	if err != nil {
		return nil
	}
	var sp streamPlan
	if json.Unmarshal(b, &sp) != nil || sp.Chunks <= 0 || sp.Chunks > maxSourceLayers*2 || sp.Cut.MaxBytes <= 0 {
		return nil
	}
	return &sp
}

// planned is what the planning walk found.
type planned struct {
	own  map[string]bool
	ends []int
	cut  chunkCut
	// want is the digest of the source entries and large files the building walk must find.
	want uint64
	// side are the entries of the dependency, large-file and generated layers, in path order.
	side []Entry
	dirs map[string]Entry
}

// planFeed is what planning keeps of the entries given to it in path order: the planner's
// records, the directories (for the modes of parents) and the side entries.
type planFeed struct {
	pl   *planner
	dirs map[string]Entry
	side []Entry
}

// add plans e and returns its rank. What it keeps has paths of its own: a walk's path would
// keep its whole arena block alive.
func (f *planFeed) add(e *Entry) uint8 {
	if e.Type == TypeDir {
		d := *e
		d.Path = strings.Clone(e.Path)
		f.dirs[d.Path] = d
	}
	r := f.pl.add(e)
	if r != rankSource {
		c := *e
		c.Path = strings.Clone(e.Path)
		f.side = append(f.side, c)
	}
	return r
}

// planWalk is the first of makeStream's two walks.
func planWalk(ctx context.Context, walk entryWalk, dest string, popts PlanOptions) (*planned, error) {
	f := &planFeed{pl: newPlanner(popts), dirs: map[string]Entry{}}
	pl := f.pl
	lk := linker{}
	feed := func(e Entry) {
		lk.mark(&e)
		f.add(&e)
	}
	for _, d := range destAncestors(dest) {
		feed(Entry{Path: d, Type: TypeDir, Mode: 0o755})
	}
	if err := walk(ctx, func(e *Entry) error {
		feed(*e)
		return nil
	}); err != nil {
		return nil, err
	}
	p := &planned{dirs: f.dirs, side: f.side}
	p.own = pl.ownLayers()
	p.ends, p.cut = pl.sourceCuts(p.own)
	// The second walk must find what the first planned: the same source entries, sizes and
	// large files. A digest of them, not their list, is kept to check it.
	p.want = recsDigest(pl.recs)
	// Large files left out of their own layers come back with the source in the second walk.
	p.side = slices.DeleteFunc(p.side, func(e Entry) bool { return pl.rank(&e) == rankLarge && !p.own[e.Path] })
	return p, nil
}

// streamBuild is the walk of makeStream that builds.
type streamBuild struct {
	b     *Builder
	walk  entryWalk
	dest  string
	cache *Cache
	stat  *StatCache
	popts PlanOptions
	jobs  int
	res   *Result
}

// run walks and builds: with p, the plan of a planning walk; with last, the last build's plan
// (errReplan if this context plans otherwise).
func (s *streamBuild) run(ctx context.Context, p *planned, last *streamPlan) error {
	b, stat, res := s.b, s.stat, s.res
	start := time.Now()
	pl := newPlanner(s.popts)
	nothingToReuse := s.cache.empty() && (s.b.opts.Remote == nil || s.b.opts.Remote.Empty())
	// The stat cache is read in path order: the side entries with a cursor of their own.
	sideStat := OpenStatCache(stat.file)
	defer sideStat.Close()

	var (
		own     map[string]bool
		nChunks int
		dirs    map[string]Entry
		side    []Entry
		cut     chunkCut
		ends    []int // planned; or, with last, where this walk cut
	)
	if p != nil {
		own, nChunks, dirs, side, ends, cut = p.own, len(p.ends), p.dirs, p.side, p.ends, p.cut
	} else {
		own = map[string]bool{}
		for _, o := range last.Own {
			own[o] = true
		}
		nChunks, dirs, cut = last.Chunks, map[string]Entry{}, last.Cut
	}
	feed := &planFeed{pl: pl, dirs: dirs}

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
		if errors.Is(err, errReplan) {
			// The layers in the making are finished, not canceled: their uploads have begun,
			// and a canceled write would fail them.
			if gerr := eg.Wait(); gerr != nil {
				return gerr
			}
			return err
		}
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

	// The side groups: before the walk when planned (their large files are written while the
	// walk goes on), after it otherwise (their entries are found on the way).
	var sideLayers []*Layer
	var sideGroups []Group
	buildSide := func() error {
		hashed, err := hashEntries(ectx, side, sideStat, s.jobs*2, nothingToReuse)
		if err != nil {
			return err
		}
		res.Hashed += hashed
		rank := make([]uint8, len(side))
		for i := range side {
			rank[i] = pl.rank(&side[i])
		}
		// side is reordered for its groups; the stat cache is saved from a sorted copy.
		sideGroups = groupsByRank(side, rank, nil, dirs)
		sideLayers = make([]*Layer, len(sideGroups))
		for i := range sideGroups {
			if err := build(sideGroups[i], &sideLayers[i], nil); err != nil {
				return err
			}
		}
		return nil
	}
	if p != nil {
		if err := buildSide(); err != nil {
			return abort(err)
		}
	}

	chunkLayers := make([]*Layer, nChunks)
	done := make([]chan struct{}, nChunks)
	for i := range done {
		done[i] = make(chan struct{})
	}
	walked := make(chan int, 1) // how many chunks the walk made, once it is over
	eg.Go(func() error {
		// Each chunk's records in turn (the chunks are in path order), then its entries go.
		over := walked
		made := nChunks
		for k := 0; k < made; k++ {
			for wait := true; wait; {
				select {
				case <-done[k]:
					wait = false
				case made = <-over:
					over = nil
					if k >= made {
						return nil
					}
				case <-ectx.Done():
					return ectx.Err()
				}
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
		if last != nil {
			return errReplan
		}
		return fmt.Errorf("%w: %s between the walk that planned the layers and the one that built them: run the build again", ErrFileChanged, what)
	}
	lk := linker{}
	var chunk []Entry
	n, srcIdx, k := 0, 0, 0
	seen := recsDigester()
	var hashTime time.Duration
	flush := func() error {
		t := time.Now()
		h, err := hashEntries(ectx, chunk, stat, s.jobs*2, nothingToReuse)
		if err != nil {
			return err
		}
		res.Hashed += h
		hashTime += time.Since(t)
		if err := held.Acquire(ectx, 1); err != nil {
			return err
		}
		g := Group{Name: sourceName(k, nChunks), Class: ClassSource, Entries: chunk, dirs: dirs}
		if last != nil {
			g.dirs = dirsOf(chunk, dirs) // dirs grows as the walk goes on: the build gets its own
		}
		err = build(g, &chunkLayers[k], done[k])
		chunk = nil
		k++
		if last != nil {
			ends = append(ends, srcIdx)
		}
		return err
	}
	next := func(e Entry) error {
		n++
		lk.mark(&e)
		var r uint8
		if last != nil {
			r = feed.add(&e) // as the planning walk would have
		} else {
			r = pl.rank(&e)
		}
		if r == rankDeps || r == rankTop {
			return nil
		}
		var rec cutRec
		if last != nil {
			rec = pl.recs[len(pl.recs)-1] // what add kept of e
		} else {
			rec = cutRec{pathHash(e.Path), e.Size}
			seen.add(rec)
		}
		if r == rankLarge && own[e.Path] {
			return nil
		}
		if k == nChunks {
			return changed(fmt.Sprintf("/%s appeared", e.Path))
		}
		if chunk == nil {
			size := 1024
			if p != nil {
				size = ends[k] - srcIdx
			}
			chunk = make([]Entry, 0, size)
		}
		chunk = append(chunk, e)
		srcIdx++
		if p != nil && srcIdx < ends[k] || last != nil && !cut.after(rec) {
			return nil
		}
		return flush()
	}
	for _, d := range destAncestors(s.dest) {
		if err := next(Entry{Path: d, Type: TypeDir, Mode: 0o755}); err != nil {
			return abort(err)
		}
	}
	werr := s.walk(ectx, func(e *Entry) error { return next(*e) })
	if werr == nil && last != nil && len(chunk) > 0 {
		werr = flush()
	}
	walked <- k
	walkEnd := time.Now()
	switch {
	case errors.Is(werr, errWalkTable):
		werr = changed(werr.Error())
	case werr == nil && p != nil && (seen.sum() != p.want || k != nChunks):
		werr = changed("files appeared, went or changed size")
	case werr == nil && last != nil:
		// What was built follows the last plan: it stands if this context plans the same.
		own2 := pl.ownLayers()
		ends2, cut2 := pl.sourceCuts(own2)
		if !maps.Equal(own, own2) || !slices.Equal(ends, ends2) || k != nChunks {
			werr = errReplan
		}
		cut = cut2
		pl.recs, pl.large = nil, nil
		side = slices.DeleteFunc(feed.side, func(e Entry) bool { return pl.rank(&e) == rankLarge && !own[e.Path] })
		if werr == nil {
			werr = buildSide()
		}
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
	// The chunks go between the large files and the generated files.
	nBefore := len(sideGroups)
	if nBefore > 0 && sideGroups[nBefore-1].Class == ClassTop {
		nBefore--
	}
	res.Layers = append(res.Layers, sideLayers[:nBefore]...)
	res.Layers = append(res.Layers, chunkLayers...)
	res.Layers = append(res.Layers, sideLayers[nBefore:]...)
	if last != nil {
		// One walk, with the layers made on the way: its time is the walk's, what follows it
		// the write's.
		res.Walk, start = walkEnd.Sub(start)-hashTime, walkEnd
	}
	res.Write = time.Since(start) - hashTime
	if last != nil {
		res.Write += hashTime
	}

	// Saved only after the layers were written: a file that changed under us is not remembered.
	saved := slices.Clone(side)
	sortEntries(saved)
	stat.entries = n
	if err := run.save(saved, stat.hits+sideStat.hits); err != nil {
		return fmt.Errorf("save stat cache: %w", err)
	}
	sp := streamPlan{Cut: chunkCut{Mask: cut.Mask, MaxBytes: cut.MaxBytes}, Chunks: nChunks, Own: slices.Sorted(maps.Keys(own))}
	if err := writeStreamPlan(stat, sp); err != nil {
		return fmt.Errorf("save stream plan: %w", err)
	}
	return nil
}

// dirsOf is the entries in dirs of the directories above es (sorted by path).
func dirsOf(es []Entry, dirs map[string]Entry) map[string]Entry {
	out := map[string]Entry{}
	seen := map[string]bool{}
	prev := ""
	for i := range es {
		d := path.Dir(es[i].Path)
		if d == prev {
			continue
		}
		prev = d
		for ; d != "." && !seen[d]; d = path.Dir(d) {
			seen[d] = true
			if de, ok := dirs[d]; ok {
				out[d] = de
			}
		}
	}
	return out
}

// writeStreamPlan keeps sp beside the stat cache.
func writeStreamPlan(stat *StatCache, sp streamPlan) error {
	if stat.file == "" {
		return nil
	}
	b, err := json.Marshal(sp)
	if err != nil {
		return err
	}
	if old, err := os.ReadFile(streamPlanFile(stat.file)); err == nil && bytes.Equal(old, b) {
		return nil
	}
	return writeFileAtomic(streamPlanFile(stat.file), stat.tmpDir, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
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
