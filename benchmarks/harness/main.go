// Command harness times fairing-builder against the tools a user could pick instead (crane
// append, buildctl, buildah, docker build) on generated workloads, against real registries and
// daemons it starts itself on 127.0.0.1, and writes a Markdown table, SVG plots, the raw samples
// and a machine description. benchmarks/run.sh installs what it needs and calls it; see
// benchmarks/README.md.
//
//	harness run -builder BIN -crane BIN -buildkitd BIN -buildctl BIN [-sizes small,medium,large] [-runs 5] [-quick]
//	harness report -out DIR A/samples.json B/samples.json   merge runs (e.g. the large workload measured apart) and write one report
//	harness gen -size medium -out DIR        write a workload
//	harness profile -context DIR ...         CPU profile of the builder, in process
//	harness freeport                         print a free TCP port on 127.0.0.1
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/fairing-dev/fairing/benchmarks/gen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: harness run|report|gen|profile|freeport [flags] (see benchmarks/README.md)")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = cmdRun(ctx, os.Args[2:])
	case "report":
		err = cmdReport(os.Args[2:])
	case "gen":
		err = cmdGen(ctx, os.Args[2:])
	case "profile":
		err = cmdProfile(ctx, os.Args[2:])
	case "freeport":
		err = cmdFreePort()

	default:
		err = fmt.Errorf("unknown command %q: use run, gen, profile or freeport", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "harness: %v\n", err)
		os.Exit(1)
	}
}

func cmdRun(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	var c Config
	sizes := fs.String("sizes", "small,medium,large", "workloads, comma-separated: tiny, small, medium, large")
	fs.IntVar(&c.Runs, "runs", 5, "repetitions per scenario and tool")
	fs.IntVar(&c.RunsLarge, "runs-large", 2, "repetitions on the large workload")
	fs.BoolVar(&c.Quick, "quick", false, "small workload, 2 runs, the peers that are cheap to start: checks the harness works; figures not to be quoted")
	fs.StringVar(&c.Builder, "builder", "", "fairing-builder binary")
	fs.StringVar(&c.Crane, "crane", "", "crane binary")
	fs.StringVar(&c.Buildkitd, "buildkitd", "", "buildkitd binary")
	fs.StringVar(&c.Buildctl, "buildctl", "", "buildctl binary (same version)")
	fs.StringVar(&c.RegistryBin, "registry-bin", "docker-registry", "docker-registry binary (distribution 2.8)")
	fs.StringVar(&c.Dockerd, "dockerd", "dockerd", "dockerd binary")
	fs.StringVar(&c.Docker, "docker", "/usr/bin/docker", "docker client whose BuildKit the daemon serves (20.10 from docker.io)")
	fs.StringVar(&c.PythonLayer, "python-layer", "", "gzipped tar of a root with python3 and pip: the deps suite's base (empty: skip the deps suite)")
	fs.IntVar(&c.RegistryPort, "registry-port", 0, "port of the main registry on 127.0.0.1 (default: a free one)")
	fs.StringVar(&c.Work, "work", filepath.Join(os.TempDir(), "fairing-bench", "work"), "scratch folder (wiped)")
	fs.StringVar(&c.Out, "out", "", "results folder (default benchmarks/results/DATE-LABEL)")
	fs.StringVar(&c.Label, "label", "", "label for the results folder")
	scen := fs.String("scenarios", strings.Join(scenarioNames(), ","), "comma-separated scenarios")
	tools := fs.String("tools", strings.Join(allTools(), ","), "comma-separated tools: "+strings.Join(allTools(), ", "))
	suites := fs.String("suites", "main,deps", "main (COPY-only build, every tool) and deps (requirements.txt installed: BuildKit path vs buildctl)")
	fs.StringVar(&c.DepsSize, "deps-size", "medium", "workload of the deps suite")
	fs.IntVar(&c.DepsRuns, "deps-runs", 0, "repetitions in the deps suite (default -runs)")
	fs.DurationVar(&c.Timeout, "timeout", 30*time.Minute, "limit for one tool run")
	versions := fs.String("versions", "", "KEY=VALUE;... tool versions for the machine description")
	fs.Parse(args)
	if c.Quick {
		// Cheap to start: no dockerd, no buildah (their installs and daemons cost more than the
		// runs), one deps repetition on the small workload.
		*sizes, c.Runs, c.DepsSize, c.DepsRuns = "small", 2, "small", 1
		if !flagSet(fs, "tools") {
			*tools = strings.Join([]string{tFairing, tFairingBK, tInCluster, tFairingZstd, tFairingEstgz, tCrane, tBuildctl}, ",")
		}
	}
	if c.DepsRuns == 0 {
		c.DepsRuns = c.Runs
	}
	if c.Builder == "" || c.Crane == "" {
		return fmt.Errorf("run needs -builder and -crane (benchmarks/run.sh gives them)")
	}
	if c.Runs < 1 {
		return fmt.Errorf("-runs %d: need at least 1", c.Runs)
	}
	c.Sizes, c.Scenarios, c.Tools, c.Suites = splitList(*sizes), splitList(*scen), splitList(*tools), splitList(*suites)
	for _, s := range c.Scenarios {
		if !contains(scenarioNames(), s) {
			return fmt.Errorf("unknown scenario %q: use %s", s, strings.Join(scenarioNames(), ", "))
		}
	}
	for _, t := range c.Tools {
		if !contains(allTools(), t) {
			return fmt.Errorf("unknown tool %q: use %s", t, strings.Join(allTools(), ", "))
		}
	}
	if (c.has(tBuildctl) || c.has(tFairingBK)) && (c.Buildkitd == "" || c.Buildctl == "") {
		return fmt.Errorf("tools %s and %s need -buildkitd and -buildctl", tBuildctl, tFairingBK)
	}
	c.Versions = map[string]string{}
	for _, kv := range strings.Split(*versions, ";") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			c.Versions[k] = v
		}
	}
	if c.Label == "" {
		c.Label = strings.Join(c.Sizes, "-")
		if c.Quick {
			c.Label = "quick"
		}
	}
	if c.Out == "" {
		// Quick runs check the harness and are not quoted: they stay out of the repository.
		c.Out = filepath.Join("benchmarks", "results", time.Now().Format("2006-01-02")+"-"+c.Label)
		if c.Quick {
			c.Out = filepath.Join(filepath.Dir(c.Work), "results", time.Now().Format("2006-01-02")+"-"+c.Label)
		}
	}
	b := &bench{cfg: c}
	runErr := b.run(ctx)
	b.stopDaemons()
	if b.res == nil || len(b.res.Suites) == 0 {
		return runErr
	}
	if runErr != nil {
		b.fail("%v", runErr)
	}
	if err := writeResults(c.Out, b.res); err != nil {
		return err
	}
	if len(b.res.Failures) > 0 {
		return fmt.Errorf("%d runs failed (see %s/results.md)", len(b.res.Failures), c.Out)
	}
	return nil
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

func writeResults(dir string, r *Results) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "samples.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	lims := map[string]*Limits{}
	for _, s := range r.Suites {
		if s.Limits != nil {
			lims[s.Workload.Name] = s.Limits
		}
	}
	mj, _ := json.MarshalIndent(struct {
		Machine Machine            `json:"machine"`
		Limits  map[string]*Limits `json:"limits"`
	}{r.Machine, lims}, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "machine.json"), append(mj, '\n'), 0o644); err != nil {
		return err
	}
	if err := writePlots(dir, r); err != nil {
		return fmt.Errorf("plots: %w", err)
	}
	f, err := os.Create(filepath.Join(dir, "results.md"))
	if err != nil {
		return err
	}
	writeMarkdown(f, r)
	if err := f.Close(); err != nil {
		return err
	}
	writeMarkdown(os.Stdout, r)
	fmt.Fprintf(os.Stderr, "results in %s\n", dir)
	return nil
}

// cmdReport merges the samples of several runs (say, small and medium in one, large in another)
// into one report: tables, plots and the machine description of the first.
func cmdReport(args []string) error {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	out := fs.String("out", "", "results folder to write")
	label := fs.String("label", "", "label (default: the first run's)")
	fs.Parse(args)
	if *out == "" || fs.NArg() == 0 {
		return fmt.Errorf("usage: harness report -out DIR SAMPLES.json...")
	}
	var all []*Results
	for _, p := range fs.Args() {
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		r := &Results{}
		if err := json.Unmarshal(raw, r); err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		all = append(all, r)
	}
	m := mergeResults(all)
	if *label != "" {
		m.Label = *label
	}
	return writeResults(*out, m)
}

// mergeResults puts the suites of several runs together: main suites by workload size, then
// the deps suites.
func mergeResults(all []*Results) *Results {
	m := *all[0]
	m.ToolDesc = map[string]string{}
	m.Suites = nil
	m.Failures = nil
	for _, r := range all {
		for k, v := range r.ToolDesc {
			m.ToolDesc[k] = v
		}
		m.Suites = append(m.Suites, r.Suites...)
		m.Failures = append(m.Failures, r.Failures...)
		m.Quick = m.Quick || r.Quick
	}
	m.LoadEnd = all[len(all)-1].LoadEnd
	rank := func(s SuiteResult) int {
		n := int(s.Bytes / 1000)
		if s.Suite != "main" {
			n += 1 << 40
		}
		return n
	}
	sort.SliceStable(m.Suites, func(i, j int) bool { return rank(m.Suites[i]) < rank(m.Suites[j]) })
	return &m
}

func cmdGen(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("gen", flag.ExitOnError)
	size := fs.String("size", "medium", "workload: tiny, small, medium or large")
	seed := fs.Uint64("seed", 0, "seed (default: the workload's)")
	out := fs.String("out", "", "folder to create (must not exist or be empty)")
	fs.Parse(args)
	spec, ok := gen.Specs[*size]
	if !ok {
		return fmt.Errorf("unknown workload size %q: use tiny, small, medium or large", *size)
	}
	if *out == "" {
		return fmt.Errorf("gen needs -out DIR")
	}
	if *seed != 0 {
		spec.Seed = *seed
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	return gen.Generate(ctx, *out, spec)
}

func cmdFreePort() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer l.Close()
	fmt.Println(l.Addr().(*net.TCPAddr).Port)
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}
