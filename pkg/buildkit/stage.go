package buildkit

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// stage writes p's paths into dir as the build context of the generated Dockerfile: each layer
// group in a directory of its own (dir/deps/app/requirements.txt, dir/code/app/train.py, ...).
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
	for _, g := range groupDirs {
		if err := os.MkdirAll(filepath.Join(next, g), 0o755); err != nil {
			return err
		}
	}
	for _, e := range p.entries {
		rel := filepath.Join(groupDirs[e.group], filepath.FromSlash(e.dest))
		if err := stageEntry(e, filepath.Join(next, rel), filepath.Join(dir, rel)); err != nil {
			return fmt.Errorf("stage %s: %w", e.dest, err)
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

func stageEntry(e entry, target, previous string) error {
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	switch {
	case e.src == "":
		if err := os.WriteFile(target, e.data, e.mode.Perm()); err != nil {
			return err
		}
		if err := os.Chmod(target, e.mode.Perm()); err != nil { // WriteFile's mode is masked by the umask
			return err
		}
		if fi, err := os.Stat(previous); err == nil && fi.Mode().IsRegular() && fi.Size() == int64(len(e.data)) {
			if old, err := os.ReadFile(previous); err == nil && bytes.Equal(old, e.data) {
				return os.Chtimes(target, fi.ModTime(), fi.ModTime())
			}
		}
		return nil
	case e.mode.IsDir():
		if err := os.MkdirAll(target, 0o755); err != nil {
			return err
		}
		return os.Chmod(target, e.mode.Perm())
	case e.link != "":
		return os.Symlink(e.link, target)
	default:
		if err := os.Link(e.src, target); err == nil {
			return nil
		}
		return copyFile(e.src, target, previous)
	}
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
