// Package images tests fairing's own images, as `make images` (images/build.sh) built and pushed them in
// test/setup.d/40-images.sh: multi-platform indexes whose binaries are really built for each platform,
// images that run (as the non-root user where they should), and digests that a second build reproduces.
//
// They skip in -short mode, skip without the images, and fail without them when FAIRING_TEST_REAL=1.
package images

import (
	"archive/tar"
	"bufio"
	"debug/elf"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/fairing-dev/fairing/internal/testenv"
)

// images are the env variables 40-images.sh exports, by image name.
var images = map[string]string{
	"fairing-base":             "FAIRING_TEST_BASE_IMAGE",
	"fairing-builder":          "FAIRING_TEST_BUILDER_IMAGE",
	"fairing-submit":           "FAIRING_TEST_SUBMIT_IMAGE",
	"fairing-builder-buildkit": "FAIRING_TEST_BUILDKIT_IMAGE",
}

func index(t *testing.T, ref string) v1.ImageIndex {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(r)
	if err != nil {
		t.Fatalf("%s: %v", ref, err)
	}
	return idx
}

// Every image is an index of linux/amd64 and linux/arm64 whose programs are built for that platform
// (the ELF machine of each binary), and whose user is the one the recipe says.
func TestPlatforms(t *testing.T) {
	binaries := map[string][]string{
		"fairing-builder":          {"usr/local/bin/fairing-builder"},
		"fairing-submit":           {"usr/local/bin/fairing-submit"},
		"fairing-builder-buildkit": {"usr/local/bin/fairing-builder", "usr/local/bin/buildkitd", "usr/sbin/runc"},
		"fairing-base":             {"bin/busybox"},
	}
	machine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	for img, env := range images {
		t.Run(img, func(t *testing.T) {
			ref := testenv.Need(t, env)
			idx := index(t, ref)
			m, err := idx.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			var plats []string
			for _, d := range m.Manifests {
				plats = append(plats, d.Platform.String())
				child, err := idx.Image(d.Digest)
				if err != nil {
					t.Fatal(err)
				}
				cf, err := child.ConfigFile()
				if err != nil {
					t.Fatal(err)
				}
				if cf.Architecture != d.Platform.Architecture || cf.OS != "linux" {
					t.Errorf("%s: config says %s/%s", d.Platform, cf.OS, cf.Architecture)
				}
				wantUser := "65532:65532"
				if img == "fairing-builder-buildkit" {
					wantUser = "0:0"
				}
				if cf.Config.User != wantUser {
					t.Errorf("%s: user %q, want %q", d.Platform, cf.Config.User, wantUser)
				}
				for _, b := range binaries[img] {
					if got := elfMachine(t, child, b); got != machine[d.Platform.Architecture] {
						t.Errorf("%s: %s is built for %v", d.Platform, b, got)
					}
				}
			}
			if strings.Join(plats, " ") != "linux/amd64 linux/arm64" {
				t.Errorf("platforms %v, want linux/amd64 and linux/arm64", plats)
			}
		})
	}
}

// elfMachine reads the ELF header of the file at path in the image's (last) layer that holds it.
func elfMachine(t *testing.T, img v1.Image, path string) elf.Machine {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for i := len(layers) - 1; i >= 0; i-- {
		rc, err := layers[i].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimPrefix(h.Name, "./") != path {
				continue
			}
			head := make([]byte, 20)
			if _, err := io.ReadFull(tr, head); err != nil {
				t.Fatal(err)
			}
			rc.Close()
			if string(head[:4]) != elf.ELFMAG || head[elf.EI_DATA] != byte(elf.ELFDATA2LSB) {
				t.Fatalf("%s: not a little-endian ELF file", path)
			}
			return elf.Machine(binary.LittleEndian.Uint16(head[18:20])) // e_machine
		}
		rc.Close()
	}
	t.Fatalf("%s is in no layer", path)
	return 0
}

// The images run: the programs answer, the non-root images run as nonroot with a writable home,
// and the BuildKit image's runc finds the libraries it links.
func TestRun(t *testing.T) {
	for _, tc := range []struct {
		env  string
		args []string
		want string
	}{
		{"FAIRING_TEST_BUILDER_IMAGE", []string{"/usr/local/bin/fairing-builder", "version"}, "test\n"},
		{"FAIRING_TEST_BUILDER_IMAGE", []string{"sh", "-c", "id -u; touch $HOME/x && echo home writable"}, "65532\nhome writable\n"},
		{"FAIRING_TEST_SUBMIT_IMAGE", []string{"/usr/local/bin/fairing-submit", "run", "--dry-run", "--image", "r.example/app@sha256:" + strings.Repeat("a", 64), "--name", "x"}, "name: x\n"},
		{"FAIRING_TEST_BUILDKIT_IMAGE", []string{"sh", "-c", "id -u; runc --version | head -1; buildkitd --version | cut -d' ' -f1-2"}, "0\nrunc version 1.1.5+ds1\nbuildkitd github.com/moby/buildkit\n"},
	} {
		ref := testenv.Need(t, tc.env)
		out, code := testenv.RunImage(t, ref, testenv.WithArgs(tc.args...))
		if code != 0 || !strings.Contains(out, tc.want) {
			t.Errorf("%s %q: exit %d, output %q; want %q", tc.env, tc.args, code, out, tc.want)
		}
	}
}

// A second `make images` of the same tree, in another work folder with empty layer caches, gives the
// digests of the images the setup built.
func TestReproducible(t *testing.T) {
	reg := testenv.Registry(t)
	epoch := testenv.Need(t, "FAIRING_TEST_IMAGES_EPOCH")
	want := map[string]string{}
	for img, env := range images {
		want[img] = testenv.Need(t, env)
	}
	out := filepath.Join(t.TempDir(), "images.env")
	cmd := exec.Command("make", "-s", "images", "REGISTRY="+reg+"/fairing")
	cmd.Dir = "../.."
	// as test/setup.d/40-images.sh runs it
	cmd.Env = append(os.Environ(), "VERSION=test", "SOURCE_DATE_EPOCH="+epoch, "IMAGES_OUT="+out, "IMAGES_WORK="+t.TempDir())
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make images: %v\n%s", err, b)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		got[k] = v
	}
	for img, ref := range want {
		if got[img] != ref {
			t.Errorf("%s: the second build gave %s, the first %s (an edit of the tree since test/setup.d/40-images.sh ran changes them too)", img, got[img], ref)
		}
	}
}
