package reliability_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fairing-dev/fairing/internal/testenv"
)

// A writer changes a file in a loop until stopped.
type writer func(stop <-chan struct{}, file string)

// grow appends to the file, starting over (truncating) every 96 MiB, as a log or a download
// being written does.
func grow(stop <-chan struct{}, file string) {
	chunk := codeText(5, 64<<10)
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	for n := 0; ; n += len(chunk) {
		select {
		case <-stop:
			return
		default:
		}
		if n >= 96<<20 {
			f.Truncate(0)
			n = 0
		}
		f.Write(chunk)
	}
}

// rewriter rewrites the file in place, chunk by chunk, alternately with a and b (same size): a
// reader that catches it mid-rewrite would get half of each, content that never existed.
func rewriter(a, b []byte) writer {
	return func(stop <-chan struct{}, file string) {
		f, err := os.OpenFile(file, os.O_WRONLY, 0)
		if err != nil {
			panic(err)
		}
		defer f.Close()
		for v := 0; ; v++ {
			src := [][]byte{b, a}[v%2]
			for off := 0; off < len(src); off += 256 << 10 {
				select {
				case <-stop:
					return
				default:
				}
				f.WriteAt(src[off:min(off+256<<10, len(src))], int64(off))
			}
		}
	}
}

// TestFileChangingWhileRead builds a context whose big file another goroutine keeps changing
// (growing, or rewritten in place with content of the same size). Each build must either fail
// with "file changed while it was being read", naming the file, or, if it happened to read
// the file between two changes, hold one whole version of it, never a mix. Afterwards, with
// the file left alone, the same cache must give exactly the image a fresh cache gives: nothing
// was cached (layer or stat cache) under a wrong key.
func TestFileChangingWhileRead(t *testing.T) {
	reg := testenv.Registry(t)
	base := testenv.BusyboxBase(t)
	a, b := codeText(21, 48<<20), codeText(22, 48<<20)
	for _, tc := range []struct {
		name string
		w    writer
		// whole reports whether content is one version the file really had.
		whole func(content []byte) bool
	}{
		{"grows", grow, func(c []byte) bool {
			// every state the file had: a prefix of a+chunks (before the first truncation) or
			// of chunks alone (after)
			chunk := codeText(5, 64<<10)
			if len(c) >= len(a) && bytes.Equal(c[:len(a)], a) {
				return prefixOfRepeat(c[len(a):], chunk)
			}
			return bytes.HasPrefix(a, c) || prefixOfRepeat(c, chunk)
		}},
		{"rewritten in place", rewriter(a, b), func(c []byte) bool { return bytes.Equal(c, a) || bytes.Equal(c, b) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctxDir := project(t, 9, 20, 0, 0)
			file := filepath.Join(ctxDir, "data", "big.bin")
			writeFiles(t, ctxDir, map[string][]byte{"data/big.bin": a})
			cache := t.TempDir()
			args := []string{"--context", ctxDir, "--base", base, "--cmd", "/app/run.sh", "--cache-dir", cache}

			detected, clean := 0, 0
			// Six builds, more while none has caught the file mid-change: the grower truncates
			// the file now and then, and a build whose walk saw it nearly empty reads it whole
			// before the next write (0 of 6 detections happened on a loaded machine).
			for i := 0; i < 6 || detected == 0 && i < 24; i++ {
				if i == 3 {
					// a warm stat cache: the file's digest is remembered from a stable build
					os.RemoveAll(cache)
					writeFiles(t, ctxDir, map[string][]byte{"data/big.bin": a})
					mustBuild(t, append(args, "--no-push")...)
					os.RemoveAll(filepath.Join(cache, "layers"))
				}
				stop := make(chan struct{})
				var wg sync.WaitGroup
				wg.Add(1)
				go func() { defer wg.Done(); tc.w(stop, file) }()
				time.Sleep(20 * time.Millisecond) // let it get going
				dest := reg + "/" + testenv.Repo(t) + ":v" + strconv.Itoa(i)
				r := run(t, runOpts{}, append(args, "--destination", dest)...)
				close(stop)
				wg.Wait()

				switch r.Code {
				case 1:
					line := lastLine(r.Stderr)
					if !strings.Contains(line, "file changed while it was being read") || !strings.Contains(line, file) {
						t.Fatalf("build %d failed, but not as a changing file:\n%s", i, r)
					}
					if present, _ := tagState(t, dest); present {
						t.Errorf("build %d failed, yet tagged %s", i, dest)
					}
					detected++
					if i == 0 {
						t.Logf("message: %s", line)
					}
				case 0:
					// read between two changes: the image must hold one whole version
					files := layerFiles(t, image(t, dest), len(r.Meta.Layers))
					if !tc.whole(files["app/data/big.bin"]) {
						t.Fatalf("build %d baked in a half-written file (%d bytes)", i, len(files["app/data/big.bin"]))
					}
					clean++
				default:
					t.Fatalf("build %d:\n%s", i, r)
				}
				checkCache(t, cache)
			}
			t.Logf("%d builds detected the change, %d read a whole version", detected, clean)
			if detected == 0 {
				t.Errorf("no build noticed the file changing under it")
			}

			// Left alone (and old enough for the stat cache), the file builds as from a fresh cache.
			writeFiles(t, ctxDir, map[string][]byte{"data/big.bin": b})
			want := mustBuild(t, "--context", ctxDir, "--base", base, "--cmd", "/app/run.sh", "--cache-dir", t.TempDir(), "--no-push")
			got := mustBuild(t, append(args, "--no-push")...)
			if got.Meta.Digest != want.Meta.Digest {
				t.Errorf("the cache used during the changes gives %s, a fresh cache %s: something was cached under a wrong key", got.Meta.Digest, want.Meta.Digest)
			}
			checkCache(t, cache)
		})
	}
}

// prefixOfRepeat reports whether c is a prefix of unit repeated.
func prefixOfRepeat(c, unit []byte) bool {
	for len(c) > 0 {
		n := min(len(c), len(unit))
		if !bytes.Equal(c[:n], unit[:n]) {
			return false
		}
		c = c[n:]
	}
	return true
}
