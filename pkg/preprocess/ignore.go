package preprocess

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"unicode"

	"github.com/moby/patternmatcher/ignorefile"
)

// DefaultIgnore lists what never goes into an image from an input directory: VCS metadata and
// caches that differ from machine to machine and would make builds irreproducible. A
// .dockerignore pattern like "!**/__pycache__" brings them back.
func DefaultIgnore() []string {
	return []string{"**/.git", "**/__pycache__", "**/*.pyc", "**/.ipynb_checkpoints"}
}

// ReadIgnoreFile reads dir/.dockerignore (patterns relative to dir, as Docker reads them). A
// missing file is no patterns.
func ReadIgnoreFile(dir string) ([]string, error) {
	f, err := os.Open(filepath.Join(dir, ".dockerignore"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read .dockerignore: %w", err)
	}
	defer f.Close()
	p, err := ignorefile.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	return p, nil
}

// cleanPattern normalises a pattern the way ignorefile.ReadAll does, so patterns given
// programmatically behave like patterns read from a file.
func cleanPattern(p string) string {
	p = strings.TrimSpace(p)
	excl := strings.HasPrefix(p, "!")
	if excl {
		p = strings.TrimSpace(p[1:])
	}
	if p != "" {
		p = filepath.ToSlash(filepath.Clean(p))
		if len(p) > 1 && p[0] == '/' {
			p = p[1:]
		}
	}
	if excl {
		return "!" + p
	}
	return p
}

// rebasePattern turns a pattern relative to the context into the patterns that select the same
// paths relative to the sub-directory rel (slash-separated, "." for the context itself), so that
// a directory input inside the context honours the context's .dockerignore.
//
// A pattern that matches rel itself or one of its parents is dropped: naming a directory as an
// input is asking for it, so "data" in .dockerignore keeps data/ out of "--input ." but not out
// of "--input data". Some patterns cannot be rebased faithfully; the error says why, and the
// caller warns and leaves the pattern out.
func rebasePattern(p, rel string) (out []string, err error) {
	if rel == "." || rel == "" {
		return []string{p}, nil
	}
	// Rebase what the matcher will see: it trims and cleans every pattern before use, so " /a"
	// from a .dockerignore line "/ /a" is "/a" there, which no relative path matches.
	if p = strings.TrimSpace(p); p == "" {
		return nil, nil
	}
	p = path.Clean(p)
	// patternmatcher (v0.6) escapes only bytes below 64 before compiling its regexp, so these
	// reach it as syntax: "^" anchors mid-pattern, "|" splits the whole pattern, "{n}" repeats.
	// Matching segment by segment (path.Match) cannot follow that.
	if strings.ContainsAny(p, "^|{}") {
		return nil, errors.New(`"^", "|", "{" and "}" act as regular-expression syntax in .dockerignore matching and cannot be rebased: match such a character with "?"`)
	}
	excl := strings.HasPrefix(p, "!")
	body := strings.TrimPrefix(p, "!")
	segs := strings.Split(body, "/")
	for _, s := range segs {
		if s != "**" && strings.Contains(s, "**") {
			return nil, errors.New("** inside a path segment cannot be rebased: write it as **/NAME")
		}
	}
	seen := map[string]bool{}
	for _, i := range rebase(segs, strings.Split(rel, "/")) {
		rest := segs[i:]
		whole := true
		for _, s := range rest {
			if s != "**" {
				whole = false
			}
		}
		if whole {
			continue
		}
		q := strings.Join(rest, "/")
		// The matcher trims each pattern: a space that ends the pattern (it survived the trim
		// above inside "a/ /") or that now starts it would be lost. "/." and "./" keep it:
		// Clean drops them after the trim.
		if strings.TrimRightFunc(q, unicode.IsSpace) != q {
			q += "/."
		}
		if excl {
			q = "!" + q
		} else if strings.TrimLeftFunc(q, unicode.IsSpace) != q {
			q = "./" + q
		}
		if !seen[q] {
			seen[q] = true
			out = append(out, q)
		}
	}
	return out, nil
}

// rebase matches the leading segments of pattern p against the directory segments r. Every
// way of matching all of r leaves a suffix p[i:] of the pattern; rebase returns those i in
// increasing order (i == len(p) means p matched r itself or a parent of it). It walks the
// (i, j) states once each, so "**/**/**/..." patterns cost len(p)*len(r), not exponential time.
func rebase(p, r []string) []int {
	type state struct{ i, j int }
	seen := map[state]bool{}
	found := map[int]bool{}
	var walk func(i, j int)
	walk = func(i, j int) {
		if seen[state{i, j}] {
			return
		}
		seen[state{i, j}] = true
		switch {
		case j == len(r):
			found[i] = true
		case i == len(p):
			found[i] = true
		case p[i] == "**":
			// "**" matches zero directories, or r[j] and possibly more.
			walk(i+1, j)
			walk(i, j+1)
		default:
			if ok, err := path.Match(p[i], r[j]); err == nil && ok {
				walk(i+1, j+1)
			}
		}
	}
	walk(0, 0)
	out := make([]int, 0, len(found))
	for i := 0; i <= len(p); i++ {
		if found[i] {
			out = append(out, i)
		}
	}
	return out
}

// escapePattern makes a relative path into a pattern that matches exactly that path.
func escapePattern(rel string) string {
	var b strings.Builder
	for i, r := range rel {
		switch {
		case r == '*' || r == '?' || r == '[' || r == ']' || r == '\\':
			b.WriteByte('\\')
		case r == '!' && i == 0:
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
