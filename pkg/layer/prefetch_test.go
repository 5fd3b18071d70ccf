package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// prefetchTree writes n small files, a file too big to be read ahead and a symlink, and
// returns the entries (hashed, as a rebuilt layer's are) and the root.
func prefetchTree(t *testing.T, n int) ([]Entry, string) {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{"big.bin": strings.Repeat("B", prefetchMax+1), "empty.txt": ""}
	for i := range n {
		files[fmt.Sprintf("src/m%03d.py", i)] = strings.Repeat(fmt.Sprintf("x = %d\n", i), i*37%500)
	}
	writeTree(t, root, files)
	if err := os.Symlink("src/m001.py", filepath.Join(root, "link.py")); err != nil {
		t.Fatal(err)
	}
	entries := collectHashed(t, root)
	entries = append(entries, Entry{Path: "zz/generated.txt", Type: TypeFile, Mode: 0o644, Size: 5, Data: []byte("hello")})
	return entries, root
}

// What is read ahead lands in the tar exactly where and as the files are.
func TestPrefetchedTarHoldsTheFiles(t *testing.T) {
	entries, root := prefetchTree(t, 300)
	var out bytes.Buffer
	if err := writeTar(context.Background(), &out, entries, TarOptions{}); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&out)
	for i := range entries {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		e := &entries[i]
		if strings.TrimSuffix(h.Name, "/") != e.Path {
			t.Fatalf("entry %d is %s, want %s", i, h.Name, e.Path)
		}
		if e.Type != TypeFile {
			continue
		}
		got, _ := io.ReadAll(tr)
		want := e.Data
		if e.Source != "" {
			want, _ = os.ReadFile(filepath.Join(root, strings.TrimPrefix(e.Path, "app/")))
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: %d bytes in the tar, %d in the file", e.Path, len(got), len(want))
		}
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Fatalf("after the last entry: %v", err)
	}
}

// A file read ahead gets the checks of one streamed: changed content, a changed size and a
// file gone are errors, and with several the first in the tar's order is the one reported.
func TestPrefetchedFilesChecked(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(root string)
		want   string
	}{
		{name: "same size and mtime, other bytes", change: func(root string) { rewriteSameStat(t, filepath.Join(root, "src/m200.py")) },
			want: "src/m200.py: file changed while it was being read (content differs"},
		{name: "grown", change: func(root string) { appendTo(t, filepath.Join(root, "src/m150.py")) },
			want: "src/m150.py: file changed while it was being read (size"},
		{name: "gone", change: func(root string) { os.Remove(filepath.Join(root, "src/m250.py")) },
			want: "cannot read " + "ROOT/src/m250.py"},
		{name: "the first of several", change: func(root string) {
			os.Remove(filepath.Join(root, "src/m260.py"))
			rewriteSameStat(t, filepath.Join(root, "src/m120.py"))
			appendTo(t, filepath.Join(root, "src/m280.py"))
		}, want: "src/m120.py: file changed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			entries, root := prefetchTree(t, 300)
			tc.change(root)
			err := writeTar(context.Background(), io.Discard, entries, TarOptions{})
			if want := strings.ReplaceAll(tc.want, "ROOT", root); err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("err = %v, want one containing %q", err, want)
			}
			// the readers ahead are gone once the writer returns
			deadline := time.Now().Add(5 * time.Second)
			for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := runtime.NumGoroutine(); n > before {
				t.Errorf("%d goroutines left, %d before", n, before)
			}
		})
	}
}

// rewriteSameStat gives a file other bytes of the same length and its old mtime.
func rewriteSameStat(t *testing.T, p string) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	for i := range b {
		b[i] = 'Z'
	}
	if len(b) == 0 {
		t.Fatalf("%s is empty", p)
	}
	os.WriteFile(p, b, 0o644)
	os.Chtimes(p, fi.ModTime(), fi.ModTime())
}

func appendTo(t *testing.T, p string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("more\n")
	f.Close()
}

// Canceled mid-tar, the writer returns and leaves no reader behind.
func TestPrefetchCanceled(t *testing.T) {
	entries, _ := prefetchTree(t, 300)
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	w := &cancelAfter{n: 64 << 10, cancel: cancel}
	err := writeTar(ctx, w, entries, TarOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want canceled", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines left, %d before", n, before)
	}
}

// cancelAfter cancels once n bytes went through it.
type cancelAfter struct {
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Write(p []byte) (int, error) {
	c.n -= len(p)
	if c.n <= 0 {
		c.cancel()
	}
	return len(p), nil
}

// BenchmarkSourceLayer writes a source layer of 2,000 small files as a rebuild does (tar,
// content check, diffID, gzip on every core).
func BenchmarkSourceLayer(b *testing.B) {
	root := b.TempDir()
	files := map[string]string{}
	for i := range 2000 {
		files[fmt.Sprintf("src/p%02d/m%04d.py", i%40, i)] = strings.Repeat(fmt.Sprintf("def f%d(x):\n    return x * %d\n", i, i), 120)
	}
	writeTree(b, root, files)
	entries := collectHashed(b, root)
	b.ResetTimer()
	for range b.N {
		zw, _ := Gzip.compressor(io.Discard, Gzip.DefaultLevel())
		h := &hashCounter{h: sha256.New()}
		if err := writeTar(context.Background(), io.MultiWriter(zw, h), entries, TarOptions{}); err != nil {
			b.Fatal(err)
		}
		zw.Close()
	}
}

func TestSmallBufClasses(t *testing.T) {
	for _, tc := range []struct{ n, capacity int }{
		{0, 4 << 10}, {1, 4 << 10}, {4 << 10, 4 << 10}, {4<<10 + 1, 8 << 10}, {100 << 10, 128 << 10}, {prefetchMax, prefetchMax},
	} {
		b := getSmallBuf(tc.n)
		if len(b) != tc.n || cap(b) != tc.capacity {
			t.Errorf("getSmallBuf(%d): len %d cap %d, want cap %d", tc.n, len(b), cap(b), tc.capacity)
		}
		putSmallBuf(b)
	}
	putSmallBuf(make([]byte, 5000)) // not a class size: dropped, not pooled
	if b := getSmallBuf(5000); cap(b) != 8<<10 {
		t.Errorf("a foreign buffer came back from the pool: cap %d", cap(b))
	}
}
