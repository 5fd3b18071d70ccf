package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/fairing-dev/fairing/benchmarks/gen"
)

// Config is one harness run.
type Config struct {
	Sizes     []string
	Runs      int // repetitions per scenario and tool
	RunsLarge int // for the large workload
	Quick     bool
	// Binaries.
	Builder, Crane, Buildkitd, Buildctl, RegistryBin, Dockerd, Docker string
	// PythonLayer is a gzipped tar of a Debian root with python3 and pip (test/setup.d's
	// recipe): the base of the deps suite. Empty: the deps suite is skipped.
	PythonLayer  string
	RegistryPort int
	Work         string // scratch folder
	Out          string // results folder
	Label        string
	Scenarios    []string
	Tools        []string
	Suites       []string // main, deps
	DepsSize     string
	DepsRuns     int
	Timeout      time.Duration
	Versions     map[string]string // shown in the machine description
}

func (c Config) runsFor(size string) int {
	if size == "large" && c.RunsLarge > 0 {
		return c.RunsLarge
	}
	return c.Runs
}

func (c Config) has(tool string) bool { return contains(c.Tools, tool) }

// bkStep is one BuildKit step as the builder's report lists it.
type bkStep struct {
	Name   string `json:"name"`
	Cached bool   `json:"cached"`
}

// OurMeta is what the builder's --metadata-file says, as far as the report reads it.
type OurMeta struct {
	Builder       string      `json:"builder"`
	Digest        string      `json:"digest"`
	Layers        []metaLayer `json:"layers"`
	Entries       int         `json:"entries"`
	FilesHashed   int         `json:"filesHashed"`
	Pushed        []string    `json:"pushed"`
	Mounted       []string    `json:"mounted"`
	Skipped       []string    `json:"skipped"`
	BytesUploaded int64       `json:"bytesUploaded"`
	Timings       struct {
		Walk    int64 `json:"walk"`
		Hash    int64 `json:"hash"`
		Layers  int64 `json:"layers"`
		Base    int64 `json:"base"`
		Publish int64 `json:"publish"`
		Total   int64 `json:"total"`
	} `json:"timings"`
	BuildKit *struct {
		Steps []bkStep `json:"steps"`
	} `json:"buildkit,omitempty"`
}

type metaLayer struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	Cached bool   `json:"cached"`
	// Origin: built, cache, or registry (found by key in the destination's previous image).
	Origin string `json:"origin,omitempty"`
}

// Rebuilt counts the layers that were built now (not from the local cache, not found in the
// registry by key).
func (m *OurMeta) Rebuilt() int {
	n := 0
	for _, l := range m.Layers {
		if !l.Cached && l.Origin != "registry" {
			n++
		}
	}
	return n
}

// Sample is one timed run of one tool.
type Sample struct {
	Scenario string `json:"scenario"`
	Tool     string `json:"tool"`
	Rep      int    `json:"rep"`
	// Total: wall and CPU summed over the steps that are not aside; RSS the peak of them.
	Total Step   `json:"total"`
	Steps []Step `json:"steps"`
	// DaemonCPUMs and DaemonRSSKB: what the daemon that did the work (buildkitd, dockerd and
	// its containerd) spent during the run, and the sum of its processes' peak RSS.
	DaemonCPUMs float64 `json:"daemon_cpu_ms,omitempty"`
	DaemonRSSKB int64   `json:"daemon_rss_kb,omitempty"`
	// LayerBytes: compressed size of the layers fairing added (append path).
	LayerBytes int64 `json:"layer_bytes,omitempty"`
	// DepsCached: whether the pip install step came from the cache (BuildKit tools, deps suite).
	DepsCached *bool    `json:"deps_cached,omitempty"`
	Ref        string   `json:"ref,omitempty"`
	Meta       *OurMeta `json:"meta,omitempty"`
	Err        string   `json:"error,omitempty"`
}

// CPUMs is the CPU time of the run: the tool's processes plus its daemon's.
func (s Sample) CPUMs() float64 { return s.Total.UserMs + s.Total.SysMs + s.DaemonCPUMs }

// ScenarioResult holds every sample of one scenario.
type ScenarioResult struct {
	Name       string   `json:"name"`
	Desc       string   `json:"description"`
	LoadBefore float64  `json:"load_before"`
	LoadAfter  float64  `json:"load_after"`
	Changes    []string `json:"changes,omitempty"` // what each repetition's mutation did
	Samples    []Sample `json:"samples"`
}

// SuiteResult is one suite on one workload.
type SuiteResult struct {
	Suite     string           `json:"suite"` // main, or deps (requirements installed)
	Workload  gen.Spec         `json:"workload"`
	Bytes     int64            `json:"bytes"` // the context as generated
	Runs      int              `json:"runs"`
	Tools     []string         `json:"tools"`
	Limits    *Limits          `json:"limits,omitempty"`
	Scenarios []ScenarioResult `json:"scenarios"`
	LoadStart float64          `json:"load_start"`
	LoadEnd   float64          `json:"load_end"`
}

// Results is everything one harness run measured (samples.json).
type Results struct {
	Date      string            `json:"date"`
	Label     string            `json:"label"`
	Quick     bool              `json:"quick"`
	Machine   Machine           `json:"machine"`
	ToolDesc  map[string]string `json:"tools"`
	Suites    []SuiteResult     `json:"suites"`
	Failures  []string          `json:"failures,omitempty"`
	LoadStart float64           `json:"load_start"`
	LoadEnd   float64           `json:"load_end"`
}

type scenario struct {
	name, desc string
	// mutate changes the context before a repetition (every tool then builds the same tree).
	mutate func(m *gen.Mutator) (gen.Change, error)
	cold   bool // empty local caches, empty registry
	fresh  bool // empty local caches
}

var scenarios = []scenario{
	{name: "cold", desc: "empty local caches, empty registry (page cache warm)", cold: true, fresh: true},
	{name: "warm-registry", desc: "fresh machine, warm registry: empty local caches, the registry already has the image", fresh: true},
	{name: "unchanged", desc: "rebuild with nothing changed"},
	{name: "edit-one", desc: "one source file edited", mutate: (*gen.Mutator).EditOne},
	{name: "add-delete", desc: "one source file added, another deleted", mutate: (*gen.Mutator).AddDelete},
	{name: "edit-10pct", desc: "10% of the source files edited",
		mutate: func(m *gen.Mutator) (gen.Change, error) { return m.EditFraction(0.1) }},
	{name: "large-replace", desc: "the largest model file replaced (same size, new weights)", mutate: (*gen.Mutator).ReplaceLarge},
}

// depsScenarios are issue 5's: cold, unchanged, one source file changed.
var depsScenarios = []string{"cold", "unchanged", "edit-one"}

func scenarioNames() []string {
	var n []string
	for _, s := range scenarios {
		n = append(n, s.name)
	}
	return n
}

type bench struct {
	cfg            Config
	reg, cold      *registry
	bkOurs, bkPeer *buildkitd
	docker         *dockerd
	tools          map[string]*tool
	res            *Results
	ctxBytes       int64
	bases          map[string]string // suite → base reference on the main registry
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[bench %s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func (b *bench) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	b.logf("FAILED: %s", msg)
	b.res.Failures = append(b.res.Failures, msg)
}

func (b *bench) pidDir() string { return filepath.Join(b.cfg.Work, "pids") }

// startDaemons starts the registries and the daemons the selected tools need.
func (b *bench) startDaemons(ctx context.Context) error {
	b.reg = &registry{name: "registry", bin: b.cfg.RegistryBin, dir: filepath.Join(b.cfg.Work, "registry"), port: b.cfg.RegistryPort, pidDir: b.pidDir()}
	os.RemoveAll(b.reg.dir)
	if err := b.reg.start(ctx); err != nil {
		return err
	}
	b.cold = &registry{name: "registry-cold", bin: b.cfg.RegistryBin, dir: filepath.Join(b.cfg.Work, "registry-cold"), pidDir: b.pidDir()}
	os.RemoveAll(b.cold.dir)
	if err := b.cold.start(ctx); err != nil {
		return err
	}
	b.logf("registries on %s (main) and %s (cold runs: wiped before each)", b.reg.addr(), b.cold.addr())
	keep := 8000
	if b.cfg.has(tFairingBK) {
		b.bkOurs = &buildkitd{name: "buildkitd-fairing", bin: b.cfg.Buildkitd, buildctl: b.cfg.Buildctl, dir: filepath.Join(b.cfg.Work, "bk-fairing"), keepStorage: keep, pidDir: b.pidDir()}
		removeTree(b.bkOurs.dir)
		if err := b.bkOurs.start(ctx); err != nil {
			return err
		}
	}
	if b.cfg.has(tBuildctl) {
		b.bkPeer = &buildkitd{name: "buildkitd-buildctl", bin: b.cfg.Buildkitd, buildctl: b.cfg.Buildctl, dir: filepath.Join(b.cfg.Work, "bk-buildctl"), keepStorage: keep, pidDir: b.pidDir()}
		removeTree(b.bkPeer.dir)
		if err := b.bkPeer.start(ctx); err != nil {
			return err
		}
	}
	if b.cfg.has(tDocker) {
		b.docker = &dockerd{bin: b.cfg.Dockerd, client: b.cfg.Docker, dir: filepath.Join(b.cfg.Work, "docker"), pidDir: b.pidDir()}
		removeTree(b.docker.dir)
		if err := b.docker.start(ctx); err != nil {
			return err
		}
	}
	if b.cfg.has(tBuildah) {
		removeTree(b.buildahDir())
	}
	return nil
}

// stopDaemons stops everything startDaemons started, newest first, and removes their state.
func (b *bench) stopDaemons() {
	if b.docker != nil {
		b.docker.stop()
		removeTree(b.docker.dir)
	}
	for _, bk := range []*buildkitd{b.bkPeer, b.bkOurs} {
		if bk != nil {
			bk.stop()
			removeTree(bk.dir)
		}
	}
	removeTree(b.buildahDir())
	for _, r := range []*registry{b.cold, b.reg} {
		if r != nil {
			r.stop()
			if os.Getenv("FAIRING_BENCH_KEEP") != "1" {
				os.RemoveAll(r.dir)
			}
		}
	}
}

// mainTag is where a tool's warm builds go.
func (b *bench) mainTag(suite, tool string) string {
	if suite == "deps" {
		return fmt.Sprintf("%s/bench/deps-%s:main", b.reg.addr(), tool)
	}
	return fmt.Sprintf("%s/bench/%s:main", b.reg.addr(), tool)
}

// measure runs one tool once and checks that the image it reports is in the registry.
func (b *bench) measure(ctx context.Context, t *tool, j *job) Sample {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	s := Sample{Tool: t.name}
	pid := 0
	if t.daemon != nil {
		pid = t.daemon(b)
	}
	var before daemonUsage
	if pid != 0 {
		resetPeaks(pid)
		before = readDaemonUsage(pid)
	}
	err := t.run(b, ctx, j, &s)
	if pid != 0 {
		after := readDaemonUsage(pid)
		s.DaemonCPUMs = max(0, after.cpuMs-before.cpuMs)
		s.DaemonRSSKB = after.hwmKB
	}
	for _, st := range s.Steps {
		if st.Aside {
			continue
		}
		s.Total.WallMs += st.WallMs
		s.Total.UserMs += st.UserMs
		s.Total.SysMs += st.SysMs
		s.Total.MaxRSSKB = max(s.Total.MaxRSSKB, st.MaxRSSKB)
	}
	if err == nil {
		err = checkPushed(ctx, s.Ref)
	}
	if err != nil {
		s.Err = err.Error()
	}
	if t.after != nil {
		if aerr := t.after(b, ctx, j); aerr != nil {
			b.logf("%s: cleanup after the run: %v", t.name, aerr)
		}
	}
	return s
}

// checkPushed makes sure the run really produced its image: NAME@sha256:... is in the
// registry.
func checkPushed(ctx context.Context, ref string) error {
	d, err := name.NewDigest(ref, name.Insecure)
	if err != nil {
		return fmt.Errorf("the tool printed %q, not NAME@DIGEST: %w", ref, err)
	}
	if _, err := remote.Head(d, remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("image %s is not in the registry: %w", ref, err)
	}
	return nil
}

// run measures every suite and size; results accumulate in b.res even when it fails midway.
func (b *bench) run(ctx context.Context) error {
	b.res = &Results{Date: time.Now().UTC().Format(time.RFC3339), Label: b.cfg.Label, Quick: b.cfg.Quick, LoadStart: loadAvg(), ToolDesc: map[string]string{}}
	b.tools = b.toolSet()
	for _, n := range b.cfg.Tools {
		t, ok := b.tools[n]
		if !ok {
			return fmt.Errorf("unknown tool %q: use %s", n, strings.Join(allTools(), ", "))
		}
		b.res.ToolDesc[n] = t.desc
	}
	if err := os.MkdirAll(b.cfg.Work, 0o755); err != nil {
		return err
	}
	b.res.Machine = describeMachine(b.cfg.Work)
	b.res.Machine.Versions = b.cfg.Versions
	if err := b.writeDockerfiles(); err != nil {
		return err
	}
	if err := b.startDaemons(ctx); err != nil {
		return err
	}
	if err := b.pushBases(ctx); err != nil {
		return err
	}
	if contains(b.cfg.Suites, "main") {
		for _, size := range b.cfg.Sizes {
			spec, ok := gen.Specs[size]
			if !ok {
				return fmt.Errorf("unknown workload size %q: use tiny, small, medium or large", size)
			}
			if err := b.runSuite(ctx, "main", spec, b.cfg.Tools, b.cfg.Scenarios, b.cfg.runsFor(size)); err != nil {
				return err
			}
		}
	}
	if contains(b.cfg.Suites, "deps") {
		var tools []string
		for _, t := range []string{tFairingBK, tBuildctl} {
			if b.cfg.has(t) {
				tools = append(tools, t)
			}
		}
		switch {
		case b.bases["deps"] == "":
			b.logf("deps suite skipped: no python base layer (-python-layer)")
		case len(tools) == 0:
			b.logf("deps suite skipped: neither %s nor %s selected", tFairingBK, tBuildctl)
		default:
			spec, ok := gen.Specs[b.cfg.DepsSize]
			if !ok {
				return fmt.Errorf("unknown workload size %q for the deps suite", b.cfg.DepsSize)
			}
			var scs []string
			for _, s := range depsScenarios {
				if contains(b.cfg.Scenarios, s) {
					scs = append(scs, s)
				}
			}
			if err := b.runSuite(ctx, "deps", spec, tools, scs, b.cfg.DepsRuns); err != nil {
				return err
			}
		}
	}
	b.res.LoadEnd = loadAvg()
	return nil
}

// contextDir prepares the suite's context: the generated workload; for the deps suite, a
// requirements.txt that installs a local package offline, the package, and a main.py.
func (b *bench) contextDir(ctx context.Context, suite string, spec gen.Spec) (string, error) {
	dir := filepath.Join(b.cfg.Work, "ctx-"+suite)
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	t := time.Now()
	if err := gen.Generate(ctx, dir, spec); err != nil {
		return "", fmt.Errorf("generate the %s workload: %w", spec.Name, err)
	}
	if suite == "deps" {
		if err := writeLocalPackage(dir); err != nil {
			return "", err
		}
	}
	var n int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	b.ctxBytes = n
	b.logf("generated the %s workload for the %s suite (%d files, %.0f MB) in %s", spec.Name, suite, spec.Files, float64(n)/1e6, time.Since(t).Round(time.Millisecond))
	return dir, nil
}

// writeLocalPackage makes the deps suite's requirements: pip installs ./pkgs/benchlib
// offline (no index), as a project with a private package does.
func writeLocalPackage(dir string) error {
	files := map[string]string{
		"requirements.txt":                   "--no-index\n./pkgs/benchlib\n",
		"pkgs/benchlib/setup.py":             "from setuptools import setup, find_packages\nsetup(name='benchlib', version='1.0', packages=find_packages())\n",
		"pkgs/benchlib/benchlib/__init__.py": "VERSION = '1.0'\n",
		"main.py":                            "import benchlib\nprint('benchlib', benchlib.VERSION)\n",
	}
	for i := 0; i < 40; i++ {
		var sb strings.Builder
		for k := 0; k < 60; k++ {
			fmt.Fprintf(&sb, "def f%d_%d(x, y=%d):\n    return x * %d + y\n\n", i, k, k, i+k)
		}
		files[fmt.Sprintf("pkgs/benchlib/benchlib/mod%02d.py", i)] = sb.String()
	}
	for p, c := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// runSuite measures tools × scenarios × runs on one workload. In each repetition the context
// is changed once (if the scenario changes it), then every tool builds it, in an order that
// rotates between repetitions so that a drift in the machine's load favours no tool.
func (b *bench) runSuite(ctx context.Context, suite string, spec gen.Spec, tools, scs []string, runs int) error {
	ctxDir, err := b.contextDir(ctx, suite, spec)
	if err != nil {
		return err
	}
	for _, d := range []string{"cache/" + suite} {
		os.RemoveAll(filepath.Join(b.cfg.Work, d))
	}
	sr := SuiteResult{Suite: suite, Workload: spec, Bytes: b.ctxBytes, Runs: runs, Tools: tools, LoadStart: loadAvg()}
	b.res.Suites = append(b.res.Suites, sr)
	res := &b.res.Suites[len(b.res.Suites)-1]
	if suite == "main" {
		lim, err := measureLimits(ctx, ctxDir, b.reg.addr(), 100_000_000, b.cfg.Builder)
		if err != nil {
			return fmt.Errorf("measure the machine's limits: %w", err)
		}
		res.Limits = &lim
		b.logf("limits: exec %.1f ms, request %.2f ms", lim.ExecMs, lim.RequestMs)
		b.logf("limits: sha256 %.0f MB/s, pgzip-1 %.0f MB/s (text, ratio %.3f), %.0f MB/s (weights), gzip-1 %.0f MB/s, gzip-6 %.0f MB/s, walk %.0f ms, upload %.0f MB/s",
			lim.SHA256MBps, lim.PgzipTextMBps, lim.PgzipTextRatio, lim.PgzipWeightsMBps, lim.GzipStdTextMBps, lim.Gzip6TextMBps, lim.WalkMs, lim.UploadMBps)
	}
	base := b.bases[suite]
	warm := func(tool string) error {
		j := &job{suite: suite, ctxDir: ctxDir, base: base, registry: b.reg.addr(), dest: b.mainTag(suite, tool)}
		s := b.measure(ctx, b.tools[tool], j)
		if s.Err != "" {
			return fmt.Errorf("%s/%s: warm-up build with %s: %s", suite, spec.Name, tool, s.Err)
		}
		b.logf("warm-up: %-15s %s in %.2fs", tool, s.Ref, s.Total.WallMs/1000)
		return nil
	}
	// The main images every warm scenario starts from.
	dirty := map[string]bool{}
	for _, t := range tools {
		dirty[t] = true
	}
	large := b.ctxBytes > 1_000_000_000
	mut := &gen.Mutator{Dir: ctxDir, Seed: spec.Seed + 100, Skip: []string{"pkgs/"}}
	for _, sc := range scenarios {
		if !contains(scs, sc.name) {
			continue
		}
		// Every scenario but cold starts from each tool's main image in the registry (and, but
		// for warm-registry, from the tool's warm local state).
		if !sc.cold {
			for _, t := range tools {
				if dirty[t] {
					if err := warm(t); err != nil {
						return err
					}
					dirty[t] = false
				}
			}
		}
		scr := ScenarioResult{Name: sc.name, Desc: sc.desc, LoadBefore: loadAvg()}
		for rep := 0; rep < runs; rep++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			if sc.mutate != nil {
				c, err := sc.mutate(mut)
				if err != nil {
					return fmt.Errorf("%s: change the context: %w", sc.name, err)
				}
				scr.Changes = append(scr.Changes, fmt.Sprintf("edited %d, added %d, deleted %d files (%d bytes)", len(c.Edited), len(c.Added), len(c.Deleted), c.Bytes))
			}
			for _, tn := range rotate(tools, rep) {
				t := b.tools[tn]
				j := &job{suite: suite, ctxDir: ctxDir, base: base, registry: b.reg.addr(), dest: b.mainTag(suite, tn), fresh: sc.fresh, cold: sc.cold}
				if sc.cold {
					if err := b.cold.wipe(ctx); err != nil {
						return err
					}
					cb, err := copyImage(ctx, base, b.cold.addr())
					if err != nil {
						return fmt.Errorf("copy the base to the cold registry: %w", err)
					}
					j.base, j.registry = cb, b.cold.addr()
					j.dest = fmt.Sprintf("%s/bench/%s-%s:cold%d", b.cold.addr(), suite, tn, rep)
				}
				if sc.fresh && t.reset != nil {
					lost, err := t.reset(b, ctx, j)
					if err != nil {
						return fmt.Errorf("%s: reset %s: %w", sc.name, tn, err)
					}
					if lost && sc.cold {
						dirty[tn] = true
					}
				}
				s := b.measure(ctx, t, j)
				s.Scenario, s.Rep = sc.name, rep
				if s.Err != "" {
					b.fail("%s/%s %s/%s rep %d: %s", suite, spec.Name, sc.name, tn, rep, s.Err)
				}
				scr.Samples = append(scr.Samples, s)
				b.logf("%s %-6s %-13s %-15s rep %d: %7.3fs  cpu %6.2fs  rss %4d MB%s", suite, spec.Name, sc.name, tn, rep, s.Total.WallMs/1000, s.CPUMs()/1000,
					s.Total.MaxRSSKB/1024, ourSummary(s))
			}
			if large {
				if err := b.reg.gc(ctx); err != nil {
					return err
				}
			}
		}
		scr.LoadAfter = loadAvg()
		res.Scenarios = append(res.Scenarios, scr)
		if !large {
			if err := b.reg.gc(ctx); err != nil {
				return err
			}
		}
	}
	res.LoadEnd = loadAvg()
	// Leave the disk as it was: the next size (or suite) generates its own context.
	os.RemoveAll(ctxDir)
	os.RemoveAll(filepath.Join(b.cfg.Work, "cache", suite))
	return nil
}

func ourSummary(s Sample) string {
	m := s.Meta
	if m == nil {
		if s.DepsCached != nil {
			return fmt.Sprintf("  pip step cached: %v", *s.DepsCached)
		}
		return ""
	}
	if m.BuildKit != nil {
		if s.DepsCached != nil {
			return fmt.Sprintf("  pip step cached: %v", *s.DepsCached)
		}
		return ""
	}
	return fmt.Sprintf("  layers %d/%d rebuilt, %d pushed (%.1f MB), %d hashed", m.Rebuilt(), len(m.Layers), len(m.Pushed), float64(m.BytesUploaded)/1e6, m.FilesHashed)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// rotate starts the list at rep mod len: every tool goes first as often as any other.
func rotate(s []string, rep int) []string {
	if len(s) == 0 {
		return s
	}
	k := rep % len(s)
	return append(append([]string{}, s[k:]...), s[:k]...)
}
