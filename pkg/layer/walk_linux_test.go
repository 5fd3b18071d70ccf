package layer

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"unicode/utf8"

	"github.com/moby/patternmatcher"
	"golang.org/x/sys/unix"
)

// walkTree makes a context with what a walk must reproduce field by field: nested and empty
// directories, unusual modes, symlinks to files and directories (dangling too), hard links
// across directories, non-ASCII names, and one directory bigger than a getdents buffer.
func walkTree(t testing.TB) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"main.py": "print(1)", "requirements.txt": "numpy\n", "empty/": "", "café/ünï.py": "x",
		"build/out.o": "o", "build/keep/a.txt": "a", "build/deep/er/x.bin": "x",
		"data/sub/keep.txt": "k", "data/sub/drop.txt": "d", "data/big.bin": "b",
		"src/pkg/a.py": "a", "src/pkg/a.pyc": "c", "src/pkg/__pycache__/a.pyc": "c", "src/pkg/sub/b.py": "b",
		"logs/x.log": "l", "important.log": "i",
		"link.py": "->main.py", "src/up": "->../main.py", "dirlink": "->src/pkg", "dangling": "->nowhere",
	}
	for i := range 5 {
		files[fmt.Sprintf("d%d/e%d/f%d/g%d/h.py", i, i, i, i)] = strings.Repeat("x", i)
	}
	for i := range 800 { // more than one 32 KiB getdents buffer holds
		files[fmt.Sprintf("many/file-with-a-longish-name-%04d.py", i)] = ""
	}
	writeTree(t, root, files)
	for p, m := range map[string]os.FileMode{
		"main.py": 0o755, "src/pkg/a.py": 0o600 | os.ModeSetuid, "empty": 0o700 | os.ModeSticky,
		"src/pkg": 0o750 | os.ModeSetgid, "build/out.o": 0,
	} {
		if err := os.Chmod(filepath.Join(root, p), m); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range [][2]string{{"main.py", "hard.py"}, {"main.py", "src/pkg/hard2.py"}, {"data/big.bin", "build/big.bin"}} {
		if err := os.Link(filepath.Join(root, l[0]), filepath.Join(root, l[1])); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func mustMatcher(t testing.TB, ignore string) *patternmatcher.PatternMatcher {
	t.Helper()
	if ignore == "" {
		return nil
	}
	return mustIgnore(t, ignore).Ignore
}

// walkBoth runs the Linux walk and the portable one; the entries come back sorted.
func walkBoth(t *testing.T, ctx context.Context, root, dest string, ign *patternmatcher.PatternMatcher) (got, want []Entry, gotErr, wantErr error) {
	t.Helper()
	dest, err := destPath(dest)
	if err != nil {
		t.Fatal(err)
	}
	want, wantErr = walkDirPortable(ctx, nil, root, dest, ign, ClassSource)
	got, gotErr = walkDir(ctx, nil, root, dest, ign, ClassSource)
	sortEntries(got)
	sortEntries(want)
	return got, want, gotErr, wantErr
}

func TestWalkDirMatchesPortable(t *testing.T) {
	root := walkTree(t)
	tests := []struct {
		name, ignore, dest string
		mustHave, mustNot  []string
	}{
		{name: "no ignore file", dest: "/app", mustHave: []string{"app/build/keep/a.txt", "app/dirlink", "app/many/file-with-a-longish-name-0799.py"}},
		{name: "destination /", dest: "/", mustHave: []string{".", "main.py", "café/ünï.py"}},
		{name: "excluded directories skipped", ignore: "build\n**/*.pyc\n**/__pycache__\n", dest: "/app",
			mustHave: []string{"app/src/pkg/a.py"}, mustNot: []string{"app/build", "app/build/keep/a.txt", "app/src/pkg/a.pyc", "app/src/pkg/__pycache__"}},
		{name: "exceptions descend excluded directories", ignore: "build\n!build/keep/**\ndata\n!data/sub/keep.txt\n*.log\n!important.log\n", dest: "/app",
			mustHave: []string{"app/build/keep/a.txt", "app/data/sub/keep.txt", "app/important.log"}, mustNot: []string{"app/build", "app/build/out.o", "app/data/sub/drop.txt"}},
		{name: "everything but one folder", ignore: "*\n!src\n", dest: "/app",
			mustHave: []string{"app/src/pkg/sub/b.py", "app/src/up"}, mustNot: []string{"app/main.py", "app/many"}},
		{name: "patterns on deep paths", ignore: "d*/e*/f*\n!d3/e3/f3/g3\nmany/*-07??.py\n", dest: "/app",
			mustHave: []string{"app/d3/e3/f3/g3/h.py", "app/many/file-with-a-longish-name-0699.py"}, mustNot: []string{"app/d1/e1/f1", "app/many/file-with-a-longish-name-0700.py"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, want, gotErr, wantErr := walkBoth(t, context.Background(), root, tc.dest, mustMatcher(t, tc.ignore))
			if gotErr != nil || wantErr != nil {
				t.Fatalf("walkDir: %v, walkDirPortable: %v", gotErr, wantErr)
			}
			if len(got) != len(want) {
				t.Errorf("walkDir found %d entries, walkDirPortable %d", len(got), len(want))
			}
			for i := range min(len(got), len(want)) {
				if !reflect.DeepEqual(got[i], want[i]) {
					t.Fatalf("entry %d:\n got %+v\nwant %+v", i, got[i], want[i])
				}
			}
			have := map[string]Entry{}
			for _, e := range got {
				have[e.Path] = e
				if e.Type != TypeFile {
					continue
				}
				// The device the stat cache trusts is the file's own, though entries share it.
				var st unix.Stat_t
				if err := unix.Lstat(e.SourcePath(), &st); err != nil {
					t.Fatal(err)
				}
				if k := e.statKey(); k.Dev != uint64(st.Dev) || k.Ino != st.Ino {
					t.Fatalf("%s: stat key device %d inode %d, want %d %d", e.Path, k.Dev, k.Ino, st.Dev, st.Ino)
				}
			}
			for _, p := range tc.mustHave {
				if _, ok := have[p]; !ok {
					t.Errorf("%s missing", p)
				}
			}
			for _, p := range tc.mustNot {
				if _, ok := have[p]; ok {
					t.Errorf("%s should be excluded", p)
				}
			}
			// What the rest of the pipeline derives must agree too (hard links found by identity).
			fg, err := finish(got)
			if err != nil {
				t.Fatal(err)
			}
			fw, _ := finish(want)
			if !reflect.DeepEqual(fg, fw) {
				t.Error("finished entries differ")
			}
			if hl := joinDest(strings.TrimPrefix(tc.dest, "/"), "src/pkg/hard2.py"); tc.ignore == "" && !hasHardlink(fg, hl) {
				t.Errorf("hard link %s not detected", hl)
			}
		})
	}
}

func hasHardlink(es []Entry, p string) bool {
	for _, e := range es {
		if e.Path == p {
			return e.Type == TypeHardlink
		}
	}
	return false
}

// TestWalkDirErrorsMatchPortable: with several problems in a tree, the concurrent walk reports
// the one the sequential walk meets first, every time.
func TestWalkDirErrorsMatchPortable(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		fifos   []string
		ignore  string
		wantErr string
	}{
		{name: "walk order, not path order", files: map[string]string{"a/bad\nname": "x", "a-b/bad\xffname": "x"}, wantErr: "a/bad"},
		{name: "shallow error after a deep one", files: map[string]string{"a/b/c/d/bad\rname": "x", "z\nz": "x"}, wantErr: "a/b/c/d/bad"},
		{name: "escaping symlink and pipe", files: map[string]string{"m/esc": "->../../x"}, fifos: []string{"m/fifo", "n/fifo"}, wantErr: "points outside"},
		{name: "pipe first", files: map[string]string{"m/z-esc": "->/etc/passwd"}, fifos: []string{"m/fifo"}, wantErr: "named pipe"},
		{name: "loop", files: map[string]string{"l1": "->l2", "l2": "->l1", "m\nm": "x"}, wantErr: "loop"},
		{name: "excluded problems are fine, included ones are not", files: map[string]string{"skip/bad\nname": "x", "take/esc": "->/etc"}, fifos: []string{"skip/fifo"}, ignore: "skip\n", wantErr: "take/esc"},
		{name: "exceptions: problems under an excluded folder still count", files: map[string]string{"skip/bad\nname": "x", "skip/keep": "k"}, ignore: "skip\n!skip/keep\n", wantErr: "line break"},
	}
	many := map[string]string{}
	var manyFifos []string
	for i := range 60 {
		many[fmt.Sprintf("d%02d/sub/ok.py", i)] = "x"
		many[fmt.Sprintf("d%02d/sub/bad\n%02d", i, i)] = "x"
		manyFifos = append(manyFifos, fmt.Sprintf("d%02d/fifo", i))
	}
	tests = append(tests, struct {
		name    string
		files   map[string]string
		fifos   []string
		ignore  string
		wantErr string
	}{name: "an error in every folder", files: many, fifos: manyFifos, wantErr: "d00/fifo"})

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, tc.files)
			for _, f := range tc.fifos {
				os.MkdirAll(filepath.Dir(filepath.Join(root, f)), 0o755)
				if err := syscall.Mkfifo(filepath.Join(root, f), 0o644); err != nil {
					t.Skipf("mkfifo: %v", err)
				}
			}
			ign := mustMatcher(t, tc.ignore)
			for range 20 {
				_, _, gotErr, wantErr := walkBoth(t, context.Background(), root, "/app", ign)
				if wantErr == nil || !strings.Contains(wantErr.Error(), tc.wantErr) {
					t.Fatalf("walkDirPortable: err = %v, want it to contain %q", wantErr, tc.wantErr)
				}
				if gotErr == nil || gotErr.Error() != wantErr.Error() {
					t.Fatalf("walkDir: err = %v\nwant %v", gotErr, wantErr)
				}
			}
		})
	}
}

func TestWalkDirUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads everything")
	}
	for _, tc := range []struct {
		name    string
		mode    os.FileMode
		wantErr string
	}{
		{"not listable", 0o300, "cannot read directory"},            // open fails
		{"not searchable", 0o600, "locked/y.py: permission denied"}, // listing works, stat of the entries fails
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, map[string]string{"a/x.py": "x", "b/locked/y.py": "y", "c/z.py": "z"})
			locked := filepath.Join(root, "b/locked")
			os.Chmod(locked, tc.mode)
			t.Cleanup(func() { os.Chmod(locked, 0o755) })
			_, _, gotErr, wantErr := walkBoth(t, context.Background(), root, "/app", nil)
			if wantErr == nil || !strings.Contains(wantErr.Error(), tc.wantErr) {
				t.Fatalf("walkDirPortable: err = %v, want it to contain %q", wantErr, tc.wantErr)
			}
			if gotErr == nil || gotErr.Error() != wantErr.Error() {
				t.Fatalf("walkDir: err = %v\nwant %v", gotErr, wantErr)
			}
		})
	}
}

// TestWalkDirRandomTrees compares both walks on seeded random trees, a third of them clean and
// the others with a few problems (bad names, pipes, escaping links) anywhere, and with ignore
// files that exclude some of those problems or not.
func TestWalkDirRandomTrees(t *testing.T) {
	ignores := []string{"", "d1\n", "d1\n!d1/d2/**\n*.log\n", "**/x*\n!**/x1*\n", "*\n!d2\n", "**/bad*\n**/fifo*\n"}
	seeds := int64(24)
	if testing.Short() {
		seeds = 9 // creating files is most of the time
	}
	var failed, clean int
	for seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewSource(seed))
			dir := func() (string, int) {
				depth := r.Intn(4)
				p := ""
				for range depth {
					p += fmt.Sprintf("d%d/", r.Intn(3))
				}
				return p, depth
			}
			files := map[string]string{}
			for range 60 {
				p, depth := dir()
				switch k := r.Intn(10); {
				case k < 1: // a link inside the context, maybe dangling
					files[p+fmt.Sprintf("l%d", r.Intn(5))] = "->" + strings.Repeat("../", r.Intn(depth+1)) + "x0.py"
				case k < 3:
					files[p+fmt.Sprintf("x%d.log", r.Intn(5))] = "c"
				default:
					files[p+fmt.Sprintf("x%d.py", r.Intn(20))] = "c"
				}
			}
			var fifos []string
			if seed%3 != 0 {
				for range 1 + r.Intn(4) {
					p, depth := dir()
					switch r.Intn(3) {
					case 0:
						files[p+fmt.Sprintf("bad\n%d", r.Intn(5))] = "c"
					case 1:
						fifos = append(fifos, p+fmt.Sprintf("fifo%d", r.Intn(5)))
					case 2:
						files[p+fmt.Sprintf("esc%d", r.Intn(5))] = "->" + strings.Repeat("../", depth+1) + "x0.py"
					}
				}
			}
			// A path used as both a file and a folder: keep the folder.
			for p := range files {
				for d := filepath.Dir(p); d != "."; d = filepath.Dir(d) {
					delete(files, d)
				}
			}
			root := t.TempDir()
			writeTree(t, root, files)
			for _, f := range fifos {
				full := filepath.Join(root, f)
				if _, err := os.Lstat(full); err == nil {
					continue
				}
				os.MkdirAll(filepath.Dir(full), 0o755)
				if err := syscall.Mkfifo(full, 0o644); err != nil {
					t.Skipf("mkfifo: %v", err)
				}
			}
			ign := mustMatcher(t, ignores[seed%int64(len(ignores))])
			got, want, gotErr, wantErr := walkBoth(t, context.Background(), root, "/app", ign)
			if (gotErr == nil) != (wantErr == nil) || (gotErr != nil && gotErr.Error() != wantErr.Error()) {
				t.Fatalf("walkDir: err = %v\nwant %v", gotErr, wantErr)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("entries differ:\n got %v\nwant %v", paths(got), paths(want))
			}
			if gotErr != nil {
				failed++
			} else if len(got) > 1 {
				clean++
			}
		})
	}
	// Both outcomes must have been compared, or the test proves less than it says.
	if failed < 2 || clean < 2 {
		t.Errorf("%d trees failed and %d walked cleanly: want at least 2 of each", failed, clean)
	}
}

// countdownCtx is canceled after a number of Err calls: a cancellation in mid-walk without
// timing.
type countdownCtx struct {
	context.Context
	left atomic.Int64
}

func (c *countdownCtx) Err() error {
	if c.left.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

func TestWalkDirCanceled(t *testing.T) {
	root := walkTree(t)
	for _, n := range []int64{0, 1, 3, 10} {
		ctx := &countdownCtx{Context: context.Background()}
		ctx.left.Store(n)
		if _, err := walkDir(ctx, nil, root, "app", nil, ClassSource); !errors.Is(err, context.Canceled) {
			t.Errorf("canceled after %d checks: err = %v, want context.Canceled", n, err)
		}
	}
}

func TestWalkOrderLess(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"", "a", true},
		{"a", "a", false},
		{"a", "a/b", true},
		{"a/b", "a", false},
		{"a/x", "a-b", true}, // a's contents come before its sibling a-b
		{"a-b", "a/x", false},
		{"a/b/c", "a/c", true},
		{"ab", "a/b", false},
		{"é", "z", false},
	} {
		if got := walkOrderLess(tc.a, tc.b); got != tc.want {
			t.Errorf("walkOrderLess(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, name := range []string{"a.py", "", "café", "ü\n", "a\rb", "x\x00", "\xff", "é\xff", "日本語.txt", "a\xc3"} {
		want := utf8.ValidString(name) && !strings.ContainsAny(name, "\x00\n\r")
		if got := validName(name); got != want {
			t.Errorf("validName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestCopyMatcher(t *testing.T) {
	for _, tc := range []struct {
		patterns []string
		copies   bool
	}{
		{[]string{"**/*.pyc", "!keep.pyc", "build/", "[a-c]?.txt", "!!odd", "! spaced"}, true},
		{nil, true},
		{[]string{"foo /."}, false}, // cleans to "foo ", which a second parse would trim
	} {
		pm, err := patternmatcher.New(tc.patterns)
		if err != nil {
			t.Fatal(err)
		}
		c := copyMatcher(pm)
		if (c != nil) != tc.copies {
			t.Fatalf("copyMatcher(%q) = %v, want a copy: %v", tc.patterns, c, tc.copies)
		}
		if c == nil {
			// The walk then uses the original matcher alone: same result as the portable walk.
			root := t.TempDir()
			writeTree(t, root, map[string]string{"foo ": "x", "foo": "y", "bar": "z"})
			got, want, gotErr, wantErr := walkBoth(t, context.Background(), root, "/app", pm)
			if gotErr != nil || wantErr != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("with an uncopyable matcher: %v %v, %v %v", paths(got), gotErr, paths(want), wantErr)
			}
			continue
		}
		for i, p := range c.Patterns() {
			if o := pm.Patterns()[i]; p == o || p.String() != o.String() || p.Exclusion() != o.Exclusion() {
				t.Errorf("pattern %d: copy %q (exclusion %v), original %q (exclusion %v)", i, p, p.Exclusion(), o, o.Exclusion())
			}
		}
	}
}

// BenchmarkWalkDir compares the Linux walk with the portable one on the same tree
// (FAIRING_BENCH_CONTEXT, or a generated one as in BenchmarkCollect), without finish().
func BenchmarkWalkDir(b *testing.B) {
	root := benchContext(b)
	for _, bc := range []struct {
		name string
		walk func(context.Context, []Entry, string, string, *patternmatcher.PatternMatcher, Class) ([]Entry, error)
	}{{"linux", walkDir}, {"portable", walkDirPortable}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := bc.walk(context.Background(), nil, root, "app", nil, ClassAuto); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The walk fills the spare capacity of the slice it is given (the previous walk's size) and
// sorts it in place; a capacity that falls short, or none, gives the same entries in a new
// table. Entries already in the slice stay first.
func TestWalkDirIntoCapacity(t *testing.T) {
	root := walkTree(t)
	ctx := context.Background()
	want, err := walkDirPortable(ctx, nil, root, "app", nil, ClassSource)
	if err != nil {
		t.Fatal(err)
	}
	sortEntries(want)
	n := len(want)
	sentinel := Entry{Path: "zz-earlier-source", Type: TypeDir, Mode: 0o755}
	for _, tc := range []struct {
		name    string
		spare   int
		inPlace bool
	}{
		{name: "no capacity", spare: 0},
		{name: "one short", spare: n - 1},
		{name: "half", spare: n / 2},
		{name: "exact", spare: n, inPlace: true},
		{name: "more than enough", spare: 2 * n, inPlace: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pre := make([]Entry, 1, 1+tc.spare)
			pre[0] = sentinel
			got, err := walkDir(ctx, pre, root, "app", nil, ClassSource)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1+n || !reflect.DeepEqual(got[0], sentinel) {
				t.Fatalf("%d entries, first %q; want %d, the earlier source's first", len(got), got[0].Path, 1+n)
			}
			if inPlace := &got[0] == &pre[0]; inPlace != tc.inPlace {
				t.Errorf("filled in place: %v, want %v", inPlace, tc.inPlace)
			}
			if !slices.IsSortedFunc(got[1:], func(a, b Entry) int { return strings.Compare(a.Path, b.Path) }) {
				t.Error("not sorted")
			}
			for i := range want {
				if !reflect.DeepEqual(got[1+i], want[i]) {
					t.Fatalf("entry %d:\n got %+v\nwant %+v", i, got[1+i], want[i])
				}
			}
		})
	}
}

// The arena's strings are a+b+c and stay so while later ones are carved, across blocks and
// for paths too long to share one.
func TestPathArena(t *testing.T) {
	var pa pathArena
	long := strings.Repeat("d/", pathBlock/8)
	type made struct{ got, want string }
	var all []made
	for i := range 5000 {
		a, b, c := "app/", fmt.Sprintf("dir%d/", i%37), []byte(fmt.Sprintf("file-%d.py", i))
		switch {
		case i%1000 == 999:
			b = long
		case i%777 == 0:
			a, b, c = "", "", nil
		}
		want := a + b + string(c)
		got := pa.join(a, b, c)
		c = append(c[:0], "overwritten"...) // the caller's bytes are reused, as getdents' buffer is
		all = append(all, made{got, want})
	}
	for i, m := range all {
		if m.got != m.want {
			t.Fatalf("join %d = %q, want %q", i, m.got, m.want)
		}
	}
}
