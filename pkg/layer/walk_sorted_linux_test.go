package layer

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"path/filepath"
	"reflect"
	"testing"
)

// sortedCollect streams a walk into a table.
func sortedCollect(ctx context.Context, root, dest string, ignore string, budget int, t *testing.T) ([]Entry, error) {
	var got []Entry
	err := sortedWalk(ctx, root, dest, mustMatcher(t, ignore), ClassSource, budget, func(e *Entry) error {
		got = append(got, *e)
		return nil
	})
	return got, err
}

// TestSortedWalkMatchesWalkDir: the streamed walk hands over exactly walkDir's entries, in
// path order, whatever its read-ahead budget; where walkDir fails, it asks for the table walk.
func TestSortedWalkMatchesWalkDir(t *testing.T) {
	root := walkTree(t)
	ignores := []string{"", "build\n**/*.pyc\n**/__pycache__\n", "build\n!build/keep/**\ndata\n!data/sub/keep.txt\n*.log\n!important.log\n",
		"*\n!src\n", "d*/e*/f*\n!d3/e3/f3/g3\nmany/*-07??.py\n"}
	for _, dest := range []string{"app", "", "opt/app"} {
		for i, ign := range ignores {
			for _, budget := range []int{1, 7, 0} {
				t.Run(fmt.Sprintf("%q/%d/%d", dest, i, budget), func(t *testing.T) {
					want, err := walkDir(context.Background(), nil, root, dest, mustMatcher(t, ign), ClassSource)
					if err != nil {
						t.Fatal(err)
					}
					sortEntries(want)
					got, err := sortedCollect(context.Background(), root, dest, ign, budget, t)
					if err != nil {
						t.Fatal(err)
					}
					if len(got) != len(want) {
						t.Fatalf("%d entries, want %d", len(got), len(want))
					}
					for i := range got {
						if !reflect.DeepEqual(got[i], want[i]) {
							t.Fatalf("entry %d:\n got %+v\nwant %+v", i, got[i], want[i])
						}
					}
				})
			}
		}
	}
}

func TestSortedWalkRandomTrees(t *testing.T) {
	var failed, clean int
	for seed := range int64(16) {
		r := rand.New(rand.NewSource(seed))
		files := map[string]string{}
		for range 200 {
			p := ""
			for range r.Intn(5) {
				// names that sort around "/": "a", "a-b", "a.c", "a0"
				p += []string{"a", "a-b", "a.c", "a0", "b"}[r.Intn(5)] + "/"
			}
			files[p+[]string{"x", "x-y", "x.py", "x/"}[r.Intn(4)]+fmt.Sprint(r.Intn(3))] = "c"
		}
		if seed%4 == 3 {
			files[fmt.Sprintf("a/bad\n%d", seed)] = "c"
		}
		for p := range files {
			for d := filepath.Dir(p); d != "."; d = filepath.Dir(d) {
				delete(files, d)
				delete(files, d+"/")
			}
		}
		root := t.TempDir()
		writeTree(t, root, files)
		want, werr := walkDir(context.Background(), nil, root, "app", nil, ClassSource)
		sortEntries(want)
		got, gerr := sortedCollect(context.Background(), root, "app", "", 1+r.Intn(40), t)
		if werr != nil {
			if !errors.Is(gerr, errWalkTable) {
				t.Fatalf("seed %d: walkDir failed (%v); sorted walk: %v, want errWalkTable", seed, werr, gerr)
			}
			failed++
			continue
		}
		if gerr != nil {
			t.Fatalf("seed %d: %v", seed, gerr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d: entries differ:\n got %v\nwant %v", seed, paths(got), paths(want))
		}
		clean++
	}
	if failed < 2 || clean < 8 {
		t.Errorf("%d failed, %d clean: want both outcomes compared", failed, clean)
	}
}

func TestSortedWalkStops(t *testing.T) {
	root := walkTree(t)
	stop := errors.New("enough")
	n := 0
	err := sortedWalk(context.Background(), root, "app", nil, ClassSource, 5, func(e *Entry) error {
		if n++; n == 50 {
			return stop
		}
		return nil
	})
	if err != stop || n != 50 {
		t.Fatalf("err %v after %d entries, want %v after 50", err, n, stop)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n = 0
	err = sortedWalk(ctx, root, "app", nil, ClassSource, 5, func(e *Entry) error {
		if n++; n == 20 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled walk: %v", err)
	}
}
