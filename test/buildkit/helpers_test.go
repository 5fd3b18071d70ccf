// Package buildkit_test runs the BuildKit path end to end against the real parts test/run.sh
// starts: buildkitd (test/setup.d/30-buildkitd.sh), the registry (10-registry.sh) and the
// Debian python and busybox bases (20-bases.sh); built images are run with runc
// (testenv.RunImage).
package buildkit_test

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/fairing-dev/fairing/pkg/buildkit"
	"github.com/fairing-dev/fairing/pkg/publish"
	"github.com/fairing-dev/fairing/pkg/registryclient"
)

// The variables test/setup.d/30-buildkitd.sh exports.
const (
	envBuildkitAddr = "FAIRING_TEST_BUILDKIT_ADDR"
	envBuildkitd    = "FAIRING_TEST_BUILDKITD"
)

// uniq is a string unique to this test run, put into file contents so that results never come
// from an earlier run's cache (or registry: the layers are reproducible).
func uniq(t *testing.T) string {
	return fmt.Sprintf("%s-%d", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), time.Now().UnixNano())
}

func dest(t *testing.T, s string) []publish.Destination {
	t.Helper()
	d, err := publish.ParseDestination(s, registryclient.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return []publish.Destination{d}
}

func pull(t *testing.T, ref string) v1.Image {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	return img
}

func layerDigests(t *testing.T, img v1.Image) []v1.Hash {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]v1.Hash, len(ls))
	for i, l := range ls {
		if out[i], err = l.Digest(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// readFile returns a file's content in the image's file system (the topmost layer that has it),
// reading the pushed layers: it checks what the registry holds, not what the builder reported.
func readFile(t *testing.T, img v1.Image, p string) (string, bool) {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	want := strings.TrimPrefix(path.Clean(p), "/")
	for i := len(ls) - 1; i >= 0; i-- {
		rc, err := ls[i].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				rc.Close()
				t.Fatal(err)
			}
			if strings.TrimPrefix(path.Clean(h.Name), "./") == want && h.Typeflag == tar.TypeReg {
				b, err := io.ReadAll(tr)
				rc.Close()
				if err != nil {
					t.Fatal(err)
				}
				return string(b), true
			}
		}
		rc.Close()
	}
	return "", false
}

// connect connects to the test's buildkitd once per test.
func connect(t *testing.T, addr string) *buildkit.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := buildkit.Connect(ctx, buildkit.ConnectOptions{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := path.Join(dir, p)
		if err := os.MkdirAll(path.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
