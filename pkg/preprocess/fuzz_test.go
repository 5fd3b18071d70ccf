package preprocess

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/moby/patternmatcher"
)

// FuzzParseOutputMap: no panics; a parsed mapping has both sides, trimmed, and prints back to
// a value that parses to the same mapping.
func FuzzParseOutputMap(f *testing.F) {
	f.Add("data/x.csv=/data/x.csv")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseOutputMap(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "--output-map ") {
				t.Fatalf("error does not name the flag: %v", err)
			}
			return
		}
		if m.Src == "" || m.Dst == "" || m.Src != strings.TrimSpace(m.Src) || m.Dst != strings.TrimSpace(m.Dst) || strings.Contains(m.Src, "=") {
			t.Fatalf("bad mapping %#v from %q", m, s)
		}
		again, err := ParseOutputMap(m.Src + "=" + m.Dst)
		if err != nil || again != m {
			t.Fatalf("round trip: %#v -> %#v, %v", m, again, err)
		}
	})
}

// FuzzRebasePattern checks rebasing against the matcher itself: for a file below directory
// rel, the pattern relative to the context and the rebased patterns relative to rel must agree,
// except when the pattern matches rel itself or a parent (then rebasing drops it on purpose).
func FuzzRebasePattern(f *testing.F) {
	f.Add("**/*.pyc", "src/pkg", "a.pyc")
	f.Fuzz(func(t *testing.T, pattern, rel, file string) {
		// Character classes and backslash escapes are left out: the matcher hands them to
		// regexp while rebasing uses path.Match, and the two disagree on corner cases.
		// Invalid UTF-8 too: the matcher's scanner and path.Match decode it differently.
		// Line breaks too: the walker refuses such names, and the matcher's "**" does not cross them.
		// ("^|{}", which the matcher passes to its regexp unescaped, rebasePattern refuses.)
		if strings.ContainsAny(pattern, `[]\!`) || !utf8.ValidString(pattern+rel+file) || strings.ContainsAny(rel+file, "\n\r") {
			return
		}
		rel, file = cleanRel(rel), cleanRel(file)
		pattern = cleanPattern(pattern)
		if rel == "" || file == "" || pattern == "" || strings.HasPrefix(pattern, "..") {
			return
		}
		full, err := patternmatcher.New([]string{pattern})
		if err != nil {
			return
		}
		rebased, err := rebasePattern(pattern, rel)
		if err != nil {
			return
		}
		// Dropped on purpose: patterns matching rel or a parent, or everything inside rel
		// ("rel/**"); an explicitly named input directory is included whatever they say.
		for p := pattern; ; p = strings.TrimSuffix(p, "/**") {
			if m, err := patternmatcher.New([]string{p}); err == nil {
				if whole, _ := m.MatchesOrParentMatches(rel); whole {
					return
				}
			}
			if !strings.HasSuffix(p, "/**") {
				break
			}
		}
		want, _ := full.MatchesOrParentMatches(rel + "/" + file)
		got := false
		if len(rebased) > 0 {
			pm, err := patternmatcher.New(rebased)
			if err != nil {
				t.Fatalf("rebased %q into invalid patterns %q: %v", pattern, rebased, err)
			}
			got, _ = pm.MatchesOrParentMatches(file)
		}
		if got != want {
			t.Fatalf("pattern %q on %s/%s: %v; rebased %q on %s: %v", pattern, rel, file, want, rebased, file, got)
		}
	})
}

// cleanRel keeps the non-empty, non-dot segments of a slash path.
func cleanRel(s string) string {
	var segs []string
	for _, seg := range strings.Split(s, "/") {
		if seg != "" && seg != "." && seg != ".." {
			segs = append(segs, seg)
		}
	}
	return strings.Join(segs, "/")
}
