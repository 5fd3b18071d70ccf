package layer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/stream"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestGrowingFollowers(t *testing.T) {
	chunks := [][]byte{[]byte("first chunk "), bytes.Repeat([]byte("x"), 70000), []byte(" last")}
	want := bytes.Join(chunks, nil)
	boom := errors.New("disk on fire")
	for _, tc := range []struct {
		name    string
		fail    error
		readers int // started before the first write
	}{
		{"one reader", nil, 1},
		{"three readers", nil, 3},
		{"write fails", boom, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "blob")
			f, err := os.Create(file)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			g := newGrowing()
			type got struct {
				b   []byte
				err error
			}
			results := make(chan got, tc.readers)
			for range tc.readers {
				rc, ok, err := g.follow()
				if !ok || err != nil {
					t.Fatalf("follow before the write: ok=%v err=%v", ok, err)
				}
				go func() {
					b, err := io.ReadAll(rc)
					rc.Close()
					results <- got{b, err}
				}()
			}
			if err := g.open(file); err != nil {
				t.Fatal(err)
			}
			w := g.writer(f)
			for _, c := range chunks {
				time.Sleep(2 * time.Millisecond) // readers catch up and wait
				if _, err := w.Write(c); err != nil {
					t.Fatal(err)
				}
			}
			g.finish(tc.fail)
			for range tc.readers {
				r := <-results
				if tc.fail != nil {
					if !errors.Is(r.err, boom) {
						t.Errorf("reader of a failed write: err=%v after %d bytes, want %v", r.err, len(r.b), boom)
					}
					continue
				}
				if r.err != nil || !bytes.Equal(r.b, want) {
					t.Errorf("reader got %d bytes, err %v; want %d bytes", len(r.b), r.err, len(want))
				}
			}
			// Once the write is over, readers go to the cache instead.
			if _, ok, err := g.follow(); ok || !errors.Is(err, tc.fail) {
				t.Errorf("follow after the write: ok=%v err=%v", ok, err)
			}
			g.mu.Lock()
			defer g.mu.Unlock()
			if g.f != nil || g.readers != 0 {
				t.Errorf("descriptor left open (%v) or readers counted (%d) after every reader closed", g.f != nil, g.readers)
			}
		})
	}
}

// knowsKeys is a Remote that knows some keys, none of this tree's.
type knowsKeys struct{}

func (knowsKeys) Layer(string) v1.Layer { return nil }
func (knowsKeys) Empty() bool           { return false }

// emptyRemote knows no key: a cold build, nothing streamed.
type emptyRemote struct{}

func (emptyRemote) Layer(string) v1.Layer { return nil }
func (emptyRemote) Empty() bool           { return true }

func TestStreamedLayersAreTheirBlobs(t *testing.T) {
	root := t.TempDir()
	genTree(t, root, 300, 3)
	for _, c := range []Compression{Gzip, Zstd, Estargz} {
		t.Run(string(c), func(t *testing.T) {
			var mu sync.Mutex
			var wg sync.WaitGroup
			streamed := map[string][]byte{} // digest → bytes read while written
			var errs []error
			written := 0
			opts := Options{
				Compression: c,
				Remote:      knowsKeys{},
				OnWritten:   func(*Layer) { mu.Lock(); written++; mu.Unlock() },
				OnStream: func(l v1.Layer) {
					if _, err := l.Digest(); !errors.Is(err, stream.ErrNotComputed) {
						mu.Lock()
						errs = append(errs, fmt.Errorf("digest of a layer not yet written: %v", err))
						mu.Unlock()
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						rc, err := l.Compressed()
						if err != nil {
							mu.Lock()
							errs = append(errs, err)
							mu.Unlock()
							return
						}
						b, err := io.ReadAll(rc)
						rc.Close()
						d, derr := l.Digest() // known once the reader reached EOF
						mu.Lock()
						defer mu.Unlock()
						if err != nil || derr != nil {
							errs = append(errs, err, derr)
							return
						}
						streamed[d.String()] = b
					}()
				},
			}
			res := makeLayers(t, root, t.TempDir(), opts)
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			if written != 0 {
				t.Errorf("OnWritten called for %d streamed layers", written)
			}
			if len(streamed) != len(res.Layers) {
				t.Fatalf("%d layers streamed, %d built", len(streamed), len(res.Layers))
			}
			for _, l := range res.Layers {
				d, _ := l.Digest()
				b := streamed[d.String()]
				sum := sha256.Sum256(b)
				size, _ := l.Size()
				if "sha256:"+hex.EncodeToString(sum[:]) != d.String() || int64(len(b)) != size {
					t.Errorf("layer %s: streamed %d bytes hashing to %x, the blob is %s (%d bytes)", l.Name(), len(b), sum, d, size)
				}
			}
		})
	}
}

func TestNothingStreamedWithoutKnownKeys(t *testing.T) {
	root := t.TempDir()
	genTree(t, root, 100, 4)
	for _, tc := range []struct {
		name   string
		remote Remote
	}{
		{"no remote", nil},
		{"remote knows no key", emptyRemote{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			streamed, written := 0, 0
			var mu sync.Mutex
			res := makeLayers(t, root, t.TempDir(), Options{
				Remote:    tc.remote,
				OnStream:  func(v1.Layer) { mu.Lock(); streamed++; mu.Unlock() },
				OnWritten: func(*Layer) { mu.Lock(); written++; mu.Unlock() },
			})
			// The registry may hold these blobs under another tag: they are asked about first.
			if streamed != 0 || written != len(res.Layers) {
				t.Errorf("streamed %d, written %d of %d layers", streamed, written, len(res.Layers))
			}
		})
	}
}

// slowRemote is a destination image still being read until release is closed; then it has
// have (for any key asked) and is empty or not.
type slowRemote struct {
	release chan struct{}
	have    v1.Layer
	empty   bool
	mu      sync.Mutex
	asked   int
}

func (r *slowRemote) Loaded() bool {
	select {
	case <-r.release:
		return true
	default:
		return false
	}
}

func (r *slowRemote) Layer(string) v1.Layer {
	<-r.release
	r.mu.Lock()
	r.asked++
	r.mu.Unlock()
	return r.have
}

func (r *slowRemote) Empty() bool { <-r.release; return r.empty }

// A layer the cache lacks is written while the destination's image is still being read, not
// after: if the registry lacks it too it is streamed from what was written (or handed over
// written when the registry knows no key), if the registry has it its copy is used.
func TestWrittenWhileTheRemoteLoads(t *testing.T) {
	remoteCopy, err := random.Layer(512, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		have      v1.Layer
		empty     bool
		streamed  int
		written   int
		useRemote bool
	}{
		{name: "registry lacks it: streamed", streamed: 1},
		{name: "registry knows no key: handed over written", empty: true, written: 1},
		{name: "registry has it: its copy used", have: remoteCopy, useRemote: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, cacheDir := t.TempDir(), t.TempDir()
			genTree(t, root, 200, 5)
			makeLayers(t, root, cacheDir, Options{})
			edited := filepath.Join(root, "pkg03/mod003/file00003.py")
			if err := os.WriteFile(edited, []byte("edited = True\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			records := func() int { es, _ := os.ReadDir(filepath.Join(cacheDir, "layers")); return len(es) }
			before := records()

			r := &slowRemote{release: make(chan struct{}), have: tc.have, empty: tc.empty}
			var mu sync.Mutex
			var streams []v1.Layer
			written := 0
			type result struct {
				res *Result
				err error
			}
			done := make(chan result, 1)
			go func() {
				res, err := Make(context.Background(), []Source{{Dest: "/app", Path: root}}, cacheDir, Options{
					Remote:    r,
					OnStream:  func(l v1.Layer) { mu.Lock(); streams = append(streams, l); mu.Unlock() },
					OnWritten: func(*Layer) { mu.Lock(); written++; mu.Unlock() },
				}, PlanOptions{})
				done <- result{res, err}
			}()
			// the edited layer reaches the cache while the remote has not answered
			deadline := time.Now().Add(10 * time.Second)
			for records() == before && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if records() == before {
				t.Fatal("nothing was written while the destination's image was being read")
			}
			close(r.release)
			got := <-done
			if got.err != nil {
				t.Fatal(got.err)
			}
			if len(streams) != tc.streamed || written != tc.written {
				t.Fatalf("streamed %d, written %d; want %d, %d", len(streams), written, tc.streamed, tc.written)
			}
			var edit *Layer
			for _, l := range got.res.Layers {
				if !l.CacheHit() || l.Remote() != nil {
					if edit != nil {
						t.Fatalf("two layers not from the cache: %s, %s", edit.Name(), l.Name())
					}
					edit = l
				}
			}
			if edit == nil {
				t.Fatal("no layer was rebuilt")
			}
			if tc.useRemote {
				if edit.Remote() != remoteCopy {
					t.Fatalf("layer %s does not use the registry's copy", edit.Name())
				}
				if d, _ := edit.Digest(); d != mustLayerDigest(t, remoteCopy) {
					t.Errorf("digest %s, want the registry copy's", d)
				}
				return
			}
			if edit.Remote() != nil {
				t.Fatal("a layer the registry lacks uses a remote copy")
			}
			for _, s := range streams {
				rc, err := s.Compressed()
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(rc)
				rc.Close()
				sum := sha256.Sum256(b)
				if d, _ := edit.Digest(); "sha256:"+hex.EncodeToString(sum[:]) != d.String() {
					t.Errorf("streamed %d bytes hashing to %x, the blob is %s", len(b), sum, d)
				}
				if d, err := s.Digest(); err != nil || d != mustLayerDigest(t, edit) {
					t.Errorf("streamed layer's digest after the read: %v %v", d, err)
				}
			}
		})
	}
}

func mustLayerDigest(t *testing.T, l v1.Layer) v1.Hash {
	t.Helper()
	d, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}
