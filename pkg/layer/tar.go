package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"sync"
	"time"

	"github.com/zeebo/blake3"
)

// TarOptions are the knobs of the deterministic tar writer; all are part of a layer's key.
type TarOptions struct {
	// Epoch clamps modification times: a later time becomes Epoch (SOURCE_DATE_EPOCH
	// semantics). The zero value means the Unix epoch, so every mtime is 0.
	Epoch time.Time
	// UID and GID own every entry (0 by default, as --chown changes).
	UID, GID int
}

func (o TarOptions) clamp(t time.Time) time.Time {
	epoch := o.Epoch
	if epoch.IsZero() {
		epoch = time.Unix(0, 0)
	}
	if t.IsZero() || t.After(epoch) {
		return epoch.UTC().Truncate(time.Second)
	}
	return t.UTC().Truncate(time.Second)
}

// header is the tar header of an entry: sorted input, explicit parents, numeric owner with
// empty names, kept modes, clamped mtimes, no atime/ctime, PAX only when a field needs it.
func (o TarOptions) header(e *Entry) *tar.Header {
	h := &tar.Header{
		Name:    e.Path,
		Mode:    tarMode(e.Mode),
		Uid:     o.UID,
		Gid:     o.GID,
		ModTime: o.clamp(e.ModTime()),
	}
	switch e.Type {
	case TypeDir:
		h.Typeflag = tar.TypeDir
		h.Name += "/"
	case TypeFile:
		h.Typeflag = tar.TypeReg
		h.Size = e.Size
	case TypeSymlink:
		h.Typeflag = tar.TypeSymlink
		h.Linkname = e.Linkname()
	case TypeHardlink:
		h.Typeflag = tar.TypeLink
		h.Linkname = e.Linkname()
	}
	return h
}

func tarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// writeTar writes entries (already complete: parents included, sorted) as a tar stream. Every
// file is checked against what its layer key was computed from (its stat data, and its content
// when its digest was taken in this build), so a file that changed after hashing can never be
// cached under the old key.
func writeTar(ctx context.Context, w io.Writer, entries []Entry, o TarOptions) error {
	tw := tar.NewWriter(w)
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	for i := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		e := &entries[i]
		if err := tw.WriteHeader(o.header(e)); err != nil {
			return fmt.Errorf("write tar header for /%s: %w", e.Path, err)
		}
		if e.Type != TypeFile {
			continue
		}
		if err := writeContent(ctx, tw, e, *buf); err != nil {
			return err
		}
	}
	return tw.Close()
}

func writeContent(ctx context.Context, tw *tar.Writer, e *Entry, buf []byte) error {
	var dst io.Writer = tw
	var h *blake3.Hasher
	// A digest from the stat cache is trusted as the stat cache is: by stat data, which the
	// read below is checked against (a write moves the ctime). Hashing the file again as it is
	// read only guards a digest taken in this build, where a write could land within one
	// timestamp tick of the walk.
	check := !e.fromStat
	if check {
		h = getContentHasher()
		defer putContentHasher(h)
		dst = io.MultiWriter(tw, h)
	}
	if !e.local() {
		if _, err := io.CopyBuffer(dst, bytes.NewReader(e.Content()), buf); err != nil {
			return fmt.Errorf("write /%s: %w", e.Path, err)
		}
	} else {
		p := e.SourcePath()
		f, err := openSource(p, e.src.followsLinks())
		if err != nil {
			return openError(p, err)
		}
		defer f.Close()
		// Never more than the header promised: a file that grew is caught below.
		src := &readErr{r: io.LimitReader(ctxReader{ctx, f}, e.Size)}
		n, err := io.CopyBuffer(dst, src, buf)
		if err != nil {
			if src.err != nil {
				return fmt.Errorf("read %s: %w", p, unwrapPathErr(err))
			}
			// the layer's side failed (a full cache disk): not the file's fault
			return fmt.Errorf("write /%s: %w", e.Path, err)
		}
		if err := checkUnchanged(f, p, e, n); err != nil {
			return err
		}
	}
	if !check {
		return nil
	}
	var got [32]byte
	sumInto(h, &got)
	return e.checkDigest(got)
}

// checkDigest compares content just read with the digest the entry's layer key was computed
// from; an entry not hashed yet takes it.
func (e *Entry) checkDigest(got [32]byte) error {
	if !e.hashed {
		// hashed here for the first time (a build with nothing to reuse): the key follows
		e.digest, e.hashed = got, true
	} else if got != e.digest {
		return fmt.Errorf("%s: %w (content differs from when it was hashed): rerun the build once it is stable", e.SourcePath(), ErrFileChanged)
	}
	return nil
}

// readErr remembers a read error, to tell it from a write error after io.Copy.
type readErr struct {
	r   io.Reader
	err error
}

func (r *readErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}
