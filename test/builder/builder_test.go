// Package builder_test runs fairing-builder end to end against a real registry (Debian's
// docker-registry, through a counting proxy) and runs the images it builds with runc.
package builder_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/fairing-dev/fairing/internal/testenv"
)

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fairing-builder-e2e-")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "fairing-builder")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/fairing-builder").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build fairing-builder: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type report struct {
	Builder  string `json:"builder"`
	BuildKit *struct {
		Steps []struct {
			Name   string `json:"name"`
			Cached bool   `json:"cached"`
		} `json:"steps"`
	} `json:"buildkit"`
	Digest string   `json:"digest"`
	Refs   []string `json:"refs"`
	Layers []struct {
		Name   string `json:"name"`
		Digest string `json:"digest"`
		Cached bool   `json:"cached"`
	} `json:"layers"`
	Pushed  []string `json:"pushed"`
	Mounted []string `json:"mounted"`
	Skipped []string `json:"skipped"`
}

// build runs fairing-builder build with args and returns its JSON report and stdout's last line.
func build(t *testing.T, cache string, args ...string) (report, string) {
	t.Helper()
	meta := filepath.Join(t.TempDir(), "meta.json")
	base := []string{"build", "--cache-dir", cache, "--metadata-file", meta}
	if !slices.Contains(args, "--builder") {
		base = append(base, "--builder", "append") // the projects list requirements: no installs here
	}
	cmd := exec.Command(bin, append(base, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("fairing-builder build %v: %v\n%s", args, err, stderr.String())
	}
	var r report
	b, err := os.ReadFile(meta)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return r, lines[len(lines)-1]
}

// project writes a context with a shell entrypoint, a dependency file, a few hundred source
// files (so there are several source layers) and a large file.
func project(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	write := func(p, content string, mode os.FileMode) {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, p), []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("run.sh", "#!/bin/sh\necho \"hello from $(cat /app/msg.txt), FAIRING_RUNTIME=$FAIRING_RUNTIME\"\nls /app/src | wc -l\nexit 3\n", 0o755)
	write("msg.txt", "fairing", 0o644)
	write("requirements.txt", "numpy\n", 0o644)
	for i := 0; i < 600; i++ {
		write(fmt.Sprintf("src/mod%03d.py", i), strings.Repeat(fmt.Sprintf("x%d = %d\n", i, i), 20), 0o644)
	}
	write("model.bin", strings.Repeat("w", 9<<20), 0o644)
	write(".dockerignore", "*.tmp\n", 0o644)
	write("scratch.tmp", "ignored", 0o644)
	old := time.Now().Add(-time.Hour)
	filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error { return os.Chtimes(p, old, old) })
	return dir
}

func TestBuildPushRunAndRebuild(t *testing.T) {
	reg := testenv.Registry(t)
	base := testenv.BusyboxBase(t)
	proxy := testenv.NewProxy(t, reg)
	// The base lives in another repository of the same registry; reach it through the proxy.
	base = proxy.Addr() + strings.TrimPrefix(base, reg)
	dest := proxy.Addr() + "/" + testenv.Repo(t) + ":v1"
	ctxDir, cache := project(t), t.TempDir()
	args := []string{"--context", ctxDir, "--base", base, "--destination", dest, "--cmd", "/app/run.sh"}

	first, ref := build(t, cache, args...)
	if !strings.HasPrefix(ref, strings.Split(dest, ":v1")[0]+"@sha256:") || !strings.HasSuffix(ref, first.Digest) {
		t.Fatalf("last line %q, digest %s", ref, first.Digest)
	}
	baseImg := image(t, base)
	baseLayers, _ := baseImg.Layers()
	for _, l := range baseLayers {
		d, _ := l.Digest()
		if contains(proxy.Uploaded(), d.String()) {
			t.Errorf("base layer %s was uploaded, not mounted", d)
		}
		if !contains(proxy.Mounted(), d.String()) {
			t.Errorf("base layer %s was not mounted (mounted: %v)", d, proxy.Mounted())
		}
	}
	if got := layerGets(proxy, baseImg); len(got) != 0 {
		t.Errorf("the build downloaded base layers %v: only the manifest and config may be read", got)
	}
	if len(first.Layers) < 3 {
		t.Errorf("only %d layers: want dependencies, large and source layers", len(first.Layers))
	}

	img := image(t, ref)
	if err := validate.Image(img); err != nil {
		t.Fatalf("validate: %v", err)
	}
	out, code := testenv.RunImage(t, strings.Replace(ref, proxy.Addr(), reg, 1))
	if code != 3 || !strings.Contains(out, "hello from fairing, FAIRING_RUNTIME=1") || !strings.Contains(out, "600") {
		t.Errorf("run: exit %d, output %q", code, out)
	}

	// Unchanged: no upload of any kind, no manifest written.
	proxy.Reset()
	again, _ := build(t, cache, args...)
	if again.Digest != first.Digest {
		t.Errorf("unchanged rebuild changed the digest %s → %s", first.Digest, again.Digest)
	}
	if n := proxy.Count(testenv.UploadStart, testenv.UploadPatch, testenv.UploadPut, testenv.BlobMount, testenv.ManifestPut); n != 0 {
		t.Errorf("unchanged rebuild sent %d upload/manifest requests:\n%s", n, proxy.Summary())
	}

	// One source file changed: one layer blob + the config, one manifest.
	os.WriteFile(filepath.Join(ctxDir, "src/mod123.py"), []byte("x = 'edited'\n"), 0o644)
	proxy.Reset()
	edited, _ := build(t, cache, args...)
	if up := proxy.Uploaded(); len(up) != 2 {
		t.Errorf("one edit uploaded %d blobs %v, want one layer and the config\n%s", len(up), up, proxy.Summary())
	}
	if n := proxy.Count(testenv.ManifestPut); n != 1 {
		t.Errorf("%d manifest PUTs", n)
	}
	rebuilt := 0
	for _, l := range edited.Layers {
		if !l.Cached {
			rebuilt++
		}
	}
	if rebuilt != 1 {
		t.Errorf("%d layers rebuilt for one edit", rebuilt)
	}

	// A fresh machine (empty cache) with the same files gives the same digest and uploads
	// nothing new.
	proxy.Reset()
	fresh, _ := build(t, t.TempDir(), args...)
	if fresh.Digest != edited.Digest || len(proxy.Uploaded()) != 0 {
		t.Errorf("fresh cache: digest %s (want %s), uploaded %v", fresh.Digest, edited.Digest, proxy.Uploaded())
	}
}

func TestDockerBaseAndMultiPlatform(t *testing.T) {
	reg := testenv.Registry(t)
	ctxDir, cache := project(t), t.TempDir()

	r, ref := build(t, cache, "--context", ctxDir, "--base", testenv.BusyboxDockerBase(t), "--destination", reg+"/"+testenv.Repo(t)+":d", "--cmd", "/app/run.sh")
	img := image(t, ref)
	m, _ := img.Manifest()
	if m.MediaType != types.DockerManifestSchema2 || m.Layers[len(m.Layers)-1].MediaType != types.DockerLayer {
		t.Errorf("docker base gave %s with %s layers", m.MediaType, m.Layers[len(m.Layers)-1].MediaType)
	}
	if err := validate.Image(img); err != nil {
		t.Fatal(err)
	}
	if out, code := testenv.RunImage(t, ref); code != 3 || !strings.Contains(out, "hello from fairing") {
		t.Errorf("docker-typed image run: exit %d, %q", code, out)
	}
	_ = r

	_, ref = build(t, cache, "--context", ctxDir, "--base", testenv.MultiarchBase(t), "--destination", reg+"/"+testenv.Repo(t)+":m")
	dref, _ := name.ParseReference(ref)
	idx, err := remote.Index(dref)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	var top []v1.Hash
	for _, d := range im.Manifests {
		child, _ := idx.Image(d.Digest)
		cm, _ := child.Manifest()
		top = append(top, cm.Layers[len(cm.Layers)-1].Digest)
	}
	if len(top) != 2 || top[0] != top[1] {
		t.Errorf("index with %d platforms, top layers %v (want 2 sharing the code layer)", len(top), top)
	}
}

func TestLocalDestinationsLoad(t *testing.T) {
	testenv.NeedTools(t, "skopeo", "umoci")
	dir := t.TempDir()
	layoutDir, tarFile := filepath.Join(dir, "layout"), filepath.Join(dir, "img.tar")
	ctxDir := project(t)
	r, _ := build(t, t.TempDir(), "--context", ctxDir, "--base", testenv.BusyboxBase(t), "--cmd", "/app/run.sh",
		"--destination", "oci:"+layoutDir+":v1", "--destination", "tar:"+tarFile)
	for _, src := range []string{"oci:" + layoutDir + ":v1", "docker-archive:" + tarFile} {
		out, err := exec.Command("skopeo", "inspect", src).CombinedOutput()
		if err != nil {
			t.Errorf("skopeo inspect %s: %v\n%s", src, err, out)
		}
	}
	if out, err := exec.Command("umoci", "ls", "--layout", layoutDir).CombinedOutput(); err != nil || !strings.Contains(string(out), "v1") {
		t.Errorf("umoci ls: %v %s", err, out)
	}
	out, code := testenv.RunLayout(t, layoutDir, "v1")
	if code != 3 || !strings.Contains(out, "hello from fairing") {
		t.Errorf("run from layout: exit %d, %q (digest %s)", code, out, r.Digest)
	}
}

func TestContextThroughTheRegistry(t *testing.T) {
	reg := testenv.Registry(t)
	proxy := testenv.NewProxy(t, reg)
	repo := proxy.Addr() + "/" + testenv.Repo(t)
	base := proxy.Addr() + strings.TrimPrefix(testenv.BusyboxBase(t), reg)
	ctxDir := project(t)

	push := func(cache string) string {
		cmd := exec.Command(bin, "push-context", "--context", ctxDir, "--repo", repo, "--cache-dir", cache, "--cmd", "/app/run.sh", "--quiet")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("push-context: %v\n%s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		return lines[len(lines)-1]
	}
	ref := push(t.TempDir())
	if !strings.HasPrefix(ref, "oci://"+repo+"@sha256:") {
		t.Fatalf("push-context printed %q", ref)
	}
	proxy.Reset()
	if again := push(t.TempDir()); again != ref || len(proxy.Uploaded()) != 0 {
		t.Errorf("unchanged context: %s (was %s), uploaded %v", again, ref, proxy.Uploaded())
	}

	// The build pod's view: an empty cache, a context reference, another repository.
	proxy.Reset()
	cluster, _ := build(t, t.TempDir(), "--context", ref, "--base", base, "--destination", proxy.Addr()+"/"+testenv.Repo(t)+":c")
	if up := proxy.Uploaded(); len(up) != 1 {
		t.Errorf("build from the context uploaded %v, want only the config (layers are mounted)", up)
	}
	ctxImg := image(t, strings.TrimPrefix(ref, "oci://"))
	if got := layerGets(proxy, ctxImg); len(got) != 0 {
		t.Errorf("build from the context downloaded its layers %v", got)
	}
	local, _ := build(t, t.TempDir(), "--context", ctxDir, "--base", base, "--cmd", "/app/run.sh", "--no-push")
	if cluster.Digest != local.Digest {
		t.Errorf("built from the registry context: %s, built locally: %s", cluster.Digest, local.Digest)
	}
}

func image(t *testing.T, ref string) v1.Image {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// layerGets lists the GETs of img's layer blobs the proxy saw.
func layerGets(p *testenv.Proxy, img v1.Image) []string {
	m, _ := img.Manifest()
	layers := map[string]bool{}
	for _, l := range m.Layers {
		layers[l.Digest.String()] = true
	}
	var got []string
	for _, r := range p.Requests() {
		if r.Kind == testenv.BlobGet && layers[r.Digest] {
			got = append(got, r.Digest)
		}
	}
	return got
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// --builder auto: a requirements.txt that lists packages goes through BuildKit (the install
// runs before the code is copied, so a code change reuses it); one that lists nothing stays on
// the append path; with no buildkitd anywhere the build stops and says why.
func TestAutoBuilder(t *testing.T) {
	reg := testenv.Registry(t)
	addr := testenv.Need(t, "FAIRING_TEST_BUILDKIT_ADDR")
	base := testenv.PythonBase(t)
	dir := t.TempDir()
	files := map[string]string{
		"requirements.txt":             "--no-index\n./pkgs/mylib\n",
		"pkgs/mylib/setup.py":          "from setuptools import setup\nsetup(name='mylib', version='1.0', packages=['mylib'])\n",
		"pkgs/mylib/mylib/__init__.py": "def hello():\n    return 'hello from mylib'\n",
		"train.py":                     "import mylib\nprint(mylib.hello(), 'v1')\n",
	}
	for p, c := range files {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644)
	}
	dest := reg + "/" + testenv.Repo(t) + ":v1"
	args := []string{"--builder", "auto", "--buildkit-addr", addr, "--context", dir, "--base", base, "--destination", dest, "--input", "train.py", "--input", "requirements.txt", "--input", "pkgs", "--quiet"}

	out, err := exec.Command(bin, append([]string{"build", "--print-dockerfile"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("--print-dockerfile: %v\n%s", err, out)
	}
	df := string(out)
	if i, j := strings.Index(df, "pip install"), strings.LastIndex(df, "COPY"); i < 0 || j < i {
		t.Errorf("the install must come before the code is copied:\n%s", df)
	}

	r, ref := build(t, t.TempDir(), args...)
	if r.Builder != "buildkit" {
		t.Fatalf("auto chose %q for a requirements.txt that lists a package", r.Builder)
	}
	if out, code := testenv.RunImage(t, ref); code != 0 || !strings.Contains(out, "hello from mylib v1") {
		t.Errorf("run: exit %d, %q", code, out)
	}

	// A code change: the install step is not run again.
	os.WriteFile(filepath.Join(dir, "train.py"), []byte("import mylib\nprint(mylib.hello(), 'v2')\n"), 0o644)
	r2, ref2 := build(t, t.TempDir(), args...)
	for _, s := range r2.BuildKit.Steps {
		if strings.Contains(s.Name, "pip install") && !s.Cached {
			t.Errorf("a code change re-ran %q", s.Name)
		}
	}
	if out, code := testenv.RunImage(t, ref2); code != 0 || !strings.Contains(out, "hello from mylib v2") {
		t.Errorf("run after the change: exit %d, %q", code, out)
	}

	// Nothing to install: the append path, even with --builder auto.
	empty := t.TempDir()
	os.WriteFile(filepath.Join(empty, "requirements.txt"), []byte("# nothing\n"), 0o644)
	os.WriteFile(filepath.Join(empty, "run.sh"), []byte("echo hi\n"), 0o755)
	r3, _ := build(t, t.TempDir(), "--builder", "auto", "--context", empty, "--base", testenv.BusyboxBase(t), "--destination", reg+"/"+testenv.Repo(t)+":e")
	if r3.Builder != "append" {
		t.Errorf("auto chose %q with nothing to install", r3.Builder)
	}

	// Packages to install and no buildkitd anywhere: a clear refusal, nothing pushed.
	cmd := exec.Command(bin, append([]string{"build", "--cache-dir", t.TempDir()}, args[:2]...)...)
	cmd.Args = append(cmd.Args, args[4:]...) // drop --buildkit-addr
	cmd.Env = append(os.Environ(), "BUILDKIT_HOST=", "PATH=/usr/bin:/bin")
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "/app/requirements.txt lists packages to install") || !strings.Contains(string(out), "--buildkit-addr") {
		t.Errorf("no buildkitd: err %v, output %s", err, out)
	}
}

// eStargz and zstd images pushed to the real registry validate; eStargz layers carry the TOC
// digest and uncompressed-size annotations the stargz snapshotter needs and run as plain gzip.
func TestCompressedImages(t *testing.T) {
	reg := testenv.Registry(t)
	ctxDir := project(t)
	r, ref := build(t, t.TempDir(), "--context", ctxDir, "--base", testenv.BusyboxBase(t), "--destination", reg+"/"+testenv.Repo(t)+":estargz",
		"--cmd", "/app/run.sh", "--compression", "estargz")
	img := image(t, ref)
	if err := validate.Image(img); err != nil {
		t.Fatalf("estargz image: %v", err)
	}
	m, _ := img.Manifest()
	added := m.Layers[len(m.Layers)-len(r.Layers):]
	for _, l := range added {
		if l.MediaType != types.OCILayer || l.Annotations["containerd.io/snapshot/stargz/toc.digest"] == "" || l.Annotations["io.containers.estargz.uncompressed-size"] == "" {
			t.Errorf("estargz layer %s: media type %s, annotations %v", l.Digest, l.MediaType, l.Annotations)
		}
	}
	if out, code := testenv.RunImage(t, ref); code != 3 || !strings.Contains(out, "hello from fairing") {
		t.Errorf("estargz image run: exit %d, %q", code, out)
	}

	_, ref = build(t, t.TempDir(), "--context", ctxDir, "--base", testenv.BusyboxBase(t), "--destination", reg+"/"+testenv.Repo(t)+":zstd",
		"--cmd", "/app/run.sh", "--compression", "zstd")
	img = image(t, ref)
	// ggcr's full layer validation reads every layer as gzip: check the structure with it and
	// the zstd layers' diffIDs here.
	if err := validate.Image(img, validate.Fast); err != nil {
		t.Fatalf("zstd image: %v", err)
	}
	m, _ = img.Manifest()
	if got := m.Layers[len(m.Layers)-1].MediaType; got != types.OCILayerZStd {
		t.Errorf("zstd layer media type %s", got)
	}
	layers, _ := img.Layers()
	cf, _ := img.ConfigFile()
	for i, l := range layers[len(layers)-2:] {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		h, _, err := v1.SHA256(rc)
		rc.Close()
		if want := cf.RootFS.DiffIDs[len(layers)-2+i]; err != nil || h != want {
			t.Errorf("zstd layer %d: diffID %s, config says %s (%v)", i, h, want, err)
		}
	}
	// Docker schema 2 has no zstd type: refused before anything is pushed.
	cmd := exec.Command(bin, "build", "--builder", "append", "--cache-dir", t.TempDir(), "--context", ctxDir, "--base", testenv.BusyboxDockerBase(t),
		"--destination", reg+"/"+testenv.Repo(t)+":z", "--compression", "zstd")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "no zstd layer type") {
		t.Errorf("zstd onto a Docker base: err %v, %s", err, out)
	}
}

// A CI runner with an empty cache pushing a new tag to another repository reuses the layers of
// the image --cache-from names, on a real registry (distribution keeps blobs per repository):
// every fairing layer is mounted, none downloaded or uploaded, only the image config is sent,
// and the image is the one the first build made.
func TestCacheFromAnotherRepository(t *testing.T) {
	reg := testenv.Registry(t)
	base := testenv.BusyboxBase(t)
	proxy := testenv.NewProxy(t, reg)
	base = proxy.Addr() + strings.TrimPrefix(base, reg)
	main := proxy.Addr() + "/" + testenv.Repo(t) + "-main:latest"
	ctxDir := project(t)
	args := []string{"--context", ctxDir, "--base", base, "--cmd", "/app/run.sh"}
	first, _ := build(t, t.TempDir(), append(args, "--destination", main)...)

	proxy.Reset()
	ci := proxy.Addr() + "/" + testenv.Repo(t) + "-ci:commit2"
	r, ref := build(t, t.TempDir(), append(args, "--destination", ci, "--cache-from", main)...)
	if r.Digest != first.Digest {
		t.Errorf("digest %s, want the first build's %s", r.Digest, first.Digest)
	}
	mounted, uploaded := proxy.Mounted(), proxy.Uploaded()
	for _, l := range r.Layers {
		if !contains(mounted, l.Digest) || contains(uploaded, l.Digest) {
			t.Errorf("layer %s (%s): mounted %v, uploaded %v", l.Name, l.Digest, contains(mounted, l.Digest), contains(uploaded, l.Digest))
		}
	}
	if len(uploaded) != 1 {
		t.Errorf("uploaded %v, want the image config alone\n%s", uploaded, proxy.Summary())
	}
	img := image(t, ref)
	if got := layerGets(proxy, img); len(got) != 0 {
		t.Errorf("the build downloaded layers %v", got)
	}
	if err := validate.Image(img); err != nil {
		t.Errorf("validate: %v", err)
	}
}
