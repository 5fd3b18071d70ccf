package layer

import (
	"io/fs"
	"math"
	"path/filepath"
	"time"
)

// EntryType is the kind of a filesystem entry stored in a layer.
type EntryType byte

const (
	TypeFile EntryType = iota
	TypeDir
	TypeSymlink
	// TypeHardlink is a second name for a regular file stored earlier in the same layer.
	TypeHardlink
)

func (t EntryType) String() string {
	switch t {
	case TypeFile:
		return "file"
	case TypeDir:
		return "dir"
	case TypeSymlink:
		return "symlink"
	case TypeHardlink:
		return "hardlink"
	}
	return "unknown"
}

// Entry is one file, directory or link as it will appear in the image. A context of 100,000
// files holds 100,000 of them for the whole build, so it is kept small: where a file's content
// comes from is shared by every file of its source, not a path string per file.
type Entry struct {
	// Path is slash-separated, relative to the image root, cleaned, without a leading slash
	// ("app/train.py").
	Path string
	// src is where a regular file's content comes from, and a link's target (nil for
	// directories).
	src *origin
	// Size of a regular file's content.
	Size int64
	// local modification time (the tar writer clamps it), change time and inode, for the
	// stat cache and hard-link detection (the device is the origin's)
	mtimeNs, ctimeNs int64
	ino              uint64
	// content digest of a regular file, set by HashEntries
	digest [32]byte
	// Mode holds the permission bits plus setuid, setgid and sticky.
	Mode fs.FileMode
	Type EntryType
	// Class decides the layer the entry lands in.
	Class Class
	// hashed: digest is set (HashEntries, or the tar writer); fromStat: by the stat cache
	hashed, fromStat bool
	// hasMtime: mtimeNs is set (generated content and the destination directory have none)
	hasMtime bool
	// multiLink: the file has other names (more than one link), which may be in the context
	multiLink bool
}

// origin is where the content of regular files comes from: one per walked directory (a
// file's path there is the image path with the destination swapped for the directory), one
// per file named on its own, one per generated file.
type origin struct {
	// prefix + Path[strip:] (with the OS's separators) is the file in a walked directory.
	prefix string
	strip  int
	// file is a file named on its own.
	file string
	// data is generated content.
	data []byte
	// dev is the device of the files found there (a walk crossing a mount point has one
	// origin per device): one copy instead of one per file.
	dev uint64
	// link is a symlink's target, verbatim, or the first name of a hard link.
	link string
}

// followsLinks reports whether the file is opened through a symlink: only a file named on its
// own (naming a link means its content); one found in a walked folder was a regular file.
func (o *origin) followsLinks() bool { return o.file != "" }

func dirOrigin(prefix string, strip int) *origin { return &origin{prefix: prefix, strip: strip} }
func fileOrigin(file string) *origin             { return &origin{file: file} }
func dataOrigin(data []byte) *origin             { return &origin{data: data} }
func linkOrigin(target string) *origin           { return &origin{link: target} }

// withLink is o (nil for none) with the link target set to target.
func (o *origin) withLink(target string) *origin {
	c := &origin{}
	if o != nil {
		*c = *o
	}
	c.link = target
	return c
}

// withDev is o with the device set to dev.
func (o *origin) withDev(dev uint64) *origin {
	c := *o
	c.dev = dev
	return &c
}

// Linkname is a symlink's target, verbatim, or the first name of a hard link ("" for files
// and directories).
func (e *Entry) Linkname() string {
	if e.src == nil {
		return ""
	}
	return e.src.link
}

// dev is the device of a local file (0 otherwise).
func (e *Entry) dev() uint64 {
	if e.src == nil {
		return 0
	}
	return e.src.dev
}

// SourcePath is the local file holding a regular file's content ("" for generated content).
func (e *Entry) SourcePath() string {
	switch o := e.src; {
	case o == nil:
		return ""
	case o.file != "":
		return o.file
	case o.prefix != "":
		return o.prefix + filepath.FromSlash(e.Path[o.strip:])
	}
	return ""
}

// local reports whether the entry's content is read from a local file.
func (e *Entry) local() bool {
	return e.src != nil && (e.src.file != "" || e.src.prefix != "")
}

// Content is a generated file's content (nil for a local file).
func (e *Entry) Content() []byte {
	if e.src == nil {
		return nil
	}
	return e.src.data
}

// ModTime is the local modification time (zero for generated content).
func (e *Entry) ModTime() time.Time {
	if !e.hasMtime {
		return time.Time{}
	}
	return time.Unix(0, e.mtimeNs)
}

// setModTime keeps t in nanoseconds, saturated to what they can hold (years 1678 to 2262);
// the tar writer clamps later times to the epoch anyway.
func (e *Entry) setModTime(t time.Time) {
	e.hasMtime = !t.IsZero()
	switch {
	case !e.hasMtime:
		e.mtimeNs = 0
	case t.After(time.Unix(0, math.MaxInt64)):
		e.mtimeNs = math.MaxInt64
	case t.Before(time.Unix(0, math.MinInt64)):
		e.mtimeNs = math.MinInt64
	default:
		e.mtimeNs = t.UnixNano()
	}
}

// statKey is what the stat cache trusts: if none of it changed, the content did not either.
type statKey struct {
	Size    int64
	MtimeNs int64
	CtimeNs int64
	Ino     uint64
	Dev     uint64
	Mode    uint32
}

func (e *Entry) statKey() statKey {
	return statKey{
		Size:    e.Size,
		MtimeNs: e.mtimeNs,
		CtimeNs: e.ctimeNs,
		Ino:     e.ino,
		Dev:     e.dev(),
		Mode:    uint32(e.Mode),
	}
}
