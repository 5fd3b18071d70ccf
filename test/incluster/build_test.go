package incluster

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fairing-dev/fairing/internal/testenv"
	"github.com/fairing-dev/fairing/pkg/contextimage"
	"github.com/fairing-dev/fairing/pkg/deploy/workload"
)

const script = "#!/bin/sh\necho \"hello from $(cat /app/greeting.txt)\"\nexit ${EXIT_CODE:-0}\n"

// One command builds a context with a script in the cluster (our fairing-builder image) and submits it
// as a Job (our fairing-submit image): the Job's output reaches the user's stdout, the command exits with
// the Job's exit code, and the image is exactly what a local build of the same context gives.
func TestBuildAndSubmit(t *testing.T) {
	e := need(t)
	t.Parallel()
	ns := e.namespace(t, true)
	dir := writeContext(t, map[string]string{"run.sh": script, "greeting.txt": "the cluster\n"})
	dest := e.registry + "/" + testenv.Repo(t)

	// text output: the workload's lines on stdout, the build's and the submit step's messages on stderr
	r := e.run(t, ns, nil, "--build-context", dir, "--base", e.busybox, "--destination", dest, "--env", "EXIT_CODE=3", "--", "sh", "/app/run.sh")
	if r.code != 3 {
		t.Fatalf("want the Job's exit code 3\n%s", r)
	}
	if !regexpMatch(`(?m)^\[fairing-job-[a-z0-9-]+\] hello from the cluster$`, r.stdout) {
		t.Errorf("the Job's output is not on stdout\n%s", r)
	}
	for _, w := range []string{"build/fairing-build-", "[build] ", "job/fairing-job-", "created in namespace " + ns, "kept for inspection"} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr lacks %q\n%s", w, r)
		}
	}
	if strings.Contains(r.stdout, "[build]") || strings.Contains(r.stdout, "created in namespace") {
		t.Errorf("progress lines on stdout\n%s", r)
	}

	// JSON result; success cleans up the build Job and the context artifact
	r = e.run(t, ns, nil, "--build-context", dir, "--base", e.busybox, "--destination", dest, "-o", "json", "--", "sh", "/app/run.sh")
	if r.code != 0 {
		t.Fatalf("want exit code 0\n%s", r)
	}
	res := jsonResult(t, r)
	if res.Kind != "job" || res.Phase != workload.Succeeded || res.ExitCode != 0 || res.Build.State != workload.Succeeded ||
		!res.Build.Deleted || !res.Build.ContextDeleted || !strings.HasPrefix(res.Image, dest+"@sha256:") ||
		!strings.HasPrefix(res.Build.Context, contextimage.Scheme+dest+"@sha256:") {
		t.Errorf("unexpected result %+v\n%s", res, r)
	}
	if !strings.Contains(r.stderr, "] hello from the cluster") {
		t.Errorf("with -o json the Job's output goes to stderr\n%s", r)
	}
	ctx := context.Background()
	jobs, err := e.cs.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: "fairing-deployer=build"})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs.Items {
		if j.Name == res.Build.Job && j.DeletionTimestamp == nil {
			t.Errorf("build job %s was not deleted after success", j.Name)
		}
	}
	cref, err := name.NewDigest(strings.TrimPrefix(res.Build.Context, contextimage.Scheme))
	if err != nil {
		t.Fatal(err)
	}
	var terr *transport.Error
	if _, err := remote.Head(cref); err == nil || !errorsAs(err, &terr) || terr.StatusCode != 404 {
		t.Errorf("the context artifact %s is still there after success (%v)", cref, err)
	}

	// the same context built locally gives the same digest
	out, err := exec.Command(builderBin.Path(t), "build", "--quiet", "--no-push", "--cache-dir", t.TempDir(),
		"--context", dir, "--base", e.busybox, "--destination", dest).Output()
	if err != nil {
		t.Fatalf("local build: %v", err)
	}
	if local := strings.TrimSpace(string(out)); !strings.HasSuffix(res.Image, "@"+lastField(local, "@")) {
		t.Errorf("in-cluster image %s differs from the local build %s", res.Image, local)
	}
}

// A second run with an unchanged context uploads no blob at all (not the context, not the image); an edit
// uploads one context layer (and the new image's config). Counted at a proxy in front of the registry that
// the user's command, the build pod and the node all go through.
func TestIncrementalContext(t *testing.T) {
	e := need(t)
	t.Parallel()
	ns := e.namespace(t, true)
	p := testenv.NewProxy(t, e.registry)
	base := p.Addr() + strings.TrimPrefix(e.busybox, e.registry)
	dest := p.Addr() + "/" + testenv.Repo(t)
	dir := writeContext(t, map[string]string{"run.sh": script, "greeting.txt": "version one\n", "requirements.txt": "requests==2.31.0\n"})
	// (append: requirements.txt names a package, which --builder auto would install with BuildKit)
	args := []string{"--builder", "append", "--build-context", dir, "--base", base, "--destination", dest, "-o", "json", "--", "sh", "/app/run.sh"}

	r := e.run(t, ns, nil, args...)
	if r.code != 0 || !strings.Contains(r.stderr, "hello from version one") {
		t.Fatalf("first run\n%s", r)
	}
	first := jsonResult(t, r)
	if first.Build.ContextBlobs == 0 {
		t.Errorf("first run sent no context blob: %+v", first.Build)
	}

	p.Reset()
	r = e.run(t, ns, nil, args...)
	if r.code != 0 || !strings.Contains(r.stderr, "hello from version one") {
		t.Fatalf("unchanged run\n%s", r)
	}
	second := jsonResult(t, r)
	if up := p.Uploaded(); len(up) != 0 || second.Build.ContextBlobs != 0 {
		t.Errorf("unchanged context: want no upload, got %d blobs (context: %d)\n%s", len(up), second.Build.ContextBlobs, p.Summary())
	}
	if second.Image != first.Image {
		t.Errorf("unchanged context gave another image: %s, then %s", first.Image, second.Image)
	}

	if err := os.WriteFile(filepath.Join(dir, "greeting.txt"), []byte("version two\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.Reset()
	// (the context artifact is kept, to tell its config from its layers)
	r = e.run(t, ns, nil, append([]string{"--cleanup", "never"}, args...)...)
	if r.code != 0 || !strings.Contains(r.stderr, "hello from version two") {
		t.Fatalf("edited run\n%s", r)
	}
	third := jsonResult(t, r)
	imageConfig := configDigest(t, third.Image)
	contextConfig := configDigest(t, strings.TrimPrefix(third.Build.Context, contextimage.Scheme))
	newLayers := layerDigests(t, third.Image)
	oldLayers := layerDigests(t, first.Image)
	var layers []string
	for _, d := range p.Uploaded() {
		switch {
		case d == imageConfig || d == contextConfig:
		case slices.Contains(newLayers, d) && !slices.Contains(oldLayers, d):
			layers = append(layers, d)
		default:
			t.Errorf("unexpected upload %s", d)
		}
	}
	if len(layers) != 1 || third.Build.ContextBlobs != 2 {
		t.Errorf("edited context: want one layer uploaded (and the context's and the image's configs), got layers %v, %d context blobs\n%s",
			layers, third.Build.ContextBlobs, p.Summary())
	}
	if n := len(newLayers) - len(layerDigests(t, base)); n < 2 {
		t.Errorf("the context should make at least 2 layers (dependencies, source) for this test to mean something; got %d", n)
	}
}

func configDigest(t *testing.T, ref string) string {
	t.Helper()
	img, err := remote.Image(mustDigest(t, ref))
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	return m.Config.Digest.String()
}

// A build that fails (a base that does not exist) fails the user's command with the build's own message,
// and nothing is submitted.
func TestBuildFailure(t *testing.T) {
	e := need(t)
	t.Parallel()
	ns := e.namespace(t, true)
	dir := writeContext(t, map[string]string{"run.sh": script, "greeting.txt": "nowhere\n"})
	missing := e.registry + "/does/not-exist:1"
	r := e.run(t, ns, nil, "--build-context", dir, "--base", missing, "--destination", e.registry+"/"+testenv.Repo(t), "--", "sh", "/app/run.sh")
	if r.code != 2 {
		t.Fatalf("want exit code 2 (nothing submitted)\n%s", r)
	}
	for _, w := range []string{"(BuildFailed): fairing-builder: read base " + missing, "nothing was submitted", "kept for inspection"} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr lacks %q\n%s", w, r)
		}
	}
	jobs, err := e.cs.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "fairing-deployer=job"})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs.Items) != 0 {
		t.Errorf("a workload was submitted although the build failed: %s", jobs.Items[0].Name)
	}
}

// A context that is already on a volume the cluster can mount (here a host path of the node) is built
// without being sent.
func TestContextVolume(t *testing.T) {
	e := need(t)
	t.Parallel()
	ns := e.namespace(t, true)
	dir := writeContext(t, map[string]string{"run.sh": script, "greeting.txt": "a volume\n"})
	if err := os.Chmod(dir, 0o755); err != nil { // the build step runs as a non-root user
		t.Fatal(err)
	}
	r := e.run(t, ns, nil, "--build-context-volume", "hostpath:"+dir, "--base", e.busybox, "--destination", e.registry+"/"+testenv.Repo(t),
		"-o", "json", "--", "sh", "/app/run.sh")
	if r.code != 0 || !strings.Contains(r.stderr, "] hello from a volume") {
		t.Fatalf("want the Job's output and exit code 0\n%s", r)
	}
	if res := jsonResult(t, r); res.Build.Context != "" || res.Image == "" {
		t.Errorf("a volume context sends nothing: %+v", res.Build)
	}
}

// The preprocessing flags work as with fairing-builder: a Python file given with --input becomes the
// image's command (python3 /app/train.py on the Debian python base).
func TestPreprocessedPython(t *testing.T) {
	e := need(t)
	py := testenv.PythonBase(t)
	t.Parallel()
	ns := e.namespace(t, true)
	dir := writeContext(t, map[string]string{"train.py": "import sys\nprint('trained with python', sys.version_info[0])\n", "notes.md": "not an input\n"})
	r := e.run(t, ns, nil, "--build-context", dir, "--input", "train.py", "--base", py, "--destination", e.registry+"/"+testenv.Repo(t))
	if r.code != 0 || !regexpMatch(`(?m)^\[fairing-job-[a-z0-9-]+\] trained with python 3$`, r.stdout) {
		t.Fatalf("want the preprocessed program's output\n%s", r)
	}
}

func layerDigests(t *testing.T, ref string) []string {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range m.Layers {
		out = append(out, l.Digest.String())
	}
	return out
}

func mustDigest(t *testing.T, ref string) name.Digest {
	t.Helper()
	d, err := name.NewDigest(ref)
	if err != nil {
		t.Fatalf("%q: %v", ref, err)
	}
	return d
}
