package layer

import (
	"context"
	"os"
	"testing"

	"github.com/fairing-dev/fairing/benchmarks/gen"
)

// BenchmarkCollect measures the context walk, the floor of an unchanged build. The tree has
// the medium workload's shape (10,000 files about 20 to a folder, nested up to 6 deep) with
// small contents, since the walk reads metadata only. FAIRING_BENCH_CONTEXT names an existing
// folder to walk instead (e.g. a real medium or large workload from `harness gen`).
func BenchmarkCollect(b *testing.B) {
	root := benchContext(b)
	ign := mustIgnore(b, "**/__pycache__\n*.log\ndocs/**/*.md\n!docs/README.md\n").Ignore
	for _, bc := range []struct {
		name string
		src  Source
	}{
		{"plain", Source{Dest: "/app", Path: root}},
		{"dockerignore", Source{Dest: "/app", Path: root, Ignore: ign}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			var n int
			for b.Loop() {
				es, err := Collect(ctx, []Source{bc.src})
				if err != nil {
					b.Fatal(err)
				}
				n = len(es)
			}
			b.ReportMetric(float64(n), "entries")
		})
	}
}

func benchContext(b *testing.B) string {
	b.Helper()
	if root := os.Getenv("FAIRING_BENCH_CONTEXT"); root != "" {
		return root
	}
	root := b.TempDir()
	spec := gen.Spec{Name: "walk", Files: 10_000, CodeBytes: 10_000_000, Binaries: []int64{1_000_000}, Seed: 1}
	if err := gen.Generate(context.Background(), root, spec); err != nil {
		b.Fatal(err)
	}
	return root
}
