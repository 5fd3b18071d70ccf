package buildkit

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tonistiigi/fsutil"
	"github.com/tonistiigi/fsutil/types"
)

func walkTimes(t *testing.T, f fsutil.FS) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	err := f.Walk(context.Background(), "", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out[p] = fi.Sys().(*types.Stat).ModTime
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestEpochFS(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "sub/a.py"), []byte("v1"), 0o644)
	os.Symlink("a.py", filepath.Join(dir, "sub/link"))
	inner, err := fsutil.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	const epoch = 1700000000
	e := newEpochFS(inner, epoch)
	first := walkTimes(t, e)
	for p, mt := range first {
		if mt/1e9 != epoch {
			t.Errorf("%s: mtime %d is not in the epoch's second", p, mt)
		}
	}
	if first["sub"] != epoch*1e9 {
		t.Errorf("directory mtime %d, want exactly the epoch", first["sub"])
	}
	if again := walkTimes(t, e); again["sub/a.py"] != first["sub/a.py"] {
		t.Error("an unchanged file got another mtime")
	}
	// same size, new content: the transfer must see a change
	os.WriteFile(filepath.Join(dir, "sub/a.py"), []byte("v2"), 0o644)
	later := time.Now().Add(time.Second)
	os.Chtimes(filepath.Join(dir, "sub/a.py"), later, later)
	if second := walkTimes(t, e); second["sub/a.py"] == first["sub/a.py"] {
		t.Error("an edited file kept its presented mtime: BuildKit would not send it again")
	}
	// Open reads the real file
	rc, err := e.Open("sub/a.py")
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
}
