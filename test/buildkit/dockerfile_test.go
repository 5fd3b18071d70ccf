package buildkit_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/fairing-dev/fairing/internal/testenv"
	"github.com/fairing-dev/fairing/pkg/buildkit"
	"github.com/fairing-dev/fairing/pkg/publish"
)

// A user's Dockerfile with a RUN step and a .dockerignore, exported to the registry, an OCI
// layout and a docker tarball: one digest everywhere, and the pushed image holds what the
// steps made and not what .dockerignore excludes.
func TestUserDockerfileAllDestinations(t *testing.T) {
	addr := testenv.Need(t, envBuildkitAddr)
	reg := testenv.Registry(t)
	base := testenv.BusyboxBase(t)
	id := uniq(t)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"Dockerfile":    "FROM " + base + "\nARG GREETING\nCOPY . /ctx/\nRUN echo \"$GREETING " + id + "\" > /made.txt\nCMD [\"cat\", \"/made.txt\"]\n",
		"keep.txt":      "kept\n",
		"secret.env":    "TOKEN=do-not-ship\n",
		".dockerignore": "secret.env\n",
	})
	out := t.TempDir()
	repo := reg + "/" + testenv.Repo(t)
	var dests []publish.Destination
	for _, s := range []string{repo + ":1", "oci:" + filepath.Join(out, "layout") + ":v1", "tar:" + filepath.Join(out, "image.tar")} {
		dests = append(dests, dest(t, s)...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := connect(t, addr).Build(ctx, buildkit.Options{
		ContextDir:   dir,
		BuildArgs:    map[string]string{"GREETING": "hello"},
		Destinations: dests,
		Progress:     buildkit.ProgressPlain,
		ProgressOut:  testWriter{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.References) != 1 || !strings.HasPrefix(res.References[0].String(), repo+"@sha256:") {
		t.Fatalf("references = %v", res.References)
	}
	img := pull(t, res.References[0].String())
	if got, ok := readFile(t, img, "/made.txt"); !ok || got != "hello "+id+"\n" {
		t.Errorf("/made.txt = %q, %v", got, ok)
	}
	if out, code := testenv.RunImage(t, res.References[0].String()); code != 0 || out != "hello "+id+"\n" {
		t.Errorf("the image ran and printed %q (exit %d)", out, code)
	}
	if got, ok := readFile(t, img, "/ctx/keep.txt"); !ok || got != "kept\n" {
		t.Errorf("/ctx/keep.txt = %q, %v", got, ok)
	}
	if _, ok := readFile(t, img, "/ctx/secret.env"); ok {
		t.Error(".dockerignore was not honoured: /ctx/secret.env is in the image")
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cf.Config.Cmd, " ") != "cat /made.txt" {
		t.Errorf("cmd = %q", cf.Config.Cmd)
	}
	if !cf.Created.Time.Equal(time.Unix(0, 0)) {
		t.Errorf("created = %v, want the Unix epoch (SOURCE_DATE_EPOCH default)", cf.Created.Time)
	}

	// the OCI layout names the image v1 and has the same digest
	idx, err := layout.ImageIndexFromPath(filepath.Join(out, "layout"))
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != res.Digest || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "v1" {
		t.Errorf("oci layout index = %+v, want one manifest %s named v1", im.Manifests, res.Digest)
	}
	// the tarball loads (docker-load format) and has the same config and layers
	timg, err := tarball.ImageFromPath(filepath.Join(out, "image.tar"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cn, err := timg.ConfigName(); err != nil || cn != res.ConfigDigest {
		t.Errorf("tarball config = %v, %v; want %s", cn, err, res.ConfigDigest)
	}
	if got, want := layerDigests(t, timg), layerDigests(t, img); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("tarball layers %v, pushed layers %v", got, want)
	}
	if _, err := os.Stat(filepath.Join(out, ".image.tar.partial")); !os.IsNotExist(err) {
		t.Errorf("temporary tarball left behind: %v", err)
	}
	md := res.Metadata()
	if md["containerimage.digest"] != res.Digest.String() {
		t.Errorf("metadata digest = %v", md["containerimage.digest"])
	}
	if _, ok := md["containerimage.descriptor"].(map[string]any); !ok {
		t.Errorf("metadata descriptor not decoded: %#v", md["containerimage.descriptor"])
	}
}

// A failing RUN names the step, shows its Dockerfile line and its last output lines.
func TestFailingRunExplains(t *testing.T) {
	addr := testenv.Need(t, envBuildkitAddr)
	base := testenv.BusyboxBase(t)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"Dockerfile": "FROM " + base + "\nRUN echo ok\nRUN echo first-line-" + uniq(t) + " && echo 'ERROR: No matching distribution found for nosuchpkg' && exit 3\nRUN echo never\n",
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_, err := connect(t, addr).Build(ctx, buildkit.Options{ContextDir: dir, Progress: buildkit.ProgressQuiet})
	if err == nil {
		t.Fatal("build with a failing RUN succeeded")
	}
	var be *buildkit.BuildError
	if !errors.As(err, &be) {
		t.Fatalf("error is %T, want *BuildError: %v", err, err)
	}
	msg := err.Error()
	t.Logf("error message:\n%s", msg)
	for _, want := range []string{
		"exit code: 3",
		"RUN echo first-line-",     // the step
		">>> RUN echo first-line-", // the Dockerfile line, marked
		"ERROR: No matching distribution found for nosuchpkg", // its output
		"Dockerfile:3",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error message lacks %q", want)
		}
	}
	if strings.Contains(be.Step, "never") || strings.Contains(strings.Join(be.Output, "\n"), "never") {
		t.Errorf("the error names a later step: %q %q", be.Step, be.Output)
	}
}

// A syntax error in the user's Dockerfile shows the line.
func TestDockerfileErrorShowsLine(t *testing.T) {
	addr := testenv.Need(t, envBuildkitAddr)
	base := testenv.BusyboxBase(t)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"Dockerfile": "FROM " + base + "\nWORKDIR /app\nCOPPY . .\n",
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := connect(t, addr).Build(ctx, buildkit.Options{ContextDir: dir, Progress: buildkit.ProgressQuiet})
	if err == nil {
		t.Fatal("build of an invalid Dockerfile succeeded")
	}
	msg := err.Error()
	t.Logf("error message:\n%s", msg)
	for _, want := range []string{"COPPY", "Dockerfile:3", ">>> COPPY . ."} {
		if !strings.Contains(msg, want) {
			t.Errorf("error message lacks %q", want)
		}
	}
}

// An address where nothing listens gives ErrUnreachable and says what to do, quickly.
func TestUnreachable(t *testing.T) {
	if testing.Short() {
		t.Skip("dials a socket")
	}
	sock := filepath.Join(t.TempDir(), "none.sock")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	_, err := buildkit.Build(ctx, buildkit.Options{
		ConnectOptions: buildkit.ConnectOptions{Addr: "unix://" + sock, ConnectTimeout: 5 * time.Second},
		ContextDir:     t.TempDir(),
	})
	if !errors.Is(err, buildkit.ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
	if !strings.Contains(err.Error(), sock) || !strings.Contains(err.Error(), "--buildkit-addr") {
		t.Errorf("message does not name the address and the fix: %v", err)
	}
	t.Logf("%v (after %s)", err, time.Since(start).Round(time.Millisecond))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var _ io.Writer = testWriter{}
