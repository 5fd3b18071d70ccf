package buildkit

import (
	"context"
	"errors"
	"fmt"
	"path"
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
	// PathEnv are search paths (PYTHONPATH) set in front of the base's value, joined with ':',
	// or alone when the base has none.
	PathEnv map[string]string
	// Sources are the files to put in the image. They are split into layers exactly as the
	// append builder splits them (layer.Plan): dependency files (ClassDeps; by default
	// requirements*.txt, pyproject.toml, ... see layer.IsDependencyFile) lowest and installed
	// before anything else is copied, then large files, then code, then generated files; one
	// COPY per layer.
	Sources []layer.Source
	// Plan tunes the split (large-file threshold, chunking).
	Plan layer.PlanOptions
	// MinSourceLayer merges neighbouring source layers of the plan until each holds at least
	// this many bytes; default 64 MiB. Every BuildKit layer is a COPY step of its own, with a
	// cost on every build, so small projects get one code layer and big ones a few. Negative:
	// keep the planner's layers.
	MinSourceLayer int64
	// Requirements are image paths of pip requirement files to install, in order. When nil, the
	// file requirements.txt directly in WorkDir is installed if a source provides it, as the
	// original Fairing did; an empty, non-nil list installs nothing. Each must be provided by
	// a dependency (ClassDeps) source, so that it is copied before the install.
	Requirements []string
	// BaseUser is the user the base image runs as (its config's User). A non-root user gets the
	// dependency files (COPY --chown, so pip can build local packages in place) and installs
	// with pip --user; root installs system-wide. Empty means unknown: the install step then
	// checks `id -u` when it runs, as the original Fairing did. Build fills it from the base's
	// config when it can read it.
	BaseUser string
	// User is the user the image runs as (a USER line after everything else); empty keeps the
	// base's.
	User string
	// Entrypoint and Cmd are written in exec form when set; an empty, non-nil Entrypoint
	// clears the base's.
	Entrypoint []string
	Cmd        []string
	// SecretEnv maps build secret ids to environment variables set, for the install step only,
	// to the secret's mounted path. The ids "pip.conf" (PIP_CONFIG_FILE) and "netrc" (NETRC) are
	// mapped by default, so `--secret id=pip.conf,src=...` reaches a private index without
	// being stored in the image.
	SecretEnv map[string]string
}

// ctxGroup is one layer of the generated image: one directory of the context, one
// COPY of the Dockerfile.
type ctxGroup struct {
	dir     string // "00-dependencies", "01-large", "02-source", ...
	class   layer.Class
	entries []layer.Entry
}

// plan is what a Spec expands to: its layers, their files, and the requirement files to install.
type plan struct {
	workDir      string
	groups       []ctxGroup
	dirs         map[string]layer.Entry // every directory, for the modes of parent directories
	requirements []string               // absolute image paths
}

func classDir(c layer.Class) string {
	switch c {
	case layer.ClassDeps:
		return "dependencies"
	case layer.ClassLarge:
		return "large"
	case layer.ClassTop:
		return "generated"
	}
	return "source"
}

// workDir is the generated Dockerfile's WORKDIR for a spec's WorkDir.
func workDir(wd string) string {
	if wd == "" {
		return "/app"
	}
	return wd
}

// DefaultRequirements is the requirements file the generated Dockerfile installs when a spec
// names none (as the original Fairing did): requirements.txt in the work dir, if a source
// provides it.
func DefaultRequirements(workdir string) string {
	return path.Join(path.Clean(workDir(workdir)), "requirements.txt")
}

// planSpec collects the spec's sources (metadata only, no content read) and splits them into
// layers with the append builder's planner.
func planSpec(ctx context.Context, s Spec) (*plan, error) {
	if strings.TrimSpace(s.Base) == "" {
		return nil, errors.New("generated Dockerfile: no base image given")
	}
	if strings.ContainsAny(s.Base, " \t\r\n") {
		return nil, fmt.Errorf("generated Dockerfile: base image %q contains white space", s.Base)
	}
	wd := workDir(s.WorkDir)
	if !path.IsAbs(wd) || strings.ContainsAny(wd, "\r\n") {
		return nil, fmt.Errorf("generated Dockerfile: work dir %q must be an absolute path", wd)
	}
	wd = path.Clean(wd)
	if strings.ContainsAny(s.BaseUser, " \t\r\n") {
		return nil, fmt.Errorf("generated Dockerfile: base user %q contains white space", s.BaseUser)
	}
	if strings.ContainsAny(s.User, " \t\r\n") {
		return nil, fmt.Errorf("generated Dockerfile: user %q contains white space", s.User)
	}
	entries, err := layer.Collect(ctx, s.Sources)
	if err != nil {
		return nil, err
	}
	p := &plan{workDir: wd, dirs: map[string]layer.Entry{}}
	for _, e := range entries {
		if e.Type == layer.TypeDir {
			p.dirs[e.Path] = e
		}
	}
	deps := map[string]bool{} // image paths of dependency files
	all := map[string]bool{}
	for i, g := range mergeSource(layer.Plan(entries, s.Plan), s.MinSourceLayer) {
		p.groups = append(p.groups, ctxGroup{dir: fmt.Sprintf("%02d-%s", i, classDir(g.Class)), class: g.Class, entries: g.Entries})
		for _, e := range g.Entries {
			if e.Type == layer.TypeFile || e.Type == layer.TypeHardlink {
				all["/"+e.Path] = true
				if g.Class == layer.ClassDeps {
					deps["/"+e.Path] = true
				}
			}
		}
	}
	reqs := s.Requirements
	if reqs == nil {
		if r := DefaultRequirements(wd); all[r] {
			if !deps[r] {
				return nil, fmt.Errorf("%s is a requirements file but its source is not a dependency (ClassDeps) source", r)
			}
			reqs = []string{r}
		}
	}
	for _, r := range reqs {
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

// mergeSource joins consecutive source groups until each holds at least min bytes (the last
// may hold less). Boundaries stay where the planner put them, so a one-file change still
// touches one layer, and a larger one only when sizes move a group across the threshold.
func mergeSource(groups []layer.Group, min int64) []layer.Group {
	if min == 0 {
		min = 64 << 20 // each COPY step costs tens of ms on every build, cached or not
	}
	var out []layer.Group
	var acc *layer.Group
	var accBytes int64
	flush := func() {
		if acc != nil {
			out = append(out, *acc)
			acc, accBytes = nil, 0
		}
	}
	for _, g := range groups {
		if g.Class != layer.ClassSource || min < 0 {
			flush()
			out = append(out, g)
			continue
		}
		if acc == nil {
			c := g
			c.Entries = append([]layer.Entry(nil), g.Entries...)
			acc = &c
		} else {
			acc.Entries = append(acc.Entries, g.Entries...)
			acc.Name = "source"
		}
		for _, e := range g.Entries {
			accBytes += e.Size
		}
		if accBytes >= min {
			flush()
		}
	}
	flush()
	return out
}

// isRoot reports whether an image config's User runs as root.
func isRoot(u string) bool {
	name, _, _ := strings.Cut(u, ":")
	return name == "root" || name == "0"
}
