package buildkit_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fairing-dev/fairing/internal/testenv"
	"github.com/fairing-dev/fairing/pkg/buildkit"
	"github.com/fairing-dev/fairing/pkg/layer"
)

// pyProject writes a project whose requirements.txt installs a local package offline.
func pyProject(t *testing.T, id string) (dir string, sources []layer.Source) {
	t.Helper()
	dir = t.TempDir()
	writeFiles(t, dir, map[string]string{
		// offline: no index, the package is a directory of the project
		"requirements.txt":             "--no-index\n./pkgs/mylib\n",
		"pkgs/mylib/setup.py":          "from setuptools import setup\nsetup(name='mylib', version='1.0', packages=['mylib'])\n",
		"pkgs/mylib/mylib/__init__.py": "def hello():\n    return 'hello from mylib " + id + "'\n",
		"train.py":                     "import mylib\nprint(mylib.hello(), 'v1')\n",
	})
	return dir, []layer.Source{
		{Dest: "/app", Path: dir, Ignore: ignore(t, "pkgs")},
		// the package requirements.txt names is a dependency: copied (and installed) before the code
		{Dest: "/app/pkgs", Path: filepath.Join(dir, "pkgs"), Class: layer.ClassDeps},
	}
}

// The generated Dockerfile installs requirements.txt (a local package, offline) before the
// code; the image runs and imports it. A code change reuses the install step and its layer; an
// unchanged rebuild pushes nothing.
func TestGeneratedInstallsRequirementOffline(t *testing.T) {
	addr := testenv.Need(t, envBuildkitAddr)
	reg := testenv.Registry(t)
	py := testenv.PythonBase(t)
	conn := connect(t, addr)
	proxy := testenv.NewProxy(t, reg)
	id := uniq(t)
	dir, sources := pyProject(t, id)
	repo := testenv.Repo(t)
	o := buildkit.Options{
		Spec:         &buildkit.Spec{Base: py, Sources: sources, Cmd: []string{"python3", "/app/train.py"}},
		Destinations: dest(t, proxy.Addr()+"/"+repo+":1"),
		Progress:     buildkit.ProgressPlain,
		ProgressOut:  testWriter{t},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	first, err := conn.Build(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("generated Dockerfile:\n%s", first.Dockerfile)
	install := step(t, first, "RUN ")
	if install.Cached || !strings.Contains(install.Name, "pip install") {
		t.Fatalf("first build: install step %+v", install)
	}
	ref := reg + "/" + repo + "@" + first.Digest.String()
	if out, code := testenv.RunImage(t, ref); code != 0 || out != "hello from mylib "+id+" v1\n" {
		t.Fatalf("the image ran and printed %q (exit %d)", out, code)
	}
	// the package is installed (in the install step's layer), not merely copied
	if out, code := testenv.RunImage(t, ref, testenv.WithCwd("/"), testenv.WithArgs("python3", "-c", "import mylib; print(mylib.__file__)")); code != 0 || !strings.Contains(out, "-packages/mylib/__init__.py") {
		t.Errorf("mylib is imported from %q (exit %d), not from an installed location", out, code)
	}
	img1 := pull(t, ref)
	l1 := layerDigests(t, img1)

	// a code change: the install step is cached and every layer up to it is the same
	writeFiles(t, dir, map[string]string{"train.py": "import mylib\nprint(mylib.hello(), 'v2') # " + id + "\n"})
	proxy.Reset()
	second, err := conn.Build(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if s := step(t, second, "RUN "); !s.Cached {
		t.Errorf("a code change re-ran the install step")
	}
	ref2 := reg + "/" + repo + "@" + second.Digest.String()
	l2 := layerDigests(t, pull(t, ref2))
	if len(l1) != len(l2) {
		t.Fatalf("layer count %d → %d after a code change", len(l1), len(l2))
	}
	for i := 0; i < len(l1)-1; i++ {
		if l1[i] != l2[i] {
			t.Errorf("layer %d changed after a code change (only the last, the code, should)", i)
		}
	}
	if l1[len(l1)-1] == l2[len(l2)-1] {
		t.Error("the code layer did not change")
	}
	if n := len(proxy.Uploaded()); n != 2 {
		t.Errorf("a code change uploaded %d blobs, want 2 (code layer + config)", n)
	}
	if out, code := testenv.RunImage(t, ref2); code != 0 || out != "hello from mylib "+id+" v2\n" {
		t.Errorf("after the code change the image printed %q (exit %d)", out, code)
	}

	// unchanged: same digest, nothing uploaded
	proxy.Reset()
	third, err := conn.Build(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if third.Digest != second.Digest || len(proxy.Uploaded()) != 0 {
		t.Errorf("unchanged rebuild: digest %s (was %s), %d blobs uploaded", third.Digest, second.Digest, len(proxy.Uploaded()))
	}
}

// A non-root base: the install step uses pip --user, and the program, run as that user,
// imports the package.
func TestGeneratedInstallNonRootBase(t *testing.T) {
	addr := testenv.Need(t, envBuildkitAddr)
	reg := testenv.Registry(t)
	py := testenv.PythonBase(t)
	conn := connect(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// a notebook-style base: a user with a home, and USER set to it
	bdir := t.TempDir()
	writeFiles(t, bdir, map[string]string{"Dockerfile": "FROM " + py + "\n" +
		"RUN mkdir -p /home/jovyan && chown 1000:100 /home/jovyan\nENV HOME=/home/jovyan\nUSER 1000:100\n"})
	b, err := conn.Build(ctx, buildkit.Options{ContextDir: bdir, Destinations: dest(t, reg+"/"+testenv.Repo(t)+"-base:1"), Progress: buildkit.ProgressQuiet})
	if err != nil {
		t.Fatal(err)
	}
	base := b.References[0].String()
	id := uniq(t)
	_, sources := pyProject(t, id)
	res, err := conn.Build(ctx, buildkit.Options{
		Spec:         &buildkit.Spec{Base: base, Sources: sources},
		Destinations: dest(t, reg+"/"+testenv.Repo(t)+":1"),
		Progress:     buildkit.ProgressQuiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	out, code := testenv.RunImage(t, res.References[0].String(), testenv.WithArgs("sh", "-c", "id -u && python3 train.py && python3 -c 'import mylib; print(mylib.__file__)'"))
	if code != 0 || !strings.HasPrefix(out, "1000\nhello from mylib "+id+" v1\n") || !strings.Contains(out, "/home/jovyan/.local/") {
		t.Errorf("non-root image printed %q (exit %d); want uid 1000, the greeting, and mylib under ~/.local", out, code)
	}
}

// A build from an empty buildkitd state (a fresh daemonless daemon) with the registry cache of
// an earlier build reuses its install step: the dependency layer is not rebuilt.
func TestRegistryCacheFromEmptyDaemon(t *testing.T) {
	addr := testenv.Need(t, envBuildkitAddr)
	reg := testenv.Registry(t)
	py := testenv.PythonBase(t)
	bkd := testenv.Need(t, envBuildkitd)
	t.Setenv("BUILDKIT_HOST", "")
	id := uniq(t)
	_, sources := pyProject(t, id)
	cache := reg + "/" + testenv.Repo(t) + "-cache"
	o := buildkit.Options{
		Spec:         &buildkit.Spec{Base: py, Sources: sources},
		CacheRepo:    cache,
		Destinations: dest(t, reg+"/"+testenv.Repo(t)+":1"),
		Progress:     buildkit.ProgressQuiet,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	first, err := connect(t, addr).Build(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if s := step(t, first, "RUN "); s.Cached {
		t.Fatalf("first build found its unique install step cached: %+v", s)
	}
	// elsewhere: a new daemon with nothing in its state
	o.ConnectOptions = buildkit.ConnectOptions{Buildkitd: bkd}

	second, err := buildkit.Build(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if s := step(t, second, "RUN "); !s.Cached {
		t.Errorf("install step re-ran on an empty daemon despite the registry cache: %+v", s)
	}
	l1 := layerDigests(t, pull(t, first.References[0].String()))
	l2 := layerDigests(t, pull(t, second.References[0].String()))
	if first.Digest != second.Digest {
		t.Logf("digests differ: %s vs %s (layers %v vs %v)", first.Digest, second.Digest, l1, l2)
	}
	// every layer up to and including the install step's is reused as is
	for i := 0; i < len(l1)-1 && i < len(l2)-1; i++ {
		if l1[i] != l2[i] {
			t.Errorf("layer %d differs between the original and the cached build", i)
		}
	}
}
