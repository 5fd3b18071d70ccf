// Command pushimages pushes the images the test cluster and the submit tests need to the test
// registry, reproducibly (same inputs, same digests), and prints NAME=REF@DIGEST lines:
//
//	PAUSE    REGISTRY/k8s/pause:3.10.2            the pod sandbox image (containerd's pinned sandbox image)
//	BUSYBOX  REGISTRY/fairing-test/busybox:1      Debian's busybox-static with every applet linked
//
// Used by test/setup.d/50-kubernetes.sh. (To be merged with internal/testenv's busybox base.)
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func main() {
	reg := flag.String("registry", "", "registry host:port")
	pause := flag.String("pause", "", "path of the static pause binary")
	busybox := flag.String("busybox", "/bin/busybox", "path of a static busybox")
	flag.Parse()
	if err := run(*reg, *pause, *busybox); err != nil {
		fmt.Fprintln(os.Stderr, "pushimages:", err)
		os.Exit(1)
	}
}

type file struct {
	name, link string
	mode       int64
	data       []byte
	dir        bool
}

func layer(files []file) (v1.Layer, error) {
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, Format: tar.FormatPAX}
		switch {
		case f.dir:
			h.Typeflag = tar.TypeDir
		case f.link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, f.link
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}

func push(ref string, l v1.Layer, cfg v1.Config) (string, error) {
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return "", err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return "", err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Config = "linux", "amd64", cfg
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return "", err
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", err
	}
	if err := remote.Write(r, img); err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return r.Context().String() + "@" + d.String(), nil
}

func run(reg, pausePath, busyboxPath string) error {
	if reg == "" || pausePath == "" {
		return fmt.Errorf("usage: pushimages -registry HOST:PORT -pause PATH [-busybox PATH]")
	}
	pause, err := os.ReadFile(pausePath)
	if err != nil {
		return err
	}
	pl, err := layer([]file{{name: "pause", mode: 0o755, data: pause}})
	if err != nil {
		return err
	}
	pref, err := push(reg+"/k8s/pause:3.10.2", pl, v1.Config{Entrypoint: []string{"/pause"}, User: "65535:65535"})
	if err != nil {
		return err
	}
	fmt.Println("PAUSE=" + pref)

	bb, err := os.ReadFile(busyboxPath)
	if err != nil {
		return fmt.Errorf("%w (install Debian's busybox-static)", err)
	}
	out, err := exec.Command(busyboxPath, "--list").Output()
	if err != nil {
		return fmt.Errorf("%s --list: %w", busyboxPath, err)
	}
	files := []file{
		{name: "bin", dir: true, mode: 0o755}, {name: "tmp", dir: true, mode: 0o1777}, {name: "etc", dir: true, mode: 0o755},
		{name: "root", dir: true, mode: 0o700}, {name: "bin/busybox", mode: 0o755, data: bb},
		{name: "etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")},
		{name: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnogroup:x:65534:\n")},
	}
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" && !strings.Contains(a, "/") {
			files = append(files, file{name: "bin/" + a, link: "busybox", mode: 0o777})
		}
	}
	bl, err := layer(files)
	if err != nil {
		return err
	}
	bref, err := push(reg+"/fairing-test/busybox:1", bl, v1.Config{
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, Cmd: []string{"/bin/sh"}})
	if err != nil {
		return err
	}
	fmt.Println("BUSYBOX=" + bref)
	return nil
}
