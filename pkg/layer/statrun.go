package layer

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// statRun holds, in path order, the stat cache records of a streamed build's source entries
// in a temporary file while their layers are made and their entries let go; they are merged
// with the few entries built on the side (statRun.save) once every layer is made.
type statRun struct {
	c    *StatCache
	f    *os.File
	w    *bufio.Writer
	prev string
	n    int
	buf  []byte
	// remembered counts the entries kept; learned is set when one of them was not known.
	remembered int
	learned    bool
}

// newRun starts a run for c's next version ("" file: a run that keeps nothing).
func (c *StatCache) newRun() (*statRun, error) {
	r := &statRun{c: c}
	if c.file == "" {
		return r, nil
	}
	dir := c.tmpDir
	if dir == "" {
		dir = filepath.Dir(c.file)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, ".run-"+filepath.Base(c.file)+"-*")
	if err != nil {
		return nil, err
	}
	r.f, r.w = f, bufio.NewWriterSize(f, 64<<10)
	return r, nil
}

// add records e (in path order after the previous one) if the cache keeps it.
func (r *statRun) add(e *Entry) error {
	if !r.c.remembers(e) {
		return nil
	}
	r.remembered++
	r.learned = r.learned || !e.fromStat
	if r.f == nil {
		return nil
	}
	r.buf = appendStatRecord(r.buf[:0], r.prev, e.Path, e.statKey(), &e.digest)
	if _, err := r.w.Write(r.buf); err != nil {
		return fmt.Errorf("write stat cache run: %w", err)
	}
	r.prev = e.Path
	r.n++
	return nil
}

// discard removes the run's file.
func (r *statRun) discard() {
	if r.f != nil {
		r.f.Close()
		os.Remove(r.f.Name())
		r.f = nil
	}
}

// save writes the stat cache from the run merged with side (in path order; only the entries
// the cache keeps are written), atomically; hits is how many lookups matched, over every
// cursor the build read the old file with. The file is left alone when it would say the same.
func (r *statRun) save(side []Entry, hits int) error {
	defer r.discard()
	c := r.c
	c.Close()
	if c.file == "" || r.f == nil {
		return nil
	}
	n := r.remembered
	learned := r.learned
	for i := range side {
		if e := &side[i]; c.remembers(e) {
			n++
			learned = learned || !e.fromStat
		}
	}
	if !learned && n == hits && hits == c.count {
		return nil
	}
	if err := r.w.Flush(); err != nil {
		return fmt.Errorf("write stat cache run: %w", err)
	}
	if _, err := r.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	in := &StatCache{r: bufio.NewReaderSize(r.f, 64<<10), count: r.n}
	in.next()
	head := append([]byte(statCacheMagic), make([]byte, 8)...)
	head = binary.AppendUvarint(binary.AppendUvarint(head, uint64(n)), uint64(c.entries))
	var size int64
	return writeFileAtomicAt(c.file, c.tmpDir, func(w io.Writer) error {
		if _, err := w.Write(head); err != nil {
			return err
		}
		size = int64(len(head))
		var buf []byte
		prev := ""
		put := func(p string, k statKey, d *[32]byte) error {
			buf = appendStatRecord(buf[:0], prev, p, k, d)
			size += int64(len(buf))
			prev = p
			_, err := w.Write(buf)
			return err
		}
		si := 0
		for in.ok || si < len(side) {
			if si < len(side) && !c.remembers(&side[si]) {
				si++
				continue
			}
			if si < len(side) && (!in.ok || side[si].Path < string(in.path)) {
				e := &side[si]
				if err := put(e.Path, e.statKey(), &e.digest); err != nil {
					return err
				}
				si++
				continue
			}
			if err := put(string(in.path), in.k, &in.digest); err != nil {
				return err
			}
			in.next()
		}
		if in.read != r.n {
			return fmt.Errorf("stat cache run: read back %d of %d records", in.read, r.n)
		}
		return nil
	}, func(f *os.File) error {
		// the file's own size: a torn file is known at open
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], uint64(size))
		_, err := f.WriteAt(b[:], int64(len(statCacheMagic)))
		return err
	})
}
