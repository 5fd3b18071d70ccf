// Command pushimages pushes the pod sandbox image the test cluster needs to the test registry,
// reproducibly (same pause binary, same digest), and prints PAUSE=REF@DIGEST:
//
//	REGISTRY/k8s/pause:3.10.2   the pause program built from the k8s module (containerd's pinned sandbox image)
//
// Used by test/setup.d/50-kubernetes.sh. The busybox image the tests run comes from 20-bases.sh.
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"

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
	flag.Parse()
	if err := run(*reg, *pause); err != nil {
		fmt.Fprintln(os.Stderr, "pushimages:", err)
		os.Exit(1)
	}
}

type file struct {
	name string
	mode int64
	data []byte
}

func layer(files []file) (v1.Layer, error) {
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, Format: tar.FormatPAX, Typeflag: tar.TypeReg, Size: int64(len(f.data))}
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

func run(reg, pausePath string) error {
	if reg == "" || pausePath == "" {
		return fmt.Errorf("usage: pushimages -registry HOST:PORT -pause PATH")
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
	return nil
}
