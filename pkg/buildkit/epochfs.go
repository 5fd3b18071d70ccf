package buildkit

import (
	"context"
	"encoding/binary"
	"hash/fnv"
	"io"
	"io/fs"

	"github.com/tonistiigi/fsutil"
	"github.com/tonistiigi/fsutil/types"
)

// epochFS presents a context with every modification time in the epoch's second, so the COPY
// layers of a generated Dockerfile are the same on every machine and for every checkout,
// without BuildKit's rewrite-timestamp re-writing each layer on every export.
//
// BuildKit's context transfer decides by size and modification time (nanoseconds) whether a
// file changed since the last build. So the nanoseconds are not zero: they are a hash of the
// real modification time, size, mode and link target, and change whenever those do. Layer
// tars keep whole seconds only (containerd's writer truncates), so the nanoseconds never reach
// the image.
type epochFS struct {
	fsutil.FS
	sec int64
}

func newEpochFS(inner fsutil.FS, epochSec int64) fsutil.FS {
	return &epochFS{FS: inner, sec: epochSec}
}

func (e *epochFS) Walk(ctx context.Context, target string, fn fs.WalkDirFunc) error {
	return e.FS.Walk(ctx, target, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d == nil {
			return fn(p, d, err)
		}
		fi, err := d.Info()
		if err != nil {
			return fn(p, d, err)
		}
		st, ok := fi.Sys().(*types.Stat)
		if !ok {
			return fn(p, d, nil)
		}
		st = st.Clone()
		st.ModTime = e.sec*1e9 + e.nanos(st)
		return fn(p, &fsutil.DirEntryInfo{Stat: st}, nil)
	})
}

// nanos is a change signal that fits below one second: 0 for directories (their entries are
// compared one by one), a hash of what the transfer compares for everything else.
func (e *epochFS) nanos(st *types.Stat) int64 {
	if fs.FileMode(st.Mode).IsDir() {
		return 0
	}
	h := fnv.New64a()
	var b [24]byte
	binary.LittleEndian.PutUint64(b[0:], uint64(st.ModTime))
	binary.LittleEndian.PutUint64(b[8:], uint64(st.Size))
	binary.LittleEndian.PutUint64(b[16:], uint64(st.Mode))
	h.Write(b[:])
	io.WriteString(h, st.Linkname)
	return int64(h.Sum64() % 1e9)
}
