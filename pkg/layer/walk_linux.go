package layer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
	"unsafe"

	"github.com/moby/patternmatcher"
	"golang.org/x/sys/unix"
)

// walkDir appends the entries under root to entries. It is most of an unchanged rebuild's
// floor, so it does per entry only what the result needs: one fstatat relative to the open
// directory (not an Lstat resolving the whole path again), one string allocation, and the
// parent's ignore results handed down; and it reads directories concurrently. It finds exactly
// the entries, and returns exactly the error, of walkDirPortable (tests check both): when
// several entries are wrong, the error is the one a sequential walk in name order meets first.
func walkDir(ctx context.Context, entries []Entry, root, dest string, ign *patternmatcher.PatternMatcher, class Class) ([]Entry, error) {
	return walkDirLimit(ctx, entries, root, dest, ign, class, 0)
}

// sortedWalkSupported: this system has sortedWalk, so big contexts are streamed.
const sortedWalkSupported = true

// walkDirLimit is walkDir giving up with errTooMany once it has found more than limit entries
// (0: no limit).
func walkDirLimit(ctx context.Context, entries []Entry, root, dest string, ign *patternmatcher.PatternMatcher, class Class, limit int) ([]Entry, error) {
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", root, unwrapPathErr(err))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	w, matchers, err := openWalker(ctx, realRoot, dest, ign, class)
	if err != nil {
		return nil, dirError(realRoot, err)
	}
	defer unix.Close(w.rootFd)
	workers := len(matchers)
	w.limit = int64(limit)
	w.queue = []dirJob{{}}
	w.pending = 1

	// Long-lived workers sharing a stack of directories, not an errgroup.Go per directory:
	// each worker keeps its buffer and matcher, and a directory waiting under SetLimit to
	// queue its subdirectories could wait forever.
	w.pool = entries[len(entries):cap(entries)]
	ws := make([]*walkWorker, workers)
	for i := range ws {
		ws[i] = &walkWorker{w: w, ign: matchers[i]}
	}
	if target := joinDest(dest, "."); target != "" {
		// The destination directory itself: created like COPY creates it, whatever the mode of
		// the local folder (a temp dir's 0700, a umask's 0775). As in walkDirPortable, a
		// destination of / gives ".".
		ws[0].add(Entry{Path: target, Type: TypeDir, Mode: 0o755, Class: class})
	}
	var wg sync.WaitGroup
	for i := range ws {
		wg.Go(ws[i].run)
	}
	wg.Wait()

	if w.ctxErr != nil {
		return nil, w.ctxErr
	}
	if w.err != nil {
		return nil, w.err
	}
	pooled := min(int(w.used.Load()), len(w.pool))
	chunks := [][]Entry{w.pool[:pooled]}
	n := pooled
	for _, x := range ws {
		chunks = append(chunks, x.chunks...)
		for _, c := range x.chunks {
			n += len(c)
		}
	}
	// Handed over sorted, each entry moved once, straight to its place: finish finds them in
	// order. Copying them all, then moving them again to sort, cost as much as the sort.
	type ref struct {
		path    string
		chunk   int32
		inChunk int32
	}
	refs := make([]ref, 0, n)
	for ci, c := range chunks {
		for i := range c {
			refs = append(refs, ref{c[i].Path, int32(ci), int32(i)})
		}
	}
	slices.SortFunc(refs, func(a, b ref) int { return strings.Compare(a.path, b.path) }) // paths are unique
	if n == pooled {
		// Everything is in the caller's slice already: sorted in place, by following the
		// cycles of the permutation (refs[i] names the entry that belongs at i).
		for i := range refs {
			if refs[i].chunk < 0 || int(refs[i].inChunk) == i {
				continue
			}
			tmp := w.pool[i]
			j := i
			for {
				k := int(refs[j].inChunk)
				refs[j].chunk = -1
				if k == i {
					w.pool[j] = tmp
					break
				}
				w.pool[j] = w.pool[k]
				j = k
			}
		}
		return entries[:len(entries)+n], nil
	}
	// The hint fell short (or there was none): a table of the right size, filled in order.
	out := make([]Entry, len(entries), len(entries)+n+n/8+64)
	copy(out, entries)
	for _, r := range refs {
		out = append(out, chunks[r.chunk][r.inChunk])
	}
	return out, nil
}

// openWalker opens the walk of realRoot (resolved) into dest, and gives the ignore matchers
// of its workers, one each (a single worker when ign cannot be copied). The caller closes
// w.rootFd.
func openWalker(ctx context.Context, realRoot, dest string, ign *patternmatcher.PatternMatcher, class Class) (*walker, []*patternmatcher.PatternMatcher, error) {
	rootFd, err := openDir(unix.AT_FDCWD, realRoot)
	if err != nil {
		return nil, nil, err
	}
	w := &walker{ctx: ctx, root: realRoot, prefix: realRoot + "/", rootFd: rootFd, class: class}
	if realRoot == "/" {
		w.prefix = "/"
	}
	if dest != "" {
		w.destPrefix = dest + "/"
	}
	w.files = dirOrigin(w.prefix, len(w.destPrefix))
	var rootSt unix.Stat_t
	if err := unix.Fstat(rootFd, &rootSt); err != nil {
		unix.Close(rootFd)
		return nil, nil, err
	}
	w.files.dev = uint64(rootSt.Dev)
	w.cond.L = &w.mu

	matchers := make([]*patternmatcher.PatternMatcher, max(4, 2*runtime.GOMAXPROCS(0)))
	if ign != nil {
		w.exclusions = ign.Exclusions()
		for i := range matchers {
			if matchers[i] = copyMatcher(ign); matchers[i] == nil {
				// A matcher compiles its patterns on first use, so it cannot be shared: with no
				// faithful copy, one worker uses the original.
				matchers = []*patternmatcher.PatternMatcher{ign}
				break
			}
		}
	}
	return w, matchers, nil
}

// dirJob is a directory to read: its path relative to the root ("" for the root) and its own
// ignore results, which its children's matching starts from.
type dirJob struct {
	rel  string
	info patternmatcher.MatchInfo
}

// walker is the state the workers share: a stack of directories to read and the error to
// report.
type walker struct {
	ctx        context.Context
	root       string  // the resolved root, as messages and checkSymlink name it
	prefix     string  // root with a trailing slash: a full path is prefix + rel
	destPrefix string  // dest with a trailing slash, or "" for /: an image path is destPrefix + rel
	files      *origin // where the regular files found come from
	rootFd     int
	class      Class
	exclusions bool // "!" patterns: an excluded directory may hold included files

	mu      sync.Mutex
	cond    sync.Cond
	queue   []dirJob
	pending int // directories queued or being read; 0 ends the walk
	err     error
	errAt   string // rel of the entry err is about
	ctxErr  error

	// pool is the spare capacity of the caller's slice: workers claim its slots one by one
	// (used counts the claims) and keep what does not fit in chunks of their own.
	pool []Entry
	used atomic.Int64
	// limit, if not 0, is how many entries the walk may find (count) before it gives up.
	limit, count int64
}

// next hands out a directory to read; false once every directory has been read.
func (w *walker) next() (dirJob, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		for len(w.queue) == 0 && w.pending > 0 {
			w.cond.Wait()
		}
		if len(w.queue) == 0 {
			return dirJob{}, false
		}
		j := w.queue[len(w.queue)-1]
		w.queue = w.queue[:len(w.queue)-1]
		if w.ctxErr == nil && (w.err == nil || walkOrderLess(j.rel, w.errAt)) {
			return j, true
		}
		// Canceled, or everything in this directory comes after the error already found.
		w.finishLocked(nil)
	}
}

// done records that a directory was read and queues its subdirectories.
func (w *walker) done(subdirs []dirJob) {
	w.mu.Lock()
	w.finishLocked(subdirs)
	w.mu.Unlock()
}

func (w *walker) finishLocked(subdirs []dirJob) {
	w.queue = append(w.queue, subdirs...)
	w.pending += len(subdirs) - 1
	if len(subdirs) > 0 || w.pending == 0 {
		w.cond.Broadcast()
	}
}

// fail keeps the error a sequential walk would have stopped at: the first in walk order.
func (w *walker) fail(rel string, err error) {
	w.mu.Lock()
	if w.err == nil || walkOrderLess(rel, w.errAt) {
		w.err, w.errAt = err, rel
	}
	w.mu.Unlock()
}

func (w *walker) canceled(err error) {
	w.mu.Lock()
	if w.ctxErr == nil {
		w.ctxErr = err
	}
	w.mu.Unlock()
}

// walkOrderLess orders relative paths as filepath.WalkDir visits them: a directory, then its
// entries by name, then its next sibling. That is byte order with "/" below every byte a name
// can hold ("a/x" before "a-b").
func walkOrderLess(a, b string) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		ca, cb := a[i], b[i]
		if ca == cb {
			continue
		}
		if ca == '/' {
			return true
		}
		if cb == '/' {
			return false
		}
		return ca < cb
	}
	return len(a) < len(b)
}

// walkWorker reads directories with buffers and a matcher of its own, and keeps the entries
// it finds until the walk ends.
type walkWorker struct {
	w       *walker
	ign     *patternmatcher.PatternMatcher
	buf     []byte
	st      unix.Stat_t
	chunks  [][]Entry // filled in turn, never regrown: an Entry is big to copy
	subdirs []dirJob
	paths   pathArena
	devs    map[uint64]*origin // the origins of files on other devices than the root's
}

func (ww *walkWorker) run() {
	for {
		j, ok := ww.w.next()
		if !ok {
			return
		}
		ww.subdirs = ww.subdirs[:0]
		ww.readDir(j)
		ww.w.done(ww.subdirs)
	}
}

// getdents64 record layout (the same on every Linux architecture).
const (
	direntReclen = int(unsafe.Offsetof(unix.Dirent{}.Reclen))
	direntType   = int(unsafe.Offsetof(unix.Dirent{}.Type))
	direntName   = int(unsafe.Offsetof(unix.Dirent{}.Name))
)

// readDir reads one directory and handles its entries.
func (ww *walkWorker) readDir(j dirJob) {
	w := ww.w
	if err := w.ctx.Err(); err != nil {
		w.canceled(err)
		return
	}
	if ww.buf == nil {
		ww.buf = make([]byte, 32<<10) // only workers that get a directory: small trees need one
	}
	dirPath, fd, relSlash := w.root, w.rootFd, ""
	if j.rel != "" {
		dirPath, relSlash = w.prefix+j.rel, j.rel+"/"
		var err error
		if fd, err = openDir(w.rootFd, j.rel); err != nil {
			w.fail(j.rel, dirError(dirPath, err))
			return
		}
		defer unix.Close(fd)
	}
	for count := 0; ; {
		n, err := ignoringEINTR2(func() (int, error) { return unix.Getdents(fd, ww.buf) })
		if err != nil {
			w.fail(j.rel, dirError(dirPath, err))
			return
		}
		if n <= 0 {
			return
		}
		for b := ww.buf[:n]; len(b) > direntName; {
			reclen := int(binary.NativeEndian.Uint16(b[direntReclen:]))
			if reclen <= direntName || reclen > len(b) {
				break
			}
			typ := b[direntType]
			name := b[direntName:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			b = b[reclen:]
			if string(name) == "." || string(name) == ".." {
				continue
			}
			if count++; count%256 == 0 {
				if err := w.ctx.Err(); err != nil {
					w.canceled(err)
					return
				}
			}
			if !ww.entry(j, fd, dirPath, relSlash, name, typ) {
				return
			}
		}
	}
}

// entry handles one name of directory j (open as fd; relSlash is j.rel + "/", or "" for the
// root), as walkDirPortable's callback does, and reports whether the rest of the directory is
// still worth reading.
func (ww *walkWorker) entry(j dirJob, fd int, dirPath, relSlash string, nameBytes []byte, typ uint8) bool {
	w := ww.w
	// No allocation per entry: the image path is carved out of the worker's arena. The path
	// relative to the root and the name are its tail; the local path is made only for messages
	// and symlinks.
	target := ww.paths.join(w.destPrefix, relSlash, nameBytes)
	rel := target[len(w.destPrefix):]
	name := rel[len(relSlash):]
	local := func() string { return w.prefix + rel }

	isDir := typ == unix.DT_DIR
	statted := false
	if typ == unix.DT_UNKNOWN {
		// The file system does not say the type: os.ReadDir learns it with an lstat, skips a
		// file gone meanwhile, and fails the directory on any other error. So do we.
		if err := ww.lstat(fd, name); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return true
			}
			w.fail(j.rel, dirError(dirPath, err))
			return false
		}
		statted = true
		isDir = ww.st.Mode&unix.S_IFMT == unix.S_IFDIR
	}
	// The parent's name was checked already: checking the new part is checking the whole.
	if !validName(name) {
		w.fail(rel, fmt.Errorf("file name %q is not valid UTF-8 or contains a line break: rename it or exclude it in .dockerignore", local()))
		return true
	}
	var info patternmatcher.MatchInfo
	if ww.ign != nil {
		excluded, mi, err := ww.ign.MatchesUsingParentResults(rel, j.info)
		if err != nil {
			w.fail(rel, fmt.Errorf("match .dockerignore patterns against %s: %w", rel, err))
			return true
		}
		info = mi
		if excluded {
			// Without "!" exceptions nothing below an excluded directory can come back.
			if isDir && w.exclusions {
				ww.subdirs = append(ww.subdirs, dirJob{rel: rel, info: info})
			}
			return true
		}
	}
	if !statted {
		if err := ww.lstat(fd, name); err != nil {
			w.fail(rel, fmt.Errorf("cannot read %s: %w", local(), err))
			return true
		}
	}
	st := &ww.st
	mode := fileModeOf(st.Mode)
	mtime := st.Mtim.Nano()
	switch {
	case mode.IsDir():
		ww.add(Entry{Path: target, Type: TypeDir, Mode: permOf(mode), mtimeNs: mtime, hasMtime: true, Class: w.class})
	case mode.IsRegular():
		ww.add(Entry{
			Path: target, Type: TypeFile, Mode: permOf(mode), Size: st.Size, src: ww.origin(uint64(st.Dev)), mtimeNs: mtime, hasMtime: true, Class: w.class,
			ino: uint64(st.Ino), multiLink: st.Nlink > 1, ctimeNs: st.Ctim.Nano(),
		})
	case mode&fs.ModeSymlink != 0:
		p := local()
		link, err := os.Readlink(p)
		if err != nil {
			w.fail(rel, fmt.Errorf("cannot read symlink %s: %w", p, unwrapPathErr(err)))
			return true
		}
		if err := checkSymlink(w.root, p, rel, link); err != nil {
			w.fail(rel, err)
			return true
		}
		ww.add(Entry{Path: target, Type: TypeSymlink, Mode: 0o777, src: linkOrigin(link), mtimeNs: mtime, hasMtime: true, Class: w.class})
	default:
		w.fail(rel, unsupportedType(local(), mode))
		return true
	}
	// Descend by the directory entry's type, as filepath.WalkDir does.
	if isDir {
		ww.subdirs = append(ww.subdirs, dirJob{rel: rel, info: info})
	}
	return true
}

// validName is utf8.ValidString(s) && !strings.ContainsAny(s, "\x00\n\r") in one pass over
// the common, ASCII case.
func validName(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= utf8.RuneSelf:
			return utf8.ValidString(s[i:]) && !strings.ContainsAny(s[i:], "\x00\n\r")
		case c == 0 || c == '\n' || c == '\r':
			return false
		}
	}
	return true
}

func (ww *walkWorker) add(e Entry) {
	if ww.w.limit > 0 && atomic.AddInt64(&ww.w.count, 1) > ww.w.limit {
		ww.w.fail("", errTooMany) // before anything in walk order: the walk stops here
		return
	}
	if len(ww.w.pool) > 0 {
		if i := ww.w.used.Add(1) - 1; i < int64(len(ww.w.pool)) {
			ww.w.pool[i] = e
			return
		}
	}
	if n := len(ww.chunks); n == 0 || len(ww.chunks[n-1]) == cap(ww.chunks[n-1]) {
		ww.chunks = append(ww.chunks, make([]Entry, 0, 512))
	}
	c := &ww.chunks[len(ww.chunks)-1]
	*c = append(*c, e)
}

// origin is where a file on device dev comes from.
func (ww *walkWorker) origin(dev uint64) *origin {
	if dev == ww.w.files.dev {
		return ww.w.files
	}
	if o := ww.devs[dev]; o != nil {
		return o
	}
	if ww.devs == nil {
		ww.devs = map[uint64]*origin{}
	}
	o := ww.w.files.withDev(dev)
	ww.devs[dev] = o
	return o
}

// pathArena hands out strings carved from big blocks: the image paths of a walk live exactly
// as long as its table, and 100,000 of them as separate objects cost the collector 100,000
// objects to mark on every cycle of the build (and their size classes a fifth more memory).
type pathArena struct {
	block []byte // unused tail of the current block
	// size of a block (0: pathBlock). A streamed walk lets its entries go a chunk at a time,
	// and a block lives as long as any of its paths: smaller blocks pin less.
	size int
}

const pathBlock = 64 << 10

// join returns a+b+c, in memory that is never written again.
func (pa *pathArena) join(a, b string, c []byte) string {
	n := len(a) + len(b) + len(c)
	if n == 0 {
		return ""
	}
	if n > len(pa.block) {
		size := pa.size
		if size == 0 {
			size = pathBlock
		}
		if n > size/8 {
			// A long path gets its own allocation: it would waste the rest of a block.
			return a + b + string(c)
		}
		pa.block = make([]byte, size)
	}
	buf := pa.block[:n:n]
	pa.block = pa.block[n:]
	copy(buf, a)
	copy(buf[len(a):], b)
	copy(buf[len(a)+len(b):], c)
	return unsafe.String(&buf[0], n)
}

func (ww *walkWorker) lstat(dirfd int, name string) error {
	return ignoringEINTR(func() error { return unix.Fstatat(dirfd, name, &ww.st, unix.AT_SYMLINK_NOFOLLOW) })
}

// openDir opens a directory to read. O_NOFOLLOW: a directory swapped for a symlink during the
// walk fails instead of being read wherever the link points.
func openDir(dirfd int, p string) (int, error) {
	return ignoringEINTR2(func() (int, error) {
		return unix.Openat(dirfd, p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	})
}

func dirError(p string, err error) error {
	return fmt.Errorf("cannot read directory %s: %w (fix its permissions or exclude it in .dockerignore)", p, err)
}

// fileModeOf converts st_mode as os.Lstat does.
func fileModeOf(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFBLK:
		mode |= fs.ModeDevice
	case unix.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFDIR:
		mode |= fs.ModeDir
	case unix.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case unix.S_IFLNK:
		mode |= fs.ModeSymlink
	case unix.S_IFSOCK:
		mode |= fs.ModeSocket
	}
	if m&unix.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&unix.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&unix.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

// copyMatcher returns a matcher with the same patterns as pm that shares no state with it, or
// nil if the patterns do not survive the round trip through their text.
func copyMatcher(pm *patternmatcher.PatternMatcher) *patternmatcher.PatternMatcher {
	orig := pm.Patterns()
	texts := make([]string, len(orig))
	for i, p := range orig {
		texts[i] = p.String()
		if p.Exclusion() {
			texts[i] = "!" + texts[i]
		}
	}
	c, err := patternmatcher.New(texts)
	if err != nil || len(c.Patterns()) != len(orig) || c.Exclusions() != pm.Exclusions() {
		return nil
	}
	for i, p := range c.Patterns() {
		if p.String() != orig[i].String() || p.Exclusion() != orig[i].Exclusion() {
			return nil
		}
	}
	return c
}

// Slow file systems (FUSE, NFS) may return EINTR when the Go runtime preempts a goroutine.
func ignoringEINTR(f func() error) error {
	for {
		if err := f(); err != unix.EINTR {
			return err
		}
	}
}

func ignoringEINTR2(f func() (int, error)) (int, error) {
	for {
		if n, err := f(); err != unix.EINTR {
			return n, err
		}
	}
}
