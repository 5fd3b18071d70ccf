package layer

import (
	"fmt"
	"io"
	"io/fs"
	"syscall"

	"golang.org/x/sys/unix"
)

func fillStat(e *Entry, fi fs.FileInfo) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return
	}
	if e.src != nil && e.src.dev != uint64(st.Dev) {
		e.src = e.src.withDev(uint64(st.Dev))
	}
	e.ino, e.multiLink = st.Ino, st.Nlink > 1
	e.ctimeNs = st.Ctim.Nano()
}

// sourceFile is a context file open for reading. On Linux it is a bare descriptor: an
// os.File costs a poller registration attempt and its bookkeeping per file, as much as the
// open itself, and a rebuilt layer opens hundreds of small files.
type sourceFile struct{ fd int }

// openSource opens a regular file the walk found. O_NONBLOCK: a file swapped for a named pipe
// since is an error, not a build hanging on it. Without follow (a file found in a walked
// folder, never a link there), O_NOFOLLOW: a file swapped for a symlink is not read wherever
// the link points.
func openSource(p string, follow bool) (*sourceFile, error) {
	flags := unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NONBLOCK
	if !follow {
		flags |= unix.O_NOFOLLOW
	}
	for {
		fd, err := unix.Open(p, flags, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		return &sourceFile{fd: fd}, nil
	}
}

// openError explains why a file the walk found could not be opened.
func openError(p string, err error) error {
	switch err {
	case unix.ELOOP:
		return fmt.Errorf("%s: %w (it became a symlink): rerun the build once it is stable", p, ErrFileChanged)
	case unix.ENOENT:
		return fmt.Errorf("%s: %w (it was deleted): rerun the build once it is stable", p, ErrFileChanged)
	}
	return fmt.Errorf("cannot read %s: %w (fix its permissions or exclude it in .dockerignore)", p, err)
}

func (f *sourceFile) Read(b []byte) (int, error) {
	for {
		n, err := unix.Read(f.fd, b)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, err
		case n == 0 && len(b) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

func (f *sourceFile) Close() error { return unix.Close(f.fd) }

// statSince returns the file's size and whether its size, mtime and ctime are still those the
// walk saw. The ctime moves on every write, whatever is done to the mtime afterwards.
func (f *sourceFile) statSince(e *Entry) (int64, bool, error) {
	var st unix.Stat_t
	if err := unix.Fstat(f.fd, &st); err != nil {
		return 0, false, err
	}
	same := st.Size == e.Size && (!e.hasMtime || st.Mtim.Nano() == e.mtimeNs) && (e.ctimeNs == 0 || st.Ctim.Nano() == e.ctimeNs)
	return st.Size, same, nil
}
