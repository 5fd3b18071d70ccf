//go:build !linux

package layer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// Elsewhere the stat cache trusts size, mtime and mode only, and hard links are stored as copies.
func fillStat(e *Entry, fi fs.FileInfo) {}

// sourceFile is a context file open for reading.
type sourceFile struct{ *os.File }

func openSource(p string, follow bool) (*sourceFile, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, unwrapPathErr(err)
	}
	return &sourceFile{f}, nil
}

// openError explains why a file the walk found could not be opened.
func openError(p string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w (it was deleted): rerun the build once it is stable", p, ErrFileChanged)
	}
	return fmt.Errorf("cannot read %s: %w (fix its permissions or exclude it in .dockerignore)", p, err)
}

// statSince returns the file's size and whether its size and mtime are still those the walk saw.
func (f *sourceFile) statSince(e *Entry) (int64, bool, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, false, err
	}
	return fi.Size(), fi.Size() == e.Size && fi.ModTime().Equal(e.ModTime()), nil
}
