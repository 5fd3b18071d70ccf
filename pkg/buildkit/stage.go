package buildkit

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/fairing-dev/fairing/pkg/layer"
)

// stage writes p's paths into dir as the build context of the generated Dockerfile: each layer
// group in a directory of its own (dir/00-dependencies/app/requirements.txt, dir/01-source/app/train.py, ...).
//
// Local files are hard-linked (copied when linking is impossible, e.g. across file systems), so
// staging costs no data copy and keeps each file's size and mtime: BuildKit's context transfer
// then sends only what changed since the last build. A generated file keeps the mtime of the
// previous staging when its bytes are unchanged, for the same reason.
//
// The new tree is built beside dir and swapped in, so a failed staging leaves the previous one.
func stage(p *plan, dir string) error {
	next := dir + ".next"
	if err := os.RemoveAll(next); err != nil {
		return fmt.Errorf("clean staging dir: %w", err)
	}
	if err := os.MkdirAll(next, 0o755); err != nil {
		return err
	}
	for _, g := range p.groups {
		gdir := filepath.Join(next, g.dir)
		if err := os.Mkdir(gdir, 0o755); err != nil {
			return err
		}
		for _, e := range g.entries {
			if err := p.stageParents(gdir, e.Path); err != nil {
				return fmt.Errorf("stage /%s: %w", e.Path, err)
			}
			rel := filepath.Join(g.dir, filepath.FromSlash(e.Path))
			if err := stageEntry(e, filepath.Join(next, rel), filepath.Join(dir, rel)); err != nil {
				return fmt.Errorf("stage /%s: %w", e.Path, err)
			}
		}
	}
	prev := dir + ".prev"
	if err := os.RemoveAll(prev); err != nil {
		return err
	}
	if err := os.Rename(dir, prev); err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := os.Rename(next, dir); err != nil {
		return err
	}
	return os.RemoveAll(prev)
}

// stageParents creates the parent directories of an image path in a group's directory, with
// the modes the plan has for them (COPY carries them into the image).
func (p *plan) stageParents(gdir, imgPath string) error {
	var missing []string
	for d := path.Dir(imgPath); d != "." && d != "/"; d = path.Dir(d) {
		if _, err := os.Lstat(filepath.Join(gdir, filepath.FromSlash(d))); err == nil {
			break
		}
		missing = append(missing, d)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		mode := fs.FileMode(0o755)
		if de, ok := p.dirs[missing[i]]; ok {
			mode = de.Mode.Perm()
		}
		full := filepath.Join(gdir, filepath.FromSlash(missing[i]))
		if err := os.Mkdir(full, 0o755); err != nil {
			return err
		}
		if err := os.Chmod(full, mode); err != nil {
			return err
		}
	}
	return nil
}

func stageEntry(e layer.Entry, target, previous string) error {
	switch e.Type {
	case layer.TypeDir:
		if err := os.Mkdir(target, 0o755); err != nil && !os.IsExist(err) {
			return err
		}
		return os.Chmod(target, e.Mode.Perm()|e.Mode&(fs.ModeSetgid|fs.ModeSticky))
	case layer.TypeSymlink:
		return os.Symlink(e.Linkname, target)
	}
	if e.Source == "" {
		if err := os.WriteFile(target, e.Data, 0o600); err != nil {
			return err
		}
		if err := os.Chmod(target, e.Mode); err != nil { // WriteFile's mode is masked by the umask
			return err
		}
		if fi, err := os.Stat(previous); err == nil && fi.Mode().IsRegular() && fi.Size() == int64(len(e.Data)) {
			if old, err := os.ReadFile(previous); err == nil && bytes.Equal(old, e.Data) {
				return os.Chtimes(target, fi.ModTime(), fi.ModTime())
			}
		}
		return nil
	}
	// a regular file or a second name of one: link the local file itself
	if err := os.Link(e.Source, target); err == nil {
		return nil
	}
	return copyFile(e.Source, target, previous)
}

// copyFile copies src to dst with src's mode and mtime, reusing the previous staged copy when
// src has not changed since (same size and mtime).
func copyFile(src, dst, previous string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if pf, err := os.Stat(previous); err == nil && pf.Size() == fi.Size() && pf.ModTime().Equal(fi.ModTime()) && pf.Mode() == fi.Mode() {
		if os.Link(previous, dst) == nil {
			return nil
		}
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if err := os.Chmod(dst, fi.Mode().Perm()); err != nil {
		return err
	}
	return os.Chtimes(dst, fi.ModTime(), fi.ModTime())
}
