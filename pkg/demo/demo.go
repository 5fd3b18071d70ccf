// Package demo shows the builder end to end with nothing installed: it starts a registry on
// 127.0.0.1, pushes a small base image it makes itself, and builds a project onto it three
// times (cold, unchanged, one file edited) so the incremental behaviour is visible.
package demo

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/fairing-dev/fairing/pkg/build"
	"github.com/fairing-dev/fairing/pkg/builder"
	"github.com/fairing-dev/fairing/pkg/layer"
)

// Options for Run.
type Options struct {
	// Context is the project to build (default examples/hello).
	Context string
	Out     io.Writer
}

// Run performs the demo and prints what each build did.
func Run(ctx context.Context, o Options) error {
	work, err := os.MkdirTemp("", "fairing-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	blobs := filepath.Join(work, "registry")
	os.MkdirAll(blobs, 0o755)
	srv := &http.Server{Handler: ggcrregistry.New(
		ggcrregistry.Logger(log.New(io.Discard, "", 0)),
		ggcrregistry.WithBlobHandler(ggcrregistry.NewDiskBlobHandler(blobs)),
	)}
	go srv.Serve(l)
	defer srv.Close()
	reg := l.Addr().String()
	fmt.Fprintf(o.Out, "registry: started on %s (in this process)\n", reg)

	base := reg + "/demo/base:1"
	if err := pushBase(ctx, base); err != nil {
		return fmt.Errorf("push demo base: %w", err)
	}
	fmt.Fprintf(o.Out, "base:     %s (made here: one small layer, linux/amd64)\n", base)

	// Work on a copy, so the demo's edit never touches the repository.
	project := filepath.Join(work, "project")
	if err := copyTree(o.Context, project); err != nil {
		return fmt.Errorf("copy %s: %w", o.Context, err)
	}
	dest := reg + "/demo/hello:latest"
	opts := builder.Options{
		Sources:      []layer.Source{{Dest: "/app", Path: project}},
		Base:         base,
		Destinations: []string{dest},
		Config:       build.Config{WorkingDir: "/app", Cmd: []string{"python3", "/app/train.py"}},
		CacheDir:     filepath.Join(work, "cache"),
	}
	if opts.Sources[0].Ignore, err = layer.ReadIgnoreFile(filepath.Join(project, ".dockerignore")); err != nil {
		return err
	}
	run := func(title string) (*builder.Report, error) {
		start := time.Now()
		rep, err := builder.Run(ctx, opts)
		if err != nil {
			return nil, err
		}
		cached := 0
		for _, l := range rep.Layers {
			if l.Cached {
				cached++
			}
		}
		fmt.Fprintf(o.Out, "\n%s: %s\n  %d files → %d layers (%d reused from the cache), %d blobs pushed (%d bytes), %d mounted, %d already in the registry, %s\n  %s\n",
			title, time.Since(start).Round(time.Millisecond), rep.Entries, len(rep.Layers), cached,
			len(rep.Pushed), rep.BytesUploaded, len(rep.Mounted), len(rep.Skipped), "manifests written: "+fmt.Sprint(len(rep.Manifests)), rep.Reference)
		return rep, nil
	}
	if _, err := run("build 1 (cold cache, empty repository)"); err != nil {
		return err
	}
	if _, err := run("build 2 (nothing changed)"); err != nil {
		return err
	}
	f := filepath.Join(project, "train.py")
	b, err := os.ReadFile(f)
	if err != nil {
		return err
	}
	if err := os.WriteFile(f, append(b, []byte("print('edited')\n")...), 0o644); err != nil {
		return err
	}
	rep, err := run("build 3 (train.py edited)")
	if err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "\ndigest: %s\n%s\n", rep.Digest, rep.Reference)
	return nil
}

func pushBase(ctx context.Context, ref string) error {
	r, err := name.ParseReference(ref)
	if err != nil {
		return err
	}
	content := []byte("NAME=\"fairing demo base\"\n")
	lay, err := tarLayer("etc/os-release", content)
	if err != nil {
		return err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: lay, MediaType: types.OCILayer})
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	return remote.Write(r, img, remote.WithContext(ctx))
}

// tarLayer makes a one-file gzip layer with the project's own deterministic writer.
func tarLayer(p string, content []byte) (v1.Layer, error) {
	dir, err := os.MkdirTemp("", "fairing-demo-base-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	res, err := layer.Make(context.Background(), []layer.Source{{Dest: "/" + p, Data: content}}, dir, layer.Options{}, layer.PlanOptions{})
	if err != nil {
		return nil, err
	}
	rc, err := res.Layers[0].Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, err
	}
	return static.NewLayer(b, types.OCILayer), nil
}

func copyTree(src, dst string) error {
	return filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, fi.Mode().Perm())
	})
}
