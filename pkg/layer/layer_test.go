package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// writeTree creates files (path → content; a trailing "/" makes a directory, "->x" a symlink).
func writeTree(t testing.TB, root string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(root, p)
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			os.Chmod(full, 0o755) // whatever the umask
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(c, "->") {
			if err := os.Symlink(strings.TrimPrefix(c, "->"), full); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chmod(full, 0o644)
	}
	// Parents made by MkdirAll follow the umask: fix them too.
	filepath.Walk(root, func(p string, fi os.FileInfo, _ error) error {
		if fi != nil && fi.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
}

func paths(es []Entry) []string {
	var out []string
	for _, e := range es {
		s := e.Path
		if e.Type == TypeDir {
			s += "/"
		}
		out = append(out, s)
	}
	return out
}

func mustIgnore(t testing.TB, s string) *Source {
	t.Helper()
	pm, err := ParseIgnore(strings.NewReader(s), ".dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	return &Source{Ignore: pm}
}

func TestCollect(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		ignore  string
		want    []string
		wantErr string
	}{
		{
			name:  "tree with explicit parents",
			files: map[string]string{"a.py": "x", "pkg/b.py": "y", "empty/": ""},
			want:  []string{"app/", "app/a.py", "app/empty/", "app/pkg/", "app/pkg/b.py"},
		},
		{
			name:   "dockerignore excludes and re-includes",
			files:  map[string]string{"a.py": "x", "data/big.bin": "b", "data/keep.txt": "k", ".git/HEAD": "h", "x.pyc": "c", "sub/y.pyc": "c"},
			ignore: ".git\ndata\n!data/keep.txt\n**/*.pyc\n",
			want:   []string{"app/", "app/a.py", "app/data/", "app/data/keep.txt", "app/sub/"},
		},
		{
			name:  "symlink inside the context is kept",
			files: map[string]string{"a.py": "x", "link.py": "->a.py", "d/up": "->../a.py"},
			want:  []string{"app/", "app/a.py", "app/d/", "app/d/up", "app/link.py"},
		},
		{
			name:    "symlink escaping the context",
			files:   map[string]string{"a.py": "x", "esc": "->../../etc/passwd"},
			wantErr: "points outside the context",
		},
		{
			name:    "absolute symlink",
			files:   map[string]string{"abs": "->/etc/passwd"},
			wantErr: "points outside the context",
		},
		{
			name:    "symlink loop",
			files:   map[string]string{"l1": "->l2", "l2": "->l1"},
			wantErr: "loop",
		},
		{
			name:   "excluded escaping symlink is fine",
			files:  map[string]string{"a.py": "x", "esc": "->/etc/passwd"},
			ignore: "esc",
			want:   []string{"app/", "app/a.py"},
		},
		{
			name:    "name with a newline",
			files:   map[string]string{"bad\nname": "x"},
			wantErr: "line break",
		},
		{
			name:    "name that is not UTF-8",
			files:   map[string]string{"bad\xffname": "x"},
			wantErr: "not valid UTF-8",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, tc.files)
			src := Source{Dest: "/app", Path: root}
			if tc.ignore != "" {
				src.Ignore = mustIgnore(t, tc.ignore).Ignore
			}
			got, err := Collect(context.Background(), []Source{src})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if g := strings.Join(paths(got), " "); g != strings.Join(tc.want, " ") {
				t.Errorf("entries:\n got %s\nwant %s", g, strings.Join(tc.want, " "))
			}
		})
	}
}

func TestCollectSourcesAndErrors(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{"a.py": "x", "b.py": "y"})
	ctx := context.Background()

	got, err := Collect(ctx, []Source{
		{Dest: "/app/main.py", Path: filepath.Join(root, "a.py")},
		{Dest: "/app/gen/shim.py", Data: []byte("print(1)"), Mode: 0o755},
		{Dest: "/app", Path: root},
	})
	if err != nil {
		t.Fatal(err)
	}
	if g, w := strings.Join(paths(got), " "), "app/ app/a.py app/b.py app/gen/ app/gen/shim.py app/main.py"; g != w {
		t.Errorf("got %s, want %s", g, w)
	}

	_, err = Collect(ctx, []Source{{Dest: "/app/a.py", Data: []byte("1")}, {Dest: "/app", Path: root}})
	if err == nil || !strings.Contains(err.Error(), "two sources for /app/a.py") {
		t.Errorf("duplicate destination: err = %v", err)
	}
	_, err = Collect(ctx, []Source{{Dest: "/app", Path: filepath.Join(root, "missing")}})
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing source: err = %v", err)
	}
	_, err = Collect(ctx, []Source{{Dest: "app", Path: root}})
	if err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Errorf("relative destination: err = %v", err)
	}
	_, err = Collect(ctx, []Source{{Dest: "/x", Data: []byte("1")}, {Dest: "/x/y", Data: []byte("2")}})
	if err == nil || !strings.Contains(err.Error(), "directory in another") {
		t.Errorf("file vs directory: err = %v", err)
	}

	sock := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = Collect(ctx, []Source{{Dest: "/app", Path: filepath.Dir(sock)}})
	if err == nil || !strings.Contains(err.Error(), "is a socket") || !strings.Contains(err.Error(), "s.sock") {
		t.Errorf("socket: err = %v", err)
	}
}

func TestParseIgnoreInvalid(t *testing.T) {
	_, err := ParseIgnore(strings.NewReader("ok\n[\n"), "ctx/.dockerignore")
	if err == nil || !strings.Contains(err.Error(), "ctx/.dockerignore") || !strings.Contains(err.Error(), `"["`) {
		t.Fatalf("err = %v", err)
	}
}

func TestHardlinks(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{"a": "same"})
	if err := os.Link(filepath.Join(root, "a"), filepath.Join(root, "b")); err != nil {
		t.Fatal(err)
	}
	entries := collectHashed(t, root)
	var b *Entry
	for i := range entries {
		if entries[i].Path == "app/b" {
			b = &entries[i]
		}
	}
	if b == nil || b.Type != TypeHardlink || b.Linkname() != "app/a" {
		t.Fatalf("b = %+v, want a hard link to app/a", b)
	}
	files := readLayerTar(t, buildOne(t, t.TempDir(), entries, Options{}))
	if files["app/b"] != "link:app/a" {
		t.Errorf("tar entry app/b = %q, want a hard link", files["app/b"])
	}
}

func collectHashed(t testing.TB, root string) []Entry {
	t.Helper()
	entries, err := Collect(context.Background(), []Source{{Dest: "/app", Path: root}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := HashEntries(context.Background(), entries, nil, 4); err != nil {
		t.Fatal(err)
	}
	return entries
}

func buildOne(t testing.TB, cacheDir string, entries []Entry, opts Options) *Layer {
	t.Helper()
	c, err := OpenCache(cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewBuilder(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	dirs := map[string]Entry{}
	for i := range entries {
		if entries[i].Type == TypeDir {
			dirs[entries[i].Path] = entries[i]
		}
	}
	ls, err := b.Build(context.Background(), []Group{{Name: "all", Entries: entries, dirs: dirs}})
	if err != nil {
		t.Fatal(err)
	}
	return ls[0]
}

// readLayerTar returns path → content ("dir", "link:target", "sym:target", or the bytes),
// and checks header normalisation on the way.
func readLayerTar(t testing.TB, l *Layer) map[string]string {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := map[string]string{}
	tr := tar.NewReader(rc)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || !h.ModTime.Equal(time.Unix(0, 0)) || !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() {
			t.Errorf("%s: header not normalised: uid=%d gid=%d uname=%q gname=%q mtime=%v", h.Name, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime)
		}
		name := strings.TrimSuffix(h.Name, "/")
		names = append(names, name)
		switch h.Typeflag {
		case tar.TypeDir:
			out[name] = "dir"
		case tar.TypeLink:
			out[name] = "link:" + h.Linkname
		case tar.TypeSymlink:
			out[name] = "sym:" + h.Linkname
		default:
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			out[name] = string(b)
		}
	}
	if l.Compression() != Estargz && !sort.StringsAreSorted(names) {
		t.Errorf("tar entries not sorted: %v", names)
	}
	return out
}

// goldenTree is a fixed context whose layer digests must never change unless formatVersion
// changes: they are what makes images reproducible across releases and machines.
var goldenTree = map[string]string{
	"train.py":         "import os\nprint('hello', os.environ.get('FAIRING_RUNTIME'))\n",
	"requirements.txt": "numpy==2.0\n",
	"pkg/__init__.py":  "",
	"pkg/model.py":     strings.Repeat("def f(x):\n    return x * 2\n", 100),
	"data/":            "",
	"link.py":          "->train.py",
	"very/" + strings.Repeat("long-directory-name/", 8) + "file.txt": "a path longer than 100 bytes needs PAX or the ustar prefix\n",
}

func TestGoldenDigests(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, goldenTree)
	// Local metadata that must not leak into the image.
	old := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	filepath.Walk(root, func(p string, _ os.FileInfo, _ error) error { os.Chtimes(p, old, old); return nil })

	want := map[Compression][2]string{
		Gzip:         {"sha256:9047c82a7f225fc503c46caba3ffbbcf152a42768069bad50f1323509a8bbb24", "sha256:938445c10faf6570702deb9f36209e5b4cb1da9a47046f270df27460064270a9"},
		Zstd:         {"sha256:324409b2d07c19dcba47f2dd5972dad2022831171cba740b248f5f09c6c5323b", "sha256:938445c10faf6570702deb9f36209e5b4cb1da9a47046f270df27460064270a9"},
		Uncompressed: {"sha256:938445c10faf6570702deb9f36209e5b4cb1da9a47046f270df27460064270a9", "sha256:938445c10faf6570702deb9f36209e5b4cb1da9a47046f270df27460064270a9"},
	}
	for c, w := range want {
		t.Run(string(c), func(t *testing.T) {
			l := buildOne(t, t.TempDir(), collectHashed(t, root), Options{Compression: c})
			d, _ := l.Digest()
			diff, _ := l.DiffID()
			got := [2]string{d.String(), diff.String()}
			if got != w {
				t.Errorf("digests = %q, want %q (if the tar format changed on purpose, bump formatVersion and update)", got, w)
			}
		})
	}
}

// genTree writes n code-like files plus a few big ones, deterministically from seed.
func genTree(t testing.TB, root string, n int, seed int64) {
	t.Helper()
	r := rand.New(rand.NewSource(seed))
	words := []string{"def ", "return ", "import ", "self.", "x = ", "for i in range(10):\n    ", "print(", ")\n", "if ", "else:\n", "# comment\n", "value", "model", "data", "0.5", "\n"}
	for i := 0; i < n; i++ {
		var b strings.Builder
		for b.Len() < 200+r.Intn(4000) {
			b.WriteString(words[r.Intn(len(words))])
		}
		p := filepath.Join(root, fmt.Sprintf("pkg%02d/mod%03d/file%05d.py", i%17, i%53, i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	big := make([]byte, 9<<20)
	r.Read(big)
	if err := os.WriteFile(filepath.Join(root, "weights.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "requirements.txt"), []byte("numpy\n"), 0o644)
	ageTree(root)
}

// ageTree dates every file an hour back, as a checked-out project is: the stat cache does not
// trust files modified within the last moments (see racyWindow).
func ageTree(root string) {
	old := time.Now().Add(-time.Hour)
	filepath.Walk(root, func(p string, _ os.FileInfo, _ error) error { return os.Chtimes(p, old, old) })
}

func makeLayers(t testing.TB, root, cacheDir string, opts Options) *Result {
	t.Helper()
	res, err := Make(context.Background(), []Source{{Dest: "/app", Path: root}}, cacheDir, opts, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func digests(t testing.TB, res *Result) []string {
	var out []string
	for _, l := range res.Layers {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d.String())
	}
	return out
}

func TestDeterministicAcrossCachesAndCores(t *testing.T) {
	if testing.Short() {
		t.Skip("writes ~40 MB of layers")
	}
	root := t.TempDir()
	genTree(t, root, 1500, 1)
	for _, c := range []Compression{Gzip, Zstd} {
		t.Run(string(c), func(t *testing.T) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
			runtime.GOMAXPROCS(1)
			one := digests(t, makeLayers(t, root, t.TempDir(), Options{Compression: c}))
			runtime.GOMAXPROCS(2)
			two := digests(t, makeLayers(t, root, t.TempDir(), Options{Compression: c, Jobs: 3}))
			if strings.Join(one, ",") != strings.Join(two, ",") {
				t.Errorf("digests differ between GOMAXPROCS 1 and 2:\n%v\n%v", one, two)
			}
			if len(one) < 4 {
				t.Errorf("only %d layers: expected dependencies, large and several source layers", len(one))
			}
		})
	}
}

func TestIncremental(t *testing.T) {
	root := t.TempDir()
	genTree(t, root, 2000, 2)
	cache := t.TempDir()
	first := makeLayers(t, root, cache, Options{})
	if first.Hashed == 0 {
		t.Fatal("cold build hashed nothing")
	}
	for _, l := range first.Layers {
		if l.CacheHit() {
			t.Errorf("cold build: layer %s came from an empty cache", l.Name())
		}
	}

	// Unchanged: nothing read, nothing written.
	again := makeLayers(t, root, cache, Options{})
	if again.Hashed != 0 {
		t.Errorf("unchanged rebuild re-hashed %d files", again.Hashed)
	}
	for _, l := range again.Layers {
		if !l.CacheHit() {
			t.Errorf("unchanged rebuild rewrote layer %s", l.Name())
		}
	}
	if strings.Join(digests(t, first), ",") != strings.Join(digests(t, again), ",") {
		t.Fatal("unchanged rebuild changed digests")
	}

	rebuilt := func(res *Result) (names []string) {
		for _, l := range res.Layers {
			if !l.CacheHit() {
				names = append(names, l.Name())
			}
		}
		return names
	}

	// One file edited: exactly one layer rebuilt, and one file re-hashed.
	edit := filepath.Join(root, "pkg03/mod020/file00020.py")
	if err := os.WriteFile(edit, []byte("print('edited')\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := makeLayers(t, root, cache, Options{})
	if got := rebuilt(res); len(got) != 1 || !strings.HasPrefix(got[0], "source") {
		t.Errorf("one edit rebuilt %v, want exactly one source layer", got)
	}
	if res.Hashed != 1 {
		t.Errorf("one edit re-hashed %d files", res.Hashed)
	}
	if len(res.Layers) != len(first.Layers) {
		t.Errorf("layer count changed %d → %d", len(first.Layers), len(res.Layers))
	}

	// One file added and one deleted: a bounded number of layers rebuilt.
	os.WriteFile(filepath.Join(root, "pkg05/new_module.py"), []byte("x = 1\n"), 0o644)
	os.Remove(filepath.Join(root, "pkg09/mod030/file00030.py"))
	res = makeLayers(t, root, cache, Options{})
	if got := rebuilt(res); len(got) == 0 || len(got) > 4 {
		t.Errorf("add+delete rebuilt %v, want 1 to 4 source layers of %d", got, len(res.Layers))
	}

	// The large file replaced: only its own layer.
	big := make([]byte, 9<<20)
	rand.New(rand.NewSource(99)).Read(big)
	os.WriteFile(filepath.Join(root, "weights.bin"), big, 0o644)
	res = makeLayers(t, root, cache, Options{})
	if got := rebuilt(res); len(got) != 1 || got[0] != "large: /app/weights.bin" {
		t.Errorf("large file change rebuilt %v", got)
	}
}

func TestCorruptCacheIsRebuilt(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, goldenTree)
	cache := t.TempDir()
	first := makeLayers(t, root, cache, Options{})
	want := digests(t, first)

	c, _ := OpenCache(cache)
	for i, l := range first.Layers {
		blob := c.blobPath(want[i])
		switch i % 2 {
		case 0: // same size, wrong bytes: found by verification before use
			b, _ := os.ReadFile(blob)
			b[len(b)/2] ^= 0xff
			os.WriteFile(blob, b, 0o644)
		case 1: // truncated: a miss at lookup
			os.Truncate(blob, 3)
		}
		_ = l
	}
	res := makeLayers(t, root, cache, Options{})
	if strings.Join(digests(t, res), ",") != strings.Join(want, ",") {
		t.Fatal("digests changed after cache corruption")
	}
	for _, l := range res.Layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		d, _ := l.Digest()
		if err := verifyBlob(c.blobPath(d.String()), d.String(), int64(len(b))); err != nil {
			t.Errorf("layer %s still corrupt after use: %v", l.Name(), err)
		}
	}
}

func TestFileChangedWhileBuilding(t *testing.T) {
	for _, comp := range []Compression{Gzip, Estargz} {
		t.Run(string(comp), func(t *testing.T) { testFileChangedWhileBuilding(t, comp) })
	}
}

func testFileChangedWhileBuilding(t *testing.T, comp Compression) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{"a.py": "aaaa"})
	entries := collectHashed(t, root)
	// Same size, same mtime, other bytes: only the content check can see it (for eStargz, the
	// check against the digest its TOC recorded).
	fi, _ := os.Stat(filepath.Join(root, "a.py"))
	os.WriteFile(filepath.Join(root, "a.py"), []byte("bbbb"), 0o644)
	os.Chtimes(filepath.Join(root, "a.py"), fi.ModTime(), fi.ModTime())
	c, _ := OpenCache(t.TempDir())
	b, _ := NewBuilder(c, Options{Compression: comp})
	_, err := b.Build(context.Background(), Plan(entries, PlanOptions{}))
	if !errors.Is(err, ErrFileChanged) {
		t.Fatalf("err = %v, want ErrFileChanged", err)
	}
	// Nothing was cached under the stale key.
	if ents, _ := os.ReadDir(filepath.Join(c.Dir(), "layers")); len(ents) != 0 {
		t.Errorf("cache holds %d records after a failed write", len(ents))
	}
	if ents, _ := os.ReadDir(c.tmpDir()); len(ents) != 0 {
		t.Errorf("temp files left behind: %d", len(ents))
	}
}

func TestPlan(t *testing.T) {
	var entries []Entry
	for i := 0; i < 3000; i++ {
		entries = append(entries, Entry{Path: fmt.Sprintf("app/src/f%05d.py", i), Type: TypeFile, Size: 10_000})
	}
	entries = append(entries,
		Entry{Path: "app/requirements.txt", Type: TypeFile, Size: 10},
		Entry{Path: "app/sub/pyproject.toml", Type: TypeFile, Size: 10},
		Entry{Path: "app/model.bin", Type: TypeFile, Size: 100 << 20},
		Entry{Path: "app/gen.py", Type: TypeFile, Size: 10, Class: ClassTop},
	)
	sortEntries(entries)
	groups := Plan(entries, PlanOptions{})
	var names []string
	for _, g := range groups {
		names = append(names, g.Name)
	}
	if names[0] != "dependencies" || len(groups[0].Entries) != 2 {
		t.Errorf("first group %s with %d entries, want the 2 dependency files", names[0], len(groups[0].Entries))
	}
	if names[1] != "large: /app/model.bin" || names[len(names)-1] != "generated" {
		t.Errorf("groups = %v", names)
	}
	src := len(groups) - 3
	if src < 4 || src > 32 {
		t.Errorf("%d source layers for 3000 files, want a handful", src)
	}
	total := 0
	for _, g := range groups {
		total += len(g.Entries)
	}
	if total != len(entries) {
		t.Errorf("groups hold %d entries, want %d", total, len(entries))
	}
}

func BenchmarkMakeUnchanged(b *testing.B) {
	root := b.TempDir()
	genTree(b, root, 10000, 3)
	cache := b.TempDir()
	makeLayers(b, root, cache, Options{})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		makeLayers(b, root, cache, Options{})
	}
}

func TestStatCacheFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "stat")
	old := time.Now().Add(-time.Hour)
	key := func(i int) statKey {
		return statKey{Size: int64(i), MtimeNs: old.UnixNano(), CtimeNs: 2, Ino: uint64(100 + i), Dev: 5, Mode: 0o644}
	}
	entry := func(i int, p string) Entry {
		src := fileOrigin("/src/" + p)
		src.dev = 5
		return Entry{Path: p, Type: TypeFile, src: src, Size: int64(i), mtimeNs: old.UnixNano(), hasMtime: true,
			ctimeNs: 2, ino: uint64(100 + i), Mode: 0o644, digest: [32]byte{byte(i)}, hashed: true}
	}
	// Paths that share prefixes every way front coding must get right.
	paths := []string{"app/a", "app/a/b.py", "app/a/bc.py", "app/ab.py", "app/b.py", "lib/x.py"}
	build := func(keep func(i int) bool, reorder bool) (*StatCache, []Entry) {
		c := OpenStatCache(file)
		var es []Entry
		for i, p := range paths {
			if keep(i) {
				es = append(es, entry(i, p))
			}
		}
		for i := range es {
			if d, ok := c.lookup(es[i].Path, es[i].statKey()); ok {
				if d != es[i].digest {
					t.Fatalf("%s: digest %x, want %x", es[i].Path, d[:2], es[i].digest[:2])
				}
				es[i].fromStat = true
			}
		}
		if reorder { // as Plan leaves them: runs in path order
			es = append(es[3:], es[:3]...)
		}
		return c, es
	}
	all := func(int) bool { return true }

	c, es := build(all, true)
	if c.hits != 0 {
		t.Fatalf("an empty cache answered %d lookups", c.hits)
	}
	if err := c.Save(es); err != nil {
		t.Fatal(err)
	}
	c, es = build(all, false)
	if c.hits != len(paths) || c.hint != 0 {
		t.Fatalf("second build: %d hits of %d, hint %d", c.hits, len(paths), c.hint)
	}
	ino := func() uint64 {
		fi, err := os.Stat(file)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	before := ino()
	if err := c.Save(es); err != nil || ino() != before {
		t.Fatalf("a cache that says the same was rewritten (%v)", err)
	}
	if _, ok := OpenStatCache(file).lookup(paths[0], statKey{Size: 4}); ok {
		t.Error("a changed stat matched")
	}
	if c = OpenStatCache(file); true {
		c.lookup(paths[3], key(3))
		if _, ok := c.lookup(paths[1], key(1)); ok {
			t.Error("a lookup out of path order matched")
		}
	}

	// A deleted file is dropped; a file modified after the cache was opened is not kept.
	c, es = build(func(i int) bool { return i != 2 }, true)
	c.entries = 42
	for i := range es {
		if es[i].Path == paths[4] {
			es[i].setModTime(c.opened.Add(-10 * time.Millisecond))
			es[i].fromStat = false
		}
	}
	if err := c.Save(es); err != nil {
		t.Fatal(err)
	}
	c, _ = build(all, false)
	if c.hint != 42 || c.count != len(paths)-2 {
		t.Errorf("third build: hint %d, %d records", c.hint, c.count)
	}
	for i, p := range paths {
		c := OpenStatCache(file)
		_, ok := c.lookup(p, key(i))
		if want := i != 2 && i != 4; ok != want {
			t.Errorf("third build, %s: found=%v, want %v", p, ok, want)
		}
	}

	// Torn, foreign or older files are an empty cache, never an error.
	b, _ := os.ReadFile(file)
	v2 := append([]byte("fairing-statcache/2\n"), b[len(statCacheMagic):]...)
	v3 := append([]byte("fairing-statcache/3\n"), b[len(statCacheMagic):]...) // sha256 digests
	for _, bad := range [][]byte{b[:len(b)/2], b[:len(b)-1], append(b, 0), []byte("garbage"), nil, v2, v3} {
		os.WriteFile(file, bad, 0o644)
		if _, ok := OpenStatCache(file).lookup(paths[0], key(0)); ok {
			t.Errorf("a damaged file (%d bytes) still answered", len(bad))
		}
	}
	// A record out of order ends the stream: what came before it is used, nothing after.
	swapped := bytes.Replace(b, []byte("lib/x.py"), []byte("aaa/x.py"), 1)
	if bytes.Equal(swapped, b) {
		t.Fatal("test file lacks lib/x.py")
	}
	os.WriteFile(file, swapped, 0o644)
	c = OpenStatCache(file)
	for _, i := range []int{0, 1, 3} {
		if _, ok := c.lookup(paths[i], key(i)); !ok {
			t.Errorf("%s, before the damage, was lost", paths[i])
		}
	}
	if c.ok || c.read != 3 || c.count != 4 {
		t.Errorf("after a record out of order: cursor %v, %d of %d records read", c.ok, c.read, c.count)
	}
}

// A layer bigger than one compression block (gzip's) and than one of zstd's parallel jobs (which
// the builder does not use): its bytes depend on how the compressor cuts its input, which must
// not change without a new formatVersion.
func TestGoldenDigestsManyBlocks(t *testing.T) {
	root := t.TempDir()
	var b strings.Builder
	for i := 0; b.Len() < 5<<20; i++ {
		fmt.Fprintf(&b, "def f%d(x):\n    return x * %d + %d\n", i, i%97, i%13)
	}
	writeTree(t, root, map[string]string{"gen.py": b.String()})
	old := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	filepath.Walk(root, func(p string, _ os.FileInfo, _ error) error { os.Chtimes(p, old, old); return nil })
	for c, want := range map[Compression]string{
		Gzip: "sha256:a0ae9acde99e6bd7587e6b1f46f27698e60d95cd71f78cee829494e9b0c9902b",
		Zstd: "sha256:f83a5cbc3c371b2005cabacf9cde94a7653a981a8182d09b12144e2e99b0d86c",
	} {
		l := buildOne(t, t.TempDir(), collectHashed(t, root), Options{Compression: c})
		if d, _ := l.Digest(); d.String() != want {
			t.Errorf("%s: digest = %s, want %s (if the output changed on purpose, bump formatVersion and update)", c, d, want)
		}
	}
}

// knowsOther is a registry that knows some keys, none of the ones asked for.
type knowsOther struct{ asked int }

func (k *knowsOther) Layer(string) v1.Layer { k.asked++; return nil }
func (k *knowsOther) Empty() bool           { return false }

// An empty cache hashes files while writing their layers; a cache that might hold something
// (or a registry that knows keys) hashes first. Both must give the same keys and blobs, and
// both must teach the stat cache.
func TestHashWhileWritingMatchesHashFirst(t *testing.T) {
	root := t.TempDir()
	genTree(t, root, 300, 7)
	files := 0
	filepath.Walk(root, func(_ string, fi os.FileInfo, _ error) error {
		if fi != nil && fi.Mode().IsRegular() {
			files++
		}
		return nil
	})
	for _, c := range []Compression{Gzip, Estargz} {
		t.Run(string(c), func(t *testing.T) {
			// nothing to reuse: the tar writer hashes
			lazyCache := t.TempDir()
			lazy := makeLayers(t, root, lazyCache, Options{Compression: c})
			// a registry that knows keys (none of these): every file is hashed up front
			remote := &knowsOther{}
			eager := makeLayers(t, root, t.TempDir(), Options{Compression: c, Remote: remote})
			if remote.asked != len(eager.Layers) {
				t.Errorf("hash-first build asked the registry %d times for %d layers", remote.asked, len(eager.Layers))
			}
			if lazy.Hashed != files || eager.Hashed != files {
				t.Errorf("files hashed: %d while writing, %d first; want %d", lazy.Hashed, eager.Hashed, files)
			}
			if len(lazy.Layers) != len(eager.Layers) {
				t.Fatalf("%d layers vs %d", len(lazy.Layers), len(eager.Layers))
			}
			for i := range lazy.Layers {
				a, b := lazy.Layers[i], eager.Layers[i]
				da, _ := a.Digest()
				db, _ := b.Digest()
				if a.Key() != b.Key() || da != db || a.Key() == "" {
					t.Errorf("layer %s: key %.12s / %.12s, digest %s / %s", a.Name(), a.Key(), b.Key(), da, db)
				}
			}
			// The stat cache learnt every file from the tar writer: nothing is read again.
			again := makeLayers(t, root, lazyCache, Options{Compression: c})
			if again.Hashed != 0 {
				t.Errorf("rebuild after hashing while writing re-hashed %d files", again.Hashed)
			}
			for _, l := range again.Layers {
				if !l.CacheHit() {
					t.Errorf("rebuild rewrote layer %s", l.Name())
				}
			}
		})
	}
}

// Compressors are reused from layer to layer within a build; a reused one must write the same
// bytes as a new one, whatever it compressed before.
func TestReusedCompressorWritesTheSameBytes(t *testing.T) {
	a, bdir := t.TempDir(), t.TempDir()
	genTree(t, a, 40, 11)
	genTree(t, bdir, 25, 12)
	ea, eb := collectHashed(t, a), collectHashed(t, bdir)
	for _, c := range []Compression{Gzip, Zstd} {
		t.Run(string(c), func(t *testing.T) {
			cache, err := OpenCache(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			b, err := NewBuilder(cache, Options{Compression: c})
			if err != nil {
				t.Fatal(err)
			}
			write := func(es []Entry) string {
				g := Group{Name: "all", Entries: es, dirs: map[string]Entry{}}
				r, _, err := b.write(context.Background(), "", b.tarEntries(&g), nil)
				if err != nil {
					t.Fatal(err)
				}
				return r.Digest
			}
			first := write(ea)
			write(eb) // the pooled compressor's state now holds other data
			if len(b.pool.zw) != 1 {
				t.Fatalf("%d compressors pooled, want 1", len(b.pool.zw))
			}
			if again := write(ea); again != first {
				t.Errorf("reused compressor wrote %s, a new one %s", again, first)
			}
		})
	}
}

func TestIsDependencyFile(t *testing.T) {
	for p, want := range map[string]bool{
		"app/requirements.txt": true, "requirements-dev.txt": true, "a/b/requirements_gpu.txt": true,
		"constraints.txt": true, "pyproject.toml": true, "app/setup.py": true, "Pipfile.lock": true,
		"go.mod": true, "x/package.json": true, "environment.yml": true,
		"requirements.txt.bak": false, "requirements.md": false, "requirementstxt": false, "my-requirements.txt": false,
		"app/setup.py/x.py": false, "setup.pyc": false, "pipfile": false, "train.py": false, "": false, "requirements": false,
	} {
		if got := IsDependencyFile(p); got != want {
			t.Errorf("IsDependencyFile(%q) = %v, want %v", p, got, want)
		}
	}
}

// tarEntries merges a sorted group with its missing parents; it must give exactly what
// sorting everything gives, on every group of a plan and on arbitrary sorted subsets.
func TestTarEntriesMergeMatchesSort(t *testing.T) {
	root := t.TempDir()
	genTree(t, root, 400, 5)
	writeTree(t, root, map[string]string{"deep/a/b/c/d.py": "x", "deep/a/b-x.py": "y", "deep/a/b/e/": "", "z/requirements.txt": "r"})
	os.Link(filepath.Join(root, "deep/a/b-x.py"), filepath.Join(root, "z/link.py"))
	ageTree(root)
	entries := collectHashed(t, root)
	show := func(es []Entry) string {
		var b strings.Builder
		for _, e := range es {
			fmt.Fprintf(&b, "%s %v %o %s\n", e.Path, e.Type, e.Mode, e.Linkname())
		}
		return b.String()
	}
	check := func(name string, g Group) {
		t.Helper()
		if fast, slow := show(g.tarEntries()), show(g.tarEntriesSorting()); fast != slow {
			t.Errorf("%s: merged\n%s\nsorted\n%s", name, fast, slow)
		}
	}
	groups := Plan(entries, PlanOptions{ChunkBytes: 64 << 10})
	if len(groups) < 4 {
		t.Fatalf("only %d groups", len(groups))
	}
	for _, g := range groups {
		check(g.Name, g)
	}
	r := rand.New(rand.NewSource(3))
	sorted := append([]Entry(nil), entries...)
	sortEntries(sorted)
	for n := 0; n < 50; n++ {
		var sub []Entry
		for _, e := range sorted {
			if r.Intn(4) == 0 {
				sub = append(sub, e)
			}
		}
		check(fmt.Sprintf("subset %d", n), Group{Entries: sub, dirs: groups[0].dirs})
	}
}
