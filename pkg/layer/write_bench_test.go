package layer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkWriteLayer writes one source layer (3,000 small generated files, or the folder
// FAIRING_BENCH_TREE names, e.g. a folder of the benchmark harness's medium workload) beside
// its floor on this machine: the same tar compressed by the same compressor from memory, and
// hashed twice. The difference is the cost of reading the files and writing the tar.
func BenchmarkWriteLayer(b *testing.B) {
	root := os.Getenv("FAIRING_BENCH_TREE")
	if root == "" {
		root = b.TempDir()
		genTree(b, root, 3000, 11)
		os.Remove(filepath.Join(root, "weights.bin"))
	}
	entries := collectHashed(b, root)
	for i := range entries {
		entries[i].fromStat = entries[i].hashed
	}
	g := Group{Name: "source", Class: ClassSource, Entries: entries}
	c, err := OpenCache(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	bl, err := NewBuilder(c, Options{})
	if err != nil {
		b.Fatal(err)
	}
	tarred := g.tarEntries()
	var tarBuf bytes.Buffer
	if err := writeTar(context.Background(), &tarBuf, tarred, TarOptions{}); err != nil {
		b.Fatal(err)
	}
	b.Run("layer", func(b *testing.B) {
		b.SetBytes(int64(tarBuf.Len()))
		for b.Loop() {
			if _, _, err := bl.write(context.Background(), "", bl.tarEntries(&g), nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("floor", func(b *testing.B) {
		b.SetBytes(int64(tarBuf.Len()))
		for b.Loop() {
			h := &hashCounter{h: sha256.New()}
			zw, err := bl.pool.compressor(Gzip, h, 1)
			if err != nil {
				b.Fatal(err)
			}
			u := &hashCounter{h: sha256.New()}
			io.Copy(io.MultiWriter(zw, u), bytes.NewReader(tarBuf.Bytes()))
			zw.Close()
			bl.pool.put(zw)
		}
	})
}
