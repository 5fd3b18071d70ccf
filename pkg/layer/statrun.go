package layer

import (
	"bufio"
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
	n, learned := c.kept(side)
	return c.write(n+r.remembered, learned || r.learned, hits, func(put putRecord) error {
		if err := r.w.Flush(); err != nil {
			return fmt.Errorf("write stat cache run: %w", err)
		}
		if _, err := r.f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		in := &StatCache{r: bufio.NewReaderSize(r.f, 64<<10), count: r.n}
		in.next()
		for si := 0; in.ok || si < len(side); {
			switch e := sideAt(side, si); {
			case e != nil && !c.remembers(e):
				si++
			case e != nil && (!in.ok || e.Path < string(in.path)):
				if err := put(e.Path, e.statKey(), &e.digest); err != nil {
					return err
				}
				si++
			default:
				if err := put(string(in.path), in.k, &in.digest); err != nil {
					return err
				}
				in.next()
			}
		}
		if in.read != r.n {
			return fmt.Errorf("stat cache run: read back %d of %d records", in.read, r.n)
		}
		return nil
	})
}

func sideAt(side []Entry, i int) *Entry {
	if i < len(side) {
		return &side[i]
	}
	return nil
}
