package layer

import (
	"fmt"
	"hash/fnv"
	"iter"
	"math/bits"
	"path"
	"slices"
	"sort"
	"strings"
)

// PlanOptions tune how entries are split into layers.
type PlanOptions struct {
	// LargeFile is the size from which a file gets a layer of its own. Default 8 MiB.
	LargeFile int64
	// MaxLargeLayers bounds the layers given to single large files; the smallest of the rest
	// join the source layers. Default 8.
	MaxLargeLayers int
	// ChunkBytes forces a source layer boundary once a layer holds this many bytes, so a
	// one-file change never rebuilds an unbounded layer. Default 32 MiB.
	ChunkBytes int64
	// DepsPaths are image paths (files, or directories with everything below them) that belong
	// with the dependency manifests, e.g. a local package a requirements.txt installs.
	DepsPaths []string
}

func (o PlanOptions) withDefaults() PlanOptions {
	if o.LargeFile <= 0 {
		o.LargeFile = 8 << 20
	}
	if o.MaxLargeLayers <= 0 {
		o.MaxLargeLayers = 8
	}
	if o.ChunkBytes <= 0 {
		o.ChunkBytes = 32 << 20
	}
	return o
}

// maxSourceLayers caps the source partition so an image never grows past runtime layer limits
// (overlayfs stacks about 125 layers; with a base's own, a few large files and the
// dependencies, 48 leaves room).
const maxSourceLayers = 48

// Group is the set of entries that make one layer.
type Group struct {
	// Name describes the group for history and logs: "dependencies", "large: app/w.bin",
	// "source 2/9", "generated".
	Name  string
	Class Class
	// Entries are sorted by path; parent directories are added when the layer is written.
	Entries []Entry
	// dirs holds every directory of the whole plan, for the modes of parents written into
	// this layer.
	dirs map[string]Entry
}

// dependencyNames are the files that describe dependencies: they change rarely and, on the
// BuildKit path, trigger installs, so they sit in the lowest layer. dependencyGlobs are the
// names PREFIX*SUFFIX (path.Match's "requirements*.txt").
var (
	dependencyNames = map[string]bool{
		"pyproject.toml": true, "setup.py": true, "setup.cfg": true,
		"environment.yml": true, "environment.yaml": true, "conda.yml": true, "conda.yaml": true,
		"Pipfile": true, "Pipfile.lock": true, "poetry.lock": true, "uv.lock": true, "pdm.lock": true,
		"package.json": true, "package-lock.json": true, "yarn.lock": true, "go.mod": true, "go.sum": true,
	}
	dependencyGlobs = [][2]string{{"requirements", ".txt"}, {"constraints", ".txt"}}
)

// IsDependencyFile reports whether a file name (any directory) is a dependency manifest. It
// runs for every file on every build: a map lookup and two prefix tests, no pattern matching.
func IsDependencyFile(p string) bool {
	base := path.Base(p)
	if dependencyNames[base] {
		return true
	}
	for _, g := range dependencyGlobs {
		if len(base) >= len(g[0])+len(g[1]) && strings.HasPrefix(base, g[0]) && strings.HasSuffix(base, g[1]) {
			return true
		}
	}
	return false
}

// Plan splits entries into layers by how often they change: dependency manifests lowest,
// large files each in a layer of its own, source partitioned with content-defined boundaries
// over the sorted paths, generated files on top. The order is stable and the number of layers
// bounded. Adding, changing or deleting one source file changes one source layer (or two, when
// the file itself is a boundary).
//
// Plan reorders entries in place (by class, keeping path order within a class) and the groups
// are slices of it: a context of 100,000 files is held once, not copied per class.
func Plan(entries []Entry, opts PlanOptions) []Group {
	opts = opts.withDefaults()
	dirs := map[string]Entry{}
	for i := range entries {
		if entries[i].Type == TypeDir {
			dirs[entries[i].Path] = entries[i]
		}
	}
	pl := newPlanner(opts)
	rank := make([]uint8, len(entries))
	for i := range entries {
		rank[i] = pl.add(&entries[i])
	}
	own := pl.ownLayers()
	for _, c := range pl.large {
		if !own[c.path] {
			rank[c.index] = rankSource
		}
	}
	return groupsByRank(entries, rank, pl.sourceEnds(own), dirs)
}

// groupsByRank moves entries (in path order) to their rank's region, keeping path order within
// a rank, and returns the groups over them in layer order: the dependencies, each large file,
// the source cut at ends, the generated files.
func groupsByRank(entries []Entry, rank []uint8, ends []int, dirs map[string]Entry) []Group {
	var bounds [5]int // entries[bounds[r]:bounds[r+1]] have rank r, in path order
	for _, r := range rank {
		bounds[r+1]++
	}
	for r := 1; r < 5; r++ {
		bounds[r] += bounds[r-1]
	}
	permute(entries, rank, bounds)
	deps, largeEs, source, top := entries[bounds[0]:bounds[1]], entries[bounds[1]:bounds[2]], entries[bounds[2]:bounds[3]], entries[bounds[3]:bounds[4]]

	var groups []Group
	add := func(name string, c Class, es []Entry) {
		if len(es) > 0 {
			// capacity cut: groups share entries' array and must never append into a neighbour
			groups = append(groups, Group{Name: name, Class: c, Entries: es[:len(es):len(es)], dirs: dirs})
		}
	}
	add("dependencies", ClassDeps, deps)
	for i := range largeEs {
		add(largeName(&largeEs[i]), ClassLarge, largeEs[i:i+1])
	}
	start := 0
	for i, end := range ends {
		add(sourceName(i, len(ends)), ClassSource, source[start:end])
		start = end
	}
	add("generated", ClassTop, top)
	return groups
}

func largeName(e *Entry) string { return "large: /" + e.Path }

func sourceName(i, n int) string {
	if n > 1 {
		return fmt.Sprintf("source %d/%d", i+1, n)
	}
	return "source"
}

// The ranks of entries, in layer order: the plan's layers are the dependencies, the large
// files, the source chunks and the generated files.
const (
	rankDeps uint8 = iota
	rankLarge
	rankSource
	rankTop
)

// planner decides the layers of entries given to it one by one in path order, keeping 16
// bytes per source entry rather than the entries: the same decisions whether the entries are
// a table (Plan) or a stream (makeStream), so both give the same layers.
type planner struct {
	opts     PlanOptions
	depPaths []string
	// recs are the source entries and large-file candidates, in path order.
	recs []cutRec
	// large are the candidates for a layer of their own.
	large []largeCand
	n     int
}

// cutRec is what chunking needs of an entry: its path's hash and its size.
type cutRec struct {
	hash uint64
	size int64
}

type largeCand struct {
	index int // among all entries added
	rec   int // in recs
	path  string
	size  int64
}

func newPlanner(opts PlanOptions) *planner {
	opts = opts.withDefaults()
	pl := &planner{opts: opts, depPaths: make([]string, len(opts.DepsPaths))}
	for i, d := range opts.DepsPaths {
		pl.depPaths[i] = cleanImagePath(d)
	}
	return pl
}

// rank is e's rank, large-file candidates given rankLarge.
func (pl *planner) rank(e *Entry) uint8 {
	c := classify(*e, pl.opts)
	for _, d := range pl.depPaths {
		if e.Type != TypeDir && (e.Path == d || strings.HasPrefix(e.Path, d+"/")) && e.Class != ClassTop {
			c = ClassDeps
		}
	}
	switch c {
	case ClassDeps:
		return rankDeps
	case ClassLarge:
		return rankLarge
	case ClassTop:
		return rankTop
	}
	return rankSource
}

// add takes the next entry in path order and returns its rank (see rank).
func (pl *planner) add(e *Entry) uint8 {
	r := pl.rank(e)
	if r == rankLarge {
		pl.large = append(pl.large, largeCand{index: pl.n, rec: len(pl.recs), path: e.Path, size: e.Size})
	}
	if r == rankLarge || r == rankSource {
		pl.recs = append(pl.recs, cutRec{pathHash(e.Path), e.Size})
	}
	pl.n++
	return r
}

// ownLayers is the set of large files that get a layer of their own: the biggest; the rest
// rejoin the source partition.
func (pl *planner) ownLayers() map[string]bool {
	own := make(map[string]bool, min(len(pl.large), pl.opts.MaxLargeLayers))
	large := slices.Clone(pl.large)
	if len(large) > pl.opts.MaxLargeLayers {
		sort.SliceStable(large, func(a, b int) bool {
			if large[a].size != large[b].size {
				return large[a].size > large[b].size
			}
			return large[a].path < large[b].path
		})
		large = large[:pl.opts.MaxLargeLayers]
	}
	for _, c := range large {
		own[c.path] = true
	}
	return own
}

// sourceEnds returns where each source chunk ends, counted in source entries (those of rank
// source, and the large files not in own).
func (pl *planner) sourceEnds(own map[string]bool) []int {
	ends, _ := pl.sourceCuts(own)
	return ends
}

// sourceCuts is sourceEnds with the cut it made them with.
func (pl *planner) sourceCuts(own map[string]bool) ([]int, chunkCut) {
	recs := pl.recs
	if len(own) > 0 {
		recs = make([]cutRec, 0, len(pl.recs)-len(own))
		li := 0
		for i, r := range pl.recs {
			if li < len(pl.large) && pl.large[li].rec == i {
				li++
				if own[pl.large[li-1].path] {
					continue
				}
			}
			recs = append(recs, r)
		}
	}
	ends, c := chunkSource(recs, pl.opts.ChunkBytes)
	return ends, c
}

// chunkCut is where chunkSource cuts: after an entry whose path hash has the mask's bits zero,
// or once a chunk holds maxBytes.
type chunkCut struct {
	Mask     uint64 `json:"mask"`
	MaxBytes int64  `json:"maxBytes"`
	bytes    int64
}

// after reports whether a chunk ends after r, the next entry in path order.
func (c *chunkCut) after(r cutRec) bool {
	c.bytes += r.size
	if r.hash&c.Mask == 0 || c.bytes >= c.MaxBytes {
		c.bytes = 0
		return true
	}
	return false
}

func pathHash(p string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(p))
	return h.Sum64()
}

// permute moves entries to their rank's region, keeping their order within a rank, in place
// (following the cycles of the permutation), so the entries are never copied wholesale.
func permute(entries []Entry, rank []uint8, bounds [5]int) {
	next := bounds
	dest := make([]int32, len(entries))
	for i, r := range rank {
		dest[i] = int32(next[r])
		next[r]++
	}
	for i := range entries {
		for int(dest[i]) != i {
			j := dest[i]
			entries[i], entries[j] = entries[j], entries[i]
			dest[i], dest[j] = dest[j], dest[i]
		}
	}
}

func classify(e Entry, opts PlanOptions) Class {
	if e.Class != ClassAuto {
		return e.Class
	}
	switch {
	case e.Type == TypeFile && IsDependencyFile(e.Path):
		return ClassDeps
	case e.Type == TypeFile && e.Size >= opts.LargeFile:
		return ClassLarge
	}
	return ClassSource
}

// sortEntries sorts by path, keeping equal paths in their order (finish keeps the first of
// two sources for one directory). It sorts indices, then moves each entry once: a stable sort
// of the entries themselves moves big structs around log n times.
func sortEntries(es []Entry) {
	sorted := true
	for i := 1; i < len(es) && sorted; i++ {
		sorted = es[i-1].Path <= es[i].Path
	}
	if sorted {
		return
	}
	idx := make([]int, len(es))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		if c := strings.Compare(es[a].Path, es[b].Path); c != 0 {
			return c
		}
		return a - b
	})
	// es[i] becomes the old es[idx[i]], one cycle of the permutation at a time.
	for i := range idx {
		if idx[i] == i {
			continue
		}
		tmp := es[i]
		j := i
		for {
			k := idx[j]
			idx[j] = j
			if k == i {
				es[j] = tmp
				break
			}
			es[j] = es[k]
			j = k
		}
	}
}

// chunkSource cuts the sorted source entries after every entry whose path hash has its low
// bits zero (content-defined, so an insertion or deletion moves no other boundary), aiming at
// 24–48 chunks, plus a forced cut when a chunk reaches maxBytes (the next natural boundary
// re-synchronises). It returns where each chunk ends.
func chunkSource(es []cutRec, maxBytes int64) ([]int, chunkCut) {
	if len(es) == 0 {
		return nil, chunkCut{}
	}
	// 24 to 48 chunks, so a one-file edit rebuilds a 24th to a 48th of the source (a rebuilt
	// layer is the whole cost of an edit: compressing and uploading it); but no smaller than
	// about 1 MiB each, where a layer's fixed costs (a blob, a descriptor, a request) would
	// outweigh what a smaller rebuild saves.
	var total int64
	for _, e := range es {
		total += e.size
	}
	avg := uint64(64)
	for avg*2 <= uint64(len(es))/24 {
		avg *= 2
	}
	for mean := uint64(total) / uint64(len(es)); mean > 0 && avg*mean < 1<<20 && avg < uint64(len(es)); {
		avg *= 2
	}
	// A forced cut only for outliers: on a big context the natural chunks are bigger than
	// maxBytes, and cutting them all would just move the boundaries after every size change.
	// Rounded down to three significant bits, so that edits do not move it (a streamed build
	// cuts with the last build's, see makeStream).
	maxBytes = max(maxBytes, roundDown3(total*3/maxSourceLayers))
	for {
		c := chunkCut{Mask: avg - 1, MaxBytes: maxBytes}
		ends := cutChunks(es, c)
		// Too many: double the average (the boundaries of the next level are a subset of these,
		// so this stays content-defined).
		if len(ends) <= maxSourceLayers || avg >= uint64(len(es)) {
			return ends, c
		}
		avg *= 2
	}
}

// roundDown3 keeps the three highest bits of x: steps of 12–25 %.
func roundDown3(x int64) int64 {
	if x <= 7 {
		return x
	}
	shift := bits.Len64(uint64(x)) - 3
	return x >> shift << shift
}

func cutChunks(es []cutRec, c chunkCut) []int {
	var ends []int
	for i, e := range es {
		if c.after(e) && i < len(es)-1 {
			ends = append(ends, i+1)
		}
	}
	return append(ends, len(es))
}

// tarEntries is the group's entries with every parent directory in front, sorted: exactly what
// the layer's tar holds.
func (g *Group) tarEntries() []Entry {
	parents, ok := g.parents()
	if !ok {
		return g.tarEntriesSorting()
	}
	out := make([]Entry, 0, len(g.Entries)+len(parents))
	for e := range mergeTar(g.Entries, parents) {
		out = append(out, *e)
	}
	return out
}

// tarSeq is tarEntries as a sequence which, in the common case, copies none of the group's
// entries: the key of every layer is computed from it on every build, and copying each group
// made as much garbage as the walk's whole table.
func (g *Group) tarSeq() iter.Seq[*Entry] {
	parents, ok := g.parents()
	if !ok {
		return entryPtrs(g.tarEntriesSorting())
	}
	return mergeTar(g.Entries, parents)
}

func entryPtrs(es []Entry) iter.Seq[*Entry] {
	return func(yield func(*Entry) bool) {
		for i := range es {
			if !yield(&es[i]) {
				return
			}
		}
	}
}

// mergeTar yields es and parents, both in path order, merged.
func mergeTar(es, parents []Entry) iter.Seq[*Entry] {
	return func(yield func(*Entry) bool) {
		for i, j := 0, 0; i < len(es) || j < len(parents); {
			var e *Entry
			if j == len(parents) || i < len(es) && es[i].Path < parents[j].Path {
				e, i = &es[i], i+1
			} else {
				e, j = &parents[j], j+1
			}
			if !yield(e) {
				return
			}
		}
	}
}

// parents returns, sorted, the parent directories no entry of the group stands for, when the
// group's entries are in path order (as Plan leaves them) and hold no hard link (whose first
// name may live in another layer: see copyForeignLinks); otherwise false. An entry's ancestors
// are looked at once: a directory that is itself an entry brings its own when its turn comes.
func (g *Group) parents() ([]Entry, bool) {
	es := g.Entries
	for i := range es {
		if es[i].Type == TypeHardlink || i > 0 && es[i-1].Path >= es[i].Path {
			return nil, false
		}
	}
	var parents []Entry
	done := map[string]bool{}
	last := ""
	for i := range es {
		d := path.Dir(es[i].Path)
		if d == last {
			continue
		}
		last = d
		for ; d != "." && !done[d]; d = path.Dir(d) {
			done[d] = true
			if _, in := slices.BinarySearchFunc(es, d, func(e Entry, p string) int { return strings.Compare(e.Path, p) }); in {
				break
			}
			parents = append(parents, g.parent(d))
		}
	}
	slices.SortFunc(parents, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
	return parents, true
}

// parent is the entry of directory d: as found in the context, or made with mode 0755.
func (g *Group) parent(d string) Entry {
	if de, ok := g.dirs[d]; ok {
		return de
	}
	return Entry{Path: d, Type: TypeDir, Mode: 0o755}
}

// tarEntriesSorting is tarEntries for entries in any order.
func (g *Group) tarEntriesSorting() []Entry {
	seen := map[string]bool{}
	var out []Entry
	for _, e := range g.Entries {
		seen[e.Path] = true
	}
	for _, e := range g.Entries {
		for d := path.Dir(e.Path); d != "." && !seen[d]; d = path.Dir(d) {
			seen[d] = true
			out = append(out, g.parent(d))
		}
	}
	out = append(out, g.Entries...)
	sortEntries(out)
	copyForeignLinks(out)
	return out
}

// copyForeignLinks turns a hard link whose first name lives in another layer into a copy.
func copyForeignLinks(out []Entry) {
	files := map[string]bool{}
	for i := range out {
		switch out[i].Type {
		case TypeFile:
			files[out[i].Path] = true
		case TypeHardlink:
			if !files[out[i].Linkname()] {
				out[i].Type = TypeFile
				out[i].src = out[i].src.withLink("")
				files[out[i].Path] = true
			}
		}
	}
}

// hashed reports whether every regular file of the group has its content digest.
func (g *Group) hashed() bool {
	for i := range g.Entries {
		if g.Entries[i].Type == TypeFile && !g.Entries[i].hashed {
			return false
		}
	}
	return true
}

// Files counts the regular files, links and directories a group stores.
func (g *Group) Files() int { return len(g.Entries) }

func (g *Group) String() string {
	return fmt.Sprintf("%s (%d entries)", g.Name, len(g.Entries))
}
