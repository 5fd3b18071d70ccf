package preprocess

import (
	"context"
	"sort"
	"testing"

	"github.com/fairing-dev/fairing/pkg/layer"
)

// TestLayerCollectAgrees hands Results to the layer builder's Collect: it must accept them (no
// "two sources" error from overlapping inputs) and see exactly the files Preprocess checked.
func TestLayerCollectAgrees(t *testing.T) {
	base := mkContext(t, map[string]string{
		"main.py": "", "src/a.py": "", "src/b.log": "", "src/keep.log": "", "src/sub/c.py": "",
		"src/__pycache__/a.pyc": "", "data/x.csv": "", "data/y.tmp": "", "nb.ipynb": trainNotebook,
		"src/link.py": "->a.py",
	})
	ignore := []string{"**/*.log", "!src/keep.log", "data/*.tmp"}
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"context and nested inputs", Options{Inputs: []string{".", "src", "src/a.py", "data"}, Executable: "main.py", Ignore: ignore}},
		{"a mapped directory over inputs", Options{Inputs: []string{"src/a.py", "src/sub"}, OutputMap: []Mapping{{"src", "src"}, {"data", "/data/"}}, Ignore: ignore}},
		{"a notebook", Options{Kind: Notebook, Notebook: "nb.ipynb", Inputs: []string{"src", "data"}, Ignore: ignore}},
		{"a function", Options{Kind: Function, Function: "main.py:main", Inputs: []string{"."}, Ignore: ignore}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.BaseDir = base
			r := mustPreprocess(t, tc.o)
			entries, err := layer.Collect(context.Background(), r.Sources)
			if err != nil {
				t.Fatalf("layer.Collect refused the sources: %v", err)
			}
			var got []string
			for _, e := range entries {
				switch e.Type {
				case layer.TypeFile, layer.TypeSymlink, layer.TypeHardlink:
					if p := "/" + e.Path; !within(DefaultRuntimeDir, p) {
						if e.Type == layer.TypeSymlink {
							p += " -> " + e.Linkname()
						}
						got = append(got, p)
					}
				}
			}
			sort.Strings(got)
			equal(t, "files", got, imageFiles(t, r.Sources))
		})
	}
}
