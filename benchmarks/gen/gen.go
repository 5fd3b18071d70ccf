// Package gen makes reproducible synthetic ML projects for the benchmarks: a package tree of
// Python-like source (plus configs and docs) whose gzip ratio is that of real code, a
// requirements.txt, and a few large binary files (model weights: float32 values, which gzip
// barely shrinks). The same Spec and seed give byte-identical trees on any machine; the
// mutations (edit one file, add one and delete one, edit a fraction, replace a large file) are
// seeded too.
package gen

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"golang.org/x/sync/errgroup"
)

// Spec describes a workload.
type Spec struct {
	Name string
	// Files is the total number of files, binaries and requirements.txt included.
	Files int
	// CodeBytes is the total size of the text files.
	CodeBytes int64
	// Binaries are the sizes of the large binary files.
	Binaries []int64
	Seed     uint64
}

const mb = 1_000_000

// Specs are the standard workloads (decimal MB).
var Specs = map[string]Spec{
	"tiny":   {Name: "tiny", Files: 120, CodeBytes: 1 * mb, Binaries: []int64{300_000, 9 * mb}, Seed: 1},
	"small":  {Name: "small", Files: 1_000, CodeBytes: 10 * mb, Binaries: []int64{1 * mb, 9_500_000}, Seed: 1},
	"medium": {Name: "medium", Files: 10_000, CodeBytes: 170 * mb, Binaries: []int64{1 * mb, 5 * mb, 12 * mb, 30 * mb}, Seed: 1},
	"large":  {Name: "large", Files: 100_000, CodeBytes: 1_100 * mb, Binaries: []int64{1 * mb, 5 * mb, 12 * mb, 30 * mb, 100 * mb, 250 * mb}, Seed: 1},
}

// TotalBytes is the size of the whole context.
func (s Spec) TotalBytes() int64 {
	t := s.CodeBytes
	for _, b := range s.Binaries {
		t += b
	}
	return t
}

type file struct {
	path string
	size int
	kind byte // 'p'ython, 'y'aml, 'm'arkdown, 'i'nit, 'b'inary
	seed uint64
}

// Generate writes the workload into dir, which must not exist or be empty.
func Generate(ctx context.Context, dir string, s Spec) error {
	if s.Files < len(s.Binaries)+2 {
		return fmt.Errorf("spec %s: %d files is too few for %d binaries", s.Name, s.Files, len(s.Binaries))
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return fmt.Errorf("generate into %s: folder is not empty", dir)
	}
	files := layout(s)
	proj := newProject(s.Seed)

	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i := range files {
		f := files[i]
		g.Go(func() error {
			if err := ctx.Err(); err != nil {
				return err
			}
			return writeFile(dir, f, proj)
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "requirements.txt"), requirements(s.Seed), 0o644)
}

func writeFile(dir string, f file, proj *project) error {
	p := filepath.Join(dir, filepath.FromSlash(f.path))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(f.seed, 1))
	var data []byte
	cg := newCodeGen(r, proj)
	switch f.kind {
	case 'p':
		header := ""
		if r.IntN(10) < 7 {
			header = proj.header
		}
		data = cg.python(f.size, header)
	case 'y':
		data = cg.yaml(f.size)
	case 'm':
		data = cg.markdown(f.size)
	case 'i':
		data = fit([]byte(`"""Package `+cg.ident()+`."""`+strings.Repeat("\n", f.size)), f.size)
	case 'b':
		return writeWeights(p, r, int64(f.size))
	}
	return os.WriteFile(p, data, 0o644)
}

// writeWeights writes float32 values drawn from a normal distribution, like a checkpoint:
// gzip shrinks such data to about 0.9.
func writeWeights(p string, r *rand.Rand, size int64) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		n := int64(len(buf))
		if left < n {
			n = left
		}
		for i := int64(0); i+4 <= n; i += 4 {
			binary.LittleEndian.PutUint32(buf[i:], math.Float32bits(float32(r.NormFloat64()*0.02)))
		}
		if _, err := f.Write(buf[:n]); err != nil {
			f.Close()
			return err
		}
		left -= n
	}
	return f.Close()
}

// layout decides every path, kind and size, from the spec's seed alone.
func layout(s Spec) []file {
	r := rand.New(rand.NewPCG(s.Seed, 2))
	nText := s.Files - len(s.Binaries) - 1 // requirements.txt is written apart

	// Packages: a tree about 20 files wide per folder, as in real projects.
	nDirs := max(1, nText/20)
	roots := []string{"src/" + words[r.IntN(len(words))] + "kit", "tests", "scripts", "configs", "docs", "notebooks"}
	dirs := []string{}
	for _, rt := range roots {
		dirs = append(dirs, rt)
	}
	seen := map[string]bool{}
	for len(dirs) < nDirs {
		parent := dirs[r.IntN(len(dirs))]
		if strings.Count(parent, "/") > 4 {
			continue
		}
		d := parent + "/" + words[r.IntN(len(words))]
		if !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	sort.Strings(dirs)

	// Sizes: log-normal like real source files (median ~40% of the mean), capped below the
	// large-file threshold, then scaled to the total.
	sizes := make([]float64, nText)
	kinds := make([]byte, nText)
	var sum float64
	for i := range sizes {
		switch k := r.IntN(100); {
		case k < 5:
			kinds[i] = 'i'
			sizes[i] = float64(r.IntN(200))
			continue
		case k < 10:
			kinds[i] = 'y'
		case k < 14:
			kinds[i] = 'm'
		default:
			kinds[i] = 'p'
		}
		sizes[i] = math.Exp(r.NormFloat64() * 1.1)
		sum += sizes[i]
	}
	const maxFile = 1_500_000
	var initBytes float64
	for i, k := range kinds {
		if k == 'i' {
			initBytes += sizes[i]
		}
	}
	scale := (float64(s.CodeBytes) - initBytes) / sum
	files := make([]file, 0, s.Files)
	used := map[string]bool{}
	var total int64
	for i := range sizes {
		sz := sizes[i]
		if kinds[i] != 'i' {
			sz = math.Min(math.Max(sz*scale, 64), maxFile)
		}
		d := dirs[r.IntN(len(dirs))]
		var name string
		for {
			switch kinds[i] {
			case 'i':
				name = "__init__.py"
			case 'y':
				name = words[r.IntN(len(words))] + "_" + words[r.IntN(len(words))] + ".yaml"
			case 'm':
				name = strings.ToUpper(words[r.IntN(len(words))]) + ".md"
			default:
				name = words[r.IntN(len(words))] + "_" + words[r.IntN(len(words))] + ".py"
			}
			if !used[d+"/"+name] {
				break
			}
			if kinds[i] == 'i' {
				kinds[i] = 'p' // one __init__.py per folder
			}
			d = dirs[r.IntN(len(dirs))]
		}
		used[d+"/"+name] = true
		files = append(files, file{path: d + "/" + name, size: int(sz), kind: kinds[i], seed: r.Uint64()})
		total += int64(sz)
	}
	// Put the rounding and capping difference into the largest text files.
	for diff, tries := s.CodeBytes-total, 0; diff != 0 && tries < 1_000_000; tries++ {
		i := r.IntN(len(files))
		if files[i].kind != 'p' {
			continue
		}
		d := diff
		if d > int64(maxFile-files[i].size) {
			d = int64(maxFile - files[i].size)
		}
		if d < -int64(files[i].size-64) {
			d = -int64(files[i].size - 64)
		}
		files[i].size += int(d)
		diff -= d
	}
	names := []string{"vocab.bin", "embeddings.npy", "model.safetensors", "checkpoint.pt", "optimizer.pt", "ema.safetensors", "shard-%d.bin"}
	for i, sz := range s.Binaries {
		n := names[min(i, len(names)-1)]
		if strings.Contains(n, "%d") {
			n = fmt.Sprintf(n, i)
		}
		files = append(files, file{path: "models/" + n, size: int(sz), kind: 'b', seed: r.Uint64()})
	}
	return files
}

func requirements(seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 3))
	pkgs := []string{"numpy", "torch", "pandas", "scikit-learn", "pyyaml", "tqdm", "requests",
		"transformers", "datasets", "tensorboard", "matplotlib", "scipy", "kubeflow-fairing",
		"protobuf", "grpcio", "fsspec", "pyarrow", "tokenizers", "safetensors", "accelerate"}
	var b strings.Builder
	for _, p := range pkgs {
		fmt.Fprintf(&b, "%s==%d.%d.%d\n", p, r.IntN(3), r.IntN(30), r.IntN(10))
	}
	return []byte(b.String())
}
