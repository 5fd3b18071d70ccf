package layer

import (
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/opencontainers/go-digest"
)

func estargzTree(t *testing.T) string {
	root := t.TempDir()
	files := map[string]string{
		"train.py":        "import lib.util\nprint(lib.util.X)\n",
		"lib/__init__.py": "",
		"lib/util.py":     "X = 42\n",
		"link.py":         "->train.py",
		"empty/":          "",
		// bigger than estargz's 4 MiB chunk: several chunks
		"data/big.txt": strings.Repeat("0123456789abcdef\n", 600_000),
	}
	writeTree(t, root, files)
	if err := os.Link(filepath.Join(root, "lib/util.py"), filepath.Join(root, "lib/util_link.py")); err != nil {
		t.Fatal(err)
	}
	ageTree(root)
	return root
}

func TestEstargzReadsBackAndVerifies(t *testing.T) {
	root := estargzTree(t)
	entries := collectHashed(t, root)
	l := buildOne(t, t.TempDir(), entries, Options{Compression: Estargz, Prioritize: []string{"/app/train.py", "/app/lib/util.py"}})
	desc, err := l.Descriptor()
	if err != nil {
		t.Fatal(err)
	}
	tocDigest, err := digest.Parse(desc.Annotations[AnnotationTOCDigest])
	if err != nil {
		t.Fatalf("toc digest annotation: %v (annotations %v)", err, desc.Annotations)
	}
	usize, _ := strconv.ParseInt(desc.Annotations[AnnotationUncompressedSize], 10, 64)

	blob := readAll(t, l)
	r, err := estargz.Open(io.NewSectionReader(strings.NewReader(blob), 0, int64(len(blob))))
	if err != nil {
		t.Fatalf("estargz.Open: %v", err)
	}
	if _, err := r.VerifyTOC(tocDigest); err != nil {
		t.Fatalf("TOC does not verify against the annotation: %v", err)
	}
	for _, p := range []string{"app/train.py", "app/lib/util.py", "app/data/big.txt"} {
		want, _ := os.ReadFile(filepath.Join(root, strings.TrimPrefix(p, "app/")))
		sr, err := r.OpenFile(p)
		if err != nil {
			t.Fatalf("open %s through the TOC: %v", p, err)
		}
		got, _ := io.ReadAll(io.NewSectionReader(sr, 0, sr.Size()))
		if string(got) != string(want) {
			t.Errorf("%s reads back %d bytes, want %d", p, len(got), len(want))
		}
	}
	if e, ok := r.Lookup("app/link.py"); !ok || e.LinkName != "train.py" {
		t.Errorf("symlink in TOC = %+v", e)
	}

	// The TOC lists the prioritised files first, then the landmark.
	var order []string
	for _, e := range tocEntries(t, blob) {
		order = append(order, e)
	}
	wantPrefix := []string{"app/", "app/train.py", "app/lib/", "app/lib/util.py", estargz.PrefetchLandmark}
	if len(order) < len(wantPrefix) || strings.Join(order[:len(wantPrefix)], " ") != strings.Join(wantPrefix, " ") {
		t.Errorf("TOC order starts %v, want %v", order[:min(len(order), 6)], wantPrefix)
	}

	// As plain gzip, the blob untars to the same files as the gzip layer (plus the landmark and
	// the TOC entry), and the uncompressed size annotation is right.
	plain := readLayerTar(t, l)
	gz := readLayerTar(t, buildOne(t, t.TempDir(), entries, Options{Compression: Gzip}))
	for k, v := range gz {
		if plain[k] != v {
			t.Errorf("%s differs between the estargz and the gzip layer", k)
		}
	}
	for k := range plain {
		if _, ok := gz[k]; !ok && k != estargz.PrefetchLandmark && k != estargz.TOCTarName {
			t.Errorf("estargz layer has an extra entry %s", k)
		}
	}
	rc, _ := l.Uncompressed()
	n, _ := io.Copy(io.Discard, rc)
	rc.Close()
	if n != usize {
		t.Errorf("uncompressed size annotation %d, actual %d", usize, n)
	}
}

func TestEstargzDeterministic(t *testing.T) {
	root := estargzTree(t)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	var got []string
	for _, procs := range []int{1, 2} {
		runtime.GOMAXPROCS(procs)
		res := makeLayers(t, root, t.TempDir(), Options{Compression: Estargz, Prioritize: []string{"/app/train.py"}})
		got = append(got, strings.Join(digests(t, res), ","))
	}
	if got[0] != got[1] {
		t.Errorf("digests differ between GOMAXPROCS 1 and 2:\n%s\n%s", got[0], got[1])
	}
	// Options are part of the key: another priority list is another layer, not a cache hit.
	cache := t.TempDir()
	a := makeLayers(t, root, cache, Options{Compression: Estargz})
	b := makeLayers(t, root, cache, Options{Compression: Estargz, Prioritize: []string{"/app/train.py"}})
	if strings.Join(digests(t, a), ",") == strings.Join(digests(t, b), ",") {
		t.Error("prioritising a file did not change the layer")
	}
	g := makeLayers(t, root, cache, Options{Compression: Gzip})
	if digests(t, g)[0] == digests(t, a)[0] {
		t.Error("gzip and estargz layers share a digest")
	}
}

func readAll(t *testing.T, l *Layer) string {
	t.Helper()
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// tocEntries lists the TOC's entry names in order (chunks of one file once).
func tocEntries(t *testing.T, blob string) []string {
	t.Helper()
	sr := io.NewSectionReader(strings.NewReader(blob), 0, int64(len(blob)))
	tocOff, footer, err := estargz.OpenFooter(sr)
	if err != nil {
		t.Fatal(err)
	}
	toc, _, err := (&estargz.GzipDecompressor{}).ParseTOC(io.NewSectionReader(sr, tocOff, sr.Size()-tocOff-footer))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range toc.Entries {
		if e.Type == "chunk" {
			continue
		}
		n := e.Name
		if e.Type == "dir" && !strings.HasSuffix(n, "/") {
			n += "/"
		}
		names = append(names, n)
	}
	return names
}
