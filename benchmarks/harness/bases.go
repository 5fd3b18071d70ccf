package main

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const pathEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// busyboxTar is a root filesystem with Debian's static busybox as /bin/busybox and a few
// applets linked to it (the recipe in real-parts.md), as a deterministic tar.
func busyboxTar(busybox string) ([]byte, error) {
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("read %s (Debian's busybox-static): %w", busybox, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	hdr := func(h *tar.Header) error { h.ModTime, h.Format = epoch, tar.FormatPAX; return tw.WriteHeader(h) }
	for _, d := range []string{"bin/", "etc/", "root/", "tmp/"} {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		if err := hdr(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: mode}); err != nil {
			return nil, err
		}
	}
	if err := hdr(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(bin))}); err != nil {
		return nil, err
	}
	tw.Write(bin)
	for _, a := range []string{"cat", "echo", "env", "ls", "sh", "true"} {
		if err := hdr(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777}); err != nil {
			return nil, err
		}
	}
	passwd := []byte("root:x:0:0:root:/root:/bin/sh\n")
	if err := hdr(&tar.Header{Typeflag: tar.TypeReg, Name: "etc/passwd", Mode: 0o644, Size: int64(len(passwd))}); err != nil {
		return nil, err
	}
	tw.Write(passwd)
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// baseImage is an OCI image (linux/amd64) of one layer with PATH set.
func baseImage(layer v1.Layer, env []string, cmd []string) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: types.OCILayer, History: v1.History{CreatedBy: "fairing benchmark base", Created: v1.Time{Time: time.Unix(0, 0)}}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Env = env
	cf.Config.Cmd = cmd
	cf.Created = v1.Time{Time: time.Unix(0, 0)}
	return mutate.ConfigFile(img, cf)
}

// pushBases puts the suites' bases in the main registry: busybox for the main suite, the
// Debian python + pip layer for the deps suite.
func (b *bench) pushBases(ctx context.Context) error {
	b.bases = map[string]string{}
	tb, err := busyboxTar("/bin/busybox")
	if err != nil {
		return err
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(tb)), nil }, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return err
	}
	img, err := baseImage(l, []string{pathEnv}, []string{"/bin/sh"})
	if err != nil {
		return err
	}
	ref := b.reg.addr() + "/base/busybox:1"
	if err := pushImage(ctx, ref, img); err != nil {
		return err
	}
	b.bases["main"] = ref
	if b.cfg.PythonLayer != "" && contains(b.cfg.Suites, "deps") {
		l, err := tarball.LayerFromFile(b.cfg.PythonLayer, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return fmt.Errorf("python base layer %s: %w", b.cfg.PythonLayer, err)
		}
		img, err := baseImage(l, []string{pathEnv, "LANG=C.UTF-8"}, []string{"python3"})
		if err != nil {
			return err
		}
		ref := b.reg.addr() + "/base/python:bookworm"
		if err := pushImage(ctx, ref, img); err != nil {
			return err
		}
		b.bases["deps"] = ref
	}
	b.logf("bases: %v", b.bases)
	return nil
}

func pushImage(ctx context.Context, ref string, img v1.Image) error {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return err
	}
	if err := remote.Write(r, img, remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	return nil
}

// copyImage copies src to the same repository and tag on registry, and returns the new
// reference.
func copyImage(ctx context.Context, src, registry string) (string, error) {
	r, err := name.ParseReference(src, name.Insecure)
	if err != nil {
		return "", err
	}
	img, err := remote.Image(r, remote.WithContext(ctx))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", src, err)
	}
	dst := registry + "/" + r.Context().RepositoryStr() + ":" + r.Identifier()
	return dst, pushImage(ctx, dst, img)
}
