package layer

import (
	"io/fs"
	"syscall"
)

func fillStat(e *Entry, fi fs.FileInfo) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return
	}
	e.dev, e.ino, e.nlink = uint64(st.Dev), st.Ino, uint32(st.Nlink)
	e.ctimeNs = st.Ctim.Nano()
}
