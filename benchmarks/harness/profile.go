package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/fairing-dev/fairing/benchmarks/gen"
	"github.com/fairing-dev/fairing/pkg/build"
	"github.com/fairing-dev/fairing/pkg/builder"
	"github.com/fairing-dev/fairing/pkg/layer"
	"github.com/fairing-dev/fairing/pkg/registryclient"
)

// cmdProfile runs the builder in process, with the CLI's defaults, N times on one scenario
// and writes a CPU profile and a heap profile (allocations) of those runs: the evidence for where the time
// goes, read with `go tool pprof`. The setup build and the context changes happen outside the
// measured builds but inside the profile window, under benchmarks/gen frames.
func cmdProfile(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("profile", flag.ExitOnError)
	regAddr := fs.String("registry", "", "HOST:PORT of the registry (gives the default -destination); empty: start one with -registry-bin")
	registryBin := fs.String("registry-bin", "docker-registry", "docker-registry binary, for a registry of the profile's own")
	work := fs.String("work", filepath.Join(os.TempDir(), "fairing-bench", "work"), "scratch folder")
	ctxDir := fs.String("context", "", "context folder (default: generate -size into WORK/ctx)")
	size := fs.String("size", "medium", "workload to generate when -context is not given")
	base := fs.String("base", "", "base image reference")
	dest := fs.String("destination", "", "destination reference (default REGISTRY/bench/profile:main; cold runs use new repositories)")
	scen := fs.String("scenario", "unchanged", "cold, unchanged, edit-one, add-delete, edit-10pct or large-replace")
	n := fs.Int("n", 5, "builds to profile")
	outDir := fs.String("out", "", "folder for cpu.pprof and heap.pprof (default WORK/../profile-SCENARIO)")
	fs.Parse(args)
	if *regAddr == "" {
		b := &bench{cfg: Config{Work: *work}}
		b.reg = &registry{name: "registry", bin: *registryBin, dir: filepath.Join(*work, "registry"), pidDir: filepath.Join(*work, "pids")}
		os.RemoveAll(b.reg.dir)
		if err := b.reg.start(ctx); err != nil {
			return err
		}
		defer func() { b.reg.stop(); os.RemoveAll(b.reg.dir) }()
		if err := b.pushBases(ctx); err != nil {
			return err
		}
		*regAddr = b.reg.addr()
		if *base == "" {
			*base = b.bases["main"]
		}
	}
	if *dest == "" && *regAddr != "" {
		*dest = *regAddr + "/bench/profile:main"
	}
	if *base == "" || *dest == "" {
		return fmt.Errorf("profile needs -base and -registry or -destination (benchmarks/run.sh profile gives them)")
	}
	if *ctxDir == "" {
		spec, ok := gen.Specs[*size]
		if !ok {
			return fmt.Errorf("unknown workload size %q", *size)
		}
		*ctxDir = filepath.Join(*work, "ctx")
		os.RemoveAll(*ctxDir)
		if err := os.MkdirAll(*ctxDir, 0o755); err != nil {
			return err
		}
		if err := gen.Generate(ctx, *ctxDir, spec); err != nil {
			return err
		}
	}
	if *outDir == "" {
		*outDir = filepath.Join(filepath.Dir(*work), "profile-"+*scen)
	}
	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		return err
	}
	cpuFile, memFile := filepath.Join(*outDir, "cpu.pprof"), filepath.Join(*outDir, "heap.pprof")
	cacheDir := filepath.Join(*work, "profile-cache")
	var mutate func(*gen.Mutator) (gen.Change, error)
	for _, s := range scenarios {
		if s.name == *scen {
			mutate = s.mutate
		}
	}
	if mutate == nil && *scen != "cold" && *scen != "unchanged" {
		return fmt.Errorf("unknown scenario %q", *scen)
	}
	ign, err := layer.ReadIgnoreFile(filepath.Join(*ctxDir, ".dockerignore"))
	if err != nil {
		return err
	}
	jobs := max(4, runtime.GOMAXPROCS(0))
	opts := func(cache, to string) builder.Options {
		return builder.Options{
			Sources:      []layer.Source{{Dest: "/app", Path: *ctxDir, Ignore: ign}},
			Base:         *base,
			Destinations: []string{to},
			Config:       build.Config{WorkingDir: "/app"},
			Layer:        layer.Options{Compression: layer.Gzip, Jobs: jobs},
			Plan:         layer.PlanOptions{LargeFile: 8 << 20},
			CacheDir:     cache,
			Registry:     registryclient.Config{Jobs: jobs, UserAgent: "fairing-bench-profile"},
		}
	}
	os.RemoveAll(cacheDir)
	defer os.RemoveAll(cacheDir)
	if *scen != "cold" {
		if _, err := builder.Run(ctx, opts(cacheDir, *dest)); err != nil {
			return fmt.Errorf("setup build: %w", err)
		}
	}
	f, err := os.Create(cpuFile)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	mut := &gen.Mutator{Dir: *ctxDir, Seed: 4242}
	var total time.Duration
	for i := 0; i < *n; i++ {
		cache, to := cacheDir, *dest
		if *scen == "cold" {
			cache = filepath.Join(cacheDir, fmt.Sprint("cold", i))
			to = fmt.Sprintf("%s-cold%d-%d:latest", trimTag(*dest), time.Now().Unix(), i)
		}
		if mutate != nil {
			if _, err := mutate(mut); err != nil {
				pprof.StopCPUProfile()
				return err
			}
		}
		t := time.Now()
		rep, err := builder.Run(ctx, opts(cache, to))
		if err != nil {
			pprof.StopCPUProfile()
			return err
		}
		d := time.Since(t)
		total += d
		fmt.Fprintf(os.Stderr, "build %d: %s, %d layers pushed %d blobs; walk %d hash %d layers %d base %d publish %d ms\n", i, d.Round(time.Millisecond),
			len(rep.Layers), len(rep.Pushed), rep.Timings.WalkMs, rep.Timings.HashMs, rep.Timings.LayersMs, rep.Timings.BaseMs, rep.Timings.PublishMs)
	}
	pprof.StopCPUProfile()
	fmt.Fprintf(os.Stderr, "%d %s builds: %s each on average\n", *n, *scen, (total / time.Duration(*n)).Round(time.Millisecond))
	mf, err := os.Create(memFile)
	if err != nil {
		return err
	}
	defer mf.Close()
	if err := pprof.WriteHeapProfile(mf); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "profiles: go tool pprof -top %s   (allocations: go tool pprof -sample_index=alloc_space -top %s)\n", cpuFile, memFile)
	return nil
}

// trimTag drops a :tag from a reference (not a :port).
func trimTag(ref string) string {
	for i := len(ref) - 1; i >= 0; i-- {
		switch ref[i] {
		case ':':
			return ref[:i]
		case '/':
			return ref
		}
	}
	return ref
}
