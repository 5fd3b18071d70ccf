package buildkit_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/patternmatcher"

	"github.com/fairing-dev/fairing/internal/testenv"
	"github.com/fairing-dev/fairing/pkg/buildkit"
	"github.com/fairing-dev/fairing/pkg/layer"
)

// The generated Dockerfile's layers, in order: dependency files, large files, code, generated
// files; a code change rebuilds only the code layer, and an unchanged rebuild pushes nothing.
func TestGeneratedLayersAndCodeChange(t *testing.T) {
	addr := testenv.Need(t, envBuildkitAddr)
	reg := testenv.Registry(t)
	base := testenv.BusyboxBase(t)
	proxy := testenv.NewProxy(t, reg)
	conn := connect(t, addr)
	id := uniq(t)
	src := t.TempDir()
	writeFiles(t, src, map[string]string{
		"constraints.txt": "numpy==2.0.0 # " + id + "\n",
		"train.py":        "print('v1 " + id + "')\n",
		"lib/util.py":     "X = 1\n",
		"model.bin":       "weights " + id,
	})
	spec := &buildkit.Spec{
		Base: base,
		Env:  map[string]string{"MODE": "train"},
		Sources: []layer.Source{
			{Dest: "/app", Path: src, Ignore: ignore(t, "model.bin")},
			{Dest: "/app/model.bin", Path: filepath.Join(src, "model.bin"), Class: layer.ClassLarge},
			{Dest: "/app/fairing_main.py", Data: []byte("import train\n"), Class: layer.ClassTop},
		},
		Cmd:  []string{"python3", "/app/fairing_main.py"},
		User: "65534",
	}
	o := buildkit.Options{
		Spec:         spec,
		Annotations:  map[string]string{"org.opencontainers.image.revision": id},
		Destinations: dest(t, proxy.Addr()+"/"+testenv.Repo(t)+":1"),
		Progress:     buildkit.ProgressQuiet,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	first, err := conn.Build(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	img1 := pull(t, first.References[0].String())
	l1 := layerDigests(t, img1)
	baseLayers := len(layerDigests(t, pull(t, base)))
	// WORKDIR makes a layer (the directory /app) before the four groups
	if len(l1) != baseLayers+5 {
		t.Fatalf("%d layers, want the base's %d + workdir, deps, large, code, top:\n%s", len(l1), baseLayers, first.Dockerfile)
	}
	baseLayers++
	for i, want := range []string{"/app/constraints.txt", "/app/model.bin", "/app/train.py", "/app/fairing_main.py"} {
		files := layerFiles(t, img1, baseLayers+i)
		if !slices.Contains(files, want) {
			t.Errorf("layer %d lacks %s: %v", baseLayers+i, want, files)
		}
	}
	cf, err := img1.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if m, err := img1.Manifest(); err != nil || m.Annotations["org.opencontainers.image.revision"] != id {
		t.Errorf("manifest annotations %v (%v)", m.Annotations, err)
	}
	if cf.Config.User != "65534" {
		t.Errorf("config user %q, want 65534", cf.Config.User)
	}
	if cf.Config.WorkingDir != "/app" || !slices.Contains(cf.Config.Env, "FAIRING_RUNTIME=1") || !slices.Contains(cf.Config.Env, "MODE=train") ||
		strings.Join(cf.Config.Cmd, " ") != "python3 /app/fairing_main.py" {
		t.Errorf("config: workdir %q env %q cmd %q", cf.Config.WorkingDir, cf.Config.Env, cf.Config.Cmd)
	}
	if _, err := os.Stat(filepath.Join(src, "Dockerfile")); !os.IsNotExist(err) {
		t.Error("the generated Dockerfile was written into the user's folder")
	}

	// unchanged: same digest, no blob uploaded
	proxy.Reset()
	again, err := conn.Build(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if again.Digest != first.Digest {
		t.Errorf("unchanged rebuild: digest %s, first %s", again.Digest, first.Digest)
	}
	if n := len(proxy.Uploaded()); n != 0 {
		t.Errorf("unchanged rebuild uploaded %d blobs", n)
	}

	// a code change: only the code layer (and the config/manifest) change
	writeFiles(t, src, map[string]string{"train.py": "print('v2 " + id + "')\n"})
	proxy.Reset()
	second, err := conn.Build(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	l2 := layerDigests(t, pull(t, second.References[0].String()))
	for i := range l1 {
		changed := l1[i] != l2[i]
		if changed != (i == baseLayers+2) {
			t.Errorf("layer %d changed=%v after a code change (only the code layer %d should)", i, changed, baseLayers+2)
		}
	}
	// the code layer, the config: nothing else
	if n := len(proxy.Uploaded()); n != 2 {
		t.Errorf("code change uploaded %d blobs, want 2 (code layer + config)", n)
	}
	if s := step(t, second, "COPY --link 00-dependencies/"); !s.Cached {
		t.Errorf("dependency COPY not cached after a code change")
	}
}

// The same sources in two checkouts (other paths, other file times, other state dirs) give
// the same image digest: the copied files' times are the epoch in the layers.
func TestGeneratedReproducibleAcrossCheckouts(t *testing.T) {
	addr := testenv.Need(t, envBuildkitAddr)
	reg := testenv.Registry(t)
	base := testenv.BusyboxBase(t)
	conn := connect(t, addr)
	id := uniq(t)
	files := map[string]string{"train.py": "print('" + id + "')\n", "lib/util.py": "X = 1\n", "requirements.txt": "# none\n"}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var digests []string
	for i, mtime := range []time.Time{time.Unix(1500000000, 123), time.Now()} {
		src := t.TempDir()
		writeFiles(t, src, files)
		for p := range files {
			os.Chtimes(filepath.Join(src, p), mtime, mtime)
		}
		res, err := conn.Build(ctx, buildkit.Options{
			Spec: &buildkit.Spec{
				Base:         base,
				Requirements: []string{}, // nothing to install on busybox
				Sources:      []layer.Source{{Dest: "/app", Path: src}, {Dest: "/app/run.sh", Data: []byte("#!/bin/sh\n"), Mode: 0o755, Class: layer.ClassTop}},
				Cmd:          []string{"/app/run.sh"},
			},
			Destinations: dest(t, fmt.Sprintf("%s/%s:%d", reg, testenv.Repo(t), i)),
			Progress:     buildkit.ProgressQuiet,
		})
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, res.Digest.String())
		img := pull(t, res.References[0].String())
		ls, _ := img.Layers()
		for li, l := range ls[1:] { // the base's layer keeps its own times
			rc, _ := l.Uncompressed()
			tr := tar.NewReader(rc)
			for {
				h, err := tr.Next()
				if err != nil {
					break
				}
				if h.Typeflag == tar.TypeReg && !h.ModTime.Equal(time.Unix(0, 0)) {
					t.Errorf("layer %d: %s has mtime %v, want the epoch", li+1, h.Name, h.ModTime)
				}
			}
			rc.Close()
		}
	}
	if digests[0] != digests[1] {
		t.Errorf("two checkouts of the same sources gave %s and %s", digests[0], digests[1])
	}
}

// Secrets reach RUN --mount=type=secret and are not stored in the image.
func TestSecretNotInImage(t *testing.T) {
	addr := testenv.Need(t, envBuildkitAddr)
	reg := testenv.Registry(t)
	base := testenv.BusyboxBase(t)
	value := "s3cr3t-" + uniq(t)
	sf := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(sf, []byte(value), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FAIRING_TEST_TOKEN", value+"-env")
	dir := t.TempDir()
	// the step compares hashes: the Dockerfile (and so the image history) must not hold the value
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	writeFiles(t, dir, map[string]string{"Dockerfile": "FROM " + base + "\n" +
		"RUN --mount=type=secret,id=tok,required=true --mount=type=secret,id=envtok,required=true " +
		"sha256sum /run/secrets/tok | grep -q " + sum(value) + " && sha256sum /run/secrets/envtok | grep -q " + sum(value+"-env") + " && echo checked > /checked\n"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := connect(t, addr).Build(ctx, buildkit.Options{
		ContextDir:   dir,
		Secrets:      []string{"id=tok,src=" + sf, "id=envtok,env=FAIRING_TEST_TOKEN"},
		Destinations: dest(t, reg+"/"+testenv.Repo(t)+":1"),
		Progress:     buildkit.ProgressQuiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	img := pull(t, res.References[0].String())
	if got, ok := readFile(t, img, "/checked"); !ok || got != "checked\n" {
		t.Fatalf("the RUN step did not see the secrets: /checked = %q, %v", got, ok)
	}
	ls, _ := img.Layers()
	for i, l := range ls {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(value)) {
			t.Errorf("layer %d contains the secret", i)
		}
	}
	raw, _ := img.RawConfigFile()
	if bytes.Contains(raw, []byte(value)) {
		t.Error("the config contains the secret")
	}
}

func ignore(t *testing.T, patterns ...string) *patternmatcher.PatternMatcher {
	t.Helper()
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	return pm
}

// layerFiles lists the regular files of one layer, as absolute paths.
func layerFiles(t *testing.T, img v1.Image, i int) []string {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := ls[i].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out []string
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			out = append(out, "/"+strings.TrimPrefix(h.Name, "/"))
		}
	}
}
