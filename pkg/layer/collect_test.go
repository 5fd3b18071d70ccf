package layer

import (
	"context"
	"fmt"
	"math/rand"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestSortEntriesIsStable: sorting indices gives what a stable sort of the entries gives,
// duplicates in their original order included.
func TestSortEntriesIsStable(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 20, 1000} {
		r := rand.New(rand.NewSource(int64(n)))
		es := make([]Entry, n)
		for i := range es {
			// Few distinct paths, so many duplicates; Size tells the copies apart.
			es[i] = Entry{Path: fmt.Sprintf("app/%c/%d", 'a'+r.Intn(3), r.Intn(n/4+1)), Size: int64(i)}
		}
		want := slices.Clone(es)
		slices.SortStableFunc(want, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
		sortEntries(es)
		if !reflect.DeepEqual(es, want) {
			t.Errorf("%d entries: sortEntries differs from a stable sort", n)
		}
		sortEntries(es) // already sorted
		if !reflect.DeepEqual(es, want) {
			t.Errorf("%d entries: sorting sorted entries changed them", n)
		}
	}
}

func TestFinishFileWhereDirectoryIsNeeded(t *testing.T) {
	for _, tc := range []struct {
		dests   []string
		wantErr string
	}{
		{[]string{"/x", "/x/y"}, "/x is a file in one source and a directory in another"},
		// "x-a" and "x.b" sort between "x" and "x/y": the search must not stop at them.
		{[]string{"/x", "/x-a", "/x.b", "/x/y"}, "/x is a file in one source and a directory in another"},
		{[]string{"/x", "/x-a", "/x.b", "/xy/z"}, ""},
		{[]string{"/app/a", "/app/ab/c"}, ""},
		// Several: the first in path order, whatever the order of the sources.
		{[]string{"/b", "/b/y", "/a", "/a/z/w", "/a-/q"}, "/a is a file"},
		{[]string{"/m/n/o", "/m/n", "/m/k", "/m/k/l/p"}, "/m/k is a file"},
	} {
		var srcs []Source
		for _, d := range tc.dests {
			srcs = append(srcs, Source{Dest: d, Data: []byte(d)})
		}
		_, err := Collect(context.Background(), srcs)
		if (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%v: err = %v, want %q", tc.dests, err, tc.wantErr)
		}
	}
}

func TestFinishSymlinkWhereDirectoryIsNeeded(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{"a.py": "x", "lib": "->a.py"})
	_, err := Collect(context.Background(), []Source{{Dest: "/app", Path: root}, {Dest: "/app/lib/gen.py", Data: []byte("1")}})
	if want := "/app/lib is a symlink in one source and a directory in another"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want it to contain %q", err, want)
	}
}
