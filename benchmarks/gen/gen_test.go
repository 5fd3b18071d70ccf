package gen

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// treeDigest hashes every path, mode and content of a tree, in walk (sorted) order.
func treeDigest(t *testing.T, dir string) (digest string, files int, text []byte, total int64) {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h.Write([]byte(rel + "\x00"))
		h.Write(b)
		files++
		total += int64(len(b))
		if !strings.HasPrefix(rel, "models") {
			text = append(text, b...)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil)), files, text, total
}

func gzipRatio(t *testing.T, b []byte, level int) float64 {
	var buf bytes.Buffer
	w, err := gzip.NewWriterLevel(&buf, level)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	w.Close()
	return float64(buf.Len()) / float64(len(b))
}

func TestGenerateReproducibleAndCodeLike(t *testing.T) {
	s := Specs["tiny"]
	a, b := t.TempDir(), t.TempDir()
	for _, d := range []string{a, b} {
		if err := Generate(context.Background(), d, s); err != nil {
			t.Fatal(err)
		}
	}
	da, files, text, total := treeDigest(t, a)
	db, _, _, _ := treeDigest(t, b)
	if da != db {
		t.Fatalf("same spec gave different trees: %s vs %s", da, db)
	}
	if files != s.Files {
		t.Errorf("files = %d, want %d", files, s.Files)
	}
	// requirements.txt is outside CodeBytes.
	if text := int64(len(text)); text < s.CodeBytes || text > s.CodeBytes+2000 {
		t.Errorf("text bytes = %d, want about %d", text, s.CodeBytes)
	}
	if total < s.TotalBytes() {
		t.Errorf("total = %d, want at least %d", total, s.TotalBytes())
	}
	// Real code: ~0.25 at gzip -6, ~0.29 at gzip -1 (measured on Go and Python sources).
	t.Logf("text: %d bytes, gzip -6 %.3f, gzip -1 %.3f", len(text), gzipRatio(t, text, gzip.DefaultCompression), gzipRatio(t, text, gzip.BestSpeed))
	if r := gzipRatio(t, text, gzip.DefaultCompression); r < 0.20 || r > 0.30 {
		t.Errorf("gzip -6 ratio of the text = %.3f, want 0.20-0.30 (real code)", r)
	}
	if r := gzipRatio(t, text, gzip.BestSpeed); r < 0.24 || r > 0.34 {
		t.Errorf("gzip -1 ratio of the text = %.3f, want 0.24-0.34 (real code)", r)
	}
	w, err := os.ReadFile(filepath.Join(a, "models", "embeddings.npy"))
	if err != nil {
		t.Fatal(err)
	}
	if r := gzipRatio(t, w, gzip.BestSpeed); r < 0.8 {
		t.Errorf("weights gzip ratio = %.3f, want >= 0.8 (float32 weights barely compress)", r)
	}

	s2 := s
	s2.Seed = 2
	c := t.TempDir()
	if err := Generate(context.Background(), c, s2); err != nil {
		t.Fatal(err)
	}
	if dc, _, _, _ := treeDigest(t, c); dc == da {
		t.Error("another seed gave the same tree")
	}
	if err := Generate(context.Background(), a, s); err == nil {
		t.Error("generating into a non-empty folder succeeded")
	}
}

func TestMutations(t *testing.T) {
	run := func(dir string) []string {
		if err := Generate(context.Background(), dir, Specs["tiny"]); err != nil {
			t.Fatal(err)
		}
		m := &Mutator{Dir: dir, Seed: 7}
		var digests []string
		steps := []func() (Change, error){
			m.EditOne,
			m.AddDelete,
			func() (Change, error) { return m.EditFraction(0.1) },
			m.ReplaceLarge,
		}
		prev, _, _, _ := treeDigest(t, dir)
		for i, f := range steps {
			c, err := f()
			if err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
			if len(c.Edited)+len(c.Added)+len(c.Deleted) == 0 || c.Bytes == 0 {
				t.Errorf("step %d changed nothing: %+v", i, c)
			}
			d, _, _, _ := treeDigest(t, dir)
			if d == prev {
				t.Errorf("step %d left the tree as it was", i)
			}
			prev = d
			digests = append(digests, d)
			switch i {
			case 0:
				if len(c.Edited) != 1 {
					t.Errorf("EditOne edited %d files", len(c.Edited))
				}
			case 1:
				if _, err := os.Stat(filepath.Join(dir, c.Deleted[0])); !os.IsNotExist(err) {
					t.Errorf("AddDelete: %s still there", c.Deleted[0])
				}
				if _, err := os.Stat(filepath.Join(dir, c.Added[0])); err != nil {
					t.Errorf("AddDelete: %v", err)
				}
			case 2:
				srcs, _ := m.sources()
				if want := len(srcs) / 10; len(c.Edited) != want {
					t.Errorf("EditFraction(0.1) edited %d of %d files", len(c.Edited), len(srcs))
				}
			case 3:
				if c.Edited[0] != "models/embeddings.npy" || c.Bytes != 9*mb {
					t.Errorf("ReplaceLarge: %+v", c)
				}
			}
		}
		return digests
	}
	a, b := run(t.TempDir()), run(t.TempDir())
	for i := range a {
		if a[i] != b[i] {
			t.Errorf("step %d is not reproducible", i)
		}
	}
}
