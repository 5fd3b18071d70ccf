package buildkit

import (
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tonistiigi/fsutil"
	"github.com/tonistiigi/fsutil/types"

	"github.com/fairing-dev/fairing/pkg/layer"
)

type walked struct {
	path string
	stat *types.Stat
}

func walkAll(t *testing.T, f fsutil.FS, target string) []walked {
	t.Helper()
	var out []walked
	err := f.Walk(context.Background(), target, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out = append(out, walked{p, fi.Sys().(*types.Stat)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestContextFS(t *testing.T) {
	src := project(t)
	if err := os.Symlink("train.py", filepath.Join(src, "latest.py")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(src, "train.py"), filepath.Join(src, "train2.py")); err != nil {
		t.Fatal(err)
	}
	spec := Spec{Base: "b", Sources: []layer.Source{
		{Dest: "/app", Path: src, Ignore: mustPM(t, ".git", "pkgs")},
		{Dest: "/app/fairing_main.py", Data: []byte("import train\n"), Mode: 0o700, Class: layer.ClassTop},
	}}
	p, err := planSpec(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	const epoch = 1700000000
	c := newContextFS(p, epoch)
	var got []string
	for _, w := range walkAll(t, c, "/") {
		s := w.path + " " + fs.FileMode(w.stat.Mode).String()
		if w.stat.Linkname != "" {
			s += " -> " + w.stat.Linkname
		}
		got = append(got, s)
		if w.stat.ModTime/1e9 != epoch {
			t.Errorf("%s: mtime %d outside the epoch's second", w.path, w.stat.ModTime)
		}
		if fs.FileMode(w.stat.Mode).IsDir() && w.stat.ModTime != epoch*1e9 {
			t.Errorf("%s: directory mtime %d, want the epoch exactly", w.path, w.stat.ModTime)
		}
	}
	// WalkDir order; hard links within a layer stay links
	want := []string{
		"00-dependencies drwxr-xr-x",
		"00-dependencies/app drwxr-xr-x",
		"00-dependencies/app/requirements.txt -rw-r--r--",
		"01-source drwxr-xr-x",
		"01-source/app drwxr-xr-x",
		"01-source/app/latest.py Lrwxrwxrwx -> train.py",
		"01-source/app/train.py -rw-r--r--",
		"01-source/app/train2.py -rw-r--r-- -> 01-source/app/train.py",
		"01-source/app/util drwxr-xr-x",
		"01-source/app/util/helpers.py -rw-r--r--",
		"02-generated drwxr-xr-x",
		"02-generated/app drwxr-xr-x",
		"02-generated/app/fairing_main.py -rwx------",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("context:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if sub := walkAll(t, c, "01-source/app/util"); len(sub) != 2 || sub[1].path != "01-source/app/util/helpers.py" {
		t.Errorf("walk of a subtree: %v", sub)
	}
	for name, want := range map[string]string{"01-source/app/train.py": "import mylib\nprint(mylib.hello())\n", "02-generated/app/fairing_main.py": "import train\n"} {
		rc, err := c.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if string(b) != want {
			t.Errorf("%s = %q", name, b)
		}
	}
	if _, err := c.Open("01-source/app"); err == nil {
		t.Error("opened a directory")
	}

	// same sizes, new contents: the presented times change, so the transfer resends them
	before := times(walkAll(t, c, ""))
	os.WriteFile(filepath.Join(src, "util/helpers.py"), []byte("X = 2\n"), 0o644)
	later := time.Now().Add(2 * time.Second)
	os.Chtimes(filepath.Join(src, "util/helpers.py"), later, later)
	spec.Sources[1].Data = []byte("import tra1n\n")
	if p, err = planSpec(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	after := times(walkAll(t, newContextFS(p, epoch), ""))
	for path, changed := range map[string]bool{
		"01-source/app/util/helpers.py":        true,
		"02-generated/app/fairing_main.py":     true,
		"01-source/app/train.py":               false,
		"00-dependencies/app/requirements.txt": false,
	} {
		if (before[path] != after[path]) != changed {
			t.Errorf("%s: presented mtime %d → %d, want changed=%v", path, before[path], after[path], changed)
		}
	}
}

func times(ws []walked) map[string]int64 {
	m := map[string]int64{}
	for _, w := range ws {
		m[w.path] = w.stat.ModTime
	}
	return m
}

func TestWalkLess(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		less bool
	}{
		{"a", "a/b", true},
		{"a/b", "a-c", true}, // WalkDir finishes a/ before a-c; a plain string sort would not
		{"a-c", "a/b", false},
		{"a/b", "a/c", true},
		{"b", "a/z", false},
	} {
		if walkLess(tc.a, tc.b) != tc.less {
			t.Errorf("walkLess(%q, %q) = %v", tc.a, tc.b, !tc.less)
		}
	}
}
