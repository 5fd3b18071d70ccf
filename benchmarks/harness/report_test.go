package main

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fairing-dev/fairing/benchmarks/gen"
)

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		in             []float64
		median, spread float64
	}{
		{[]float64{3, 1, 2}, 2, 50},
		{[]float64{4, 1, 3, 2}, 2.5, 60},
		{[]float64{5}, 5, 0},
	} {
		s := summarize(tc.in)
		if s.median != tc.median || s.spread() != tc.spread {
			t.Errorf("summarize(%v) = median %v spread %v, want %v %v", tc.in, s.median, s.spread(), tc.median, tc.spread)
		}
	}
	if s := summarize(nil); s.n != 0 || s.cell() != "–" {
		t.Errorf("empty: %+v", s)
	}
}

func TestTrimTag(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:5000/a/b:main": "127.0.0.1:5000/a/b",
		"127.0.0.1:5000/a/b":      "127.0.0.1:5000/a/b",
		"a/b:c":                   "a/b",
	} {
		if got := trimTag(in); got != want {
			t.Errorf("trimTag(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRotate(t *testing.T) {
	in := []string{"a", "b", "c"}
	for rep, want := range []string{"a,b,c", "b,c,a", "c,a,b", "a,b,c"} {
		if got := strings.Join(rotate(in, rep), ","); got != want {
			t.Errorf("rotate(rep %d) = %s, want %s", rep, got, want)
		}
	}
	if strings.Join(in, ",") != "a,b,c" {
		t.Errorf("rotate changed its input: %v", in)
	}
}

func TestFloor(t *testing.T) {
	l := &Limits{WalkMs: 10, PgzipTextMBps: 100, PgzipTextRatio: 0.25, PgzipWeightsMBps: 1000, PgzipWeightsRatio: 1, UploadMBps: 200}
	m := &OurMeta{Entries: 10, FilesHashed: 10, BytesUploaded: 20_000_000, Layers: []metaLayer{
		{Name: "source 1/2", Size: 5_000_000},                               // 20 MB of text: 200 ms
		{Name: "large: /app/w.bin", Size: 100_000_000, Cached: true},        // cached: free
		{Name: "large: /app/x.bin", Size: 100_000_000, Origin: "registry"}}} // found in the registry: free
	// 10 ms walk + 200 ms compression + 100 ms upload.
	if got := floor(l, m, 1e9); got < 309.9 || got > 310.1 {
		t.Errorf("floor = %v ms, want 310", got)
	}
	// With sha256 measured, the built layer's diffID (20 MB) and digest (5 MB) are hashed too.
	l.SHA256MBps = 1000
	if got := floor(l, m, 1e9); got < 334.9 || got > 335.1 {
		t.Errorf("floor with hashing = %v ms, want 335", got)
	}
	// Nothing built: hashing the context (1 GB at 1000 MB/s) is the work; a pushed context
	// (no entries listed) has no walk either.
	m2 := &OurMeta{Entries: 10, FilesHashed: 5}
	if got := floor(l, m2, 1e9); got != 10+500 {
		t.Errorf("floor, nothing built = %v ms, want 510", got)
	}
	// File contents are hashed at the BLAKE3 speed where it was measured (2500 MB/s: 200 ms),
	// the layers' diffIDs and digests still at sha256's.
	l.BLAKE3FilesMBps = 2500
	if got := floor(l, m2, 1e9); got != 10+200 {
		t.Errorf("floor, nothing built, BLAKE3 = %v ms, want 210", got)
	}
	if got := floor(l, m, 1e9); got < 334.9 || got > 335.1 {
		t.Errorf("floor with hashing, BLAKE3 measured = %v ms, want 335", got)
	}
	if got := floor(l, &OurMeta{}, 1e9); got != 0 {
		t.Errorf("floor, pushed context = %v ms, want 0", got)
	}
	if m.Rebuilt() != 1 {
		t.Errorf("Rebuilt = %d, want 1", m.Rebuilt())
	}
}

func TestDockerDigest(t *testing.T) {
	out := "The push refers to repository [127.0.0.1:5000/bench/docker]\n5f70bf18a086: Pushed\nmain: digest: sha256:" + strings.Repeat("ab", 32) + " size: 735\n"
	m := dockerDigest.FindStringSubmatch(out)
	if m == nil || m[1] != "sha256:"+strings.Repeat("ab", 32) {
		t.Errorf("docker digest not found in %q: %v", out, m)
	}
}

func TestProgressCached(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "progress.json")
	os.WriteFile(p, []byte(`{"vertexes":[{"digest":"sha256:1","name":"[3/5] RUN python3 -m pip install -r requirements.txt","cached":true}]}
not json
{"vertexes":[{"digest":"sha256:2","name":"[5/5] COPY . /app/"}]}
`), 0o644)
	if c := progressCached(p); c == nil || !*c {
		t.Errorf("progressCached = %v, want true", c)
	}
	os.WriteFile(p, []byte(`{"vertexes":[{"digest":"sha256:2","name":"[2/2] COPY . /app"}]}`), 0o644)
	if c := progressCached(p); c != nil {
		t.Errorf("no pip step: progressCached = %v, want nil", *c)
	}
}

func sampleResults() *Results {
	tr := true
	r := &Results{Date: "2026-11-29T00:00:00Z", Label: "test", ToolDesc: map[string]string{}}
	for _, t := range allTools() {
		r.ToolDesc[t] = "desc of " + t
	}
	lim := &Limits{WalkMs: 10, PgzipTextMBps: 100, PgzipTextRatio: 0.3, PgzipWeightsMBps: 1000, PgzipWeightsRatio: 1, UploadMBps: 100}
	for i, size := range []string{"small", "medium"} {
		su := SuiteResult{Suite: "main", Workload: gen.Specs[size], Bytes: int64(20_000_000 * (1 + 9*i)), Runs: 2, Tools: allTools(), Limits: lim}
		for _, sc := range []string{"cold", "unchanged", "edit-one"} {
			sr := ScenarioResult{Name: sc, Desc: sc}
			for rep := 0; rep < 2; rep++ {
				sr.Samples = append(sr.Samples,
					Sample{Tool: tFairing, Rep: rep, Total: Step{WallMs: 100, UserMs: 50, MaxRSSKB: 200 << 10}, LayerBytes: 1_000_000, Meta: &OurMeta{Layers: []metaLayer{{Name: "source", Size: 1_000_000}}}},
					Sample{Tool: tFairingEstgz, Rep: rep, Total: Step{WallMs: 200, UserMs: 100}, LayerBytes: 1_100_000},
					Sample{Tool: tCrane, Rep: rep, Total: Step{WallMs: 1000, UserMs: 900}, Steps: []Step{{Name: "tar", WallMs: 100}, {Name: "append", WallMs: 900}}},
					Sample{Tool: tBuildctl, Rep: rep, Total: Step{WallMs: 3000, UserMs: 10}, DaemonCPUMs: 2000, DaemonRSSKB: 100 << 10},
					Sample{Tool: tInCluster, Rep: rep, Total: Step{WallMs: 150, UserMs: 60}, Steps: []Step{{Name: "push-context", WallMs: 80, Aside: true}, {Name: "build", WallMs: 150}}, Meta: &OurMeta{}})
			}
			su.Scenarios = append(su.Scenarios, sr)
		}
		r.Suites = append(r.Suites, su)
	}
	deps := SuiteResult{Suite: "deps", Workload: gen.Specs["small"], Runs: 1, Tools: []string{tFairingBK, tBuildctl}}
	for _, sc := range depsScenarios {
		deps.Scenarios = append(deps.Scenarios, ScenarioResult{Name: sc, Samples: []Sample{
			{Tool: tFairingBK, Total: Step{WallMs: 1000}, DepsCached: &tr},
			{Tool: tBuildctl, Total: Step{WallMs: 1000}, DepsCached: &tr},
		}})
	}
	r.Suites = append(r.Suites, deps)
	r.Suites[1].Scenarios[1].Samples = append(r.Suites[1].Scenarios[1].Samples, Sample{Tool: tCrane, Rep: 2, Err: "boom"})
	r.Failures = []string{"unchanged/crane rep 2: boom"}
	return r
}

// The report reads a run with failures and unmet targets without trouble, and says so.
func TestWriteMarkdown(t *testing.T) {
	var b bytes.Buffer
	writeMarkdown(&b, sampleResults())
	out := b.String()
	for _, want := range []string{
		"unchanged: ≥ 25× faster than crane | 10.0× (CPU 18.0×) | **missed**",
		"cold: ≥ 3× faster than buildctl | 30.0× (CPU 40.2×) | met",
		"peak RSS < 150 MB whatever the context size | small 200 MB, medium 200 MB | **missed**",
		"peak RSS flat from small to medium (within 25%) | 1.00× | met",
		"BuildKit path ÷ buildctl ≤ 1.05, edit-one",
		"pip step cached in 1 of 1 runs | met",
		"eStargz cold build ≤ 1.5× gzip's | 2.00× (CPU 2.00×) | **missed**",
		"## Failures", "boom", "![time per scenario, medium](time-medium.svg)", "scaling.svg",
		"0.10 s ±0%", "+ 100 MB",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
}

// A run without the medium workload shows the speed targets on the workload it has, without
// judging them, and still judges peak RSS.
func TestWriteTargetsOffMedium(t *testing.T) {
	r := sampleResults()
	r.Suites = append(r.Suites[:1], r.Suites[2:]...) // small and deps
	var b bytes.Buffer
	writeTargets(&b, r)
	out := b.String()
	for _, want := range []string{
		"Read on the small workload",
		"set on the medium workload, which this run did not measure",
		"unchanged: ≥ 25× faster than crane | 10.0× (CPU 18.0×) | – |",
		"eStargz cold build ≤ 1.5× gzip's | 2.00× (CPU 2.00×) | – |",
		"peak RSS < 150 MB whatever the context size | small 200 MB | **missed**",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("targets lack %q", want)
		}
	}
	if strings.Count(out, "**missed**") != 1 {
		t.Errorf("only the RSS target should be judged off medium:\n%s", out)
	}
	b.Reset()
	writeMarkdown(&b, r)
	if out := b.String(); strings.Contains(out, "(≥ ") {
		t.Errorf("the small workload's peer table judges the medium targets:\n%s", out)
	}
}

// The plots are well-formed SVG with a bar or a point per measured value.
func TestPlots(t *testing.T) {
	dir := t.TempDir()
	r := sampleResults()
	if err := writePlots(dir, r); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"time-small.svg", "time-medium.svg", "scaling.svg"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		d := xml.NewDecoder(bytes.NewReader(b))
		n := 0
		for {
			tok, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: not well-formed: %v", f, err)
			}
			if se, ok := tok.(xml.StartElement); ok && (se.Name.Local == "rect" || se.Name.Local == "circle") {
				n++
			}
		}
		if n < 6 {
			t.Errorf("%s: %d marks, want a bar or point per tool and scenario", f, n)
		}
	}
}

func TestLogAxis(t *testing.T) {
	a := newLogAxis(0.03, 40, 300, 0)
	if a.lo != 0.01 || a.hi != 100 {
		t.Errorf("decades %v..%v, want 0.01..100", a.lo, a.hi)
	}
	if a.at(0.01) != 300 || a.at(100) != 0 || a.at(1) != 150 {
		t.Errorf("at: %v %v %v", a.at(0.01), a.at(100), a.at(1))
	}
}

func TestMergeResults(t *testing.T) {
	a, b := sampleResults(), sampleResults()
	a.Suites = a.Suites[1:2] // medium
	b.Suites = []SuiteResult{b.Suites[2], b.Suites[0]}
	m := mergeResults([]*Results{a, b})
	var got []string
	for _, s := range m.Suites {
		got = append(got, s.Suite+"/"+s.Workload.Name)
	}
	if strings.Join(got, ",") != "main/small,main/medium,deps/small" {
		t.Errorf("merged suites %v", got)
	}
	if len(m.Failures) != 2 {
		t.Errorf("failures %v", m.Failures)
	}
}

// readSample's file sizes add up to what it returns, also when the limit cuts a file, so the
// BLAKE3 limit hashes the files it read, one by one.
func TestReadSampleSizes(t *testing.T) {
	dir := t.TempDir()
	for i, n := range []int{1000, 3000, 5000} {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprint("f", i)), make([]byte, n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		limit int
		want  []int
	}{{1 << 20, []int{1000, 3000, 5000}}, {2500, []int{1000, 1500}}, {4000, []int{1000, 3000}}} {
		b, sizes, err := readSample(dir, c.limit, func(string) bool { return true })
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(sizes, c.want) || len(b) != min(c.limit, 9000) {
			t.Errorf("limit %d: %d bytes, sizes %v; want %v", c.limit, len(b), sizes, c.want)
		}
		blake3Files(b, sizes) // must not cut past the sample
	}
}
