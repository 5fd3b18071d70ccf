package buildkit

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// ociTar is what BuildKit's OCI exporter streams: oci-layout, index.json and the blobs.
func ociTar(t *testing.T, blobs ...[]byte) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, data []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
		tw.Write(data)
	}
	tw.WriteHeader(&tar.Header{Name: "blobs/", Typeflag: tar.TypeDir, Mode: 0o755})
	var last string
	for _, b := range blobs {
		sum := sha256.Sum256(b)
		last = "sha256:" + hex.EncodeToString(sum[:])
		add("blobs/sha256/"+hex.EncodeToString(sum[:]), b)
	}
	add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	idx, _ := json.Marshal(ocispecs.Index{Manifests: []ocispecs.Descriptor{{
		MediaType: ocispecs.MediaTypeImageManifest, Digest: digestOf(last), Size: int64(len(blobs[len(blobs)-1])),
		Annotations: map[string]string{"io.containerd.image.name": "ignored"},
	}}})
	add("index.json", idx)
	tw.Close()
	return buf.Bytes(), last
}

func digestOf(s string) digest.Digest { return digest.Digest(s) }

func TestLayoutWriter(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "layout")
	for i, tag := range []string{"v1", "v2"} {
		data, manifest := ociTar(t, []byte("layer"), []byte(`{"config":"`+tag+`"}`))
		w, err := newLayoutWriter(dir)
		if err != nil {
			t.Fatal(err)
		}
		// BuildKit writes in chunks
		for len(data) > 0 {
			n := min(len(data), 100)
			if _, err := w.Write(data[:n]); err != nil {
				t.Fatal(err)
			}
			data = data[n:]
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := w.commit([]string{tag}); err != nil {
			t.Fatal(err)
		}
		idx, err := layout.ImageIndexFromPath(dir)
		if err != nil {
			t.Fatal(err)
		}
		im, _ := idx.IndexManifest()
		if len(im.Manifests) != i+1 {
			t.Fatalf("after %s: %d images in the layout, want %d (earlier ones kept)", tag, len(im.Manifests), i+1)
		}
		got := im.Manifests[i]
		if got.Digest.String() != manifest || got.Annotations["org.opencontainers.image.ref.name"] != tag || got.Annotations["io.containerd.image.name"] != "" {
			t.Errorf("entry %+v, want %s named %s", got, manifest, tag)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "blobs/sha256"))
	if len(ents) != 3 { // the shared layer once, two manifests
		t.Errorf("%d blobs, want 3", len(ents))
	}
	// a broken stream is an error, not a silently incomplete layout
	w, _ := newLayoutWriter(filepath.Join(t.TempDir(), "broken"))
	w.Write([]byte("not a tar stream at all, definitely not 512 bytes of header"))
	if err := w.Close(); err == nil {
		t.Error("a broken export stream was accepted")
	}
}
