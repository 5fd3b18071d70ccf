package layer

import (
	"io/fs"
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

// Entry is one file, directory or link as it will appear in the image.
type Entry struct {
	// Path is slash-separated, relative to the image root, cleaned, without a leading slash
	// ("app/train.py").
	Path string
	Type EntryType
	// Class decides the layer the entry lands in.
	Class Class
	// hashed: digest is set (HashEntries, or the tar writer); fromStat: by the stat cache
	hashed, fromStat bool
	// Mode holds the permission bits plus setuid, setgid and sticky.
	Mode fs.FileMode
	// Size of a regular file's content.
	Size int64
	// Linkname is a symlink's target, verbatim.
	Linkname string
	// Source is the local file holding a regular file's content ("" for generated content).
	Source string
	// Data is generated content for a regular file without Source.
	Data []byte
	// ModTime is the local modification time; the tar writer clamps it.
	ModTime time.Time

	// identity of the local file, for the stat cache and hard-link detection
	dev, ino, nlink uint64
	ctimeNs         int64

	// content digest of a regular file, set by HashEntries
	digest [32]byte
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
		MtimeNs: e.ModTime.UnixNano(),
		CtimeNs: e.ctimeNs,
		Ino:     e.ino,
		Dev:     e.dev,
		Mode:    uint32(e.Mode),
	}
}
