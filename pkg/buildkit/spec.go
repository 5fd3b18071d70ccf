package buildkit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/fairing-dev/fairing/pkg/layer"
)

// Spec describes an image whose Dockerfile is generated: a base, the preprocessors' sources and
// how to start the program.
type Spec struct {
	// Base is the FROM image.
	Base string
	// WorkDir is the WORKDIR; default "/app".
	WorkDir string
	// Env is set with ENV after FAIRING_RUNTIME=1, in key order.
	Env map[string]string
	// Sources are the files to put in the image. A source's Class decides its layer: ClassDeps
	// files are copied and installed before everything else (ClassAuto: requirements*.txt and
	// constraints*.txt), ClassLarge files (ClassAuto: at least LargeFileSize bytes) go in a layer
	// of their own, then code (ClassSource), then ClassTop files.
	Sources []layer.Source
	// Requirements are image paths of pip requirement files to install, in order. When nil, the
	// file requirements.txt directly in WorkDir is installed if a source provides it, as the
	// original Fairing did. Each must be provided by a ClassDeps source.
	Requirements []string
	// Entrypoint and Cmd are written in exec form when set.
	Entrypoint []string
	Cmd        []string
	// SecretEnv maps build secret ids to environment variables set for the install step to the
	// secret's mounted path. The ids "pip.conf" (PIP_CONFIG_FILE) and "netrc" (NETRC) are mapped
	// by default, so `--secret id=pip.conf,src=...` reaches a private index without being stored
	// in the image.
	SecretEnv map[string]string
}

// LargeFileSize is the size from which a ClassAuto file gets the large-files layer.
const LargeFileSize = 32 << 20

// group is one COPY of the generated Dockerfile; its directory name in the staged context.
type group int

const (
	groupDeps group = iota
	groupLarge
	groupCode
	groupTop
	numGroups
)

var groupDirs = [numGroups]string{"deps", "large", "code", "top"}

// entry is one path of the staged context.
type entry struct {
	dest  string // absolute, clean image path
	src   string // local file, directory or symlink; "" for generated data
	data  []byte
	mode  fs.FileMode // type bits and permissions
	link  string      // symlink target
	group group
}

// plan is what a Spec expands to: every path, its layer, and the requirement files to install.
type plan struct {
	workDir      string
	entries      []entry // sorted by dest
	used         [numGroups]bool
	requirements []string
}

var depsName = regexp.MustCompile(`^(requirements|constraints)[^/]*\.txt$`)

func classify(e *entry, size int64, c layer.Class) group {
	switch c {
	case layer.ClassDeps:
		return groupDeps
	case layer.ClassLarge:
		return groupLarge
	case layer.ClassSource:
		return groupCode
	case layer.ClassTop:
		return groupTop
	}
	if e.mode.IsRegular() {
		if depsName.MatchString(path.Base(e.dest)) {
			return groupDeps
		}
		if size >= LargeFileSize {
			return groupLarge
		}
	}
	return groupCode
}

// planSpec walks the spec's sources (reading metadata only) and decides each path's layer.
func planSpec(s Spec) (*plan, error) {
	if strings.TrimSpace(s.Base) == "" {
		return nil, errors.New("generated Dockerfile: no base image given")
	}
	if strings.ContainsAny(s.Base, " \t\r\n") {
		return nil, fmt.Errorf("generated Dockerfile: base image %q contains white space", s.Base)
	}
	wd := s.WorkDir
	if wd == "" {
		wd = "/app"
	}
	if !path.IsAbs(wd) || strings.ContainsAny(wd, "\r\n") {
		return nil, fmt.Errorf("generated Dockerfile: work dir %q must be an absolute path", wd)
	}
	wd = path.Clean(wd)
	byDest := map[string]entry{}
	for i, src := range s.Sources {
		if err := walkSource(src, func(e entry, size int64) {
			e.group = classify(&e, size, src.Class)
			byDest[e.dest] = e // a later source replaces an earlier one at the same path
		}); err != nil {
			return nil, fmt.Errorf("source %d (%s): %w", i, sourceName(src), err)
		}
	}
	p := &plan{workDir: wd}
	for _, e := range byDest {
		p.entries = append(p.entries, e)
	}
	sort.Slice(p.entries, func(i, j int) bool { return p.entries[i].dest < p.entries[j].dest })
	deps := map[string]bool{}
	for _, e := range p.entries {
		p.used[e.group] = true
		if e.group == groupDeps && e.mode.IsRegular() {
			deps[e.dest] = true
		}
	}
	if s.Requirements == nil {
		r := path.Join(wd, "requirements.txt")
		if e, ok := byDest[r]; ok && e.mode.IsRegular() {
			if !deps[r] {
				return nil, fmt.Errorf("%s is a requirements file but its source is not ClassDeps", r)
			}
			p.requirements = []string{r}
		}
	}
	for _, r := range s.Requirements {
		if !path.IsAbs(r) {
			r = path.Join(wd, r)
		}
		r = path.Clean(r)
		if !deps[r] {
			return nil, fmt.Errorf("requirements file %s is not provided by a dependency (ClassDeps) source", r)
		}
		p.requirements = append(p.requirements, r)
	}
	return p, nil
}

func sourceName(s layer.Source) string {
	if s.Path != "" {
		return s.Path + " → " + s.Dest
	}
	return "generated " + s.Dest
}

// walkSource calls fn for every path a source contributes, honouring its ignore rules.
func walkSource(src layer.Source, fn func(e entry, size int64)) error {
	dest, err := cleanDest(src.Dest)
	if err != nil {
		return err
	}
	if src.Path == "" {
		mode := src.Mode.Perm()
		if mode == 0 {
			mode = 0o644
		}
		fn(entry{dest: dest, data: src.Data, mode: mode}, int64(len(src.Data)))
		return nil
	}
	if src.Data != nil {
		return errors.New("both Path and Data are set")
	}
	root, err := filepath.Abs(src.Path)
	if err != nil {
		return err
	}
	fi, err := os.Lstat(root)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		e, err := fileEntry(root, dest, fi, "")
		if err != nil {
			return err
		}
		fn(e, fi.Size())
		return nil
	}
	var exclusions bool
	if src.Ignore != nil {
		exclusions = src.Ignore.Exclusions()
	}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel != "." && src.Ignore != nil {
			ignored, err := src.Ignore.MatchesOrParentMatches(rel)
			if err != nil {
				return fmt.Errorf("match ignore rules on %s: %w", rel, err)
			}
			if ignored {
				if d.IsDir() && !exclusions {
					return filepath.SkipDir
				}
				return nil
			}
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		e, err := fileEntry(p, path.Join(dest, rel), fi, root)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		fn(e, fi.Size())
		return nil
	})
}

func fileEntry(p, dest string, fi fs.FileInfo, root string) (entry, error) {
	e := entry{dest: dest, src: p, mode: fi.Mode()}
	switch {
	case fi.Mode().IsRegular(), fi.IsDir():
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			return e, err
		}
		if root != "" {
			resolved := target
			if !filepath.IsAbs(resolved) {
				resolved = filepath.Join(filepath.Dir(p), target)
			}
			if rel, err := filepath.Rel(root, resolved); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
				return e, fmt.Errorf("symlink to %s points outside %s; copy the file in or remove the link", target, root)
			}
		}
		e.link = target
	default:
		return e, fmt.Errorf("%s is not a regular file, directory or symlink (mode %s); it cannot be put in an image", p, fi.Mode())
	}
	return e, nil
}

func cleanDest(d string) (string, error) {
	if !path.IsAbs(d) {
		return "", fmt.Errorf("destination %q must be an absolute image path", d)
	}
	c := path.Clean(d)
	if c == "/" {
		return c, nil
	}
	if strings.ContainsAny(c, "\x00\r\n") {
		return "", fmt.Errorf("destination %q contains control characters", d)
	}
	return c, nil
}
