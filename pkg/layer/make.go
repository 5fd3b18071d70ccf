package layer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"time"
)

// Result is what Make produced, with the numbers a build report needs.
type Result struct {
	Layers []*Layer
	// Entries is how many files, directories and links the sources hold.
	Entries int
	// Hashed is how many files had to be read because the stat cache did not know them.
	Hashed int
	// Timings of the phases.
	Walk, Hash, Write time.Duration
	// Streamed reports that the context was streamed rather than held in a table (makeStream).
	Streamed bool
	// Walks counts the walks of the context: 1 for a table; for a stream 2 (one to plan, one to
	// build), 1 with the last build's plan, 3 when that plan no longer held.
	Walks int
}

// Make runs the whole pipeline: collect the sources, hash what changed, plan the layers and
// build (or reuse) them. cacheDir holds the layer cache and the stat cache.
func Make(ctx context.Context, sources []Source, cacheDir string, opts Options, plan PlanOptions) (*Result, error) {
	return makeAt(ctx, sources, cacheDir, opts, plan, streamAbove)
}

// makeAt is Make streaming a directory of more than streamAt entries.
func makeAt(ctx context.Context, sources []Source, cacheDir string, opts Options, plan PlanOptions, streamAt int) (*Result, error) {
	cache, err := OpenCache(cacheDir)
	if err != nil {
		return nil, err
	}
	res := &Result{}

	// Opened before the walk: files modified after this are not remembered (see racyWindow).
	stat := OpenStatCache(statCacheFile(cacheDir, sources))
	defer stat.Close()

	jobs := opts.Jobs
	if jobs <= 0 {
		jobs = 8 // hashing waits on the disk as much as the CPU
	}
	stat.tmpDir = cache.tmpDir() // a crash leaves no stray temporary next to it
	// A big directory is streamed, not held in a table (makeStream); whether it is big is known
	// from the last walk, or from this one giving up at streamAbove entries.
	src, dest, streamable := streamSource(sources)
	stream := func() (bool, error) {
		err := makeStream(ctx, sourceWalk(src, dest), dest, cache, stat, opts, plan, jobs, res)
		if errors.Is(err, errWalkTable) {
			*res = Result{}
			return false, nil // walked again with a table, which reports the error exactly
		}
		return true, err
	}
	if streamable && stat.hint >= streamAt {
		if done, err := stream(); done {
			return resOrErr(res, err)
		}
		streamable = false
	}
	limit := 0
	if streamable {
		limit = streamAt
	}
	start := time.Now()
	entries, err := collectLimit(ctx, sources, stat.hint, limit)
	if errors.Is(err, errTooMany) {
		if done, err := stream(); done {
			return resOrErr(res, err)
		}
		start = time.Now()
		entries, err = collect(ctx, sources, stat.hint)
	}
	if err != nil {
		return nil, err
	}
	res.Entries, res.Walks = len(entries), 1
	stat.entries = len(entries)
	res.Walk = time.Since(start)

	start = time.Now()
	// Nothing to reuse (an empty cache, a registry that knows no key): the files the stat
	// cache lacks are hashed by the tar writer as it reads them, not in a pass of their own.
	nothingToReuse := cache.empty() && (opts.Remote == nil || opts.Remote.Empty())
	if res.Hashed, err = hashEntries(ctx, entries, stat, jobs*2, nothingToReuse); err != nil {
		return nil, err
	}
	res.Hash = time.Since(start)

	start = time.Now()
	b, err := NewBuilder(cache, opts)
	if err != nil {
		return nil, err
	}
	if res.Layers, err = b.Build(ctx, Plan(entries, plan)); err != nil {
		return nil, err
	}
	res.Hashed += int(b.hashed.Load())
	res.Write = time.Since(start)
	// Saved only after the layers were written: a file that changed under us is not remembered.
	if err := stat.Save(entries); err != nil {
		return nil, fmt.Errorf("save stat cache: %w", err)
	}
	return res, nil
}

func resOrErr(res *Result, err error) (*Result, error) {
	if err != nil {
		return nil, err
	}
	return res, nil
}

// statCacheFile is one file per set of local roots, so unrelated projects never evict each
// other and a project's file only holds what it saw last time.
func statCacheFile(cacheDir string, sources []Source) string {
	var roots []string
	for _, s := range sources {
		if s.Path != "" {
			if abs, err := filepath.Abs(s.Path); err == nil {
				roots = append(roots, abs)
			}
		}
	}
	sort.Strings(roots)
	h := sha256.New()
	for _, r := range roots {
		h.Write([]byte(r))
		h.Write([]byte{0})
	}
	return filepath.Join(cacheDir, "stat", hex.EncodeToString(h.Sum(nil))[:32]+".gob")
}
