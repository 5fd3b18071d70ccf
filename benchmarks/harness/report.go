package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// stats summarises a set of values.
type stats struct {
	n                 int
	median, min, max_ float64
}

func summarize(v []float64) stats {
	if len(v) == 0 {
		return stats{}
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return stats{n: len(s), median: m, min: s[0], max_: s[len(s)-1]}
}

// spread is half the min–max range relative to the median, in percent.
func (s stats) spread() float64 {
	if s.median == 0 {
		return 0
	}
	return (s.max_ - s.min) / 2 / s.median * 100
}

// secs formats milliseconds as seconds with a precision that suits the magnitude.
func secs(msv float64) string {
	switch {
	case msv < 100:
		return fmt.Sprintf("%.3f s", msv/1000)
	case msv < 10_000:
		return fmt.Sprintf("%.2f s", msv/1000)
	}
	return fmt.Sprintf("%.1f s", msv/1000)
}

func (s stats) cell() string {
	if s.n == 0 {
		return "–"
	}
	return fmt.Sprintf("%s ±%.0f%%", secs(s.median), s.spread())
}

// collect returns a value for each successful sample of tool.
func collect(sr ScenarioResult, tool string, f func(Sample) (float64, bool)) []float64 {
	var v []float64
	for _, s := range sr.Samples {
		if s.Tool != tool || s.Err != "" {
			continue
		}
		if x, ok := f(s); ok {
			v = append(v, x)
		}
	}
	return v
}

func wall(s Sample) (float64, bool) { return s.Total.WallMs, true }
func cpu(s Sample) (float64, bool)  { return s.Total.UserMs + s.Total.SysMs, true }
func rss(s Sample) (float64, bool)  { return float64(s.Total.MaxRSSKB) / 1024, true }
func step(name string) func(Sample) (float64, bool) {
	return func(s Sample) (float64, bool) {
		for _, st := range s.Steps {
			if st.Name == name {
				return st.WallMs, true
			}
		}
		return 0, false
	}
}

// targets from issue 2: how many times faster than crane fairing must be (2 cores, medium).
var targets = map[string]float64{"cold": 3, "unchanged": 25, "edit-one": 15}

const rssTargetMB = 150

// floor estimates the least time fairing's work in a sample could take on this machine: walk
// and lstat the context, compress every rebuilt layer at the measured pgzip speed (text or
// weights), upload what was uploaded at the measured loopback speed. The steps are added, as
// they compete for the same two cores.
func floor(l Limits, m *OurMeta) float64 {
	if m == nil || l.PgzipTextMBps == 0 {
		return 0
	}
	t := l.WalkMs
	for _, ly := range m.Layers {
		if ly.Cached {
			continue
		}
		if strings.HasPrefix(ly.Name, "large") {
			t += float64(ly.Size) / l.PgzipWeightsRatio / 1e6 / l.PgzipWeightsMBps * 1000
		} else {
			t += float64(ly.Size) / l.PgzipTextRatio / 1e6 / l.PgzipTextMBps * 1000
		}
	}
	if l.UploadMBps > 0 {
		t += float64(m.BytesUploaded) / 1e6 / l.UploadMBps * 1000
	}
	return t
}

func writeMarkdown(w io.Writer, r *Results) {
	spec := r.Workload
	fmt.Fprintf(w, "# fairing-builder vs crane: %s workload\n\n", spec.Name)
	fmt.Fprintf(w, "%s, label `%s`. Workload: %d files, %.0f MB (%.0f MB code-like text, %d model files of %s MB), seed %d. %d runs per scenario.\n\n",
		r.Date, r.Label, spec.Files, float64(spec.TotalBytes())/1e6, float64(spec.CodeBytes)/1e6, len(spec.Binaries), mbList(spec.Binaries), spec.Seed, r.Runs)

	m := r.Machine
	fmt.Fprintf(w, "## Machine\n\n")
	fmt.Fprintf(w, "| | |\n|---|---|\n")
	fmt.Fprintf(w, "| CPU | %s, %d cores (%s) |\n| memory | %.1f GB |\n| OS, kernel | %s, %s |\n| Go | %s |\n| disk | %s, %.0f GB free |\n",
		m.CPU, m.Cores, m.CPUFlags, m.MemoryGB, m.OS, m.Kernel, m.Go, m.Disk, m.DiskFreeGB)
	fmt.Fprintf(w, "| fairing-builder | %s |\n| crane | %s |\n| registry | %s |\n| tar | %s |\n", m.Builder, m.Crane, m.Registry, m.Tar)
	fmt.Fprintf(w, "| load average (1 min) | %.2f at start, %.2f at end |\n\n", r.LoadStart, r.LoadEnd)

	l := r.Limits
	fmt.Fprintf(w, "## Physical limits (measured by the harness, best pass)\n\n")
	fmt.Fprintf(w, "| sha256 (1 core) | pgzip level 1, %d cores, text | pgzip level 1, weights | stdlib gzip level 1 (crane), text | walk + lstat of the context | loopback upload (%d MB blob) |\n|---|---|---|---|---|---|\n",
		l.Cores, l.UploadBytes/1_000_000)
	fmt.Fprintf(w, "| %.0f MB/s | %.0f MB/s (ratio %.3f) | %.0f MB/s (ratio %.3f) | %.0f MB/s | %.0f ms (%d entries) | %.0f MB/s |\n\n",
		l.SHA256MBps, l.PgzipTextMBps, l.PgzipTextRatio, l.PgzipWeightsMBps, l.PgzipWeightsRatio, l.GzipStdTextMBps, l.WalkMs, l.WalkEntries, l.UploadMBps)

	fmt.Fprintf(w, "## Wall time (median ±half the min–max range)\n\n")
	fmt.Fprintf(w, "crane = GNU tar of the context + `crane append` (crane needs a tar; fairing reads the folder). "+
		"Ratios are crane / fairing: of the medians (the figure the targets are read against), of the best runs, and of the CPU time (user + system, "+
		"which other agents' load disturbs less than wall time). Peak RSS is the largest of all runs.\n\n")
	fmt.Fprintf(w, "| scenario | fairing | crane (tar + append) | crane append alone | ratio (median) | target | ratio (best) | ratio (CPU) | fairing peak RSS | crane peak RSS | load before → after |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	var rssPeak float64
	for _, sr := range r.Scenarios {
		ours, cr := summarize(collect(sr, "fairing", wall)), summarize(collect(sr, "crane", wall))
		app := summarize(collect(sr, "crane", step("append")))
		ratio, tgt, bestR, cpuR := "–", "", "–", "–"
		if ours.n > 0 && cr.n > 0 {
			ratio = fmt.Sprintf("**%.1f×**", cr.median/ours.median)
			bestR = fmt.Sprintf("%.1f×", cr.min/ours.min)
			cpuR = fmt.Sprintf("%.1f×", summarize(collect(sr, "crane", cpu)).median/summarize(collect(sr, "fairing", cpu)).median)
			if t, ok := targets[sr.Name]; ok {
				mark := "met"
				if cr.median/ours.median < t {
					mark = "**missed**"
				}
				tgt = fmt.Sprintf("≥ %.0f× (%s)", t, mark)
			}
		}
		orss := summarize(collect(sr, "fairing", rss))
		rssPeak = max(rssPeak, orss.max_)
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.2f → %.2f |\n", sr.Name, ours.cell(), cr.cell(), app.cell(), ratio, tgt, bestR, cpuR,
			rssCell(orss), rssCell(summarize(collect(sr, "crane", rss))), sr.LoadBefore, sr.LoadAfter)
	}
	if rssPeak > 0 {
		mark := "met"
		if rssPeak >= rssTargetMB {
			mark = "**missed**"
		}
		fmt.Fprintf(w, "\nfairing-builder peak RSS over every scenario: %.0f MB (target < %d MB: %s).\n", rssPeak, rssTargetMB, mark)
	}

	fmt.Fprintf(w, "\n## fairing-builder in detail (medians)\n\n")
	fmt.Fprintf(w, "Phases as the builder reports them (`--metadata-file`); CPU = user + system time of the process; floor = walk + compressing the rebuilt layers + uploading what was uploaded, at the limits above.\n\n")
	fmt.Fprintf(w, "| scenario | wall | CPU | walk | hash | layers | base | publish | layers rebuilt | files hashed | blobs pushed | uploaded | floor (est.) | fairing / floor |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, sr := range r.Scenarios {
		var metas []*OurMeta
		for _, s := range sr.Samples {
			if s.Tool == "fairing" && s.Err == "" && s.Meta != nil {
				metas = append(metas, s.Meta)
			}
		}
		if len(metas) == 0 {
			continue
		}
		med := func(f func(*OurMeta) float64) float64 {
			var v []float64
			for _, m := range metas {
				v = append(v, f(m))
			}
			return summarize(v).median
		}
		ours := summarize(collect(sr, "fairing", wall))
		fl := med(func(m *OurMeta) float64 { return floor(l, m) })
		fmt.Fprintf(w, "| %s | %s | %s | %.0f ms | %.0f ms | %.0f ms | %.0f ms | %.0f ms | %.0f / %d | %.0f | %.0f | %.1f MB | %s | %.1f× |\n", sr.Name,
			secs(ours.median), secs(summarize(collect(sr, "fairing", cpu)).median),
			med(func(m *OurMeta) float64 { return float64(m.Timings.Walk) }),
			med(func(m *OurMeta) float64 { return float64(m.Timings.Hash) }),
			med(func(m *OurMeta) float64 { return float64(m.Timings.Layers) }),
			med(func(m *OurMeta) float64 { return float64(m.Timings.Base) }),
			med(func(m *OurMeta) float64 { return float64(m.Timings.Publish) }),
			med(func(m *OurMeta) float64 { return float64(m.Rebuilt()) }), len(metas[0].Layers),
			med(func(m *OurMeta) float64 { return float64(m.FilesHashed) }),
			med(func(m *OurMeta) float64 { return float64(len(m.Pushed)) }),
			med(func(m *OurMeta) float64 { return float64(m.BytesUploaded) / 1e6 }),
			secs(fl), ours.median/fl)
	}

	fmt.Fprintf(w, "\n## crane in detail (medians)\n\n| scenario | wall | CPU | tar | append | peak RSS tar / append |\n|---|---|---|---|---|---|\n")
	for _, sr := range r.Scenarios {
		c := summarize(collect(sr, "crane", wall))
		if c.n == 0 {
			continue
		}
		stepRSS := func(name string) float64 {
			return summarize(collect(sr, "crane", func(s Sample) (float64, bool) {
				for _, st := range s.Steps {
					if st.Name == name {
						return float64(st.MaxRSSKB) / 1024, true
					}
				}
				return 0, false
			})).median
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %.0f / %.0f MB |\n", sr.Name, secs(c.median), secs(summarize(collect(sr, "crane", cpu)).median),
			secs(summarize(collect(sr, "crane", step("tar"))).median), secs(summarize(collect(sr, "crane", step("append"))).median), stepRSS("tar"), stepRSS("append"))
	}

	fmt.Fprintf(w, "\n## Scenarios\n\n")
	for _, sr := range r.Scenarios {
		fmt.Fprintf(w, "- **%s**: %s.", sr.Name, sr.Desc)
		if len(sr.Changes) > 0 {
			fmt.Fprintf(w, " Per run: %s.", sr.Changes[0])
		}
		fmt.Fprintln(w)
	}
	if len(r.Failures) > 0 {
		fmt.Fprintf(w, "\n## Failures\n\n")
		for _, f := range r.Failures {
			fmt.Fprintf(w, "- %s\n", f)
		}
	}
}

func rssCell(s stats) string {
	if s.n == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f MB", s.max_)
}

func mbList(b []int64) string {
	var p []string
	for _, x := range b {
		p = append(p, fmt.Sprintf("%g", float64(x)/1e6))
	}
	return strings.Join(p, ", ")
}
