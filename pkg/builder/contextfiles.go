package builder

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/fairing-dev/fairing/pkg/contextimage"
	"github.com/fairing-dev/fairing/pkg/layer"
)

// ContextDependencies reads the dependency files a context artifact (o.ContextRef) records, from
// its manifest and config only: a builder that appends the layers never needs more.
func ContextDependencies(ctx context.Context, o Options) ([]string, error) {
	c, err := contextimage.Fetch(ctx, o.ContextRef, o.Registry)
	if err != nil {
		return nil, err
	}
	return c.Meta.Dependencies, nil
}

// MaterializeContext writes the files of the context artifact o.ContextRef into dir (which must
// exist, empty) and makes them o's sources, with the command, environment and working directory
// the artifact records: for a builder that needs the files themselves (BuildKit copies them, and
// installs what the dependency files name). Unlike the append path, this downloads the layers.
// Nothing is written outside dir, whatever the layers hold.
func MaterializeContext(ctx context.Context, o *Options, dir string) error {
	c, err := contextimage.Fetch(ctx, o.ContextRef, o.Registry)
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("unpack the build context: %w", err)
	}
	defer root.Close()
	rc := mutate.Extract(c.Image)
	defer rc.Close()
	if err := untar(ctx, rc, root); err != nil {
		return fmt.Errorf("unpack the build context %s: %w", o.ContextRef, err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	o.Sources = nil
	for _, e := range ents {
		o.Sources = append(o.Sources, layer.Source{Dest: "/" + e.Name(), Path: filepath.Join(dir, e.Name())})
	}
	o.useMeta(c.Meta)
	o.ContextRef = ""
	return nil
}

// untar writes a tar stream's directories, files, symlinks and hard links into root (modes kept,
// owners and times not: the builders set their own).
func untar(ctx context.Context, r io.Reader, root *os.Root) error {
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "/"))
		if name == "." {
			continue
		}
		if !filepath.IsLocal(name) {
			return fmt.Errorf("entry %q leaves the context", h.Name)
		}
		if d := path.Dir(name); d != "." {
			if err := root.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		mode := os.FileMode(h.Mode).Perm()
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return err
			}
			if err := root.Chmod(name, mode|0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			f, err := root.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			if err := root.Chmod(name, mode); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := root.Symlink(h.Linkname, name); err != nil {
				return err
			}
		case tar.TypeLink:
			target := path.Clean(strings.TrimPrefix(h.Linkname, "/"))
			if !filepath.IsLocal(target) {
				return fmt.Errorf("hard link %q leaves the context", h.Name)
			}
			if err := root.Link(target, name); err != nil {
				return err
			}
		default:
			return fmt.Errorf("entry %q: unsupported type %q", h.Name, h.Typeflag)
		}
	}
}
