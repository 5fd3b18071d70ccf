package layer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Cache is a directory that maps a layer key to the layer's descriptor and keeps the
// compressed blob:
//
//	DIR/layers/<key>.json      diffID, digest, sizes, compression, annotations
//	DIR/blobs/sha256/<hex>     the compressed blob
//	DIR/tmp/                   blobs, records and stat files being written (renamed into place when complete)
//
// Every write is a rename of a complete file, so a crash or a concurrent build never leaves a
// torn entry; a record whose blob is missing or the wrong size is a miss.
type Cache struct {
	dir string
}

type record struct {
	Digest           string            `json:"digest"`
	DiffID           string            `json:"diffID"`
	Size             int64             `json:"size"`
	UncompressedSize int64             `json:"uncompressedSize"`
	Compression      Compression       `json:"compression"`
	Annotations      map[string]string `json:"annotations,omitempty"`
}

// staleTmp is how old a temporary file must be before another build may delete it: older than
// any build that could still be writing it.
const staleTmp = 6 * time.Hour

// OpenCache opens (creating if needed) a layer cache in dir.
func OpenCache(dir string) (*Cache, error) {
	c := &Cache{dir: dir}
	for _, d := range []string{c.layersDir(), filepath.Join(dir, "blobs", "sha256"), c.tmpDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create cache dir: %w", err)
		}
	}
	if ents, err := os.ReadDir(c.tmpDir()); err == nil {
		for _, e := range ents {
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleTmp {
				os.Remove(filepath.Join(c.tmpDir(), e.Name()))
			}
		}
	}
	return c, nil
}

// Dir is the cache's directory.
func (c *Cache) Dir() string { return c.dir }

func (c *Cache) layersDir() string { return filepath.Join(c.dir, "layers") }
func (c *Cache) tmpDir() string    { return filepath.Join(c.dir, "tmp") }

func (c *Cache) recordPath(key string) string { return filepath.Join(c.layersDir(), key+".json") }

func (c *Cache) blobPath(digest string) string {
	return filepath.Join(c.dir, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))
}

// lookup returns the record for key if it and its blob are intact.
func (c *Cache) lookup(key string) (record, bool) {
	var r record
	b, err := os.ReadFile(c.recordPath(key))
	if err != nil {
		return r, false
	}
	if err := json.Unmarshal(b, &r); err != nil || !strings.HasPrefix(r.Digest, "sha256:") {
		return r, false
	}
	fi, err := os.Stat(c.blobPath(r.Digest))
	if err != nil || fi.Size() != r.Size {
		return r, false
	}
	return r, true
}

// empty reports whether the cache holds no layer at all (a new cache dir).
func (c *Cache) empty() bool {
	d, err := os.Open(c.layersDir())
	if err != nil {
		return false
	}
	defer d.Close()
	names, _ := d.Readdirnames(1)
	return len(names) == 0
}

// store moves a complete blob into place, then writes the record that points at it.
func (c *Cache) store(key string, r record, tmpBlob string) error {
	if err := os.Rename(tmpBlob, c.blobPath(r.Digest)); err != nil {
		return fmt.Errorf("store layer blob: %w", err)
	}
	err := writeFileAtomic(c.recordPath(key), c.tmpDir(), func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	})
	if err != nil {
		return fmt.Errorf("store layer record: %w", err)
	}
	return nil
}

// forget drops a record whose blob turned out corrupt.
func (c *Cache) forget(key string, r record) {
	os.Remove(c.recordPath(key))
	if err := os.Remove(c.blobPath(r.Digest)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return
	}
}
