package preprocess

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

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
// of "--input data". Patterns with "**" inside a path segment ("a**b") cannot be rebased
// segment by segment; ok is false for them and the caller warns.
func rebasePattern(p, rel string) (out []string, ok bool) {
	if rel == "." || rel == "" {
		return []string{p}, true
	}
	excl := strings.HasPrefix(p, "!")
	body := strings.TrimPrefix(p, "!")
	segs := strings.Split(body, "/")
	for _, s := range segs {
		if s != "**" && strings.Contains(s, "**") {
			return nil, false
		}
	}
	seen := map[string]bool{}
	for _, rest := range rebase(segs, strings.Split(rel, "/")) {
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
		if excl {
			q = "!" + q
		}
		if !seen[q] {
			seen[q] = true
			out = append(out, q)
		}
	}
	return out, true
}

// rebase matches the leading segments of pattern p against the directory segments r and
// returns what is left of p for each way of matching all of r. An empty remainder means p
// matched r itself (or a parent of it).
func rebase(p, r []string) [][]string {
	if len(r) == 0 {
		return [][]string{p}
	}
	if len(p) == 0 {
		return [][]string{{}}
	}
	if p[0] == "**" {
		// "**" matches zero directories, or r[0] and possibly more.
		return append(rebase(p[1:], r), rebase(p, r[1:])...)
	}
	if ok, err := path.Match(p[0], r[0]); err != nil || !ok {
		return nil
	}
	return rebase(p[1:], r[1:])
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
