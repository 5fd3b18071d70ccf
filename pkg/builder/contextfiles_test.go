package builder

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/fairing-dev/fairing/pkg/contextimage"
)

// A pushed context unpacked for BuildKit holds the very files that were sent (modes too), becomes
// the build's sources, and brings the command, environment and dependency files it recorded.
func TestMaterializeContext(t *testing.T) {
	reg := memRegistry(t)
	pushBase(t, reg+"/base/img:1", types.OCIManifestSchema1, amd64)
	ctxDir := project(t)
	if err := os.WriteFile(filepath.Join(ctxDir, "run.sh"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("train.py", filepath.Join(ctxDir, "main.py")); err != nil {
		t.Fatal(err)
	}
	o := opts(t, ctxDir, reg+"/base/img:1")
	meta := contextimage.Meta{Workdir: "/app", Command: []string{"python3", "/app/train.py"}, Env: []string{"A=1"}, Dependencies: []string{"/app/requirements.txt"}}
	ref, _, err := PushContext(context.Background(), o, reg+"/me/app", meta)
	if err != nil {
		t.Fatal(err)
	}
	if deps, err := ContextDependencies(context.Background(), Options{ContextRef: ref}); err != nil || len(deps) != 1 || deps[0] != "/app/requirements.txt" {
		t.Errorf("ContextDependencies = %v, %v", deps, err)
	}

	dir := t.TempDir()
	p := Options{ContextRef: ref}
	if err := MaterializeContext(context.Background(), &p, dir); err != nil {
		t.Fatal(err)
	}
	if p.ContextRef != "" || len(p.Sources) != 1 || p.Sources[0].Dest != "/app" || p.Sources[0].Path != filepath.Join(dir, "app") {
		t.Errorf("sources %+v, context %q", p.Sources, p.ContextRef)
	}
	if strings.Join(p.Config.Cmd, " ") != "python3 /app/train.py" || p.Config.WorkingDir != "/app" || strings.Join(p.Config.Env, ",") != "A=1" || len(p.Dependencies) != 1 {
		t.Errorf("meta not applied: %+v, deps %v", p.Config, p.Dependencies)
	}
	for _, f := range []string{"train.py", "requirements.txt", "lib/util.py", "run.sh"} {
		want, _ := os.ReadFile(filepath.Join(ctxDir, f))
		got, err := os.ReadFile(filepath.Join(dir, "app", f))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %q, %v; want %q", f, got, err, want)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "app", "run.sh")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("run.sh mode: %v, %v", fi, err)
	}
	if l, err := os.Readlink(filepath.Join(dir, "app", "main.py")); err != nil || l != "train.py" {
		t.Errorf("main.py symlink: %q, %v", l, err)
	}
}

// Whatever a context artifact holds, unpacking writes only inside its folder.
func TestUntarStaysInside(t *testing.T) {
	type entry struct {
		name, link string
		typ        byte
	}
	for name, entries := range map[string][]entry{
		"dot-dot":             {{name: "../escape", typ: tar.TypeReg}},
		"hard link outside":   {{name: "a", typ: tar.TypeLink, link: "../../etc/passwd"}},
		"through a symlink":   {{name: "d", typ: tar.TypeSymlink, link: "/tmp"}, {name: "d/escape", typ: tar.TypeReg}},
		"through a dir link":  {{name: "up", typ: tar.TypeSymlink, link: ".."}, {name: "up/escape", typ: tar.TypeReg}},
		"a device is refused": {{name: "dev", typ: tar.TypeChar}},
	} {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			tw := tar.NewWriter(&b)
			for _, e := range entries {
				h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o644}
				if e.typ == tar.TypeReg {
					h.Size = 1
				}
				if err := tw.WriteHeader(h); err != nil {
					t.Fatal(err)
				}
				if e.typ == tar.TypeReg {
					tw.Write([]byte("x"))
				}
			}
			tw.Close()
			parent := t.TempDir()
			dir := filepath.Join(parent, "ctx")
			os.Mkdir(dir, 0o755)
			root, err := os.OpenRoot(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			if err := untar(context.Background(), &b, root); err == nil {
				t.Errorf("no error")
			}
			if _, err := os.Stat(filepath.Join(parent, "escape")); err == nil {
				t.Errorf("a file was written outside")
			}
			if _, err := os.Stat("/tmp/escape"); err == nil {
				t.Errorf("a file was written outside")
			}
		})
	}
}
