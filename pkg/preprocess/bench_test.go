package preprocess

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkPreprocessTree measures the walk that checks a directory input for conflicts before
// the layer builder walks it again: 5,000 files in 100 directories, with .dockerignore patterns.
func BenchmarkPreprocessTree(b *testing.B) {
	base := b.TempDir()
	for d := 0; d < 100; d++ {
		dir := filepath.Join(base, "src", fmt.Sprintf("pkg%03d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := 0; f < 50; f++ {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("m%02d.py", f)), []byte("x = 1\n"), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	o := Options{BaseDir: base, Inputs: []string{"src"}, Ignore: []string{"**/*.log", "src/pkg00*/m0*.py", "!src/pkg001/m01.py"}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Preprocess(context.Background(), o); err != nil {
			b.Fatal(err)
		}
	}
}
