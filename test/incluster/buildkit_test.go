package incluster

import (
	"strings"
	"testing"

	"github.com/fairing-dev/fairing/internal/testenv"
)

// A requirements.txt that lists a package makes the in-cluster build go through BuildKit (--builder
// auto decides on the user's machine, where the files are): the build pod runs our BuildKit-capable
// image, privileged, whose fairing-builder starts buildkitd as a child, unpacks the pushed context and
// installs the requirement offline (a local package, no index); the workload imports it from where pip
// installed it.
func TestBuildKitInstallsRequirement(t *testing.T) {
	e := need(t)
	py := testenv.PythonBase(t)
	bk := testenv.Need(t, "FAIRING_TEST_BUILDKIT_IMAGE")
	t.Parallel()
	ns := e.namespace(t, true)
	dir := writeContext(t, map[string]string{
		"requirements.txt":             "--no-index\n./pkgs/mylib\n",
		"pkgs/mylib/setup.py":          "from setuptools import setup\nsetup(name='mylib', version='1.0', packages=['mylib'])\n",
		"pkgs/mylib/mylib/__init__.py": "def hello():\n    return 'hello from mylib'\n",
		"train.py":                     "import mylib\nprint(mylib.hello(), 'installed in', mylib.__file__)\n",
	})
	r := e.run(t, ns, nil, "--build-context", dir, "--base", py, "--destination", e.registry+"/"+testenv.Repo(t),
		"--buildkit-image", bk, "-o", "json", "--", "python3", "/app/train.py")
	if r.code != 0 || !regexpMatch(`\] hello from mylib installed in /\S+-packages/mylib/__init__.py`, r.stderr) {
		t.Fatalf("want the workload to import the installed package\n%s", r)
	}
	if !strings.Contains(r.stderr, "[build] ") || !strings.Contains(r.stderr, "pip install") {
		t.Errorf("the build's BuildKit steps (pip install) are not shown\n%s", r)
	}
	if res := jsonResult(t, r); res.ExitCode != 0 || res.Image == "" || !res.Build.Deleted {
		t.Errorf("result %+v", res)
	}
}
