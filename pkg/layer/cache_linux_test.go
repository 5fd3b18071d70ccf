package layer

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// TestCacheFilesAppearOnlyByRename watches the cache with inotify during a build: outside
// tmp/, every file must appear by a rename of a complete file (IN_MOVED_TO), never be created
// and written in place (IN_CREATE), which a crash (SIGKILL, power cut) would leave half-written
// or as stray temporaries no one sweeps.
func TestCacheFilesAppearOnlyByRename(t *testing.T) {
	cacheDir := t.TempDir()
	if _, err := OpenCache(cacheDir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(cacheDir, "stat"), 0o755); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		t.Skipf("inotify: %v", err)
	}
	defer syscall.Close(fd)
	watched := map[int32]string{}
	for _, d := range []string{"layers", "blobs/sha256", "stat"} {
		wd, err := syscall.InotifyAddWatch(fd, filepath.Join(cacheDir, d), syscall.IN_CREATE|syscall.IN_MOVED_TO)
		if err != nil {
			t.Fatal(err)
		}
		watched[int32(wd)] = d
	}

	src := t.TempDir()
	files := map[string]string{"requirements.txt": "numpy\n"}
	for i := 0; i < 50; i++ {
		files[filepath.Join("src", strings.Repeat("d", i%3+1), "f"+string(rune('a'+i%26))+".py")+string(rune('0'+i/26))] = strings.Repeat("x", i*100)
	}
	writeTree(t, src, files)
	old := time.Now().Add(-time.Hour) // old enough for the stat cache to remember
	filepath.Walk(src, func(p string, _ os.FileInfo, _ error) error { return os.Chtimes(p, old, old) })
	res, err := Make(context.Background(), []Source{{Dest: "/app", Path: src}}, cacheDir, Options{}, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}

	buf := make([]byte, 64<<10)
	moved := 0
	for {
		n, err := syscall.Read(fd, buf)
		if errors.Is(err, syscall.EAGAIN) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off+syscall.SizeofInotifyEvent <= n; {
			ev := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameBytes := buf[off+syscall.SizeofInotifyEvent : off+syscall.SizeofInotifyEvent+int(ev.Len)]
			name := watched[ev.Wd] + "/" + string(bytes.TrimRight(nameBytes, "\x00"))
			off += syscall.SizeofInotifyEvent + int(ev.Len)
			switch {
			case ev.Mask&syscall.IN_CREATE != 0:
				t.Errorf("%s was created in place, outside tmp/: a crash leaves it half-written or stray", name)
			case ev.Mask&syscall.IN_MOVED_TO != 0:
				moved++
			}
		}
	}
	// every layer's blob and record, and the stat cache
	if want := 2*len(res.Layers) + 1; moved < want {
		t.Errorf("%d files renamed into place, want at least %d: the watch saw nothing?", moved, want)
	}
}
