package gen

import (
	"bytes"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Mutator changes a generated tree the way a user does between two builds. Every change is
// drawn from the seed and the step number, so a run of mutations is reproducible.
type Mutator struct {
	Dir  string
	Seed uint64
	// Skip are path prefixes (relative, slash-separated) no mutation touches, such as a local
	// package the requirements install.
	Skip []string
	step uint64
}

// Change says what a mutation did, in paths relative to the tree.
type Change struct {
	Edited, Added, Deleted []string
	// Bytes is how many bytes the changed files hold now.
	Bytes int64
}

func (m *Mutator) rng() *rand.Rand {
	m.step++
	return rand.New(rand.NewPCG(m.Seed, 1000+m.step))
}

// sources lists the Python files, sorted.
func (m *Mutator) sources() ([]string, error) {
	var out []string
	err := filepath.WalkDir(m.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && strings.HasSuffix(p, ".py") && d.Name() != "__init__.py" {
			rel, _ := filepath.Rel(m.Dir, p)
			rel = filepath.ToSlash(rel)
			for _, s := range m.Skip {
				if strings.HasPrefix(rel, s) {
					return nil
				}
			}
			out = append(out, rel)
		}
		return nil
	})
	sort.Strings(out)
	if err == nil && len(out) == 0 {
		err = fmt.Errorf("no Python files under %s to change", m.Dir)
	}
	return out, err
}

// edit rewrites one line near the middle of the file, in place (same inode, as many editors
// do), so the size changes by a few bytes at most.
func (m *Mutator) edit(r *rand.Rand, rel string) (int64, error) {
	p := filepath.Join(m.Dir, filepath.FromSlash(rel))
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	lines := bytes.Split(b, []byte("\n"))
	i := len(lines) / 2
	indent := len(lines[i]) - len(bytes.TrimLeft(lines[i], " "))
	lines[i] = fmt.Appendf(nil, "%s# edited: step %d, value %d", strings.Repeat(" ", indent), m.step, r.IntN(1_000_000))
	out := bytes.Join(lines, []byte("\n"))
	return int64(len(out)), os.WriteFile(p, out, 0o644)
}

// EditOne edits one source file.
func (m *Mutator) EditOne() (Change, error) {
	return m.EditFraction(0)
}

// EditFraction edits max(1, frac × #sources) source files.
func (m *Mutator) EditFraction(frac float64) (Change, error) {
	r := m.rng()
	srcs, err := m.sources()
	if err != nil {
		return Change{}, err
	}
	n := max(1, int(frac*float64(len(srcs))))
	var c Change
	for _, i := range r.Perm(len(srcs))[:n] {
		sz, err := m.edit(r, srcs[i])
		if err != nil {
			return c, fmt.Errorf("edit %s: %w", srcs[i], err)
		}
		c.Edited = append(c.Edited, srcs[i])
		c.Bytes += sz
	}
	return c, nil
}

// AddDelete adds one new source file beside a random one and deletes another.
func (m *Mutator) AddDelete() (Change, error) {
	r := m.rng()
	srcs, err := m.sources()
	if err != nil {
		return Change{}, err
	}
	if len(srcs) < 2 {
		return Change{}, fmt.Errorf("add+delete needs two source files under %s", m.Dir)
	}
	perm := r.Perm(len(srcs))
	near, del := srcs[perm[0]], srcs[perm[1]]
	add := fmt.Sprintf("%s/added_%d_%d.py", filepath.ToSlash(filepath.Dir(near)), m.step, r.IntN(1_000_000))
	proj := newProject(m.Seed)
	cg := newCodeGen(r, proj)
	data := cg.python(2_000+r.IntN(20_000), proj.header)
	if err := os.WriteFile(filepath.Join(m.Dir, filepath.FromSlash(add)), data, 0o644); err != nil {
		return Change{}, err
	}
	if err := os.Remove(filepath.Join(m.Dir, filepath.FromSlash(del))); err != nil {
		return Change{}, err
	}
	return Change{Added: []string{add}, Deleted: []string{del}, Bytes: int64(len(data))}, nil
}

// ReplaceLarge rewrites the largest file under models/ with new weights of the same size (a
// retrained model).
func (m *Mutator) ReplaceLarge() (Change, error) {
	r := m.rng()
	ents, err := os.ReadDir(filepath.Join(m.Dir, "models"))
	if err != nil {
		return Change{}, fmt.Errorf("replace a large file: %w", err)
	}
	var best string
	var size int64
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && fi.Size() > size {
			best, size = e.Name(), fi.Size()
		}
	}
	if best == "" {
		return Change{}, fmt.Errorf("no file under %s/models to replace", m.Dir)
	}
	p := filepath.Join(m.Dir, "models", best)
	// Written beside and renamed over, as a training job saving a checkpoint does.
	tmp := p + ".tmp"
	if err := writeWeights(tmp, r, size); err != nil {
		return Change{}, err
	}
	if err := os.Rename(tmp, p); err != nil {
		return Change{}, err
	}
	return Change{Edited: []string{"models/" + best}, Bytes: size}, nil
}
