package preprocess

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/moby/patternmatcher"

	"github.com/fairing-dev/fairing/pkg/layer"
)

// origin says where an image path comes from, for dedupe and for error messages.
type origin struct {
	local string // the local file; "" for generated content
	what  string // "--input src", "--output-map a=b", "the function shim", ...
}

func (o origin) String() string {
	if o.local == "" {
		return o.what
	}
	return fmt.Sprintf("%s (%s)", o.what, o.local)
}

// tree collects what goes where in the image and refuses anything ambiguous: two different
// sources for one path, or a path that would be both a file and a directory. Sources are walked
// here (as the layer builder will walk them) so those conflicts are reported before any build.
type tree struct {
	ctx      context.Context
	base     string   // absolute, cleaned
	patterns []string // DefaultIgnore + user patterns, relative to base, cleaned
	files    map[string]origin
	dirs     map[string]string // image directory -> what put it there
	sources  []layer.Source
	warnings []string
}

func newTree(ctx context.Context, base string, ignore []string) (*tree, error) {
	t := &tree{ctx: ctx, base: base, files: map[string]origin{}, dirs: map[string]string{}}
	for _, p := range append(DefaultIgnore(), ignore...) {
		if p = cleanPattern(p); p != "" {
			t.patterns = append(t.patterns, p)
		}
	}
	if _, err := patternmatcher.New(t.patterns); err != nil {
		return nil, fmt.Errorf("ignore patterns: %w", err)
	}
	return t, nil
}

func conflict(dest string, a, b origin) error {
	return fmt.Errorf("two sources for %s in the image: %s and %s: drop one, or put one elsewhere with --output-map SRC=DST", dest, a, b)
}

func fileVsDir(p string, file origin, dir string) error {
	return fmt.Errorf("%s in the image would be a file from %s and a directory from %s", p, file, dir)
}

// claimFile registers dest; dup is true when the same local file already has it.
func (t *tree) claimFile(dest string, o origin) (dup bool, err error) {
	if prev, ok := t.files[dest]; ok {
		if prev.local != "" && prev.local == o.local {
			return true, nil
		}
		return false, conflict(dest, prev, o)
	}
	if w, ok := t.dirs[dest]; ok {
		return false, fileVsDir(dest, o, w)
	}
	if err := t.claimParents(dest, o.what); err != nil {
		return false, err
	}
	t.files[dest] = o
	return false, nil
}

func (t *tree) claimDir(dest, what string) error {
	if prev, ok := t.files[dest]; ok {
		return fileVsDir(dest, prev, what)
	}
	if _, ok := t.dirs[dest]; ok {
		return nil
	}
	if err := t.claimParents(dest, what); err != nil {
		return err
	}
	t.dirs[dest] = what
	return nil
}

func (t *tree) claimParents(dest, what string) error {
	for p := path.Dir(dest); p != "/"; p = path.Dir(p) {
		if prev, ok := t.files[p]; ok {
			return fileVsDir(p, prev, what)
		}
		if _, ok := t.dirs[p]; ok {
			return nil // its parents were claimed with it
		}
		t.dirs[p] = what
	}
	return nil
}

// addData adds generated content.
func (t *tree) addData(dest string, data []byte, mode fs.FileMode, class layer.Class, what string) error {
	if _, err := t.claimFile(dest, origin{what: what}); err != nil {
		return err
	}
	t.sources = append(t.sources, layer.Source{Dest: dest, Data: data, Mode: mode, Class: class})
	return nil
}

// addFile adds one local file (or symlink to one) unless the same file is already there.
func (t *tree) addFile(local, dest, what string, class layer.Class) error {
	dup, err := t.claimFile(dest, origin{local: local, what: what})
	if err != nil || dup {
		return err
	}
	t.sources = append(t.sources, layer.Source{Dest: dest, Path: local, Class: class})
	return nil
}

// addDir adds a directory, recursively, honouring the ignore patterns; it returns the image
// paths of the regular files it holds. Files that earlier sources already hold (the same local
// file at the same place, e.g. "--input ." then "--input src") are excluded from this source,
// and a directory adding nothing new is dropped.
func (t *tree) addDir(local, dest, what string) ([]string, error) {
	// WalkDir does not follow a symlink given as its root: walk what it points to.
	if fi, err := os.Lstat(local); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		resolved, err := filepath.EvalSymlinks(local)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		local = resolved
	}
	patterns := t.patternsFor(local)
	var pm *patternmatcher.PatternMatcher
	if len(patterns) > 0 {
		var err error
		if pm, err = patternmatcher.New(patterns); err != nil {
			return nil, fmt.Errorf("ignore patterns for %s: %w", local, err)
		}
	}
	if err := t.claimDir(dest, what); err != nil {
		return nil, err
	}
	var files, dups []string
	fresh := 0
	// Matched as pkg/layer matches when it walks the same source, so both see the same files.
	parentInfo := map[string]patternmatcher.MatchInfo{}
	err := filepath.WalkDir(local, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := t.ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(local, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if pm != nil {
			skip, info, err := pm.MatchesUsingParentResults(rel, parentInfo[path.Dir(rel)])
			if err != nil {
				return fmt.Errorf("match ignore patterns against %s: %w", p, err)
			}
			if d.IsDir() {
				parentInfo[rel] = info
			}
			if skip {
				if d.IsDir() && !pm.Exclusions() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		dst := path.Join(dest, rel)
		switch typ := d.Type(); {
		case d.IsDir():
			return t.claimDir(dst, what)
		case typ.IsRegular() || typ&fs.ModeSymlink != 0:
			dup, err := t.claimFile(dst, origin{local: p, what: what})
			if err != nil {
				return err
			}
			if dup {
				dups = append(dups, rel)
				return nil
			}
			fresh++
			if typ.IsRegular() {
				files = append(files, dst)
			}
			return nil
		default:
			return fmt.Errorf("%s is not a regular file, directory or symlink (%s): it cannot go into an image; "+
				"exclude it in .dockerignore", p, typ.Type())
		}
	})
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		}
		return nil, fmt.Errorf("%s: read %s: %w", what, local, err)
	}
	if fresh == 0 && len(dups) > 0 {
		return files, nil
	}
	for _, d := range dups {
		patterns = append(patterns, escapePattern(d))
	}
	src := layer.Source{Dest: dest, Path: local}
	if len(patterns) > 0 {
		// Validated above; escaped paths are always valid.
		src.Ignore, _ = patternmatcher.New(patterns)
	}
	t.sources = append(t.sources, src)
	return files, nil
}

// patternsFor returns the ignore patterns for a directory input: the context's patterns rebased
// onto it when it is inside the context, else only the defaults (which hold at any depth).
func (t *tree) patternsFor(local string) []string {
	rel, err := filepath.Rel(t.base, local)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return DefaultIgnore()
	}
	var out []string
	for _, p := range t.patterns {
		r, err := rebasePattern(p, filepath.ToSlash(rel))
		if err != nil {
			t.warn(fmt.Sprintf("ignore pattern %q is not applied to %s: %v", p, local, err))
			continue
		}
		out = append(out, r...)
	}
	return out
}

func (t *tree) warn(w string) {
	for _, x := range t.warnings {
		if x == w {
			return
		}
	}
	t.warnings = append(t.warnings, w)
}

// local resolves a path given on the command line against the base directory.
func (t *tree) local(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(t.base, p)
}

func statLocal(local, flag, given, base string) (fs.FileInfo, error) {
	fi, err := os.Stat(local)
	if err == nil {
		return fi, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		if filepath.IsAbs(given) {
			return nil, fmt.Errorf("%s %s: no such file or directory", flag, given)
		}
		return nil, fmt.Errorf("%s %s: no such file or directory in %s (relative paths are relative to the context directory)", flag, given, base)
	}
	return nil, fmt.Errorf("%s %s: %w", flag, given, err)
}
