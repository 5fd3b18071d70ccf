package preprocess

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/fairing-dev/fairing/pkg/layer"
	"github.com/fairing-dev/fairing/pkg/preprocess/preprocesstest"
)

// mkContext creates a context directory. Keys are slash paths; a key ending in "/" is an empty
// directory; a value starting with "->" makes a symlink.
func mkContext(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(content, "->"); ok {
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func mustPreprocess(t testing.TB, o Options) *Result {
	t.Helper()
	r, err := Preprocess(context.Background(), o)
	if err != nil {
		t.Fatalf("Preprocess: %v", err)
	}
	return r
}

func preprocessErr(t testing.TB, o Options) string {
	t.Helper()
	r, err := Preprocess(context.Background(), o)
	if err == nil {
		t.Fatalf("Preprocess succeeded (%v), want an error", r.Command)
	}
	return err.Error()
}

// describe renders sources as "DEST <- LOCAL (relative to base) [class]", or "<- generated".
// The fairing stub files are left out unless withStubs.
func describe(base string, srcs []layer.Source, withStubs bool) []string {
	var out []string
	for _, s := range srcs {
		if !withStubs && strings.HasPrefix(s.Dest, DefaultRuntimeDir+"/python/") {
			continue
		}
		from := "generated"
		if s.Path != "" {
			rel, err := filepath.Rel(base, s.Path)
			if err != nil || strings.HasPrefix(rel, "..") {
				rel = s.Path
			}
			from = rel
		}
		line := fmt.Sprintf("%s <- %s", s.Dest, from)
		if s.Class != layer.ClassAuto {
			line += fmt.Sprintf(" [%s]", className(s.Class))
		}
		out = append(out, line)
	}
	return out
}

func className(c layer.Class) string {
	switch c {
	case layer.ClassDeps:
		return "deps"
	case layer.ClassLarge:
		return "large"
	case layer.ClassSource:
		return "source"
	case layer.ClassTop:
		return "top"
	}
	return "auto"
}

// imageFiles materialises the sources and lists the files the image would hold (below
// /app and any other non-runtime root), as "path" or "path -> target" for symlinks.
func imageFiles(t testing.TB, srcs []layer.Source) []string {
	t.Helper()
	root := t.TempDir()
	preprocesstest.Materialize(t, root, srcs)
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = "/" + filepath.ToSlash(rel)
		if strings.HasPrefix(rel, DefaultRuntimeDir) || d.IsDir() {
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			rel += " -> " + target
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func equal(t testing.TB, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got: %#v\nwant: %#v", what, got, want)
	}
}
