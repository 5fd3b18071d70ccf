package layer

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"iter"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
)

// Options are the layer writer's settings. All of them are part of every layer key.
type Options struct {
	Compression Compression
	// Level is the compression level; 0 means the compression's default.
	Level int
	Tar   TarOptions
	// Jobs bounds how many layers are written at once (each compressor also uses several
	// goroutines). Default GOMAXPROCS.
	Jobs int
	// Prioritize lists image paths an eStargz layer puts first (before the prefetch landmark),
	// in this order: what the container reads first at start-up.
	Prioritize []string
	// OnWritten, if set, is called for each layer as soon as it has been written (not for
	// cache hits), e.g. to start uploading it while the next layers are compressed. Not part
	// of any key.
	OnWritten func(*Layer)
	// OnStream, if set, receives each layer that is new content (its key in neither the cache
	// nor a Remote that knows keys) as it starts being written: a v1.Layer whose Compressed
	// follows the blob as it grows and whose Digest and Size are stream.ErrNotComputed until
	// it is complete, so its upload runs alongside its compression. OnWritten is not called
	// for it. Not part of any key.
	OnStream func(v1.Layer)
	// Remote, if set, is asked for a layer key the cache does not hold, before the layer is
	// written: a registry that already has a layer with this key spares a machine with an
	// empty cache all compression. Not part of any key.
	Remote Remote
}

// Remote finds layers a registry already has by their key (see AnnotationKey).
type Remote interface {
	// Layer is the registry's layer with this key, nil if it knows none.
	Layer(key string) v1.Layer
	// Empty reports that it knows no key at all: with an empty cache too, no layer can be
	// reused, so Make hashes the files the stat cache lacks while their layers are written
	// instead of in a pass of their own (each file read once, not twice).
	Empty() bool
}

// AnnotationKey is the manifest annotation that records a layer's key, so a machine with an
// empty cache can recognise the layer in a registry after hashing its files, without writing
// it.
const AnnotationKey = "dev.fairing.layer.key"

// formatVersion changes whenever the bytes the writer produces for the same input change, so
// old cache entries are never mistaken for new ones.
//
// 2: gzip blocks of 256 KiB (1 MiB before). 3: zstd without job-based parallel compression.
// 4: file contents named by BLAKE3 (contenthash.go), not sha256.
const formatVersion = "fairing-layer/4"

// Builder turns planned groups into layers, reusing cached layers whose key (content listing
// plus options) it has built before.
type Builder struct {
	cache *Cache
	opts  Options
	// hashed counts the files first hashed by the tar writer (see Build).
	hashed atomic.Int64
	pool   writerPool
}

// NewBuilder returns a builder that keeps its layers in cache.
func NewBuilder(cache *Cache, opts Options) (*Builder, error) {
	if opts.Compression == "" {
		opts.Compression = Gzip
	}
	if opts.Level == 0 {
		opts.Level = opts.Compression.DefaultLevel()
	}
	if err := opts.Compression.validLevel(opts.Level); err != nil {
		return nil, err
	}
	if opts.Jobs <= 0 {
		opts.Jobs = runtime.GOMAXPROCS(0)
	}
	return &Builder{cache: cache, opts: opts}, nil
}

// Build returns one layer per group, in order. Cached layers cost a file lookup; the others
// are written now, tar and compression streamed into the cache in one pass that also computes
// both digests.
//
// A group whose files have all been hashed (HashEntries) is looked up by key first. A group
// holding files not yet hashed is written straight away, the tar writer hashing each file as
// it reads it, and its key computed afterwards: right when nothing could be reused anyway (an
// empty cache), where hashing first would read every file twice.
func (b *Builder) Build(ctx context.Context, groups []Group) ([]*Layer, error) {
	layers := make([]*Layer, len(groups))
	// Keys and cache lookups first, on every core: on an unchanged build they are all the work.
	kg, kctx := errgroup.WithContext(ctx)
	kg.SetLimit(runtime.GOMAXPROCS(0))
	for i := range groups {
		l := &Layer{b: b, group: groups[i], mediaType: b.defaultMediaType(), shared: &layerState{}}
		layers[i] = l
		if !groups[i].hashed() {
			continue // its key comes out of the write
		}
		kg.Go(func() error {
			if err := kctx.Err(); err != nil {
				return err
			}
			key, err := b.key(b.tarSeq(&l.group))
			if err != nil {
				return fmt.Errorf("layer %q: %w", l.group.Name, err)
			}
			l.key = key
			if r, ok := b.cache.lookup(key); ok {
				l.rec, l.hit = r, true
			}
			return nil
		})
	}
	if err := kg.Wait(); err != nil {
		return nil, err
	}

	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(b.opts.Jobs)
	for _, l := range layers {
		if l.hit {
			continue
		}
		if l.key != "" && b.opts.Remote != nil && !remoteLoaded(b.opts.Remote) {
			// The destination's image is still being read: the layer is written meanwhile
			// rather than after, and dropped if the registry turns out to have it.
			g.Go(func() error { return b.writeAhead(ctx, l) })
			continue
		}
		if l.key != "" && b.opts.Remote != nil {
			if rl := b.opts.Remote.Layer(l.key); rl != nil {
				if err := l.useRemote(rl); err == nil {
					continue
				}
			}
		}
		g.Go(func() error { return b.writeLayer(ctx, l, b.streams(l)) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return layers, nil
}

// streams reports whether l, found in neither the cache nor the destination's image, is sent
// as it is written: its key is content the registry has never seen, so no need to ask for it
// first.
func (b *Builder) streams(l *Layer) bool {
	return l.key != "" && b.opts.OnStream != nil && b.opts.Remote != nil && !b.opts.Remote.Empty()
}

// remoteLoaded reports whether asking r blocks no more (a Remote that cannot tell is taken as
// loaded, and asked first).
func remoteLoaded(r Remote) bool {
	lr, ok := r.(interface{ Loaded() bool })
	return !ok || lr.Loaded()
}

// writeAhead writes l while the Remote is still loading. If the registry has the layer the
// write is canceled and the registry's copy used; if not, the layer is handed over as
// OnStream or OnWritten would have had it, its upload following what is written so far.
func (b *Builder) writeAhead(ctx context.Context, l *Layer) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	gb := newGrowing()
	done := make(chan error, 1)
	go func() { done <- b.write1(wctx, l, gb) }()
	if rl := b.opts.Remote.Layer(l.key); rl != nil {
		// The registry's copy is used; a write that got to its end first stays in the cache.
		cancel()
		<-done
		if err := l.useRemote(rl); err == nil {
			l.buildTime = 0
			return nil
		}
		return b.writeLayer(ctx, l, b.streams(l)) // an unreadable remote layer: write it after all
	}
	stream := b.streams(l)
	if stream {
		b.opts.OnStream(&streamingLayer{l: l, g: gb})
	}
	if err := <-done; err != nil {
		return err
	}
	if !stream && b.opts.OnWritten != nil {
		b.opts.OnWritten(l)
	}
	return nil
}

// writeLayer writes l's blob into the cache; l.key is computed on the way if it is empty.
// With stream, OnStream gets the layer before it is written.
func (b *Builder) writeLayer(ctx context.Context, l *Layer, stream bool) error {
	var gb *growing
	if stream {
		gb = newGrowing()
		b.opts.OnStream(&streamingLayer{l: l, g: gb})
	}
	if err := b.write1(ctx, l, gb); err != nil {
		return err
	}
	if gb == nil && b.opts.OnWritten != nil {
		b.opts.OnWritten(l)
	}
	return nil
}

// write1 writes l's blob into the cache, through gb if it is not nil (readers following it
// get the blob, or the write's error).
func (b *Builder) write1(ctx context.Context, l *Layer, gb *growing) error {
	start := time.Now()
	// The tar's entry list is made again here rather than kept from the key: on a big
	// context, holding every layer's list at once would double the builder's memory.
	entries := b.tarEntries(&l.group)
	r, key, err := b.write(ctx, l.key, entries, gb)
	if err != nil {
		err = fmt.Errorf("write layer %q: %w", l.group.Name, err)
		gb.finish(err)
		return err
	}
	if l.key == "" {
		l.key = key
		b.learn(&l.group, entries)
	}
	l.rec, l.buildTime = r, time.Since(start)
	l.shared.verified = true // written by us just now
	gb.finish(nil)
	return nil
}

// learn copies the digests the tar writer computed into the group's entries (which the stat
// cache is saved from), so the next build reads none of these files.
func (b *Builder) learn(g *Group, written []Entry) {
	todo := map[string]*Entry{}
	for i := range g.Entries {
		if e := &g.Entries[i]; e.Type == TypeFile && !e.hashed {
			todo[e.Path] = e
		}
	}
	for i := range written {
		w := &written[i]
		e := todo[w.Path]
		if e == nil || !w.hashed {
			continue
		}
		e.digest, e.hashed = w.digest, true
		b.hashed.Add(1)
	}
}

// tarEntries is exactly what the group's tar holds, in order.
func (b *Builder) tarEntries(g *Group) []Entry {
	entries := g.tarEntries()
	if b.opts.Compression == Estargz {
		entries = estargzOrder(entries, b.opts.Prioritize)
	}
	return entries
}

// tarSeq is tarEntries without a copy of the group where it can.
func (b *Builder) tarSeq(g *Group) iter.Seq[*Entry] {
	if b.opts.Compression == Estargz {
		return entryPtrs(b.tarEntries(g))
	}
	return g.tarSeq()
}

// key is the sha256 of a canonical listing of what the layer's tar holds plus the writer's
// options: equal keys mean byte-identical blobs.
func (b *Builder) key(entries iter.Seq[*Entry]) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\ncompression=%s level=%d uid=%d gid=%d epoch=%d\n", formatVersion,
		b.opts.Compression, b.opts.Level, b.opts.Tar.UID, b.opts.Tar.GID, b.opts.Tar.clamp(time.Time{}).Unix())
	line := make([]byte, 0, 256)
	for e := range entries {
		if e.Type == TypeFile && !e.hashed {
			return "", fmt.Errorf("/%s was not hashed", e.Path)
		}
		// path NUL type NUL mode NUL size NUL link NUL content digest NUL mtime NL
		line = append(line[:0], e.Path...)
		line = append(line, 0)
		line = strconv.AppendInt(line, int64(e.Type), 10)
		line = append(line, 0)
		line = strconv.AppendInt(line, tarMode(e.Mode), 8)
		line = append(line, 0)
		line = strconv.AppendInt(line, e.Size, 10)
		line = append(line, 0)
		line = append(line, e.Linkname()...)
		line = append(line, 0)
		if e.Type == TypeFile {
			line = hex.AppendEncode(line, e.digest[:])
		}
		line = append(line, 0)
		line = strconv.AppendInt(line, b.opts.Tar.clamp(e.ModTime()).Unix(), 10)
		line = append(line, '\n')
		h.Write(line)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (b *Builder) defaultMediaType() types.MediaType {
	switch b.opts.Compression {
	case Zstd:
		return types.OCILayerZStd
	case Uncompressed:
		return types.OCIUncompressedLayer
	}
	return types.OCILayer // gzip and estargz
}

// write streams tar → compressor → temp file, hashing the uncompressed stream (diffID) and the
// compressed one (digest) on the way, then moves the blob into the cache.
//
// With key "", the tar writer hashes the files not yet hashed and the key is computed from the
// entries once the tar is complete. The key is returned either way. With gb, readers may
// follow the blob as it is written.
func (b *Builder) write(ctx context.Context, key string, entries []Entry, gb *growing) (r record, _ string, err error) {
	tmp, err := os.CreateTemp(b.cache.tmpDir(), "blob-*")
	if err != nil {
		return r, "", fmt.Errorf("create temp blob: %w", err)
	}
	defer func() {
		tmp.Close()
		if err != nil {
			os.Remove(tmp.Name())
			if errors.Is(err, syscall.ENOSPC) {
				err = fmt.Errorf("no space left for the layer cache in %s (free some, or use another cache dir): %w", b.cache.dir, err)
			}
		}
	}()
	var blob io.Writer = tmp
	if gb != nil {
		if err := gb.open(tmp.Name()); err != nil {
			return r, "", fmt.Errorf("open temp blob: %w", err)
		}
		blob = gb.writer(tmp)
	}
	bw := b.pool.buffer(blob)
	defer b.pool.putBuffer(bw)
	compressed := &hashCounter{h: sha256.New()}
	if b.opts.Compression == Estargz {
		diffID, usize, toc, err := b.writeEstargz(ctx, io.MultiWriter(bw, compressed), entries)
		if err != nil {
			return r, "", err
		}
		r = record{DiffID: diffID, UncompressedSize: usize, Annotations: estargzAnnotations(toc, usize)}
	} else {
		zw, err := b.pool.compressor(b.opts.Compression, io.MultiWriter(bw, compressed), b.opts.Level)
		if err != nil {
			return r, "", err
		}
		uncompressed := &hashCounter{h: sha256.New()}
		if err := writeTar(ctx, io.MultiWriter(zw, uncompressed), entries, b.opts.Tar); err != nil {
			zw.Close()
			return r, "", err
		}
		if err := zw.Close(); err != nil {
			return r, "", fmt.Errorf("compress: %w", err)
		}
		b.pool.put(zw)
		r = record{DiffID: "sha256:" + hex.EncodeToString(uncompressed.h.Sum(nil)), UncompressedSize: uncompressed.n}
	}
	if err := bw.Flush(); err != nil {
		return r, "", fmt.Errorf("write temp blob: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return r, "", fmt.Errorf("write temp blob: %w", err)
	}
	r.Digest = "sha256:" + hex.EncodeToString(compressed.h.Sum(nil))
	r.Size = compressed.n
	r.Compression = b.opts.Compression
	if key == "" {
		if key, err = b.key(entryPtrs(entries)); err != nil {
			return r, "", err
		}
	}
	if err := b.cache.store(key, r, tmp.Name()); err != nil {
		return r, "", err
	}
	return r, key, nil
}

type hashCounter struct {
	h hash.Hash
	n int64
}

func (c *hashCounter) Write(p []byte) (int, error) {
	c.h.Write(p)
	c.n += int64(len(p))
	return len(p), nil
}

// Layer is a v1.Layer backed by the layer cache. Its descriptor comes from the cache record;
// its blob is opened only when someone reads it (a registry that lacks it, an OCI layout, a
// tarball), and a cached blob is verified before its first use and rebuilt if it is corrupt.
type Layer struct {
	b         *Builder
	group     Group
	key       string
	rec       record
	hit       bool
	buildTime time.Duration
	mediaType types.MediaType
	shared    *layerState
	// remote is the registry's copy of this layer, found by key (Options.Remote).
	remote v1.Layer
	// entries counts the group's entries once they are released (see release).
	entries  int
	released bool
}

// release lets go of the group's entries once the layer is made, so that a streamed build
// (makeStream) holds no more than the layers in the making.
func (l *Layer) release() {
	l.entries, l.released = len(l.group.Entries), true
	l.group.Entries, l.group.dirs = nil, nil
}

func (l *Layer) useRemote(rl v1.Layer) error {
	d, err := rl.Digest()
	if err != nil {
		return err
	}
	diff, err := rl.DiffID()
	if err != nil {
		return err
	}
	size, err := rl.Size()
	if err != nil {
		return err
	}
	l.rec = record{Digest: d.String(), DiffID: diff.String(), Size: size, Compression: l.b.opts.Compression}
	if desc, err := partial.Descriptor(rl); err == nil {
		for k, v := range desc.Annotations {
			if k == AnnotationKey {
				continue
			}
			if l.rec.Annotations == nil {
				l.rec.Annotations = map[string]string{}
			}
			l.rec.Annotations[k] = v
		}
	}
	l.remote, l.hit = rl, true
	return nil
}

// Remote is the registry's copy of this layer when it was found there by key instead of being
// written (nil otherwise). Hand it to the pusher as it is: it can be mounted, never downloaded.
func (l *Layer) Remote() v1.Layer { return l.remote }

type layerState struct {
	mu       sync.Mutex
	verified bool
}

var _ v1.Layer = (*Layer)(nil)

// Digest is the compressed blob's digest.
func (l *Layer) Digest() (v1.Hash, error) { return v1.NewHash(l.rec.Digest) }

// DiffID is the uncompressed tar's digest.
func (l *Layer) DiffID() (v1.Hash, error) { return v1.NewHash(l.rec.DiffID) }

// Size is the compressed blob's size.
func (l *Layer) Size() (int64, error) { return l.rec.Size, nil }

// MediaType is OCI by default; see WithMediaType.
func (l *Layer) MediaType() (types.MediaType, error) { return l.mediaType, nil }

// UncompressedSize is the tar's size.
func (l *Layer) UncompressedSize() (int64, error) { return l.rec.UncompressedSize, nil }

// Descriptor carries the layer's annotations into manifests.
func (l *Layer) Descriptor() (*v1.Descriptor, error) {
	d, err := l.Digest()
	if err != nil {
		return nil, err
	}
	return &v1.Descriptor{MediaType: l.mediaType, Size: l.rec.Size, Digest: d, Annotations: l.rec.Annotations}, nil
}

// HistoryComment is the layer's line in the image history.
func (l *Layer) HistoryComment() string {
	return fmt.Sprintf("fairing-builder: COPY %s (%d entries)", l.group.Name, l.Entries())
}

// Compression is how the blob is compressed.
func (l *Layer) Compression() Compression { return l.rec.Compression }

// Key is the layer's cache key.
func (l *Layer) Key() string { return l.key }

// Name describes what the layer holds ("source 2/9").
func (l *Layer) Name() string { return l.group.Name }

// Entries is how many entries the layer's group holds (without implied parents).
func (l *Layer) Entries() int {
	if l.released {
		return l.entries
	}
	return len(l.group.Entries)
}

// CacheHit reports whether the layer came from the cache (or from the registry, see Remote)
// rather than being written now.
func (l *Layer) CacheHit() bool { return l.hit }

// BuildTime is how long writing the layer took (0 for a cache hit).
func (l *Layer) BuildTime() time.Duration { return l.buildTime }

// Compressed opens the blob.
func (l *Layer) Compressed() (io.ReadCloser, error) {
	if l.remote != nil {
		return l.remote.Compressed()
	}
	if err := l.ensureBlob(); err != nil {
		return nil, err
	}
	f, err := os.Open(l.b.cache.blobPath(l.rec.Digest))
	if err != nil {
		return nil, fmt.Errorf("open layer blob %s: %w", l.rec.Digest, err)
	}
	return f, nil
}

// Uncompressed opens the blob and decompresses it.
func (l *Layer) Uncompressed() (io.ReadCloser, error) {
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	zr, err := l.rec.Compression.decompressor(bufio.NewReaderSize(rc, 1<<20))
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("decompress layer %s: %w", l.rec.Digest, err)
	}
	return &readCloser{Reader: zr, close: func() error { zr.Close(); return rc.Close() }}, nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r *readCloser) Close() error { return r.close() }

// ensureBlob verifies a cached blob against its digest once, and rewrites the layer from its
// files if the blob is missing or corrupt: a damaged cache costs time, never a wrong image.
func (l *Layer) ensureBlob() error {
	l.shared.mu.Lock()
	defer l.shared.mu.Unlock()
	if l.shared.verified {
		return nil
	}
	if err := verifyBlob(l.b.cache.blobPath(l.rec.Digest), l.rec.Digest, l.rec.Size); err != nil {
		l.b.cache.forget(l.key, l.rec)
		if l.released {
			return fmt.Errorf("layer %q: its cached blob is damaged (%v) and was dropped from the cache: run the build again", l.group.Name, err)
		}
		r, _, werr := l.b.write(context.Background(), l.key, l.b.tarEntries(&l.group), nil)
		if werr != nil {
			return fmt.Errorf("layer %q: cached blob unusable (%v) and rebuilding it failed: %w", l.group.Name, err, werr)
		}
		if r.Digest != l.rec.Digest || r.DiffID != l.rec.DiffID {
			return fmt.Errorf("layer %q: rebuilt blob %s differs from the cached record %s: the files changed during the build; rerun it", l.group.Name, r.Digest, l.rec.Digest)
		}
	}
	l.shared.verified = true
	return nil
}

func verifyBlob(file, digest string, size int64) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return err
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != digest || n != size {
		return fmt.Errorf("blob is %s (%d bytes), want %s (%d bytes)", got, n, digest, size)
	}
	return nil
}

// String is for logs.
func (l *Layer) String() string {
	state := "built in " + l.buildTime.Round(time.Millisecond).String()
	switch {
	case l.remote != nil:
		state = "already in the registry"
	case l.hit:
		state = "cached"
	}
	return fmt.Sprintf("%s: %s, %s, %s", l.group.Name, l.rec.Digest[:19], humanBytes(l.rec.Size), state)
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return strconv.FormatFloat(float64(n)/(1<<30), 'f', 1, 64) + " GiB"
	case n >= 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
	case n >= 1<<10:
		return strconv.FormatFloat(float64(n)/(1<<10), 'f', 1, 64) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " B"
}
