// Command harness times fairing-builder against crane append on generated workloads and a real
// registry, and writes a Markdown table, the raw samples and a machine description.
// benchmarks/run.sh installs and starts what it needs and calls it; see benchmarks/README.md.
//
//	harness run -registry 127.0.0.1:PORT -base REF -builder BIN -crane BIN [-size medium] [-runs 5] [-quick]
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
	"strings"
	"syscall"
	"time"

	"github.com/fairing-dev/fairing/benchmarks/gen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: harness run|gen|profile|freeport [flags] (see benchmarks/README.md)")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = cmdRun(ctx, os.Args[2:])
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
	fs.StringVar(&c.Size, "size", "medium", "workload: tiny, small, medium or large")
	fs.IntVar(&c.Runs, "runs", 5, "repetitions per scenario and tool")
	quick := fs.Bool("quick", false, "small workload, 2 runs: checks the harness works, figures not to be quoted")
	fs.StringVar(&c.Registry, "registry", "", "HOST:PORT of the registry to push to (plain HTTP, loopback)")
	fs.StringVar(&c.Base, "base", "", "base image reference on that registry")
	fs.StringVar(&c.Builder, "builder", "", "fairing-builder binary")
	fs.StringVar(&c.Crane, "crane", "", "crane binary")
	fs.StringVar(&c.Work, "work", filepath.Join(os.TempDir(), "fairing-bench", "work"), "scratch folder (wiped)")
	fs.StringVar(&c.Out, "out", "", "results folder (default benchmarks/results/DATE-LABEL)")
	fs.StringVar(&c.Label, "label", "", "label for the results folder")
	scen := fs.String("scenarios", strings.Join(scenarioNames(), ","), "comma-separated scenarios")
	tools := fs.String("tools", "fairing,crane", "comma-separated tools")
	fs.DurationVar(&c.Timeout, "timeout", 15*time.Minute, "limit for one tool run")
	versions := fs.String("versions", "", "KEY=VALUE;... tool versions for the machine description")
	fs.Parse(args)
	if *quick {
		c.Size, c.Runs = "small", 2
	}
	if c.Registry == "" || c.Base == "" || c.Builder == "" || c.Crane == "" {
		return fmt.Errorf("run needs -registry, -base, -builder and -crane (benchmarks/run.sh gives them)")
	}
	if c.Runs < 1 {
		return fmt.Errorf("-runs %d: need at least 1", c.Runs)
	}
	c.Scenarios, c.Tools = splitList(*scen), splitList(*tools)
	for _, s := range c.Scenarios {
		if !contains(scenarioNames(), s) {
			return fmt.Errorf("unknown scenario %q: use %s", s, strings.Join(scenarioNames(), ", "))
		}
	}
	c.Versions = map[string]string{}
	for _, kv := range strings.Split(*versions, ";") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			c.Versions[k] = v
		}
	}
	if c.Label == "" {
		c.Label = c.Size
		if *quick {
			c.Label = "quick"
		}
	}
	if c.Out == "" {
		// Quick runs check the harness and are not quoted: they stay out of the repository.
		c.Out = filepath.Join("benchmarks", "results", time.Now().Format("2006-01-02")+"-"+c.Label)
		if *quick {
			c.Out = filepath.Join(filepath.Dir(c.Work), "results", time.Now().Format("2006-01-02")+"-"+c.Label)
		}
	}
	if err := os.MkdirAll(c.Work, 0o755); err != nil {
		return err
	}
	h := &harness{cfg: c}
	runErr := h.run(ctx)
	if h.res == nil {
		return runErr
	}
	if runErr != nil {
		h.fail("%v", runErr)
	}
	if err := writeResults(c.Out, h.res); err != nil {
		return err
	}
	if len(h.res.Failures) > 0 {
		return fmt.Errorf("%d runs failed (see %s/results.md)", len(h.res.Failures), c.Out)
	}
	return nil
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
	mj, _ := json.MarshalIndent(struct {
		Machine Machine `json:"machine"`
		Limits  Limits  `json:"limits"`
	}{r.Machine, r.Limits}, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "machine.json"), append(mj, '\n'), 0o644); err != nil {
		return err
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
