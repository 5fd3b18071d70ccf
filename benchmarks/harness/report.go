package main

import (
	"cmp"
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
func cpu(s Sample) (float64, bool)  { return s.CPUMs(), true }
func rss(s Sample) (float64, bool)  { return float64(s.Total.MaxRSSKB) / 1024, true }
func daemonRSS(s Sample) (float64, bool) {
	return float64(s.DaemonRSSKB) / 1024, s.DaemonRSSKB > 0
}
func layerMB(s Sample) (float64, bool) { return float64(s.LayerBytes) / 1e6, s.LayerBytes > 0 }
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

func med(sr ScenarioResult, tool string, f func(Sample) (float64, bool)) stats {
	return summarize(collect(sr, tool, f))
}

// div is a/b as "%.2f", or "–" when either is missing.
func div(a, b stats) string {
	if a.n == 0 || b.n == 0 || b.median == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", a.median/b.median)
}

// ratio is a/b as "12.3×", or "–".
func ratio(a, b stats) string {
	if a.n == 0 || b.n == 0 || b.median == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f×", a.median/b.median)
}

// Targets (issue 8, medium workload, 2 cores): how many times faster than each peer fairing
// must be; issue 2: peak RSS; issue 5: BuildKit path vs buildctl; issue 7: eStargz vs gzip.
var targets = map[string]map[string]float64{
	"cold":      {tCrane: 3, tBuildctl: 3},
	"unchanged": {tCrane: 25, tBuildctl: 5},
	"edit-one":  {tCrane: 15, tBuildctl: 10},
}

const (
	rssTargetMB       = 150
	floorTarget       = 1.5
	bkTarget          = 1.05
	estargzTarget     = 1.5
	rssFlatTolerance  = 1.25 // "flat": the large workload's peak within 25% of the small one's
	targetWorkload    = "medium"
	targetWorkloadAlt = "small"
)

// floor estimates the least time fairing's work in a sample could take on this machine: start
// the process, make the few registry round trips every build makes, walk and lstat the
// context (not for a build from a pushed context, which lists no folder), read and hash the
// files it hashed when it compressed nothing (at the measured BLAKE3 speed, file by file, or
// sha256's in results from before; when it compresses, hashing rides in the same pass), compress every layer it built at the measured pgzip speed (text or weights) and hash
// it twice at the measured sha256 speed (its diffID over the tar and its digest over the blob:
// every image builder must compute both), upload what it uploaded at the measured loopback
// speed. The steps are added, as they compete for the same two cores. ctxBytes is the
// context's size, for the share of it that was hashed.
func floor(l *Limits, m *OurMeta, ctxBytes int64) float64 {
	if l == nil || m == nil || l.PgzipTextMBps == 0 {
		return 0
	}
	t := l.ExecMs + requestsPerBuild*l.RequestMs
	if m.Entries > 0 {
		t += l.WalkMs
	}
	if hashMBps := cmp.Or(l.BLAKE3FilesMBps, l.SHA256MBps); m.Rebuilt() == 0 && m.FilesHashed > 0 && m.Entries > 0 && hashMBps > 0 {
		t += float64(ctxBytes) * min(1, float64(m.FilesHashed)/float64(m.Entries)) / 1e6 / hashMBps * 1000
	}
	for _, ly := range m.Layers {
		if ly.Cached || ly.Origin == "registry" {
			continue
		}
		raw := float64(ly.Size) / l.PgzipTextRatio
		if strings.HasPrefix(ly.Name, "large") {
			raw = float64(ly.Size) / l.PgzipWeightsRatio
			t += raw / 1e6 / l.PgzipWeightsMBps * 1000
		} else {
			t += raw / 1e6 / l.PgzipTextMBps * 1000
		}
		if l.SHA256MBps > 0 {
			t += (raw + float64(ly.Size)) / 1e6 / l.SHA256MBps * 1000
		}
	}
	if l.UploadMBps > 0 {
		t += float64(m.BytesUploaded) / 1e6 / l.UploadMBps * 1000
	}
	return t
}

// blake3Limit is the BLAKE3 figure for the limits line, empty for results that lack it.
func blake3Limit(l *Limits) string {
	if l.BLAKE3FilesMBps == 0 {
		return ""
	}
	return fmt.Sprintf("; BLAKE3 file by file %.0f MB/s (1 core)", l.BLAKE3FilesMBps)
}

func floorOf(su SuiteResult, sr ScenarioResult, tool string) stats {
	return med(sr, tool, func(s Sample) (float64, bool) { return floor(su.Limits, s.Meta, su.Bytes), s.Meta != nil })
}

// present lists the tools of order that have samples in the suite.
func present(su SuiteResult, order []string) []string {
	var out []string
	for _, t := range order {
		if contains(su.Tools, t) {
			out = append(out, t)
		}
	}
	return out
}

func mark(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

func findSuite(r *Results, suite, size string) *SuiteResult {
	for i := range r.Suites {
		if r.Suites[i].Suite == suite && r.Suites[i].Workload.Name == size {
			return &r.Suites[i]
		}
	}
	return nil
}

func findScenario(su *SuiteResult, name string) *ScenarioResult {
	if su == nil {
		return nil
	}
	for i := range su.Scenarios {
		if su.Scenarios[i].Name == name {
			return &su.Scenarios[i]
		}
	}
	return nil
}

func mainSuites(r *Results) []SuiteResult {
	var out []SuiteResult
	for _, s := range r.Suites {
		if s.Suite == "main" {
			out = append(out, s)
		}
	}
	return out
}

func writeMarkdown(w io.Writer, r *Results) {
	var sizes []string
	for _, s := range mainSuites(r) {
		sizes = append(sizes, s.Workload.Name)
	}
	fmt.Fprintf(w, "# fairing-builder against its peers (%s)\n\n", strings.Join(sizes, ", "))
	fmt.Fprintf(w, "%s, label `%s`.", r.Date, r.Label)
	if r.Quick {
		fmt.Fprintf(w, " **Quick run**: it checks that the harness works; its figures are not to be quoted.")
	}
	fmt.Fprintf(w, "\n\n")

	m := r.Machine
	fmt.Fprintf(w, "## Machine\n\n| | |\n|---|---|\n")
	fmt.Fprintf(w, "| CPU | %s, %d cores (%s) |\n| memory | %.1f GB |\n| OS, kernel | %s, %s |\n| Go | %s |\n| disk | %s, %.0f GB free |\n",
		m.CPU, m.Cores, m.CPUFlags, m.MemoryGB, m.OS, m.Kernel, m.Go, m.Disk, m.DiskFreeGB)
	var keys []string
	for k := range m.Versions {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "| %s | %s |\n", k, m.Versions[k])
	}
	fmt.Fprintf(w, "| load average (1 min) | %.2f at start, %.2f at end (the machine is shared) |\n\n", r.LoadStart, r.LoadEnd)

	fmt.Fprintf(w, "## Tools\n\n| tool | what runs |\n|---|---|\n")
	for _, t := range allTools() {
		if d, ok := r.ToolDesc[t]; ok {
			fmt.Fprintf(w, "| %s | %s |\n", t, d)
		}
	}
	fmt.Fprintln(w)

	writeTargets(w, r)

	for _, su := range mainSuites(r) {
		writeMainSuite(w, r, su)
	}
	for _, su := range r.Suites {
		if su.Suite == "deps" {
			writeDepsSuite(w, su)
		}
	}
	if len(mainSuites(r)) > 1 {
		writeScaling(w, r)
	}
	if len(r.Failures) > 0 {
		fmt.Fprintf(w, "\n## Failures\n\n")
		for _, f := range r.Failures {
			fmt.Fprintf(w, "- %s\n", f)
		}
	}
}

// writeTargets lists every target of issues 2, 5, 7 and 8 with what was measured.
func writeTargets(w io.Writer, r *Results) {
	su := findSuite(r, "main", targetWorkload)
	if su == nil {
		su = findSuite(r, "main", targetWorkloadAlt)
	}
	fmt.Fprintf(w, "## Targets\n\n")
	if su == nil {
		fmt.Fprintf(w, "No main-suite results.\n\n")
		return
	}
	fmt.Fprintf(w, "Read on the %s workload (ratios of medians of wall time in this run; CPU-time ratios beside, which the machine's other load disturbs less).", su.Workload.Name)
	// The speed targets are set on the medium workload; read on another one they are shown
	// for the trend but not judged (the peak RSS ones span workloads and always are).
	judge := mark
	if su.Workload.Name != targetWorkload {
		fmt.Fprintf(w, " The speed targets are set on the %s workload, which this run did not measure: they are shown, not judged.", targetWorkload)
		judge = func(bool) string { return "–" }
	}
	fmt.Fprintf(w, "\n\n")
	fmt.Fprintf(w, "| issue | target | measured | |\n|---|---|---|---|\n")
	for _, sc := range []string{"unchanged", "edit-one", "cold"} {
		sr := findScenario(su, sc)
		if sr == nil {
			continue
		}
		ours := med(*sr, tFairing, wall)
		for _, p := range []string{tCrane, tBuildctl} {
			t, ok := targets[sc][p]
			if !ok || !contains(su.Tools, p) {
				continue
			}
			pw := med(*sr, p, wall)
			if ours.n == 0 || pw.n == 0 {
				continue
			}
			x := pw.median / ours.median
			fmt.Fprintf(w, "| 8 (2) | %s: ≥ %.0f× faster than %s | %.1f× (CPU %s) | %s |\n", sc, t, p, x, ratio(med(*sr, p, cpu), med(*sr, tFairing, cpu)), judge(x >= t))
		}
	}
	if su.Limits != nil {
		worst, worstSc := 0.0, ""
		for _, sr := range su.Scenarios {
			fl := floorOf(*su, sr, tFairing)
			ours := med(sr, tFairing, wall)
			if fl.n > 0 && fl.median > 0 && ours.n > 0 {
				if x := ours.median / fl.median; x > worst {
					worst, worstSc = x, sr.Name
				}
			}
		}
		if worstSc != "" {
			fmt.Fprintf(w, "| 8 | within %.1f× of the physical limit in every scenario | worst: %s, %.1f× | %s |\n", floorTarget, worstSc, worst, judge(worst <= floorTarget))
		}
	}
	peakBySize := map[string]float64{}
	var order []string
	for _, s := range mainSuites(r) {
		p := 0.0
		for _, sr := range s.Scenarios {
			p = max(p, med(sr, tFairing, rss).max_)
		}
		if p > 0 {
			peakBySize[s.Workload.Name] = p
			order = append(order, s.Workload.Name)
		}
	}
	if len(order) > 0 {
		var parts []string
		worst := 0.0
		for _, n := range order {
			parts = append(parts, fmt.Sprintf("%s %.0f MB", n, peakBySize[n]))
			worst = max(worst, peakBySize[n])
		}
		fmt.Fprintf(w, "| 2 | peak RSS < %d MB whatever the context size | %s | %s |\n", rssTargetMB, strings.Join(parts, ", "), mark(worst < rssTargetMB))
		if len(order) > 1 {
			lo, hi := peakBySize[order[0]], peakBySize[order[len(order)-1]]
			fmt.Fprintf(w, "| 8 | peak RSS flat from %s to %s (within %.0f%%) | %.2f× | %s |\n", order[0], order[len(order)-1], (rssFlatTolerance-1)*100, hi/lo, mark(hi/lo <= rssFlatTolerance))
		}
	}
	for _, s := range r.Suites {
		if s.Suite != "deps" {
			continue
		}
		for _, sr := range s.Scenarios {
			ours, bc := med(sr, tFairingBK, wall), med(sr, tBuildctl, wall)
			if ours.n == 0 || bc.n == 0 {
				continue
			}
			x := ours.median / bc.median
			fmt.Fprintf(w, "| 5 | BuildKit path ÷ buildctl ≤ %.2f, %s (requirements.txt, %s) | %.2f (CPU %s) | %s |\n", bkTarget, sr.Name, s.Workload.Name, x,
				div(med(sr, tFairingBK, cpu), med(sr, tBuildctl, cpu)), mark(x <= bkTarget))
			if sr.Name == "edit-one" {
				c, n := cachedCount(sr, tFairingBK)
				fmt.Fprintf(w, "| 5 | code-only change reuses the dependency layer | pip step cached in %d of %d runs | %s |\n", c, n, mark(n > 0 && c == n))
			}
		}
	}
	if sr := findScenario(su, "cold"); sr != nil {
		gz, es := med(*sr, tFairing, wall), med(*sr, tFairingEstgz, wall)
		if gz.n > 0 && es.n > 0 {
			x := es.median / gz.median
			fmt.Fprintf(w, "| 7 | eStargz cold build ≤ %.1f× gzip's | %.2f× (CPU %s×) | %s |\n", estargzTarget, x, div(med(*sr, tFairingEstgz, cpu), med(*sr, tFairing, cpu)), judge(x <= estargzTarget))
		}
	}
	fmt.Fprintln(w)
}

func cachedCount(sr ScenarioResult, tool string) (cached, n int) {
	for _, s := range sr.Samples {
		if s.Tool == tool && s.Err == "" && s.DepsCached != nil {
			n++
			if *s.DepsCached {
				cached++
			}
		}
	}
	return
}

var mainOrder = []string{tFairing, tFairingBK, tInCluster, tCrane, tBuildctl, tBuildah, tDocker}

func writeMainSuite(w io.Writer, r *Results, su SuiteResult) {
	spec := su.Workload
	fmt.Fprintf(w, "## %s workload\n\n", strings.ToUpper(spec.Name[:1])+spec.Name[1:])
	fmt.Fprintf(w, "%d files, %.0f MB (%.0f MB of code-like text, model files of %s MB), seed %d; %d runs per scenario and tool; load %.2f → %.2f.\n\n",
		spec.Files, float64(su.Bytes)/1e6, float64(spec.CodeBytes)/1e6, mbList(spec.Binaries), spec.Seed, su.Runs, su.LoadStart, su.LoadEnd)

	if l := su.Limits; l != nil {
		fmt.Fprintf(w, "**Physical limits** (measured by the harness on this workload, best pass): start and exit of the builder %.1f ms; one request to the registry %.2f ms; sha256 %.0f MB/s (1 core)%s; pgzip level 1 on %d cores %.0f MB/s on the text (ratio %.3f), %.0f MB/s on the weights (ratio %.3f); "+
			"stdlib gzip level 1 (crane) %.0f MB/s, level 6 (BuildKit, docker) %.0f MB/s; walk + lstat of the context %.0f ms (%d entries); loopback upload to the registry %.0f MB/s (%d MB blob).\n\n",
			l.ExecMs, l.RequestMs, l.SHA256MBps, blake3Limit(l), l.Cores, l.PgzipTextMBps, l.PgzipTextRatio, l.PgzipWeightsMBps, l.PgzipWeightsRatio, l.GzipStdTextMBps, l.Gzip6TextMBps, l.WalkMs, l.WalkEntries, l.UploadMBps, l.UploadBytes/1_000_000)
	}

	tools := present(su, mainOrder)
	fmt.Fprintf(w, "### Wall time (median ±half the min–max range)\n\n![time per scenario, %s](time-%s.svg)\n\n", spec.Name, spec.Name)
	fmt.Fprintf(w, "| scenario | %s | floor (fairing's work at the limits) |\n|---|%s---|\n", strings.Join(tools, " | "), strings.Repeat("---|", len(tools)))
	for _, sr := range su.Scenarios {
		var cells []string
		for _, t := range tools {
			cells = append(cells, med(sr, t, wall).cell())
		}
		fl := floorOf(su, sr, tFairing)
		flc := "–"
		if fl.n > 0 {
			flc = fmt.Sprintf("%s (fairing %.1f× it)", secs(fl.median), med(sr, tFairing, wall).median/fl.median)
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", sr.Name, strings.Join(cells, " | "), flc)
	}

	var ps []string
	for _, p := range peers {
		if contains(su.Tools, p) {
			ps = append(ps, p)
		}
	}
	if contains(su.Tools, tFairing) && len(ps) > 0 {
		fmt.Fprintf(w, "\n### fairing against each peer: peer ÷ fairing (wall time of the medians / CPU time of the medians)\n\n")
		fmt.Fprintf(w, "CPU time is the tool's processes plus, for buildctl and docker, their daemon's (buildkitd; dockerd and its containerd) during the run.\n\n")
		fmt.Fprintf(w, "| scenario | %s |", strings.Join(ps, " | "))
		if contains(su.Tools, tFairingBK) && contains(su.Tools, tBuildctl) {
			fmt.Fprintf(w, " fairing-bk ÷ buildctl (target ≤ %.2f) |", bkTarget)
		}
		if contains(su.Tools, tInCluster) && contains(su.Tools, tCrane) {
			fmt.Fprintf(w, " crane ÷ in-cluster pod |")
		}
		fmt.Fprintf(w, "\n|---|%s", strings.Repeat("---|", len(ps)))
		if contains(su.Tools, tFairingBK) && contains(su.Tools, tBuildctl) {
			fmt.Fprintf(w, "---|")
		}
		if contains(su.Tools, tInCluster) && contains(su.Tools, tCrane) {
			fmt.Fprintf(w, "---|")
		}
		fmt.Fprintln(w)
		for _, sr := range su.Scenarios {
			var cells []string
			for _, p := range ps {
				c := fmt.Sprintf("%s / %s", ratio(med(sr, p, wall), med(sr, tFairing, wall)), ratio(med(sr, p, cpu), med(sr, tFairing, cpu)))
				if t, ok := targets[sr.Name][p]; ok && spec.Name == targetWorkload {
					pw, ow := med(sr, p, wall), med(sr, tFairing, wall)
					if pw.n > 0 && ow.n > 0 {
						c += fmt.Sprintf(" (≥ %.0f×: %s)", t, mark(pw.median/ow.median >= t))
					}
				}
				cells = append(cells, c)
			}
			fmt.Fprintf(w, "| %s | %s |", sr.Name, strings.Join(cells, " | "))
			if contains(su.Tools, tFairingBK) && contains(su.Tools, tBuildctl) {
				a, b := med(sr, tFairingBK, wall), med(sr, tBuildctl, wall)
				if a.n > 0 && b.n > 0 {
					fmt.Fprintf(w, " %.2f / %s |", a.median/b.median, div(med(sr, tFairingBK, cpu), med(sr, tBuildctl, cpu)))
				} else {
					fmt.Fprintf(w, " – |")
				}
			}
			if contains(su.Tools, tInCluster) && contains(su.Tools, tCrane) {
				fmt.Fprintf(w, " %s / %s |", ratio(med(sr, tCrane, wall), med(sr, tInCluster, wall)), ratio(med(sr, tCrane, cpu), med(sr, tInCluster, cpu)))
			}
			fmt.Fprintln(w)
		}
	}

	fmt.Fprintf(w, "\n### CPU time and peak RSS (medians; RSS: the largest of the runs)\n\n")
	fmt.Fprintf(w, "RSS is the tool's process (for fairing, crane, buildah: all the work); for buildctl and docker, `+` the daemon's processes' peak during the run.\n\n")
	fmt.Fprintf(w, "| scenario | %s |\n|---|%s\n", strings.Join(tools, " | "), strings.Repeat("---|", len(tools)))
	for _, sr := range su.Scenarios {
		var cells []string
		for _, t := range tools {
			c := med(sr, t, cpu)
			if c.n == 0 {
				cells = append(cells, "–")
				continue
			}
			cell := fmt.Sprintf("%s, %.0f MB", secs(c.median), med(sr, t, rss).max_)
			if d := med(sr, t, daemonRSS); d.n > 0 {
				cell += fmt.Sprintf(" + %.0f MB", d.max_)
			}
			cells = append(cells, cell)
		}
		fmt.Fprintf(w, "| %s | %s |\n", sr.Name, strings.Join(cells, " | "))
	}

	if contains(su.Tools, tFairing) {
		writeOurDetail(w, su, tFairing, "fairing-builder (append path) in detail (medians)")
	}
	if contains(su.Tools, tInCluster) {
		writeOurDetail(w, su, tInCluster, "In-cluster style in detail: the build pod (empty cache) appending the pushed context (medians)")
		fmt.Fprintf(w, "\n| scenario | push-context on the laptop (wall, CPU) | build pod (wall, CPU, RSS) |\n|---|---|---|\n")
		for _, sr := range su.Scenarios {
			pc := summarize(collect(sr, tInCluster, func(s Sample) (float64, bool) {
				for _, st := range s.Steps {
					if st.Name == "push-context" {
						return st.WallMs, true
					}
				}
				return 0, false
			}))
			pcc := summarize(collect(sr, tInCluster, func(s Sample) (float64, bool) {
				for _, st := range s.Steps {
					if st.Name == "push-context" {
						return st.UserMs + st.SysMs, true
					}
				}
				return 0, false
			}))
			if pc.n == 0 {
				continue
			}
			fmt.Fprintf(w, "| %s | %s, %s | %s, %s, %.0f MB |\n", sr.Name, pc.cell(), secs(pcc.median), med(sr, tInCluster, wall).cell(), secs(med(sr, tInCluster, cpu).median), med(sr, tInCluster, rss).max_)
		}
	}
	writeCompression(w, su)
	if contains(su.Tools, tCrane) {
		fmt.Fprintf(w, "\n### crane in detail (medians)\n\n| scenario | tar | append | peak RSS tar / append |\n|---|---|---|---|\n")
		for _, sr := range su.Scenarios {
			stepRSS := func(name string) float64 {
				return med(sr, tCrane, func(s Sample) (float64, bool) {
					for _, st := range s.Steps {
						if st.Name == name {
							return float64(st.MaxRSSKB) / 1024, true
						}
					}
					return 0, false
				}).median
			}
			fmt.Fprintf(w, "| %s | %s | %s | %.0f / %.0f MB |\n", sr.Name, secs(med(sr, tCrane, step("tar")).median), secs(med(sr, tCrane, step("append")).median), stepRSS("tar"), stepRSS("append"))
		}
	}
	for _, p := range []string{tBuildah, tDocker} {
		if !contains(su.Tools, p) {
			continue
		}
		fmt.Fprintf(w, "\n### %s in detail (medians)\n\n| scenario | build | push |\n|---|---|---|\n", p)
		for _, sr := range su.Scenarios {
			fmt.Fprintf(w, "| %s | %s | %s |\n", sr.Name, med(sr, p, step("build")).cell(), med(sr, p, step("push")).cell())
		}
	}

	fmt.Fprintf(w, "\n### Scenarios and load\n\n| scenario | what | change per run | load before → after |\n|---|---|---|---|\n")
	for _, sr := range su.Scenarios {
		ch := "–"
		if len(sr.Changes) > 0 {
			ch = sr.Changes[0]
		}
		fmt.Fprintf(w, "| %s | %s | %s | %.2f → %.2f |\n", sr.Name, sr.Desc, ch, sr.LoadBefore, sr.LoadAfter)
	}
	fmt.Fprintln(w)
}

func writeOurDetail(w io.Writer, su SuiteResult, tool, title string) {
	fmt.Fprintf(w, "\n### %s\n\n", title)
	fmt.Fprintf(w, "Phases as the builder reports them (`--metadata-file`); floor = process start + %d registry requests + walk (not from a pushed context) + hashing what was hashed when nothing was compressed + compressing the layers built and hashing them twice (diffID, digest) + uploading what was uploaded, at the limits above.\n\n", requestsPerBuild)
	fmt.Fprintf(w, "| scenario | wall | CPU | walk | hash | layers | base | publish | layers built | from registry | files hashed | blobs pushed | uploaded | floor | ÷ floor |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, sr := range su.Scenarios {
		var metas []*OurMeta
		for _, s := range sr.Samples {
			if s.Tool == tool && s.Err == "" && s.Meta != nil {
				metas = append(metas, s.Meta)
			}
		}
		if len(metas) == 0 {
			continue
		}
		m := func(f func(*OurMeta) float64) float64 {
			var v []float64
			for _, x := range metas {
				v = append(v, f(x))
			}
			return summarize(v).median
		}
		ours := med(sr, tool, wall)
		fl := m(func(x *OurMeta) float64 { return floor(su.Limits, x, su.Bytes) })
		div := "–"
		if fl > 0 {
			div = fmt.Sprintf("%.1f×", ours.median/fl)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %.0f ms | %.0f ms | %.0f ms | %.0f ms | %.0f ms | %.0f / %d | %.0f | %.0f | %.0f | %.1f MB | %s | %s |\n", sr.Name,
			secs(ours.median), secs(med(sr, tool, cpu).median),
			m(func(x *OurMeta) float64 { return float64(x.Timings.Walk) }),
			m(func(x *OurMeta) float64 { return float64(x.Timings.Hash) }),
			m(func(x *OurMeta) float64 { return float64(x.Timings.Layers) }),
			m(func(x *OurMeta) float64 { return float64(x.Timings.Base) }),
			m(func(x *OurMeta) float64 { return float64(x.Timings.Publish) }),
			m(func(x *OurMeta) float64 { return float64(x.Rebuilt()) }), len(metas[0].Layers),
			m(func(x *OurMeta) float64 {
				n := 0
				for _, l := range x.Layers {
					if l.Origin == "registry" {
						n++
					}
				}
				return float64(n)
			}),
			m(func(x *OurMeta) float64 { return float64(x.FilesHashed) }),
			m(func(x *OurMeta) float64 { return float64(len(x.Pushed)) }),
			m(func(x *OurMeta) float64 { return float64(x.BytesUploaded) / 1e6 }),
			secs(fl), div)
	}
}

// writeCompression is issue 7's comparison: time and layer size of zstd and eStargz against gzip.
func writeCompression(w io.Writer, su SuiteResult) {
	var cs []string
	for _, t := range []string{tFairingZstd, tFairingEstgz} {
		if contains(su.Tools, t) {
			cs = append(cs, t)
		}
	}
	if len(cs) == 0 || !contains(su.Tools, tFairing) {
		return
	}
	fmt.Fprintf(w, "\n### Compression: gzip (default) vs zstd vs eStargz (fairing-builder, append path)\n\n")
	fmt.Fprintf(w, "Wall time (median), its ratio to gzip's, CPU ratio to gzip's; layer size = compressed size of the layers fairing added, and its ratio to gzip's; peak RSS.\n\n")
	fmt.Fprintf(w, "| scenario | gzip | %s |\n|---|---|%s\n", strings.Join(cs, " | "), strings.Repeat("---|", len(cs)))
	for _, sr := range su.Scenarios {
		gz := med(sr, tFairing, wall)
		cells := []string{fmt.Sprintf("%s, %.1f MB; %.0f MB RSS", secs(gz.median), med(sr, tFairing, layerMB).median, med(sr, tFairing, rss).max_)}
		for _, c := range cs {
			x := med(sr, c, wall)
			if x.n == 0 || gz.n == 0 {
				cells = append(cells, "–")
				continue
			}
			gzMB, xMB := med(sr, tFairing, layerMB).median, med(sr, c, layerMB).median
			cells = append(cells, fmt.Sprintf("%s (%.2f×, CPU %s×), %.1f MB (%.3f×); %.0f MB RSS", secs(x.median), x.median/gz.median,
				div(med(sr, c, cpu), med(sr, tFairing, cpu)), xMB, xMB/gzMB, med(sr, c, rss).max_))
		}
		fmt.Fprintf(w, "| %s | %s |\n", sr.Name, strings.Join(cells, " | "))
	}
}

func writeDepsSuite(w io.Writer, su SuiteResult) {
	spec := su.Workload
	fmt.Fprintf(w, "## BuildKit path with requirements.txt (issue 5), %s workload\n\n", spec.Name)
	fmt.Fprintf(w, "The %s workload (%.0f MB) plus a requirements.txt that installs a local package offline (`--no-index ./pkgs/benchlib`) onto Debian's python3 + pip base. "+
		"fairing-bk: `fairing-builder build --builder buildkit` with the Dockerfile it generates; buildctl: `buildctl build` with the Dockerfile a user writes for the same image "+
		"(requirements and the package copied and installed before the code). Each on a buildkitd of its own; cold = `buildctl prune --all` and an empty registry. %d runs; load %.2f → %.2f.\n\n",
		spec.Name, float64(su.Bytes)/1e6, su.Runs, su.LoadStart, su.LoadEnd)
	fmt.Fprintf(w, "| scenario | fairing-bk | buildctl | ratio (wall) | ratio (CPU, client + daemon) | pip step cached (fairing-bk / buildctl) |\n|---|---|---|---|---|---|\n")
	for _, sr := range su.Scenarios {
		a, b := med(sr, tFairingBK, wall), med(sr, tBuildctl, wall)
		r, rc := div(a, b), div(med(sr, tFairingBK, cpu), med(sr, tBuildctl, cpu))
		c1, n1 := cachedCount(sr, tFairingBK)
		c2, n2 := cachedCount(sr, tBuildctl)
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %d/%d / %d/%d |\n", sr.Name, a.cell(), b.cell(), r, rc, c1, n1, c2, n2)
	}
	fmt.Fprintln(w)
}

// writeScaling shows how each tool's time grows with the context, and fairing's peak RSS.
func writeScaling(w io.Writer, r *Results) {
	sus := mainSuites(r)
	fmt.Fprintf(w, "## Time against context size\n\n![time against context size](scaling.svg)\n\n")
	for _, sc := range scalingScenarios {
		fmt.Fprintf(w, "**%s** (median wall time)\n\n| tool |", sc)
		for _, su := range sus {
			fmt.Fprintf(w, " %s (%.0f MB) |", su.Workload.Name, float64(su.Bytes)/1e6)
		}
		fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---|", len(sus)))
		for _, t := range mainOrder {
			var cells []string
			any := false
			for _, su := range sus {
				sr := findScenario(&su, sc)
				if sr == nil {
					cells = append(cells, "–")
					continue
				}
				s := med(*sr, t, wall)
				if s.n > 0 {
					any = true
					cells = append(cells, secs(s.median))
				} else {
					cells = append(cells, "–")
				}
			}
			if any {
				fmt.Fprintf(w, "| %s | %s |\n", t, strings.Join(cells, " | "))
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "**fairing-builder peak RSS** (largest over the runs of each scenario)\n\n| scenario |")
	for _, su := range sus {
		fmt.Fprintf(w, " %s |", su.Workload.Name)
	}
	fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---|", len(sus)))
	for _, sc := range scenarioNames() {
		var cells []string
		for _, su := range sus {
			sr := findScenario(&su, sc)
			if sr == nil || med(*sr, tFairing, rss).n == 0 {
				cells = append(cells, "–")
				continue
			}
			cells = append(cells, fmt.Sprintf("%.0f MB", med(*sr, tFairing, rss).max_))
		}
		fmt.Fprintf(w, "| %s | %s |\n", sc, strings.Join(cells, " | "))
	}
	fmt.Fprintln(w)
}

var scalingScenarios = []string{"cold", "unchanged", "edit-one"}

func mbList(b []int64) string {
	var p []string
	for _, x := range b {
		p = append(p, fmt.Sprintf("%g", float64(x)/1e6))
	}
	return strings.Join(p, ", ")
}
