//go:build linux

package layer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// streamTree is a context with what streaming must plan as the table does: dependency files,
// more large files than get layers of their own, hard links, symlinks, an ignore file, names
// that sort around "/", and enough files for several source chunks.
func streamTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"requirements.txt": "numpy\n", "sub/pyproject.toml": "[x]", "a-b/x.py": "x", "a.c": "c", "a/z.py": "z",
		"link.py": "->a.c", "ignored/x.pyc": "i", "keep.pyc": "k",
	}
	for i := range 1500 {
		files[fmt.Sprintf("src/m%02d/f%04d.py", i%37, i)] = strings.Repeat(fmt.Sprint(i), 1+i%50)
	}
	for i := range 4 {
		files[fmt.Sprintf("models/w%d.bin", i)] = strings.Repeat(fmt.Sprint(i), (70+i*10)<<10)
	}
	writeTree(t, root, files)
	for _, l := range [][2]string{{"a.c", "src/hard.c"}, {"models/w0.bin", "zz/w0-again.bin"}} {
		os.MkdirAll(filepath.Join(root, filepath.Dir(l[1])), 0o755)
		if err := os.Link(filepath.Join(root, l[0]), filepath.Join(root, l[1])); err != nil {
			t.Fatal(err)
		}
	}
	age(t, root)
	return root
}

// age moves every file's times an hour back, out of the stat cache's racy window.
func age(t *testing.T, root string) {
	t.Helper()
	old := time.Now().Add(-time.Hour)
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode()&os.ModeSymlink == 0 {
			err = os.Chtimes(p, old, old)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// knowsNothing is a registry with layers but none with a key we look for: new layers are
// streamed (Options.OnStream).
type knowsNothing struct{}

func (knowsNothing) Layer(string) v1.Layer { return nil }
func (knowsNothing) Empty() bool           { return false }

type madeLayer struct {
	name, digest, diffID, key string
	entries                   int
}

func made(t *testing.T, res *Result) []madeLayer {
	t.Helper()
	var out []madeLayer
	for _, l := range res.Layers {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		diff, _ := l.DiffID()
		out = append(out, madeLayer{l.Name(), d.String(), diff.String(), l.Key(), l.Entries()})
	}
	return out
}

// statFile is the stat cache file Make keeps for sources in cacheDir.
func statFile(t *testing.T, cacheDir string, sources []Source) []byte {
	t.Helper()
	b, err := os.ReadFile(statCacheFile(cacheDir, sources))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMakeStreamMatchesTable: a streamed build gives the layers, keys and stat cache of the
// table path, cold, unchanged and after edits, and reads no file an unchanged build need not.
func TestMakeStreamMatchesTable(t *testing.T) {
	root := streamTree(t)
	ign := mustIgnore(t, "ignored\n*.pyc\n!keep.pyc\n").Ignore
	plan := PlanOptions{LargeFile: 64 << 10, MaxLargeLayers: 2, ChunkBytes: 8 << 10}
	for _, dest := range []string{"/app", "/opt/app", "/"} {
		t.Run(dest, func(t *testing.T) {
			sources := []Source{{Dest: dest, Path: root, Ignore: ign}}
			tableDir, streamDir := t.TempDir(), t.TempDir()
			build := func(step string, wantHashed, wantWalks int) {
				t.Helper()
				want, err := makeAt(context.Background(), sources, tableDir, Options{}, plan, 1<<30)
				if err != nil {
					t.Fatal(err)
				}
				// Every layer handed over as it is written must be readable to its end: a layer
				// of a plan that no longer holds is finished, not canceled under its upload.
				var reads sync.WaitGroup
				var readErrs []error
				var mu sync.Mutex
				opts := Options{Remote: knowsNothing{}, OnStream: func(l v1.Layer) {
					reads.Go(func() {
						if err := drain(l); err != nil {
							mu.Lock()
							readErrs = append(readErrs, err)
							mu.Unlock()
						}
					})
				}}
				got, err := makeAt(context.Background(), sources, streamDir, opts, plan, 100)
				if err != nil {
					t.Fatal(err)
				}
				reads.Wait()
				if len(readErrs) > 0 {
					t.Fatalf("%s: streamed layers unreadable: %v", step, readErrs)
				}
				if !got.Streamed || want.Streamed {
					t.Fatalf("%s: streamed %v and %v, want true and false", step, got.Streamed, want.Streamed)
				}
				gl, wl := made(t, got), made(t, want)
				if fmt.Sprint(gl) != fmt.Sprint(wl) {
					t.Fatalf("%s: streamed layers\n%v\nwant\n%v", step, gl, wl)
				}
				if got.Entries != want.Entries || got.Hashed != want.Hashed {
					t.Errorf("%s: streamed %d entries, %d hashed; table %d, %d", step, got.Entries, got.Hashed, want.Entries, want.Hashed)
				}
				if got.Walks != wantWalks {
					t.Errorf("%s: %d walks, want %d", step, got.Walks, wantWalks)
				}
				if wantHashed >= 0 && got.Hashed != wantHashed {
					t.Errorf("%s: %d files hashed, want %d", step, got.Hashed, wantHashed)
				}
				if !bytes.Equal(statFile(t, streamDir, sources), statFile(t, tableDir, sources)) {
					t.Errorf("%s: the stat caches differ", step)
				}
				if len(gl) < 8 {
					t.Errorf("%s: %d layers: the tree should make several chunks", step, len(gl))
				}
			}
			build("cold", -1, 2)
			build("unchanged", 0, 1) // with the last plan
			os.WriteFile(filepath.Join(root, "src/m03/f0003.py"), []byte("edited"), 0o644)
			os.WriteFile(filepath.Join(root, "src/m05/new.py"), []byte("new"), 0o644)
			os.Remove(filepath.Join(root, "src/m07/f0007.py"))
			os.WriteFile(filepath.Join(root, "requirements.txt"), []byte("numpy\ntorch\n"), 0o644)
			old := time.Now().Add(-time.Hour)
			for _, p := range []string{"src/m03/f0003.py", "src/m05/new.py", "requirements.txt"} {
				os.Chtimes(filepath.Join(root, p), old, old)
			}
			build("edited", 3, 1)
			build("unchanged again", 0, 1)
			// A file bigger than the large files with layers of their own: the last plan no
			// longer holds, and the context is planned again.
			big := filepath.Join(root, fmt.Sprintf("zzz-huge%s.bin", strings.ReplaceAll(dest, "/", "_"))) // in the last chunk
			os.WriteFile(big, bytes.Repeat([]byte("h"), 400<<10), 0o644)
			os.Chtimes(big, old, old)
			build("replanned", 1, 3)
			build("unchanged after", 0, 1)
		})
	}
}

// TestMakeStreamWalkError: an error met by a streamed walk is reported as the table walk
// reports it.
func TestMakeStreamWalkError(t *testing.T) {
	root := streamTree(t)
	if err := syscall.Mkfifo(filepath.Join(root, "src/m01/fifo"), 0o644); err != nil {
		t.Skip(err)
	}
	sources := []Source{{Dest: "/app", Path: root}}
	_, want := makeAt(context.Background(), sources, t.TempDir(), Options{}, PlanOptions{}, 1<<30)
	_, got := makeAt(context.Background(), sources, t.TempDir(), Options{}, PlanOptions{}, 100)
	if want == nil || got == nil || got.Error() != want.Error() {
		t.Fatalf("streamed: %v\nwant %v", got, want)
	}
	if errors.Is(got, errWalkTable) || errors.Is(got, errTooMany) {
		t.Fatalf("internal error leaked: %v", got)
	}
}

// streamOnce runs makeStream on root into /app with walk wrapped by wrap, as Make would.
func streamOnce(t *testing.T, ctx context.Context, root, cacheDir string, wrap func(n int, walk entryWalk) entryWalk) (*Result, error) {
	return streamOnceWith(t, ctx, root, cacheDir, Options{}, wrap)
}

func streamOnceWith(t *testing.T, ctx context.Context, root, cacheDir string, opts Options, wrap func(n int, walk entryWalk) entryWalk) (*Result, error) {
	t.Helper()
	sources := []Source{{Dest: "/app", Path: root}}
	cache, err := OpenCache(cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	stat := OpenStatCache(statCacheFile(cacheDir, sources))
	defer stat.Close()
	stat.tmpDir = cache.tmpDir()
	walk := sourceWalk(sources[0], "app")
	calls := 0
	wrapped := func(ctx context.Context, fn func(*Entry) error) error {
		calls++
		return wrap(calls, walk)(ctx, fn)
	}
	res := &Result{}
	err = makeStream(ctx, wrapped, "app", cache, stat, opts, PlanOptions{LargeFile: 64 << 10, MaxLargeLayers: 2, ChunkBytes: 8 << 10}, 4, res)
	return res, err
}

// leftovers lists what a failed build left in the cache's temporary folder and the stat folder.
func leftovers(t *testing.T, cacheDir string) []string {
	t.Helper()
	var out []string
	for _, d := range []string{"tmp", "stat"} {
		es, _ := os.ReadDir(filepath.Join(cacheDir, d))
		for _, e := range es {
			out = append(out, d+"/"+e.Name())
		}
	}
	return out
}

// TestMakeStreamContextChanged: a context that changes between the walk that plans and the one
// that builds fails the build with ErrFileChanged, and leaves no stat cache or temporary file.
func TestMakeStreamContextChanged(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(root string) error
	}{
		{"file added", func(root string) error {
			return os.WriteFile(filepath.Join(root, "src/m04/zzz.py"), []byte("new"), 0o644)
		}},
		{"file removed", func(root string) error { return os.Remove(filepath.Join(root, "src/m09/f0009.py")) }},
		{"file grew", func(root string) error {
			return os.WriteFile(filepath.Join(root, "src/m11/f0011.py"), []byte("much longer than it was before"), 0o644)
		}},
		{"large file added", func(root string) error {
			return os.WriteFile(filepath.Join(root, "models/w9.bin"), bytes.Repeat([]byte("w"), 300<<10), 0o644)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := streamTree(t)
			cacheDir := t.TempDir()
			_, err := streamOnce(t, context.Background(), root, cacheDir, func(n int, walk entryWalk) entryWalk {
				if n == 2 {
					if err := tc.change(root); err != nil {
						t.Fatal(err)
					}
				}
				return walk
			})
			if !errors.Is(err, ErrFileChanged) || !strings.Contains(err.Error(), "run the build again") {
				t.Fatalf("err = %v, want ErrFileChanged telling to run again", err)
			}
			if l := leftovers(t, cacheDir); len(l) > 0 {
				t.Errorf("left behind: %v", l)
			}
			// Nothing is lost: the next build succeeds.
			if _, err := streamOnce(t, context.Background(), root, cacheDir, func(_ int, w entryWalk) entryWalk { return w }); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestMakeStreamCanceled: a build canceled in the middle of its second walk returns the
// cancellation and leaves no stat cache or temporary file.
func TestMakeStreamCanceled(t *testing.T) {
	root := streamTree(t)
	cacheDir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := streamOnce(t, ctx, root, cacheDir, func(n int, walk entryWalk) entryWalk {
		if n == 1 {
			return walk
		}
		return func(ctx context.Context, fn func(*Entry) error) error {
			seen := 0
			return walk(ctx, func(e *Entry) error {
				if seen++; seen == 700 {
					cancel()
				}
				return fn(e)
			})
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if l := leftovers(t, cacheDir); len(l) > 0 {
		t.Errorf("left behind: %v", l)
	}
}

// TestMakeStreamBuildFails: a layer that cannot be written (a file gone after the walk found
// it) fails the build with that file's error, not a cancellation, and leaves nothing behind.
func TestMakeStreamBuildFails(t *testing.T) {
	root := streamTree(t)
	cacheDir := t.TempDir()
	_, err := streamOnce(t, context.Background(), root, cacheDir, func(n int, walk entryWalk) entryWalk {
		if n == 1 {
			return walk
		}
		return func(ctx context.Context, fn func(*Entry) error) error {
			return walk(ctx, func(e *Entry) error {
				if e.Path == "app/src/m05/f0005.py" {
					os.Remove(filepath.Join(root, "src/m05/f0005.py"))
				}
				return fn(e)
			})
		}
	})
	if err == nil || errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "f0005.py") {
		t.Fatalf("err = %v, want the missing file's error", err)
	}
	if l := leftovers(t, cacheDir); len(l) > 0 {
		t.Errorf("left behind: %v", l)
	}
}

func TestRoundDown3(t *testing.T) {
	for _, tc := range [][2]int64{{0, 0}, {7, 7}, {8, 8}, {9, 8}, {15, 14}, {69130684, 67108864}, {69133526, 67108864}, {100 << 20, 96 << 20}, {1<<40 + 5, 1 << 40}} {
		if got := roundDown3(tc[0]); got != tc[1] {
			t.Errorf("roundDown3(%d) = %d, want %d", tc[0], got, tc[1])
		}
	}
}

// slowRegistry knows no key we look for, and answers after a while: a new layer's write
// starts late, and it is streamed (Options.OnStream) as it is written.
type slowRegistry struct{}

func (slowRegistry) Layer(string) v1.Layer {
	time.Sleep(150 * time.Millisecond)
	return nil
}
func (slowRegistry) Empty() bool { return false }

// TestMakeStreamReplanFinishesLayers: when a build with the last plan finds that it no longer
// holds, a layer still in the making is finished, not canceled: its upload, which follows the
// write, would fail the push. The one walk is made to fail right after the chunk that holds
// only models/w1.bin (a forced cut: it is over the chunk size), whose content was changed, so
// that its layer is written, late, when the build goes back to planning.
func TestMakeStreamReplanFinishesLayers(t *testing.T) {
	root := streamTree(t)
	cacheDir := t.TempDir()
	same := func(_ int, w entryWalk) entryWalk { return w }
	if _, err := streamOnce(t, context.Background(), root, cacheDir, same); err != nil {
		t.Fatal(err)
	}
	var reads sync.WaitGroup
	var mu sync.Mutex
	var readErrs []error
	streamed := 0
	opts := Options{Remote: slowRegistry{}, OnStream: func(l v1.Layer) {
		mu.Lock()
		streamed++
		mu.Unlock()
		reads.Go(func() {
			if err := drain(l); err != nil {
				mu.Lock()
				readErrs = append(readErrs, err)
				mu.Unlock()
			}
		})
	}}
	res, err := streamOnceWith(t, context.Background(), root, cacheDir, opts, func(n int, walk entryWalk) entryWalk {
		if n > 1 {
			return walk
		}
		if err := os.WriteFile(filepath.Join(root, "models/w1.bin"), bytes.Repeat([]byte("x"), 80<<10), 0o644); err != nil {
			t.Fatal(err)
		}
		return func(ctx context.Context, fn func(*Entry) error) error {
			after := false
			return walk(ctx, func(e *Entry) error {
				if after {
					return fmt.Errorf("%w: gone", errWalkTable)
				}
				after = e.Path == "app/models/w1.bin"
				return fn(e)
			})
		}
	})
	reads.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if res.Walks != 3 {
		t.Errorf("%d walks, want 3 (one with the last plan, then two)", res.Walks)
	}
	if len(readErrs) > 0 {
		t.Errorf("streamed layers unreadable: %v", readErrs)
	}
	if streamed == 0 {
		t.Error("no layer was streamed: the test no longer has a write in flight when the plan fails")
	}
}

// drain reads a streamed layer's blob to its end, as its upload would.
func drain(l v1.Layer) error {
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}
