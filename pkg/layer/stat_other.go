//go:build !linux

package layer

import (
	"io/fs"
	"os"
)

// Elsewhere the stat cache trusts size, mtime and mode only, and hard links are stored as copies.
func fillStat(e *Entry, fi fs.FileInfo) {}

// sourceFile is a context file open for reading.
type sourceFile struct{ *os.File }

func openSource(p string) (*sourceFile, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, unwrapPathErr(err)
	}
	return &sourceFile{f}, nil
}

// statSince returns the file's size and whether its size and mtime are still those the walk saw.
func (f *sourceFile) statSince(e *Entry) (int64, bool, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, false, err
	}
	return fi.Size(), fi.Size() == e.Size && fi.ModTime().Equal(e.ModTime()), nil
}
