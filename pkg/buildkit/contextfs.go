package buildkit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/tonistiigi/fsutil"
	"github.com/tonistiigi/fsutil/types"

	"github.com/fairing-dev/fairing/pkg/layer"
)

// contextFS is the build context of a generated Dockerfile, served to BuildKit straight from
// the plan: one directory per layer group ("00-dependencies/app/requirements.txt",
// "01-source/app/train.py", ...), file contents read from the user's files or from memory.
// Nothing is staged on disk and nothing is written into the user's folder.
//
// Every time it presents is in the epoch's second, so the COPY layers are the same for every
// checkout and machine (layer tars keep whole seconds only), without BuildKit's
// rewrite-timestamp re-writing each layer on every export. BuildKit's context transfer decides
// by size and nanosecond modification time whether a file changed since the last build, so the
// nanoseconds carry a change signal: a hash of the file's real modification time, size and mode
// (of the content, for generated files).
type contextFS struct {
	nodes  []*ctxNode // in filepath.WalkDir order
	byPath map[string]*ctxNode
}

type ctxNode struct {
	stat *types.Stat
	src  string // local file to read
	data []byte // generated content
}

var _ fsutil.FS = (*contextFS)(nil)

// newContextFS lays out a plan's groups as the context of the generated Dockerfile.
func newContextFS(p *plan, epochSec int64) *contextFS {
	c := &contextFS{byPath: map[string]*ctxNode{}}
	base := epochSec * 1e9
	dir := func(p string, mode fs.FileMode) *ctxNode {
		if n, ok := c.byPath[p]; ok {
			n.stat.Mode = uint32(fs.ModeDir | mode)
			return n
		}
		n := &ctxNode{stat: &types.Stat{Path: p, Mode: uint32(fs.ModeDir | mode), ModTime: base}}
		c.add(n)
		return n
	}
	for _, g := range p.groups {
		dir(g.dir, 0o755)
		files := map[string]bool{} // image paths of regular files in this group
		for _, e := range g.entries {
			// parents, outermost first, with the modes the plan has for them
			var parents []string
			for d := path.Dir(e.Path); d != "." && d != "/"; d = path.Dir(d) {
				parents = append(parents, d)
			}
			for i := len(parents) - 1; i >= 0; i-- {
				if _, ok := c.byPath[g.dir+"/"+parents[i]]; ok {
					continue
				}
				mode := fs.FileMode(0o755)
				if de, ok := p.dirs[parents[i]]; ok {
					mode = de.Mode.Perm()
				}
				dir(g.dir+"/"+parents[i], mode)
			}
			np := g.dir + "/" + e.Path
			switch e.Type {
			case layer.TypeDir:
				dir(np, e.Mode.Perm()|e.Mode&(fs.ModeSetgid|fs.ModeSticky))
			case layer.TypeSymlink:
				c.add(&ctxNode{stat: &types.Stat{Path: np, Mode: uint32(fs.ModeSymlink | 0o777), Linkname: e.Linkname(),
					ModTime: base + nanos(e.ModTime().UnixNano(), 0, 0, e.Linkname())}})
			case layer.TypeHardlink:
				if files[e.Linkname()] {
					c.add(&ctxNode{stat: &types.Stat{Path: np, Mode: uint32(e.Mode), Linkname: g.dir + "/" + e.Linkname(), ModTime: base}})
					continue
				}
				fallthrough // the first name is in another layer: a copy here
			default:
				files[e.Path] = true
				n := &ctxNode{stat: &types.Stat{Path: np, Mode: uint32(e.Mode), Size: e.Size}, src: e.SourcePath(), data: e.Content()}
				if n.src == "" {
					sum := sha256.Sum256(n.data)
					n.stat.ModTime = base + nanos(0, int64(len(n.data)), 0, string(sum[:]))
				} else {
					n.stat.ModTime = base + nanos(e.ModTime().UnixNano(), e.Size, uint32(e.Mode), "")
				}
				c.add(n)
			}
		}
	}
	sort.Slice(c.nodes, func(i, j int) bool { return walkLess(c.nodes[i].stat.Path, c.nodes[j].stat.Path) })
	return c
}

// newFileFS is a context holding one generated file (the Dockerfile).
func newFileFS(name string, data []byte, epochSec int64) *contextFS {
	sum := sha256.Sum256(data)
	n := &ctxNode{stat: &types.Stat{Path: name, Mode: 0o644, Size: int64(len(data)),
		ModTime: epochSec*1e9 + nanos(0, int64(len(data)), 0, string(sum[:]))}, data: data}
	c := &contextFS{byPath: map[string]*ctxNode{}}
	c.add(n)
	return c
}

func (c *contextFS) add(n *ctxNode) {
	c.nodes = append(c.nodes, n)
	c.byPath[n.stat.Path] = n
}

// nanos is a change signal below one second: a hash of what identifies a version of a file.
func nanos(mtime, size int64, mode uint32, extra string) int64 {
	h := fnv.New64a()
	var b [20]byte
	binary.LittleEndian.PutUint64(b[0:], uint64(mtime))
	binary.LittleEndian.PutUint64(b[8:], uint64(size))
	binary.LittleEndian.PutUint32(b[16:], mode)
	h.Write(b[:])
	io.WriteString(h, extra)
	return int64(h.Sum64() % 1e9)
}

// walkLess orders paths as filepath.WalkDir visits them: component by component.
func walkLess(a, b string) bool {
	for {
		ai, bi := strings.IndexByte(a, '/'), strings.IndexByte(b, '/')
		ac, bc := a, b
		if ai >= 0 {
			ac = a[:ai]
		}
		if bi >= 0 {
			bc = b[:bi]
		}
		if ac != bc {
			return ac < bc
		}
		if ai < 0 || bi < 0 {
			return ai < 0 && bi >= 0 // a parent before its children
		}
		a, b = a[ai+1:], b[bi+1:]
	}
}

// Walk visits the context (or the subtree at target) in WalkDir order.
func (c *contextFS) Walk(ctx context.Context, target string, fn fs.WalkDirFunc) error {
	target = strings.Trim(filepath.ToSlash(target), "/")
	if target == "." {
		target = ""
	}
	skip := ""
	for _, n := range c.nodes {
		p := n.stat.Path
		if target != "" && p != target && !strings.HasPrefix(p, target+"/") {
			continue
		}
		if skip != "" && strings.HasPrefix(p, skip) {
			continue
		}
		skip = ""
		if err := ctx.Err(); err != nil {
			return err
		}
		err := fn(p, &fsutil.DirEntryInfo{Stat: n.stat.Clone()}, nil)
		switch {
		case err == fs.SkipDir && fs.FileMode(n.stat.Mode).IsDir():
			skip = p + "/"
		case err == fs.SkipDir: // on a file: skip the rest of its directory
			if d := path.Dir(p); d != "." {
				skip = d + "/"
			} else {
				return nil
			}
		case err == fs.SkipAll:
			return nil
		case err != nil:
			return err
		}
	}
	return nil
}

// Open reads a file of the context.
func (c *contextFS) Open(p string) (io.ReadCloser, error) {
	n, ok := c.byPath[strings.TrimPrefix(filepath.ToSlash(p), "/")]
	if !ok || !fs.FileMode(n.stat.Mode).IsRegular() {
		return nil, &os.PathError{Op: "open", Path: p, Err: os.ErrNotExist}
	}
	if n.src == "" {
		return io.NopCloser(bytes.NewReader(n.data)), nil
	}
	f, err := os.Open(n.src)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", n.src, err)
	}
	return f, nil
}
