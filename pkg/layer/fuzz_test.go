package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzTarRoundTrip checks that whatever names, modes, links and contents the writer accepts
// read back identical with a standard tar reader.
func FuzzTarRoundTrip(f *testing.F) {
	f.Add("app/a.py", "print(1)", uint16(0o644), "app/l", "a.py", "app/d")
	f.Add(strings.Repeat("long/", 40)+"x", "", uint16(0o4755), "café/ünïcode", "../x", "deep/er/dir")
	f.Add("a", "\x00\xff", uint16(0o7777), "b", "a", "c")
	f.Fuzz(func(t *testing.T, name, content string, mode uint16, linkName, linkTarget, dir string) {
		clean := func(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }
		name, linkName, dir = clean(name), clean(linkName), clean(dir)
		for _, p := range []string{name, linkName, dir, linkTarget} {
			if p == "" || !utf8.ValidString(p) || strings.ContainsAny(p, "\x00\n\r") {
				t.Skip()
			}
		}
		if name == linkName || name == dir || linkName == dir {
			t.Skip()
		}
		m := fs.FileMode(mode) & 0o777
		if mode&0o4000 != 0 {
			m |= fs.ModeSetuid
		}
		entries := []Entry{
			{Path: name, Type: TypeFile, Mode: m, Size: int64(len(content)), src: dataOrigin([]byte(content)), digest: contentSum([]byte(content)), hashed: true},
			{Path: linkName, Type: TypeSymlink, Mode: 0o777, src: linkOrigin(linkTarget)},
			{Path: dir, Type: TypeDir, Mode: 0o755},
		}
		es, err := finish(entries)
		if err != nil {
			t.Skip() // e.g. one path is a parent of another file: refused by design
		}
		g := Group{Entries: es, dirs: map[string]Entry{}}
		es = g.tarEntries()
		var buf bytes.Buffer
		if err := writeTar(context.Background(), &buf, es, TarOptions{}); err != nil {
			t.Fatalf("write: %v", err)
		}
		tr := tar.NewReader(&buf)
		for i := range es {
			h, err := tr.Next()
			if err != nil {
				t.Fatalf("entry %d (%s): %v", i, es[i].Path, err)
			}
			want := es[i].Path
			if es[i].Type == TypeDir {
				want += "/"
			}
			if h.Name != want || h.Mode != tarMode(es[i].Mode) || h.Linkname != es[i].Linkname() {
				t.Fatalf("entry %d: got %q mode %o link %q, want %q mode %o link %q", i, h.Name, h.Mode, h.Linkname, want, tarMode(es[i].Mode), es[i].Linkname())
			}
			b, _ := io.ReadAll(tr)
			if es[i].Type == TypeFile && string(b) != string(es[i].Content()) {
				t.Fatalf("content of %s differs", h.Name)
			}
		}
		if _, err := tr.Next(); err != io.EOF {
			t.Fatalf("extra entries: %v", err)
		}
	})
}

// FuzzParseIgnore: any ignore file either parses with a clear error or gives a matcher that
// never fails while matching.
func FuzzParseIgnore(f *testing.F) {
	f.Add("*.pyc\n!keep.pyc\n**/__pycache__\n# comment\n")
	f.Add("[\n")
	f.Add("a/**/b\n!")
	f.Fuzz(func(t *testing.T, s string) {
		pm, err := ParseIgnore(strings.NewReader(s), ".dockerignore")
		if err != nil {
			if !strings.Contains(err.Error(), ".dockerignore") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if pm == nil {
			return
		}
		for _, p := range []string{"a", "a/b", "x/__pycache__/y.pyc", "keep.pyc"} {
			if _, err := pm.MatchesOrParentMatches(p); err != nil {
				t.Fatalf("matcher failed on %q after parsing: %v", p, err)
			}
		}
	})
}

// FuzzReadStatCache: any bytes in the stat cache file are an empty cache or a stream of
// records in strictly increasing path order, never a panic nor a path longer than a path can be.
func FuzzReadStatCache(f *testing.F) {
	for _, paths := range [][]string{{"app/b.py"}, {"a", "a/b", "a/bc", "ab"}, {"app/x/y.py", "app/x/z.py", "app/y"}} {
		file := filepath.Join(f.TempDir(), "stat")
		c := OpenStatCache(file)
		c.opened = time.Now().Add(time.Hour)
		es := make([]Entry, len(paths))
		for i, p := range paths {
			es[i] = Entry{Path: p, Type: TypeFile, src: fileOrigin("/src/" + p), Size: int64(i), hashed: true}
		}
		if err := c.Save(es); err != nil {
			f.Fatal(err)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(statCacheMagic + "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"))
	f.Add([]byte(statCacheMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := &StatCache{}
		if err := c.start(bytes.NewReader(b), int64(len(b))); err != nil {
			return
		}
		prev := ""
		for n := 0; c.ok; n++ {
			p := string(c.path)
			if n > 0 && p <= prev {
				t.Fatalf("record %d: %q after %q", n, p, prev)
			}
			if len(p) == 0 || len(p) > maxStatPath || c.read > c.count {
				t.Fatalf("record %d: path of %d bytes, %d of %d records", n, len(p), c.read, c.count)
			}
			prev = p
			c.next()
		}
	})
}
