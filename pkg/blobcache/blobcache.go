// Package blobcache keeps the small content-addressed blobs a build reads from registries on
// every run, image configs and manifests, in a local directory, so a rebuild asks the registry
// only what can change: which manifest a tag names. A blob is named by its digest and checked
// against it when read, so a stale or damaged file is never used: it is read again.
package blobcache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// maxBlob bounds what is kept: configs are kilobytes; anything this big is not worth a file.
const maxBlob = 4 << 20

// Cache is a directory of blobs named by their sha256 digest (hex).
type Cache struct {
	dir, tmp string
}

// Open uses dir (created when first written to), writing through temporary files in tmp (on
// the same file system): an interrupted write leaves its file there, where the layer cache
// sweeps old ones, never in dir.
func Open(dir, tmp string) *Cache { return &Cache{dir: dir, tmp: tmp} }

func (c *Cache) path(d v1.Hash) string { return filepath.Join(c.dir, d.Hex) }

// Get returns the blob with digest d, if the cache holds it intact. A nil Cache holds nothing.
func (c *Cache) Get(d v1.Hash) ([]byte, bool) {
	if c == nil {
		return nil, false
	}
	if _, err := hex.DecodeString(d.Hex); d.Algorithm != "sha256" || len(d.Hex) != sha256.Size*2 || err != nil {
		return nil, false
	}
	b, err := os.ReadFile(c.path(d))
	if err != nil {
		return nil, false
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != d.Hex {
		return nil, false
	}
	return b, true
}

// Put stores b under its digest. It writes a temporary file and renames it, so a reader never
// sees part of a blob; a failure leaves the cache as it was and is not worth failing a build.
func (c *Cache) Put(b []byte) error {
	if c == nil || len(b) > maxBlob {
		return nil
	}
	sum := sha256.Sum256(b)
	d := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	if _, ok := c.Get(d); ok {
		return nil
	}
	dst := c.path(d)
	for _, d := range []string{c.dir, c.tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("blob cache: %w", err)
		}
	}
	f, err := os.CreateTemp(c.tmp, "meta-*")
	if err != nil {
		return fmt.Errorf("blob cache: %w", err)
	}
	_, werr := f.Write(b)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(f.Name(), dst)
	}
	if werr != nil {
		os.Remove(f.Name())
		return fmt.Errorf("blob cache: %w", werr)
	}
	return nil
}

// Image is img with its config read from the cache when the cache holds it, and kept in the
// cache once read from img. The config's digest comes from img's manifest, so a registry image
// whose manifest is at hand costs no request for its config. Anything else img does (its
// layers, its manifest) is img's own.
func (c *Cache) Image(img v1.Image) v1.Image {
	if c == nil || img == nil {
		return img
	}
	return &image{Image: img, c: c}
}

type image struct {
	v1.Image
	c    *Cache
	once sync.Once
	raw  []byte
	name v1.Hash
	err  error
}

func (i *image) load() {
	m, err := i.Image.Manifest()
	if err != nil {
		i.err = err
		return
	}
	i.name = m.Config.Digest
	if b, ok := i.c.Get(i.name); ok {
		i.raw = b
		return
	}
	if i.raw, i.err = i.Image.RawConfigFile(); i.err != nil {
		return
	}
	if sum := sha256.Sum256(i.raw); i.name.Algorithm == "sha256" && hex.EncodeToString(sum[:]) == i.name.Hex {
		i.c.Put(i.raw) // best effort: the next build asks the registry again
	}
}

func (i *image) RawConfigFile() ([]byte, error) {
	i.once.Do(i.load)
	return i.raw, i.err
}

func (i *image) ConfigFile() (*v1.ConfigFile, error) {
	raw, err := i.RawConfigFile()
	if err != nil {
		return nil, err
	}
	return v1.ParseConfigFile(bytes.NewReader(raw))
}

// LayerByDiffID finds the layer through the cached config: img's own would read its config.
func (i *image) LayerByDiffID(h v1.Hash) (v1.Layer, error) {
	cf, err := i.ConfigFile()
	if err != nil {
		return nil, err
	}
	m, err := i.Image.Manifest()
	if err != nil {
		return nil, err
	}
	for n, d := range cf.RootFS.DiffIDs {
		if d == h && n < len(m.Layers) {
			return i.Image.LayerByDigest(m.Layers[n].Digest)
		}
	}
	return nil, fmt.Errorf("blob cache: no layer with diff ID %s", h)
}

func (i *image) ConfigName() (v1.Hash, error) {
	i.once.Do(i.load)
	if i.err != nil {
		return v1.Hash{}, i.err
	}
	return i.name, nil
}

// Index is idx whose images read their configs through the cache.
func (c *Cache) Index(idx v1.ImageIndex) v1.ImageIndex {
	if c == nil || idx == nil {
		return idx
	}
	return &index{inner: idx, c: c}
}

type index struct {
	inner v1.ImageIndex
	c     *Cache
}

func (x *index) MediaType() (types.MediaType, error)         { return x.inner.MediaType() }
func (x *index) Digest() (v1.Hash, error)                    { return x.inner.Digest() }
func (x *index) Size() (int64, error)                        { return x.inner.Size() }
func (x *index) IndexManifest() (*v1.IndexManifest, error)   { return x.inner.IndexManifest() }
func (x *index) RawManifest() ([]byte, error)                { return x.inner.RawManifest() }
func (x *index) ImageIndex(h v1.Hash) (v1.ImageIndex, error) { return x.inner.ImageIndex(h) }

func (x *index) Image(h v1.Hash) (v1.Image, error) {
	img, err := x.inner.Image(h)
	if err != nil {
		return nil, err
	}
	return x.c.Image(img), nil
}
