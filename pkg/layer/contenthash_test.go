package layer

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// The content digest is standard BLAKE3-256 (the reference implementation's test vectors), and
// every way a file gets one agrees: hashed before the layer is written (hashFile), while its
// tar is written (writeContent), and generated content (contentSum). Files are hashed one
// after another with pooled hashers, so a hasher that kept state from the last file fails.
func TestContentDigest(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"},
		{"abc", "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"},
	} {
		got := contentSum([]byte(c.in))
		if hex.EncodeToString(got[:]) != c.want {
			t.Errorf("contentSum(%q) = %x, want %s", c.in, got, c.want)
		}
	}

	root := t.TempDir()
	sizes := []int{0, 1, 1023, 1024, 1025, 8191, 8192, 8193, 17 << 10, 300_001}
	want := map[string][32]byte{}
	for i, n := range sizes {
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(j*31 + j/251 + i)
		}
		name := filepath.Join(root, "f"+string(rune('a'+i)))
		if err := os.WriteFile(name, b, 0o644); err != nil {
			t.Fatal(err)
		}
		want["app/"+filepath.Base(name)] = contentSum(b)
	}

	for _, how := range []string{"hashed first", "hashed while written"} {
		entries, err := Collect(context.Background(), []Source{{Dest: "/app", Path: root}})
		if err != nil {
			t.Fatal(err)
		}
		if how == "hashed first" {
			if _, err := HashEntries(context.Background(), entries, nil, 1); err != nil {
				t.Fatal(err)
			}
		} else if err := writeTar(context.Background(), io.Discard, entries, TarOptions{}); err != nil {
			t.Fatal(err)
		}
		files := 0
		for _, e := range entries {
			if e.Type != TypeFile {
				continue
			}
			files++
			if !e.hashed || e.digest != want[e.Path] {
				t.Errorf("%s: /%s digest %x (hashed %v), want %x", how, e.Path, e.digest, e.hashed, want[e.Path])
			}
		}
		if files != len(sizes) {
			t.Errorf("%s: %d files, want %d", how, files, len(sizes))
		}
	}

	// A file changed between hashing and writing is caught by its content digest.
	entries, err := Collect(context.Background(), []Source{{Dest: "/app", Path: root}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := HashEntries(context.Background(), entries, nil, 1); err != nil {
		t.Fatal(err)
	}
	for i := range entries {
		if e := &entries[i]; e.Path == "app/fj" {
			e.digest[0] ^= 1
		}
	}
	if err := writeTar(context.Background(), io.Discard, entries, TarOptions{}); err == nil || !bytes.Contains([]byte(err.Error()), []byte("content differs")) {
		t.Errorf("a digest that does not match the content: err = %v", err)
	}
}
