package main

import (
	"bytes"
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

func TestFloor(t *testing.T) {
	l := Limits{WalkMs: 10, PgzipTextMBps: 100, PgzipTextRatio: 0.25, PgzipWeightsMBps: 1000, PgzipWeightsRatio: 1, UploadMBps: 200}
	m := &OurMeta{BytesUploaded: 20_000_000}
	m.Layers = append(m.Layers,
		struct {
			Name   string `json:"name"`
			Size   int64  `json:"size"`
			Cached bool   `json:"cached"`
		}{"source 1/2", 5_000_000, false}, // 20 MB of text: 200 ms
		struct {
			Name   string `json:"name"`
			Size   int64  `json:"size"`
			Cached bool   `json:"cached"`
		}{"large: /app/w.bin", 100_000_000, true}) // cached: free
	// 10 ms walk + 200 ms compression + 100 ms upload.
	if got := floor(l, m); got < 309.9 || got > 310.1 {
		t.Errorf("floor = %v ms, want 310", got)
	}
}

// The report reads a run with a failure and an unmet target without trouble, and says so.
func TestWriteMarkdown(t *testing.T) {
	r := &Results{Workload: gen.Specs["tiny"], Runs: 2, Limits: Limits{PgzipTextMBps: 100, PgzipTextRatio: 0.3, PgzipWeightsMBps: 1000, PgzipWeightsRatio: 1, UploadMBps: 100}}
	sr := ScenarioResult{Name: "unchanged", Desc: "nothing changed"}
	for rep := 0; rep < 2; rep++ {
		sr.Samples = append(sr.Samples,
			Sample{Tool: "fairing", Rep: rep, Total: Step{WallMs: 100, UserMs: 50, MaxRSSKB: 200 << 10}, Meta: &OurMeta{}},
			Sample{Tool: "crane", Rep: rep, Total: Step{WallMs: 1000, UserMs: 900}, Steps: []Step{{Name: "tar", WallMs: 100}, {Name: "append", WallMs: 900}}})
	}
	sr.Samples = append(sr.Samples, Sample{Tool: "crane", Rep: 2, Err: "boom"})
	r.Scenarios = []ScenarioResult{sr}
	r.Failures = []string{"unchanged/crane rep 2: boom"}
	var b bytes.Buffer
	writeMarkdown(&b, r)
	out := b.String()
	for _, want := range []string{"**10.0×**", "≥ 25× (**missed**)", "200 MB (target < 150 MB: **missed**)", "## Failures", "boom", "0.90 s"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
