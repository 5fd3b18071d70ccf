package main

import (
	"context"
	"encoding/json"
	"fmt"
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
	Size      string
	Runs      int
	Registry  string // host:port of the registry the tools push to
	Base      string // base image reference, on that registry
	Builder   string // fairing-builder binary
	Crane     string // crane binary
	Work      string // scratch folder
	Out       string // results folder
	Label     string
	Scenarios []string
	Tools     []string
	Timeout   time.Duration
	Versions  map[string]string // shown in the machine description
}

// OurMeta is what the builder's --metadata-file says, as far as the report reads it.
type OurMeta struct {
	Digest string `json:"digest"`
	Layers []struct {
		Name   string `json:"name"`
		Size   int64  `json:"size"`
		Cached bool   `json:"cached"`
	} `json:"layers"`
	Entries       int      `json:"entries"`
	FilesHashed   int      `json:"filesHashed"`
	Pushed        []string `json:"pushed"`
	Mounted       []string `json:"mounted"`
	Skipped       []string `json:"skipped"`
	BytesUploaded int64    `json:"bytesUploaded"`
	Timings       struct {
		Walk    int64 `json:"walk"`
		Hash    int64 `json:"hash"`
		Layers  int64 `json:"layers"`
		Base    int64 `json:"base"`
		Publish int64 `json:"publish"`
		Total   int64 `json:"total"`
	} `json:"timings"`
}

// Rebuilt counts the layers that were not cache hits.
func (m *OurMeta) Rebuilt() int {
	n := 0
	for _, l := range m.Layers {
		if !l.Cached {
			n++
		}
	}
	return n
}

// Sample is one timed run of one tool.
type Sample struct {
	Scenario string   `json:"scenario"`
	Tool     string   `json:"tool"`
	Rep      int      `json:"rep"`
	Total    Step     `json:"total"` // wall and CPU summed over the steps, RSS the peak of them
	Steps    []Step   `json:"steps"`
	Ref      string   `json:"ref,omitempty"`
	Meta     *OurMeta `json:"meta,omitempty"`
	Err      string   `json:"error,omitempty"`
}

// ScenarioResult holds every sample of one scenario.
type ScenarioResult struct {
	Name       string   `json:"name"`
	Desc       string   `json:"description"`
	LoadBefore float64  `json:"load_before"`
	LoadAfter  float64  `json:"load_after"`
	Changes    []string `json:"changes,omitempty"` // what each repetition's mutation did
	Samples    []Sample `json:"samples"`
}

// Results is everything one harness run measured (samples.json).
type Results struct {
	Date      string           `json:"date"`
	Label     string           `json:"label"`
	Workload  gen.Spec         `json:"workload"`
	Runs      int              `json:"runs"`
	Machine   Machine          `json:"machine"`
	Limits    Limits           `json:"limits"`
	Scenarios []ScenarioResult `json:"scenarios"`
	Failures  []string         `json:"failures,omitempty"`
	LoadStart float64          `json:"load_start"`
	LoadEnd   float64          `json:"load_end"`
}

// target is where one tool run reads and writes.
type target struct {
	dest     string
	cacheDir string // fairing-builder only
	cleanup  bool   // remove cacheDir after the run
}

type scenario struct {
	name, desc string
	// mutate changes the context before a repetition (both tools then build the same tree).
	mutate func(m *gen.Mutator) (gen.Change, error)
	// target says where a tool's run goes; nil means the main tag and the warm cache.
	target func(h *harness, tool string, rep int) target
}

var scenarios = []scenario{
	{name: "cold", desc: "empty local cache, new repository (page cache warm)",
		target: func(h *harness, tool string, rep int) target {
			return target{dest: fmt.Sprintf("%s/bench/cold-%s-%d:latest", h.cfg.Registry, tool, rep),
				cacheDir: filepath.Join(h.cfg.Work, "cache", fmt.Sprintf("cold-%d", rep)), cleanup: true}
		}},
	{name: "warm-registry", desc: "fresh machine, warm registry: empty local cache, the registry already has the image",
		target: func(h *harness, tool string, rep int) target {
			return target{dest: h.mainTag(tool), cacheDir: filepath.Join(h.cfg.Work, "cache", fmt.Sprintf("fresh-%d", rep)), cleanup: true}
		}},
	{name: "unchanged", desc: "rebuild with nothing changed"},
	{name: "edit-one", desc: "one source file edited", mutate: (*gen.Mutator).EditOne},
	{name: "add-delete", desc: "one source file added, another deleted", mutate: (*gen.Mutator).AddDelete},
	{name: "edit-10pct", desc: "10% of the source files edited",
		mutate: func(m *gen.Mutator) (gen.Change, error) { return m.EditFraction(0.1) }},
	{name: "large-replace", desc: "the largest model file replaced (same size, new weights)", mutate: (*gen.Mutator).ReplaceLarge},
}

func scenarioNames() []string {
	var n []string
	for _, s := range scenarios {
		n = append(n, s.name)
	}
	return n
}

type harness struct {
	cfg    Config
	ctxDir string
	res    *Results
}

func (h *harness) mainTag(tool string) string {
	return fmt.Sprintf("%s/bench/%s:main", h.cfg.Registry, tool)
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[bench %s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// runTool runs one tool once against the context and checks that the image it reports is in
// the registry.
func (h *harness) runTool(ctx context.Context, tool string, t target) Sample {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	s := Sample{Tool: tool}
	var err error
	switch tool {
	case "fairing":
		err = h.runOurs(ctx, t, &s)
	case "crane":
		err = h.runCrane(ctx, t, &s)
	default:
		err = fmt.Errorf("unknown tool %q", tool)
	}
	for _, st := range s.Steps {
		s.Total.WallMs += st.WallMs
		s.Total.UserMs += st.UserMs
		s.Total.SysMs += st.SysMs
		s.Total.MaxRSSKB = max(s.Total.MaxRSSKB, st.MaxRSSKB)
	}
	if err == nil {
		err = h.checkPushed(ctx, s.Ref)
	}
	if err != nil {
		s.Err = err.Error()
	}
	if t.cleanup && t.cacheDir != "" {
		os.RemoveAll(t.cacheDir)
	}
	return s
}

func (h *harness) runOurs(ctx context.Context, t target, s *Sample) error {
	meta := filepath.Join(h.cfg.Work, "meta.json")
	os.Remove(meta)
	st, out, err := runStep(ctx, "build", nil, h.cfg.Builder, "build", "--context", h.ctxDir, "--base", h.cfg.Base,
		"--destination", t.dest, "--cache-dir", t.cacheDir, "--metadata-file", meta, "--quiet")
	s.Steps = append(s.Steps, st)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(meta)
	if err != nil {
		return fmt.Errorf("fairing-builder wrote no metadata: %w", err)
	}
	s.Meta = &OurMeta{}
	if err := json.Unmarshal(b, s.Meta); err != nil {
		return fmt.Errorf("read fairing-builder metadata: %w", err)
	}
	s.Ref = lastLine(out)
	return nil
}

// runCrane is what a crane user does: a reproducible tar of the context (GNU tar, sorted,
// numeric owner, mtime 0, under app/ like ours), then crane append onto the base.
func (h *harness) runCrane(ctx context.Context, t target, s *Sample) error {
	tarFile := filepath.Join(h.cfg.Work, "crane-ctx.tar")
	st, _, err := runStep(ctx, "tar", []string{"LC_ALL=C"}, "tar", "--sort=name", "--numeric-owner", "--owner=0", "--group=0",
		"--mtime=@0", "--transform=s,^\\.,app,", "-C", h.ctxDir, "-cf", tarFile, ".")
	s.Steps = append(s.Steps, st)
	if err != nil {
		return err
	}
	st, out, err := runStep(ctx, "append", nil, h.cfg.Crane, "append", "-b", h.cfg.Base, "-f", tarFile, "-t", t.dest)
	s.Steps = append(s.Steps, st)
	if err != nil {
		return err
	}
	s.Ref = lastLine(out)
	return nil
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// checkPushed makes sure the run really produced its image: NAME@sha256:... is in the
// registry.
func (h *harness) checkPushed(ctx context.Context, ref string) error {
	d, err := name.NewDigest(ref, name.Insecure)
	if err != nil {
		return fmt.Errorf("the tool printed %q, not NAME@DIGEST: %w", ref, err)
	}
	if _, err := remote.Head(d, remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("image %s is not in the registry: %w", ref, err)
	}
	return nil
}

func (h *harness) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	h.logf("FAILED: %s", msg)
	h.res.Failures = append(h.res.Failures, msg)
}

// run generates the workload, measures the limits, builds the main images once, then runs every
// scenario: for each repetition, the mutation (if any), then each tool, alternating which goes
// first so a drift in machine load does not favour one.
func (h *harness) run(ctx context.Context) error {
	spec, ok := gen.Specs[h.cfg.Size]
	if !ok {
		return fmt.Errorf("unknown workload size %q: use tiny, small, medium or large", h.cfg.Size)
	}
	h.res = &Results{Date: time.Now().UTC().Format(time.RFC3339), Label: h.cfg.Label, Workload: spec, Runs: h.cfg.Runs, LoadStart: loadAvg()}
	h.ctxDir = filepath.Join(h.cfg.Work, "ctx")
	if err := os.RemoveAll(h.ctxDir); err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(h.cfg.Work, "cache")); err != nil {
		return err
	}
	if err := os.MkdirAll(h.ctxDir, 0o755); err != nil {
		return err
	}
	t := time.Now()
	if err := gen.Generate(ctx, h.ctxDir, spec); err != nil {
		return fmt.Errorf("generate the %s workload: %w", spec.Name, err)
	}
	h.logf("generated %s workload (%d files, %.0f MB) in %s", spec.Name, spec.Files, float64(spec.TotalBytes())/1e6, time.Since(t).Round(time.Millisecond))

	h.res.Machine = describeMachine(h.cfg.Work)
	h.res.Machine.Builder = h.cfg.Versions["builder"]
	h.res.Machine.Crane = h.cfg.Versions["crane"]
	h.res.Machine.Registry = h.cfg.Versions["registry"]
	h.res.Machine.Tar = h.cfg.Versions["tar"]
	lim, err := measureLimits(ctx, h.ctxDir, h.cfg.Registry, 100_000_000)
	if err != nil {
		return fmt.Errorf("measure the machine's limits: %w", err)
	}
	h.res.Limits = lim
	h.logf("limits: sha256 %.0f MB/s, pgzip-1 %.0f MB/s (text, ratio %.3f), %.0f MB/s (weights), stdlib gzip-1 %.0f MB/s, walk %.0f ms, upload %.0f MB/s",
		lim.SHA256MBps, lim.PgzipTextMBps, lim.PgzipTextRatio, lim.PgzipWeightsMBps, lim.GzipStdTextMBps, lim.WalkMs, lim.UploadMBps)

	// The main images every warm scenario starts from.
	mainCache := filepath.Join(h.cfg.Work, "cache", "main")
	for _, tool := range h.cfg.Tools {
		s := h.runTool(ctx, tool, target{dest: h.mainTag(tool), cacheDir: mainCache})
		if s.Err != "" {
			return fmt.Errorf("first build with %s: %s", tool, s.Err)
		}
		h.logf("setup: %s built %s in %.2fs", tool, s.Ref, s.Total.WallMs/1000)
	}

	mut := &gen.Mutator{Dir: h.ctxDir, Seed: spec.Seed + 100}
	for _, sc := range scenarios {
		if !contains(h.cfg.Scenarios, sc.name) {
			continue
		}
		sr := ScenarioResult{Name: sc.name, Desc: sc.desc, LoadBefore: loadAvg()}
		for rep := 0; rep < h.cfg.Runs; rep++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			if sc.mutate != nil {
				c, err := sc.mutate(mut)
				if err != nil {
					return fmt.Errorf("%s: change the context: %w", sc.name, err)
				}
				sr.Changes = append(sr.Changes, fmt.Sprintf("edited %d, added %d, deleted %d files (%d bytes)", len(c.Edited), len(c.Added), len(c.Deleted), c.Bytes))
			}
			tools := h.cfg.Tools
			if rep%2 == 1 {
				tools = reversed(tools)
			}
			for _, tool := range tools {
				tg := target{dest: h.mainTag(tool), cacheDir: mainCache}
				if sc.target != nil {
					tg = sc.target(h, tool, rep)
				}
				s := h.runTool(ctx, tool, tg)
				s.Scenario, s.Rep = sc.name, rep
				if s.Err != "" {
					h.fail("%s/%s rep %d: %s", sc.name, tool, rep, s.Err)
				}
				sr.Samples = append(sr.Samples, s)
				h.logf("%-13s %-7s rep %d: %7.3fs  rss %4d MB%s", sc.name, tool, rep, s.Total.WallMs/1000, s.Total.MaxRSSKB/1024, ourSummary(s.Meta))
			}
		}
		sr.LoadAfter = loadAvg()
		h.res.Scenarios = append(h.res.Scenarios, sr)
	}
	h.res.LoadEnd = loadAvg()
	return nil
}

func ourSummary(m *OurMeta) string {
	if m == nil {
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

func reversed(s []string) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[len(s)-1-i] = x
	}
	return out
}
