package layer

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// StatCache remembers the content digest of local files by their stat data (size, mtime,
// ctime, inode, device, mode), so an unchanged file is never read again. A file is re-hashed
// only when its stat data changes.
type StatCache struct {
	file string
	// tmpDir holds the temporary file of Save ("": file's directory).
	tmpDir string

	mu sync.Mutex
	// One table for what was loaded and what this build saw (on a context of 100,000 files a
	// second one would cost tens of megabytes). The map holds indices into recs, so a lookup
	// marks its record seen in place, and is keyed by a hash of the path, so the loaded paths
	// are not kept: a record takes the walk's string once the build sees its file, and only
	// those are saved. Two paths with the same hash cannot give a wrong digest: the stat data
	// compared on lookup include the inode and device, the file's identity.
	seed maphash.Seed
	m    map[uint64]int32
	recs []statRecord
	seen int
	// changed is set when a digest was learned: only then is the file rewritten.
	changed bool
	// entries is how many entries the walk found, saved as the next walk's size hint.
	entries int
}

type statRecord struct {
	path   string // set once seen
	K      statKey
	Digest [32]byte
	seen   bool
}

// racyWindow is how recently a file may have been modified for its digest not to be
// remembered: it could change again within the filesystem's timestamp granularity without its
// stat data changing (git's "racy" entries). Filesystems with sub-second timestamps need a short
// window; whole-second ones (or coarser) a long one.
func racyWindow(mtime time.Time) time.Duration {
	if mtime.Nanosecond() != 0 {
		return 100 * time.Millisecond
	}
	return 2 * time.Second
}

// statCacheMagic starts the file; another format (or a torn file) reads as an empty cache.
const statCacheMagic = "fairing-statcache/2\n"

// statRecordFixed is the size of a record after its path.
const statRecordFixed = 6*8 + 32

// OpenStatCache loads the cache stored in file. A missing or unreadable file gives an empty
// cache: it is only an accelerator, never a source of truth.
func OpenStatCache(file string) *StatCache {
	c := &StatCache{file: file, seed: maphash.MakeSeed(), m: map[uint64]int32{}}
	if file == "" {
		return c
	}
	f, err := os.Open(file)
	if err != nil {
		return c
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return c
	}
	if m, recs, err := readStatCache(bufio.NewReaderSize(f, 64<<10), c.seed, fi.Size()); err == nil {
		c.m, c.recs = m, recs
	}
	return c
}

// statCacheHint reads how many entries the walk that saved file found (0 if unknown): the next
// walk sizes its table with it instead of collecting in pieces and copying them all at the end.
func statCacheHint(file string) int {
	f, err := os.Open(file)
	if err != nil {
		return 0
	}
	defer f.Close()
	var b [len(statCacheMagic) + 2*binary.MaxVarintLen64]byte
	n, _ := io.ReadFull(f, b[:])
	if n < len(statCacheMagic) || string(b[:len(statCacheMagic)]) != statCacheMagic {
		return 0
	}
	rest := b[len(statCacheMagic):n]
	_, w := binary.Uvarint(rest)
	if w <= 0 {
		return 0
	}
	entries, w := binary.Uvarint(rest[w:])
	if w <= 0 || entries > 1<<26 {
		return 0
	}
	return int(entries)
}

// The file is the magic line, the number of records and the number of entries the walk found
// (uvarints), then per file: uvarint path length, path, size, mtime, ctime, inode, device, mode
// (8 bytes each, little endian), sha256; then an end marker (length 0). It is read every
// build, as a stream: the count sizes the table exactly, and the paths are hashed, not kept.
func readStatCache(r *bufio.Reader, seed maphash.Seed, size int64) (map[uint64]int32, []statRecord, error) {
	corrupt := errors.New("corrupt stat cache")
	magic := make([]byte, len(statCacheMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != statCacheMagic {
		return nil, nil, errors.New("not a stat cache")
	}
	count, err := binary.ReadUvarint(r)
	// every record takes more than statRecordFixed bytes: a count the size cannot hold is a
	// corrupt file, not an allocation to make
	if err != nil || count > uint64(size/statRecordFixed) || count >= math.MaxInt32 {
		return nil, nil, corrupt
	}
	if _, err := binary.ReadUvarint(r); err != nil { // the entries hint: see statCacheHint
		return nil, nil, corrupt
	}
	recs := make([]statRecord, 0, count)
	m := make(map[uint64]int32, count)
	var buf [1 << 16]byte
	for {
		n, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, nil, corrupt
		}
		if n == 0 {
			break
		}
		if n > 1<<16 || uint64(len(recs)) >= count {
			return nil, nil, corrupt
		}
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return nil, nil, corrupt
		}
		h := maphash.Bytes(seed, buf[:n])
		var f [statRecordFixed]byte
		if _, err := io.ReadFull(r, f[:]); err != nil {
			return nil, nil, corrupt
		}
		u := func(i int) uint64 { return binary.LittleEndian.Uint64(f[i*8:]) }
		rec := statRecord{K: statKey{Size: int64(u(0)), MtimeNs: int64(u(1)), CtimeNs: int64(u(2)), Ino: u(3), Dev: u(4), Mode: uint32(u(5))}}
		copy(rec.Digest[:], f[48:])
		if i, dup := m[h]; dup {
			recs[i] = rec
			continue
		}
		m[h] = int32(len(recs))
		recs = append(recs, rec)
	}
	return m, recs, nil
}

func (c *StatCache) lookup(p string, k statKey) ([32]byte, bool) {
	h := maphash.String(c.seed, p)
	c.mu.Lock()
	defer c.mu.Unlock()
	i, ok := c.m[h]
	if !ok {
		return [32]byte{}, false
	}
	r := &c.recs[i]
	if r.K != k {
		return [32]byte{}, false
	}
	if !r.seen {
		r.seen, r.path = true, p
		c.seen++
	}
	return r.Digest, true
}

func (c *StatCache) remember(p string, k statKey, d [32]byte, mtime time.Time) {
	if time.Since(mtime) < racyWindow(mtime) {
		return
	}
	h := maphash.String(c.seed, p)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.changed = true
	if i, ok := c.m[h]; ok {
		if !c.recs[i].seen {
			c.seen++
		}
		c.recs[i] = statRecord{path: p, K: k, Digest: d, seen: true}
		return
	}
	c.m[h] = int32(len(c.recs))
	c.recs = append(c.recs, statRecord{path: p, K: k, Digest: d, seen: true})
	c.seen++
}

// Save writes what this build saw (files gone since are dropped) atomically.
func (c *StatCache) Save() error {
	if c.file == "" {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.changed && c.seen == len(c.m) {
		return nil // the same files with the same digests: the file on disk says it already
	}
	return writeFileAtomic(c.file, c.tmpDir, func(w io.Writer) error {
		if _, err := io.WriteString(w, statCacheMagic); err != nil {
			return err
		}
		seen := 0
		for i := range c.recs {
			if c.recs[i].seen {
				seen++
			}
		}
		var buf [binary.MaxVarintLen64 + statRecordFixed]byte
		if _, err := w.Write(binary.AppendUvarint(binary.AppendUvarint(buf[:0], uint64(seen)), uint64(c.entries))); err != nil {
			return err
		}
		for i := range c.recs {
			r, p := &c.recs[i], c.recs[i].path
			if !r.seen {
				continue
			}
			n := binary.PutUvarint(buf[:], uint64(len(p)))
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			if _, err := io.WriteString(w, p); err != nil {
				return err
			}
			for i, v := range []uint64{uint64(r.K.Size), uint64(r.K.MtimeNs), uint64(r.K.CtimeNs), r.K.Ino, r.K.Dev, uint64(r.K.Mode)} {
				binary.LittleEndian.PutUint64(buf[i*8:], v)
			}
			copy(buf[48:], r.Digest[:])
			if _, err := w.Write(buf[:statRecordFixed]); err != nil {
				return err
			}
		}
		_, err := w.Write([]byte{0})
		return err
	})
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
		if e.Source == "" {
			e.digest = sha256.Sum256(e.Data)
			e.hashed = true
			continue
		}
		k := e.statKey()
		if d, ok := cache.lookup(e.Source, k); ok {
			e.digest, e.hashed = d, true
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
			cache.remember(e.Source, k, d, e.ModTime)
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
	f, err := os.Open(e.Source)
	if err != nil {
		return d, fmt.Errorf("cannot read %s: %w (fix its permissions or exclude it in .dockerignore)", e.Source, unwrapPathErr(err))
	}
	defer f.Close()
	h := sha256.New()
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	// ctxReader also hides File.WriteTo, which would allocate a fresh buffer per file.
	n, err := io.CopyBuffer(h, ctxReader{ctx, f}, *buf)
	if err != nil {
		return d, fmt.Errorf("read %s: %w", e.Source, unwrapPathErr(err))
	}
	if err := checkUnchanged(f, e, n); err != nil {
		return d, err
	}
	copy(d[:], h.Sum(nil))
	return d, nil
}

// ErrFileChanged reports a file that changed while the build was reading it.
var ErrFileChanged = errors.New("file changed while it was being read")

// checkUnchanged re-checks a file after reading it, so content that was being written during
// the build is reported rather than baked in half-written.
func checkUnchanged(f *os.File, e *Entry, n int64) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", e.Source, err)
	}
	if n != e.Size || fi.Size() != e.Size || !fi.ModTime().Equal(e.ModTime) {
		return fmt.Errorf("%s: %w (size %d → %d): rerun the build once it is stable", e.Source, ErrFileChanged, e.Size, fi.Size())
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
func writeFileAtomic(file, tmpDir string, write func(io.Writer) error) (err error) {
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
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}
