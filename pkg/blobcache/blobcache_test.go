package blobcache

import (
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
)

// counting is an image that counts the reads of its config (a registry round trip each).
type counting struct {
	v1.Image
	reads *atomic.Int32
}

func (c counting) RawConfigFile() ([]byte, error) {
	c.reads.Add(1)
	return c.Image.RawConfigFile()
}

func (c counting) ConfigFile() (*v1.ConfigFile, error) {
	c.reads.Add(1)
	return c.Image.ConfigFile()
}

func TestImageConfigReadOnce(t *testing.T) {
	img, err := random.Image(256, 2)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.RawConfigFile()
	name, _ := img.ConfigName()
	dir := t.TempDir()
	c := Open(filepath.Join(dir, "configs"), filepath.Join(dir, "tmp"))
	var reads atomic.Int32
	src := counting{img, &reads}

	for build := 1; build <= 3; build++ {
		got := c.Image(src)
		raw, err := got.RawConfigFile()
		if err != nil || string(raw) != string(want) {
			t.Fatalf("build %d: config %q, %v", build, raw, err)
		}
		cf, err := got.ConfigFile()
		if err != nil || len(cf.RootFS.DiffIDs) != 2 {
			t.Fatalf("build %d: parsed config %+v, %v", build, cf, err)
		}
		if n, _ := got.ConfigName(); n != name {
			t.Errorf("build %d: config name %s, want %s", build, n, name)
		}
		// a layer found by diff ID through the cached config
		l, err := got.LayerByDiffID(cf.RootFS.DiffIDs[1])
		if err != nil {
			t.Fatal(err)
		}
		if d, _ := l.DiffID(); d != cf.RootFS.DiffIDs[1] {
			t.Errorf("LayerByDiffID gave the layer of diff ID %s", d)
		}
	}
	if n := reads.Load(); n != 1 {
		t.Errorf("the config was read from the image %d times over 3 builds, want once", n)
	}

	// A damaged file is not used: the config is read again and the file repaired.
	file := filepath.Join(dir, "configs", name.Hex)
	if err := os.WriteFile(file, []byte(`{"architecture":"evil"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if cf, err := c.Image(src).ConfigFile(); err != nil || cf.Architecture == "evil" {
		t.Fatalf("a damaged cached config was used: %+v, %v", cf, err)
	}
	if reads.Load() != 2 {
		t.Errorf("reads %d, want 2 (the damaged file read around)", reads.Load())
	}
	if b, ok := c.Get(name); !ok || string(b) != string(want) {
		t.Errorf("the damaged file was not replaced: %q, %v", b, ok)
	}
	for _, d := range []string{"configs", "tmp"} {
		ents, _ := os.ReadDir(filepath.Join(dir, d))
		for _, e := range ents {
			if d == "tmp" || len(e.Name()) != 64 {
				t.Errorf("%s/%s left beside the configs", d, e.Name())
			}
		}
	}
}

func TestGetRefusesWhatIsNotItsDigest(t *testing.T) {
	c := Open(t.TempDir(), t.TempDir())
	if err := c.Put([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	h, _, _ := v1.SHA256(strings.NewReader("hello"))
	for _, tc := range []struct {
		name string
		d    v1.Hash
		ok   bool
	}{
		{"stored", h, true},
		{"other algorithm", v1.Hash{Algorithm: "sha512", Hex: h.Hex}, false},
		{"path in the hex", v1.Hash{Algorithm: "sha256", Hex: "../" + h.Hex[3:]}, false},
		{"absent", v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}, false},
	} {
		if b, ok := c.Get(tc.d); ok != tc.ok || ok && string(b) != "hello" {
			t.Errorf("%s: Get = %q, %v; want ok=%v", tc.name, b, ok, tc.ok)
		}
	}
}

// An index's images read their configs through the cache too.
func TestIndexImages(t *testing.T) {
	ri, err := random.Index(64, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	c := Open(t.TempDir(), t.TempDir())
	wrapped := c.Index(ri)
	im, err := wrapped.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		child, err := wrapped.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := child.RawConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		n, _ := child.ConfigName()
		if b, ok := c.Get(n); !ok || string(b) != string(raw) {
			t.Errorf("child %s: config not kept", d.Digest)
		}
	}
	if d1, _ := wrapped.Digest(); d1 != mustDigest(t, ri) {
		t.Error("the wrapped index has another digest")
	}
}

func mustDigest(t *testing.T, idx v1.ImageIndex) v1.Hash {
	t.Helper()
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}
