package layer

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// StatCache remembers the content digest of local files by their stat data (size, mtime,
// ctime, inode, device, mode), so an unchanged file is never read again. A file is re-hashed
// only when its stat data changes.
//
// The file is sorted by image path, as the walk's entries are, and it is read as a stream
// merged with them: nothing of it is held but the record under the cursor, so the builder's
// memory does not grow with a second table of every file. What is saved is built from the
// entries themselves once the layers are written.
type StatCache struct {
	file string
	// tmpDir holds the temporary file of Save ("": file's directory).
	tmpDir string
	// opened is when the cache was opened, before any file was read: see racyWindow.
	opened time.Time

	f *os.File
	r *bufio.Reader
	// count is how many records the file holds, read how many of them were read so far.
	count, read int
	// hint is how many entries the walk that saved the file found.
	hint int
	// The record under the cursor (valid while ok).
	path   []byte
	k      statKey
	digest [32]byte
	ok     bool
	fixed  [statRecordFixed]byte // read buffer
	// last is the path of the previous lookup: lookups must come in path order.
	last string
	// hits counts the lookups that matched a record.
	hits int
	// entries is how many entries the walk found, saved as the next walk's size hint.
	entries int
}

// racyWindow is how recently a file may have been modified for its digest not to be
// remembered: it could change again within the filesystem's timestamp granularity without its
// stat data changing (git's "racy" entries). Filesystems with sub-second timestamps need a short
// window; whole-second ones (or coarser) a long one. It is measured from the time the cache was
// opened, before the build read any file.
func racyWindow(mtime time.Time) time.Duration {
	if mtime.Nanosecond() != 0 {
		return 100 * time.Millisecond
	}
	return 2 * time.Second
}

// statCacheMagic starts the file; another format (or a foreign file) reads as an empty cache.
const statCacheMagic = "fairing-statcache/4\n"

// statRecordFixed is the size of a record after its path.
const statRecordFixed = 6*8 + 32

// maxStatPath bounds a stored path (Linux's PATH_MAX is 4096).
const maxStatPath = 1 << 16

// The file is the magic line, its own size (8 bytes, little endian: a torn file is known
// before a record is used), the number of records and the number of entries the walk found
// (uvarints), then per file in path order: the length of the prefix it shares with the
// previous path and the length of the rest (uvarints), the rest, then size, mtime, ctime,
// inode, device, mode (8 bytes each, little endian) and the content digest (contentSum).

// OpenStatCache opens the cache stored in file and reads its header; records are read as
// lookups ask for them. A missing, foreign or torn file gives an empty cache: it is only an
// accelerator, never a source of truth. Close releases the file.
func OpenStatCache(file string) *StatCache {
	c := &StatCache{file: file, opened: time.Now()}
	if file == "" {
		return c
	}
	f, err := os.Open(file)
	if err != nil {
		return c
	}
	fi, err := f.Stat()
	if err == nil {
		err = c.start(f, fi.Size())
	}
	if err != nil {
		f.Close()
		return c
	}
	c.f = f
	return c
}

// start reads the header of a stream of size bytes and moves to its first record.
func (c *StatCache) start(f io.Reader, size int64) error {
	r := bufio.NewReaderSize(f, 64<<10)
	var head [len(statCacheMagic) + 8]byte
	if _, err := io.ReadFull(r, head[:]); err != nil || string(head[:len(statCacheMagic)]) != statCacheMagic {
		return errors.New("not a stat cache")
	}
	if int64(binary.LittleEndian.Uint64(head[len(statCacheMagic):])) != size {
		return errors.New("torn stat cache")
	}
	count, err := binary.ReadUvarint(r)
	// every record takes more than statRecordFixed bytes
	if err != nil || count > uint64(size/statRecordFixed) {
		return errors.New("corrupt stat cache")
	}
	hint, err := binary.ReadUvarint(r)
	if err != nil || hint > 1<<26 {
		return errors.New("corrupt stat cache")
	}
	c.r, c.count, c.hint = r, int(count), int(hint)
	c.next()
	return nil
}

// next moves the cursor to the next record. A record that does not decode, or breaks the
// path order, ends the stream: what follows it is unknown, and Save rewrites the file.
func (c *StatCache) next() {
	c.ok = false
	if c.r == nil || c.read >= c.count {
		return
	}
	shared, err := binary.ReadUvarint(c.r)
	if err != nil || shared > uint64(len(c.path)) {
		c.r = nil
		return
	}
	rest, err := binary.ReadUvarint(c.r)
	if err != nil || rest == 0 || shared+rest > maxStatPath {
		c.r = nil
		return
	}
	// With the longest shared prefix (as Save writes it), the path is above the previous one
	// only if it extends it or its first new byte is higher.
	var was byte
	below := int(shared) < len(c.path)
	if below {
		was = c.path[shared]
	}
	c.path = slices.Grow(c.path[:shared], int(rest))[:shared+rest]
	f := c.fixed[:]
	if _, err := io.ReadFull(c.r, c.path[shared:]); err != nil {
		c.r = nil
		return
	}
	if _, err := io.ReadFull(c.r, f); err != nil {
		c.r = nil
		return
	}
	if below && c.path[shared] <= was {
		c.r = nil
		return
	}
	u := func(i int) uint64 { return binary.LittleEndian.Uint64(f[i*8:]) }
	c.k = statKey{Size: int64(u(0)), MtimeNs: int64(u(1)), CtimeNs: int64(u(2)), Ino: u(3), Dev: u(4), Mode: uint32(u(5))}
	copy(c.digest[:], f[48:])
	c.read++
	c.ok = true
}

// lookup returns the digest remembered for the file at image path p if its stat data are k.
// Paths must come in increasing order (the walk's); one out of order is a miss.
func (c *StatCache) lookup(p string, k statKey) ([32]byte, bool) {
	if c.last != "" && p <= c.last { // paths are never empty
		return [32]byte{}, false
	}
	c.last = p
	for c.ok && string(c.path) < p {
		c.next()
	}
	if !c.ok || string(c.path) != p || c.k != k {
		return [32]byte{}, false
	}
	c.hits++
	d := c.digest
	c.next()
	return d, true
}

// reopen is a new cursor on the same file, for the same build (the same start time).
func (c *StatCache) reopen() *StatCache {
	n := OpenStatCache(c.file)
	n.opened, n.tmpDir = c.opened, c.tmpDir
	return n
}

// Close releases the file. Save closes it too.
func (c *StatCache) Close() {
	if c.f != nil {
		c.f.Close()
		c.f, c.r, c.ok = nil, nil, false
	}
}

// remembers reports whether e's digest is kept for the next build: a local file (or hard
// link) whose digest is known and which was not modified too close to the build's start.
func (c *StatCache) remembers(e *Entry) bool {
	return (e.Type == TypeFile || e.Type == TypeHardlink) && e.local() && e.hashed &&
		c.opened.Sub(e.ModTime()) >= racyWindow(e.ModTime())
}

// Save writes the digests of entries (the build's, once its layers are written: a file that
// changed under it is not remembered) atomically, in path order; files gone since the last
// build are dropped with it. The file is left alone when it would say the same.
func (c *StatCache) Save(entries []Entry) error {
	c.Close()
	if c.file == "" {
		return nil
	}
	n, learned := c.kept(entries)
	return c.write(n, learned, c.hits, func(put putRecord) error {
		for _, i := range pathOrder(entries) {
			if e := &entries[i]; c.remembers(e) {
				if err := put(e.Path, e.statKey(), &e.digest); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// kept counts the entries the cache keeps, and reports whether one of them was not known.
// It needs no order: an unchanged build (the common one) stops there.
func (c *StatCache) kept(entries []Entry) (n int, learned bool) {
	for i := range entries {
		if e := &entries[i]; c.remembers(e) {
			n++
			learned = learned || !e.fromStat
		}
	}
	return n, learned
}

// putRecord writes the next record, in path order.
type putRecord func(p string, k statKey, digest *[32]byte) error

// write replaces the file with n records, which records gives to put in path order, unless
// they are the ones it holds: nothing learned, and as many as hits, every record the lookups
// matched (over every cursor the build read the file with).
func (c *StatCache) write(n int, learned bool, hits int, records func(putRecord) error) error {
	if !learned && n == hits && hits == c.count {
		return nil // the same files with the same digests: the file on disk says it already
	}
	head := append([]byte(statCacheMagic), make([]byte, 8)...)
	head = binary.AppendUvarint(binary.AppendUvarint(head, uint64(n)), uint64(c.entries))
	size := int64(len(head))
	return writeFileAtomicAt(c.file, c.tmpDir, func(w io.Writer) error {
		if _, err := w.Write(head); err != nil {
			return err
		}
		var buf []byte
		prev := ""
		return records(func(p string, k statKey, digest *[32]byte) error {
			buf = appendStatRecord(buf[:0], prev, p, k, digest)
			size += int64(len(buf))
			prev = p
			_, err := w.Write(buf)
			return err
		})
	}, func(f *os.File) error {
		// the file's own size: a torn file is known at open
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], uint64(size))
		_, err := f.WriteAt(b[:], int64(len(statCacheMagic)))
		return err
	})
}

// appendStatRecord appends the record of path p, front-coded against prev.
func appendStatRecord(buf []byte, prev, p string, k statKey, digest *[32]byte) []byte {
	shared := commonPrefix(prev, p)
	buf = binary.AppendUvarint(binary.AppendUvarint(buf, uint64(shared)), uint64(len(p)-shared))
	buf = append(buf, p[shared:]...)
	for _, v := range []uint64{uint64(k.Size), uint64(k.MtimeNs), uint64(k.CtimeNs), k.Ino, k.Dev, uint64(k.Mode)} {
		buf = binary.LittleEndian.AppendUint64(buf, v)
	}
	return append(buf, digest[:]...)
}

func commonPrefix(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// pathOrder returns the indices of entries in path order. Plan leaves them in a few runs
// already in path order (one per class), which are merged rather than sorted.
func pathOrder(entries []Entry) []int32 {
	var runs [][2]int // [start, end)
	start := 0
	for i := 1; i <= len(entries); i++ {
		if i == len(entries) || entries[i].Path <= entries[i-1].Path {
			runs = append(runs, [2]int{start, i})
			start = i
		}
	}
	order := make([]int32, 0, len(entries))
	if len(runs) > 8 {
		for i := range entries {
			order = append(order, int32(i))
		}
		slices.SortFunc(order, func(a, b int32) int { return strings.Compare(entries[a].Path, entries[b].Path) })
		return order
	}
	for len(order) < len(entries) {
		best := -1
		for r := range runs {
			if runs[r][0] < runs[r][1] && (best < 0 || entries[runs[r][0]].Path < entries[runs[best][0]].Path) {
				best = r
			}
		}
		order = append(order, int32(runs[best][0]))
		runs[best][0]++
	}
	return order
}

// HashEntries fills in the content digest of every regular file (and hard link), reading only
// the files whose stat data the cache does not know.
func HashEntries(ctx context.Context, entries []Entry, cache *StatCache, jobs int) (hashed int, err error) {
	return hashEntries(ctx, entries, cache, jobs, false)
}

// hashEntries is HashEntries; with deferFiles, a regular file the stat cache does not know is
// left unhashed, for the tar writer to hash as it reads it (see Builder.Build).
func hashEntries(ctx context.Context, entries []Entry, cache *StatCache, jobs int, deferFiles bool) (hashed int, err error) {
	if cache == nil {
		cache = OpenStatCache("")
	}
	if jobs < 1 {
		jobs = 1
	}
	var mu sync.Mutex
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs)
	for i := range entries {
		e := &entries[i]
		if e.Type != TypeFile && e.Type != TypeHardlink {
			continue
		}
		if !e.local() {
			e.digest = contentSum(e.Content())
			e.hashed = true
			continue
		}
		k := e.statKey()
		if d, ok := cache.lookup(e.Path, k); ok {
			e.digest, e.hashed, e.fromStat = d, true, true
			continue
		}
		if deferFiles && e.Type == TypeFile {
			continue
		}
		g.Go(func() error {
			d, err := hashFile(ctx, e)
			if err != nil {
				return err
			}
			e.digest, e.hashed = d, true
			mu.Lock()
			hashed++
			mu.Unlock()
			return nil
		})
	}
	err = g.Wait()
	return hashed, err
}

func hashFile(ctx context.Context, e *Entry) ([32]byte, error) {
	var d [32]byte
	if err := ctx.Err(); err != nil {
		return d, err
	}
	p := e.SourcePath()
	f, err := openSource(p, e.src.followsLinks())
	if err != nil {
		return d, openError(p, err)
	}
	defer f.Close()
	h := getContentHasher()
	defer putContentHasher(h)
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	// ctxReader also hides File.WriteTo, which would allocate a fresh buffer per file.
	n, err := io.CopyBuffer(h, ctxReader{ctx, f}, *buf)
	if err != nil {
		return d, fmt.Errorf("read %s: %w", p, unwrapPathErr(err))
	}
	if err := checkUnchanged(f, p, e, n); err != nil {
		return d, err
	}
	sumInto(h, &d)
	return d, nil
}

// ErrFileChanged reports a file that changed while the build was reading it.
var ErrFileChanged = errors.New("file changed while it was being read")

// checkUnchanged re-checks a file after reading it, so content that was being written during
// the build is reported rather than baked in half-written.
func checkUnchanged(f *sourceFile, p string, e *Entry, n int64) error {
	size, same, err := f.statSince(e)
	switch {
	case err != nil:
		return fmt.Errorf("stat %s: %w", p, err)
	case n != e.Size || size != e.Size:
		return fmt.Errorf("%s: %w (size %d → %d): rerun the build once it is stable", p, ErrFileChanged, e.Size, size)
	case !same:
		return fmt.Errorf("%s: %w (written to since the build started): rerun the build once it is stable", p, ErrFileChanged)
	}
	return nil
}

// ctxReader ends a read as soon as ctx is done: a multi-gigabyte file must not hold up Ctrl-C
// until it has been read to the end.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func digestHex(d [32]byte) string { return hex.EncodeToString(d[:]) }

// writeFileAtomic writes file through a temporary file in tmpDir (on the same filesystem;
// "" means file's directory) and renames it into place, so readers (and a crash) see the old
// content or the new, never a torn file. A crash leaves at most a temporary in tmpDir.
func writeFileAtomic(file, tmpDir string, write func(io.Writer) error) error {
	return writeFileAtomicAt(file, tmpDir, write, nil)
}

// writeFileAtomicAt is writeFileAtomic with patch, if not nil, called on the file once it is
// written, before it takes file's name (to fill in a header only known at the end).
func writeFileAtomicAt(file, tmpDir string, write func(io.Writer) error, patch func(*os.File) error) (err error) {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	if tmpDir == "" {
		tmpDir = filepath.Dir(file)
	}
	tmp, err := os.CreateTemp(tmpDir, ".tmp-"+filepath.Base(file)+"-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriter(tmp)
	if err = write(bw); err != nil {
		return err
	}
	if err = bw.Flush(); err != nil {
		return err
	}
	if patch != nil {
		if err = patch(tmp); err != nil {
			return err
		}
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}
