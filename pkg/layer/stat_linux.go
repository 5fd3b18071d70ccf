package layer

import (
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

func fillStat(e *Entry, fi fs.FileInfo) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return
	}
	e.dev, e.ino, e.nlink = uint64(st.Dev), st.Ino, uint32(st.Nlink)
	e.ctimeNs = st.Ctim.Nano()
}

// statSince returns f's size and whether its size, mtime and ctime are still those the walk
// saw. The ctime moves on every write, whatever is done to the mtime afterwards.
func statSince(f *os.File, e *Entry) (int64, bool, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return 0, false, err
	}
	same := st.Size == e.Size && (!e.hasMtime || st.Mtim.Nano() == e.mtimeNs) && (e.ctimeNs == 0 || st.Ctim.Nano() == e.ctimeNs)
	return st.Size, same, nil
}
