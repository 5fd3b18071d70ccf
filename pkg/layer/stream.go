package layer

import (
	"io"
	"os"
	"sync"
	"sync/atomic"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/stream"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// growing is a blob file being written that readers may follow as it grows: a new layer's
// upload runs alongside its compression instead of after it. The readers share one read-only
// descriptor of the temp file, opened before the file is moved into the cache.
type growing struct {
	mu      sync.Mutex
	cond    sync.Cond
	f       *os.File
	n       int64 // bytes written so far
	done    bool
	err     error // why the write failed; readers get it instead of a short blob
	readers int
}

func newGrowing() *growing {
	g := &growing{}
	g.cond.L = &g.mu
	return g
}

func (g *growing) open(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	g.mu.Lock()
	g.f = f
	g.mu.Unlock()
	return nil
}

// writer wraps the blob file: what reaches it becomes readable.
func (g *growing) writer(w io.Writer) io.Writer { return growWriter{w: w, g: g} }

type growWriter struct {
	w io.Writer
	g *growing
}

func (gw growWriter) Write(p []byte) (int, error) {
	n, err := gw.w.Write(p)
	if n > 0 {
		gw.g.mu.Lock()
		gw.g.n += int64(n)
		gw.g.mu.Unlock()
		gw.g.cond.Broadcast()
	}
	return n, err
}

// finish ends the write: readers reach EOF, or err. Called once the blob and its record are
// final, so that a reader at EOF may take the layer's digest.
func (g *growing) finish(err error) {
	if g == nil {
		return
	}
	g.mu.Lock()
	g.done, g.err = true, err
	g.release()
	g.mu.Unlock()
	g.cond.Broadcast()
}

// release closes the descriptor once the write is over and no reader needs it. g.mu held.
func (g *growing) release() {
	if g.done && g.readers == 0 && g.f != nil {
		g.f.Close()
		g.f = nil
	}
}

// follow returns a reader of the blob from its start; ok is false once the blob is complete
// (read it from the cache then).
func (g *growing) follow() (rc io.ReadCloser, ok bool, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.done {
		return nil, false, g.err
	}
	g.readers++
	return &follower{g: g}, true, nil
}

// wait blocks until the write is over.
func (g *growing) wait() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for !g.done {
		g.cond.Wait()
	}
	return g.err
}

type follower struct {
	g      *growing
	off    int64
	closed bool
}

func (r *follower) Read(p []byte) (int, error) {
	g := r.g
	g.mu.Lock()
	for r.off >= g.n && !g.done {
		g.cond.Wait()
	}
	n, err, f := g.n, g.err, g.f
	g.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if r.off >= n {
		return 0, io.EOF
	}
	if f == nil || r.closed {
		return 0, os.ErrClosed
	}
	if int64(len(p)) > n-r.off {
		p = p[:n-r.off]
	}
	k, err := f.ReadAt(p, r.off)
	r.off += int64(k)
	if err == io.EOF && k > 0 {
		err = nil
	}
	return k, err
}

func (r *follower) Close() error {
	g := r.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if !r.closed {
		r.closed = true
		g.readers--
		g.release()
	}
	return nil
}

// streamingLayer is a layer as it is being written (Options.OnStream). Until the blob is
// complete its Digest and Size are stream.ErrNotComputed, which tells go-containerregistry's
// pusher to stream it (POST, PATCH as it grows, PUT with the digest once known) rather than to
// ask the registry for it first: its key is in neither the cache nor the destination's image,
// so the registry cannot have it.
//
// The digest is given only once a reader has read the whole blob, not as soon as it is
// written: a small layer may be complete before its upload starts, and it must still be sent
// as a stream rather than asked about.
type streamingLayer struct {
	l *Layer
	g *growing
	// sent: a reader of Compressed reached the end, which only a complete blob has (a failed
	// write gives its readers the error instead)
	sent atomic.Bool
}

var _ v1.Layer = (*streamingLayer)(nil)

func (s *streamingLayer) Digest() (v1.Hash, error) {
	if !s.sent.Load() {
		return v1.Hash{}, stream.ErrNotComputed
	}
	return s.l.Digest()
}

func (s *streamingLayer) DiffID() (v1.Hash, error) {
	if !s.sent.Load() {
		return v1.Hash{}, stream.ErrNotComputed
	}
	return s.l.DiffID()
}

func (s *streamingLayer) Size() (int64, error) {
	if !s.sent.Load() {
		return 0, stream.ErrNotComputed
	}
	return s.l.Size()
}

func (s *streamingLayer) MediaType() (types.MediaType, error) { return s.l.MediaType() }

// Name is the layer's (what an error about its upload names before the digest is known).
func (s *streamingLayer) Name() string { return s.l.Name() }

// Compressed follows the blob while it is written (each call from its start: a retried upload
// sends it whole again), and reads it from the cache once it is complete.
func (s *streamingLayer) Compressed() (io.ReadCloser, error) {
	rc, ok, err := s.g.follow()
	if err != nil {
		return nil, err
	}
	if !ok {
		if rc, err = s.l.Compressed(); err != nil {
			return nil, err
		}
	}
	return &eofMark{ReadCloser: rc, sent: &s.sent}, nil
}

// eofMark notes that its reader reached the end.
type eofMark struct {
	io.ReadCloser
	sent *atomic.Bool
}

func (r *eofMark) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if err == io.EOF {
		r.sent.Store(true)
	}
	return n, err
}

func (s *streamingLayer) Uncompressed() (io.ReadCloser, error) {
	if err := s.g.wait(); err != nil {
		return nil, err
	}
	return s.l.Uncompressed()
}
