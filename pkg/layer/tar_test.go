package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// tarTree writes n small files, a bigger one, an empty one and a symlink, and returns the
// entries (hashed, as a rebuilt layer's are) and the root.
func tarTree(t *testing.T, n int) ([]Entry, string) {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{"big.bin": strings.Repeat("B", 1<<20+1), "empty.txt": ""}
	for i := range n {
		files[fmt.Sprintf("src/m%03d.py", i)] = strings.Repeat(fmt.Sprintf("x = %d\n", i), i*37%500)
	}
	writeTree(t, root, files)
	if err := os.Symlink("src/m001.py", filepath.Join(root, "link.py")); err != nil {
		t.Fatal(err)
	}
	entries := collectHashed(t, root)
	entries = append(entries, Entry{Path: "zz/generated.txt", Type: TypeFile, Mode: 0o644, Size: 5, src: dataOrigin([]byte("hello"))})
	return entries, root
}

// The tar holds every entry in order, each file exactly as it is.
func TestTarHoldsTheFiles(t *testing.T) {
	entries, root := tarTree(t, 300)
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
		want := e.Content()
		if e.local() {
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

// Changed content, a changed size and a file gone are errors, and with several the first in
// the tar's order is the one reported. Content rewritten under its old size and mtime is caught
// by its ctime, whether its digest came from the stat cache (then its content is not hashed
// again) or from this build; where no ctime is known, by its content.
func TestTarFilesChecked(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(root string)
		// entries is how the entries are marked before the tar is written
		entries func(es []Entry)
		want    string
	}{
		{name: "same size and mtime, other bytes", change: func(root string) { rewriteSameStat(t, filepath.Join(root, "src/m200.py")) },
			want: "src/m200.py: file changed while it was being read (written to since"},
		{name: "same size and mtime, other bytes, digest from the stat cache", change: func(root string) { rewriteSameStat(t, filepath.Join(root, "src/m200.py")) },
			entries: func(es []Entry) {
				for i := range es {
					es[i].fromStat = es[i].hashed && es[i].local()
				}
			},
			want: "src/m200.py: file changed while it was being read (written to since"},
		{name: "same size and mtime, other bytes, no ctime known", change: func(root string) { rewriteSameStat(t, filepath.Join(root, "src/m200.py")) },
			entries: func(es []Entry) {
				for i := range es {
					es[i].ctimeNs = 0
				}
			},
			want: "src/m200.py: file changed while it was being read (content differs"},
		{name: "grown", change: func(root string) { appendTo(t, filepath.Join(root, "src/m150.py")) },
			want: "src/m150.py: file changed while it was being read (size"},
		{name: "gone", change: func(root string) { os.Remove(filepath.Join(root, "src/m250.py")) },
			want: "ROOT/src/m250.py: file changed while it was being read (it was deleted)"},
		{name: "swapped for a named pipe", change: func(root string) {
			p := filepath.Join(root, "src/m250.py")
			os.Remove(p)
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
		}, want: "ROOT/src/m250.py: file changed while it was being read (size"},
		{name: "swapped for a symlink", change: func(root string) {
			p := filepath.Join(root, "src/m250.py")
			os.Remove(p)
			if err := os.Symlink("/etc/hostname", p); err != nil {
				t.Fatal(err)
			}
		}, want: "ROOT/src/m250.py: file changed while it was being read (it became a symlink)"},
		{name: "the first of several", change: func(root string) {
			os.Remove(filepath.Join(root, "src/m260.py"))
			rewriteSameStat(t, filepath.Join(root, "src/m120.py"))
			appendTo(t, filepath.Join(root, "src/m280.py"))
		}, want: "src/m120.py: file changed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entries, root := tarTree(t, 300)
			if tc.entries != nil {
				tc.entries(entries)
			}
			if err := writeTar(context.Background(), io.Discard, entries, TarOptions{}); err != nil {
				t.Fatalf("before the change: %v", err)
			}
			tc.change(root)
			err := writeTar(context.Background(), io.Discard, entries, TarOptions{})
			if want := strings.ReplaceAll(tc.want, "ROOT", root); err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("err = %v, want one containing %q", err, want)
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
