package main

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// The preprocessor's start-up files (here the function shim, outside --workdir) are what an
// eStargz layer puts before its prefetch landmark.
func TestPreprocessorPrioritizesEstargz(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "jobs.py"), []byte("def train():\n    return 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "layout")
	if _, stderr, err := run(t, "build", "--context", dir, "--cache-dir", t.TempDir(), "--compression", "estargz",
		"--function", "jobs.py:train", "--destination", "oci:"+out+":v1"); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	p, err := layout.FromPath(out)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, strings.TrimPrefix(h.Name, "./"))
		}
		rc.Close()
		for i, n := range names {
			if n != "opt/fairing/function_shim.py" {
				continue
			}
			found = true
			lm := -1
			for j, m := range names {
				if m == estargz.PrefetchLandmark {
					lm = j
				}
			}
			if lm < i {
				t.Errorf("the function shim is not before the prefetch landmark: %q", names)
			}
		}
	}
	if !found {
		t.Fatal("no layer holds opt/fairing/function_shim.py")
	}
}
