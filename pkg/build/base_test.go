package build

import (
	"errors"
	"sync/atomic"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// gate is an index that counts the images read from it and can be closed (a registry gone).
type gate struct {
	idx    v1.ImageIndex
	reads  atomic.Int32
	closed atomic.Bool
}

func (g *gate) MediaType() (types.MediaType, error)         { return g.idx.MediaType() }
func (g *gate) Digest() (v1.Hash, error)                    { return g.idx.Digest() }
func (g *gate) Size() (int64, error)                        { return g.idx.Size() }
func (g *gate) IndexManifest() (*v1.IndexManifest, error)   { return g.idx.IndexManifest() }
func (g *gate) RawManifest() ([]byte, error)                { return g.idx.RawManifest() }
func (g *gate) ImageIndex(h v1.Hash) (v1.ImageIndex, error) { return g.idx.ImageIndex(h) }

func (g *gate) Image(h v1.Hash) (v1.Image, error) {
	if g.closed.Load() {
		return nil, errors.New("the registry was asked again")
	}
	g.reads.Add(1)
	return g.idx.Image(h)
}

// Prefetch reads what Build needs of a multi-platform base, once per chosen platform, so that
// Build, after the layers are done, asks the registry nothing more.
func TestPrefetchMultiPlatformBase(t *testing.T) {
	plats := []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}, {OS: "linux", Architecture: "s390x"}}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range plats {
		img, err := random.Image(64, 1)
		if err != nil {
			t.Fatal(err)
		}
		cf, _ := img.ConfigFile()
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = p.OS, p.Architecture
		img, _ = mutate.ConfigFile(img, cf)
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	layer, err := random.Layer(64, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		want  []v1.Platform
		reads int32
	}{
		{"every platform", nil, 3},
		{"two of three", plats[:2], 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &gate{idx: idx}
			d, _ := idx.Digest()
			b := &Base{Name: "reg.example/py:3", Index: g, Digest: d}
			if err := b.Prefetch(tc.want); err != nil {
				t.Fatal(err)
			}
			g.closed.Store(true)
			res, err := Build(Options{Base: b, Platforms: tc.want, Layers: []Layer{{Layer: layer, Comment: "code"}}})
			if err != nil {
				t.Fatalf("Build read the base again after Prefetch: %v", err)
			}
			if n := g.reads.Load(); n != tc.reads {
				t.Errorf("%d images read from the base, want %d", n, tc.reads)
			}
			if len(res.Platforms) != len(plats) && tc.want == nil || tc.want != nil && len(res.Platforms) != len(tc.want) {
				t.Errorf("built for %v", res.Platforms)
			}
			// Platforms says beforehand how many images (configs) the build makes.
			if n := b.Platforms(tc.want); n != len(res.Platforms) {
				t.Errorf("Platforms = %d, built %d", n, len(res.Platforms))
			}
		})
	}
}
