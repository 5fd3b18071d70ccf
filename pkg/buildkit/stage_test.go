package buildkit

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fairing-dev/fairing/pkg/layer"
)

func stagedTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		s := filepath.ToSlash(rel) + " " + fi.Mode().String()
		if fi.Mode()&fs.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			s += " -> " + target
		}
		out = append(out, s)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func TestStage(t *testing.T) {
	src := project(t)
	if err := os.Symlink("train.py", filepath.Join(src, "latest.py")); err != nil {
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
	dir := filepath.Join(t.TempDir(), "context")
	if err := stage(p, dir); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"00-dependencies drwxr-xr-x",
		"00-dependencies/app drwxr-xr-x",
		"00-dependencies/app/requirements.txt -rw-r--r--",
		"01-source drwxr-xr-x",
		"01-source/app drwxr-xr-x",
		"01-source/app/latest.py Lrwxrwxrwx -> train.py",
		"01-source/app/train.py -rw-r--r--",
		"01-source/app/util drwxr-xr-x",
		"01-source/app/util/helpers.py -rw-r--r--",
		"02-generated drwxr-xr-x",
		"02-generated/app drwxr-xr-x",
		"02-generated/app/fairing_main.py -rwx------",
	}
	if got := stagedTree(t, dir); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("staged tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// local files are hard links: staging copies no data, and keeps size and mtime
	a, _ := os.Stat(filepath.Join(src, "train.py"))
	b, _ := os.Stat(filepath.Join(dir, "01-source/app/train.py"))
	if !os.SameFile(a, b) {
		t.Error("train.py was copied, not hard-linked")
	}

	// restaging: an unchanged generated file keeps its mtime (BuildKit then skips it in the
	// context transfer); a changed one gets a new one
	old := time.Unix(1000, 0)
	os.Chtimes(filepath.Join(dir, "02-generated/app/fairing_main.py"), old, old)
	if err := stage(p, dir); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "02-generated/app/fairing_main.py")); !fi.ModTime().Equal(old) {
		t.Errorf("unchanged generated file got a new mtime %v", fi.ModTime())
	}
	spec.Sources[1].Data = []byte("import train as t\n")
	if p, err = planSpec(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	if err := stage(p, dir); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "02-generated/app/fairing_main.py")); fi.ModTime().Equal(old) {
		t.Error("changed generated file kept its old mtime: BuildKit would not resend it")
	}
	for _, leftover := range []string{dir + ".next", dir + ".prev"} {
		if _, err := os.Stat(leftover); !os.IsNotExist(err) {
			t.Errorf("%s left behind", leftover)
		}
	}
}

func TestCopyFileFallback(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.WriteFile(src, []byte("data"), 0o640)
	mt := time.Unix(5000, 0)
	os.Chtimes(src, mt, mt)
	dst := filepath.Join(dir, "dst")
	if err := copyFile(src, dst, filepath.Join(dir, "none")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dst)
	if err != nil || fi.Mode().Perm() != 0o640 || !fi.ModTime().Equal(mt) {
		t.Fatalf("copy lost mode or mtime: %v %v", fi, err)
	}
	// an unchanged source reuses the previous staged copy (a link to it)
	dst2 := filepath.Join(dir, "dst2")
	if err := copyFile(src, dst2, dst); err != nil {
		t.Fatal(err)
	}
	f1, _ := os.Stat(dst)
	f2, _ := os.Stat(dst2)
	if !os.SameFile(f1, f2) {
		t.Error("unchanged file copied again")
	}
	if st, ok := f2.Sys().(*syscall.Stat_t); ok && st.Nlink != 2 {
		t.Errorf("nlink = %d", st.Nlink)
	}
}
