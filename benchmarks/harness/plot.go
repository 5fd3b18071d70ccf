package main

import (
	"fmt"
	"html"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// The plots are plain SVG written here: two chart kinds, log scales, no dependency.

var toolColor = map[string]string{
	tFairing: "#1f77b4", tFairingBK: "#17becf", tInCluster: "#9467bd", tFairingZstd: "#aec7e8", tFairingEstgz: "#c5b0d5",
	tCrane: "#ff7f0e", tBuildctl: "#2ca02c", tBuildah: "#d62728", tDocker: "#8c564b",
}

type svg struct{ b strings.Builder }

func (s *svg) f(format string, args ...any) { fmt.Fprintf(&s.b, format, args...) }

func (s *svg) text(x, y float64, anchor, size string, txt string, extra ...string) {
	s.f(`<text x="%.1f" y="%.1f" text-anchor="%s" font-size="%s" %s>%s</text>`+"\n", x, y, anchor, size, strings.Join(extra, " "), html.EscapeString(txt))
}

// logAxis maps values in [lo, hi] (decades around them) to [y0, y1] (pixels, y0 at the bottom).
type logAxis struct {
	lo, hi float64 // decade bounds
	p0, p1 float64
}

func newLogAxis(vmin, vmax, p0, p1 float64) logAxis {
	if vmin <= 0 {
		vmin = 0.001
	}
	if vmax <= vmin {
		vmax = vmin * 10
	}
	return logAxis{lo: math.Pow(10, math.Floor(math.Log10(vmin))), hi: math.Pow(10, math.Ceil(math.Log10(vmax))), p0: p0, p1: p1}
}

func (a logAxis) at(v float64) float64 {
	v = math.Max(v, a.lo)
	return a.p0 + (math.Log10(v)-math.Log10(a.lo))/(math.Log10(a.hi)-math.Log10(a.lo))*(a.p1-a.p0)
}

// ticks are 1, 2, 5 per decade; labels only at 1 and, when there are few decades, 2 and 5 too.
func (a logAxis) ticks() (major, minor []float64) {
	decades := math.Log10(a.hi) - math.Log10(a.lo)
	for d := a.lo; d <= a.hi*1.0001; d *= 10 {
		major = append(major, d)
		if d < a.hi/1.0001 {
			for _, m := range []float64{2, 5} {
				if decades <= 3 {
					major = append(major, d*m)
				} else {
					minor = append(minor, d*m)
				}
			}
		}
	}
	return
}

func fmtSecs(v float64) string {
	switch {
	case v >= 1:
		return fmt.Sprintf("%g s", v)
	case v >= 0.001:
		return fmt.Sprintf("%g ms", v*1000)
	}
	return fmt.Sprintf("%g", v)
}

func fmtMB(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%g GB", v/1000)
	}
	return fmt.Sprintf("%g MB", v)
}

func (s *svg) yAxis(a logAxis, x0, x1 float64, label func(float64) string) {
	major, minor := a.ticks()
	for _, v := range minor {
		s.f(`<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", x0, x1, a.at(v), a.at(v))
	}
	for _, v := range major {
		s.f(`<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ccc"/>`+"\n", x0, x1, a.at(v), a.at(v))
		s.text(x0-4, a.at(v)+4, "end", "11", label(v))
	}
}

func (s *svg) legend(x, y float64, tools []string) {
	for i, t := range tools {
		yy := y + float64(i)*16
		s.f(`<rect x="%.1f" y="%.1f" width="12" height="12" fill="%s"/>`+"\n", x, yy, toolColor[t])
		label := t
		if t == tInCluster {
			label = "in-cluster (pod)"
		}
		s.text(x+16, yy+10, "start", "11", label)
	}
}

func (s *svg) open(w, h float64, title string) {
	s.f(`<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif">`+"\n", w, h, w, h)
	s.f(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	s.text(w/2, 20, "middle", "14", title, `font-weight="bold"`)
}

func (s *svg) close() string { s.f("</svg>\n"); return s.b.String() }

// timePlot: for each scenario, one bar per tool (median wall time, log scale) with a whisker
// from the fastest to the slowest run.
func timePlot(su SuiteResult) string {
	tools := present(su, mainOrder)
	var vmin, vmax float64 = math.Inf(1), 0
	for _, sr := range su.Scenarios {
		for _, t := range tools {
			st := med(sr, t, wall)
			if st.n > 0 {
				vmin, vmax = math.Min(vmin, st.min/1000), math.Max(vmax, st.max_/1000)
			}
		}
	}
	if vmax == 0 {
		vmin, vmax = 0.01, 1
	}
	const left, top, right, bottom, legendW = 64.0, 36.0, 16.0, 56.0, 120.0
	groupW := float64(len(tools))*12 + 18
	w := left + groupW*float64(len(su.Scenarios)) + right + legendW
	h := 380.0
	a := newLogAxis(vmin, vmax, h-bottom, top)
	var s svg
	s.open(w, h, fmt.Sprintf("Wall time per scenario, %s workload (%.0f MB, %d files); median, whisker = min–max", su.Workload.Name, float64(su.Bytes)/1e6, su.Workload.Files))
	plotRight := left + groupW*float64(len(su.Scenarios))
	s.yAxis(a, left, plotRight, fmtSecs)
	for i, sr := range su.Scenarios {
		gx := left + float64(i)*groupW + 9
		for k, t := range tools {
			st := med(sr, t, wall)
			if st.n == 0 {
				continue
			}
			x := gx + float64(k)*12
			y := a.at(st.median / 1000)
			s.f(`<rect x="%.1f" y="%.1f" width="10" height="%.1f" fill="%s"><title>%s %s: %s</title></rect>`+"\n", x, y, a.p0-y, toolColor[t], sr.Name, t, secs(st.median))
			s.f(`<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#333"/>`+"\n", x+5, x+5, a.at(st.min/1000), a.at(st.max_/1000))
		}
		s.text(gx+float64(len(tools))*6, h-bottom+16, "middle", "11", sr.Name)
	}
	s.f(`<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#333"/>`+"\n", left, plotRight, a.p0, a.p0)
	s.text(14, (top+h-bottom)/2, "middle", "11", "seconds (log)", fmt.Sprintf(`transform="rotate(-90 14 %.1f)"`, (top+h-bottom)/2))
	s.legend(plotRight+14, top+4, tools)
	return s.close()
}

// scalingPlot: one panel per scenario, time against context size, log-log, a line per tool.
func scalingPlot(r *Results) string {
	sus := mainSuites(r)
	tools := []string{}
	for _, t := range mainOrder {
		for _, su := range sus {
			if contains(su.Tools, t) && !contains(tools, t) {
				tools = append(tools, t)
			}
		}
	}
	var smin, smax, vmin, vmax = math.Inf(1), 0.0, math.Inf(1), 0.0
	for _, su := range sus {
		mb := float64(su.Bytes) / 1e6
		smin, smax = math.Min(smin, mb), math.Max(smax, mb)
		for _, sc := range scalingScenarios {
			if sr := findScenario(&su, sc); sr != nil {
				for _, t := range tools {
					if st := med(*sr, t, wall); st.n > 0 {
						vmin, vmax = math.Min(vmin, st.median/1000), math.Max(vmax, st.median/1000)
					}
				}
			}
		}
	}
	if vmax == 0 {
		vmin, vmax = 0.01, 1
	}
	const left, top, bottom, panelW, gap, legendW = 64.0, 40.0, 50.0, 260.0, 40.0, 120.0
	h := 360.0
	w := left + float64(len(scalingScenarios))*(panelW+gap) + legendW
	ya := newLogAxis(vmin, vmax, h-bottom, top)
	var s svg
	s.open(w, h, "Wall time against context size (median; log-log)")
	for i, sc := range scalingScenarios {
		x0 := left + float64(i)*(panelW+gap)
		xa := newLogAxis(smin, smax, x0, x0+panelW)
		s.yAxis(ya, x0, x0+panelW, fmtSecs)
		// Labels at the decades only: a panel is too narrow for 1-2-5.
		for v := xa.lo; v <= xa.hi*1.0001; v *= 10 {
			s.f(`<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ccc"/>`+"\n", xa.at(v), xa.at(v), ya.p1, ya.p0)
			s.text(xa.at(v), h-bottom+14, "middle", "10", fmtMB(v))
		}
		s.text(x0+panelW/2, top-6, "middle", "12", sc, `font-weight="bold"`)
		for _, t := range tools {
			var pts []string
			for _, su := range sus {
				sr := findScenario(&su, sc)
				if sr == nil {
					continue
				}
				if st := med(*sr, t, wall); st.n > 0 {
					x, y := xa.at(float64(su.Bytes)/1e6), ya.at(st.median/1000)
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
					s.f(`<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s %s %s: %s</title></circle>`+"\n", x, y, toolColor[t], sc, t, su.Workload.Name, secs(st.median))
				}
			}
			if len(pts) > 1 {
				s.f(`<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(pts, " "), toolColor[t])
			}
		}
		s.text(x0+panelW/2, h-12, "middle", "11", "context size (log)")
	}
	s.legend(left+float64(len(scalingScenarios))*(panelW+gap)-gap+14, top+4, tools)
	return s.close()
}

func writePlots(dir string, r *Results) error {
	for _, su := range mainSuites(r) {
		if err := os.WriteFile(filepath.Join(dir, "time-"+su.Workload.Name+".svg"), []byte(timePlot(su)), 0o644); err != nil {
			return err
		}
	}
	if len(mainSuites(r)) > 1 {
		return os.WriteFile(filepath.Join(dir, "scaling.svg"), []byte(scalingPlot(r)), 0o644)
	}
	return nil
}
