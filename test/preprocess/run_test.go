// Package preprocess_test runs what pkg/preprocess produces with a real python3 (and Jupyter's
// nbconvert): sources are laid out on disk as the image would hold them and the command is run
// with the image's environment. Images themselves are built and run in the builder's end-to-end
// tests.
package preprocess_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fairing-dev/fairing/pkg/preprocess"
	"github.com/fairing-dev/fairing/pkg/preprocess/preprocesstest"
)

// image is a Result laid out under a temporary root that stands for the image's "/": the
// options' path prefix and runtime directory are moved below it, so the generated command and
// environment point at the laid-out files.
type image struct {
	root string
	res  *preprocess.Result
}

func build(t *testing.T, o preprocess.Options) *image {
	t.Helper()
	root := t.TempDir()
	o.PathPrefix = filepath.Join(root, "app")
	o.RuntimeDir = filepath.Join(root, "opt/fairing")
	res, err := preprocess.Preprocess(context.Background(), o)
	if err != nil {
		t.Fatalf("Preprocess: %v", err)
	}
	for _, s := range res.Sources {
		if !strings.HasPrefix(s.Dest, root+"/") {
			t.Fatalf("source %s is outside the test root %s", s.Dest, root)
		}
	}
	// Dests are absolute and below root already.
	preprocesstest.Materialize(t, "/", res.Sources)
	return &image{root: root, res: res}
}

type run struct {
	stdout, stderr string
	code           int
}

// run executes the image's command in its working directory with its environment, on a PATH
// where "python3" (and "jupyter") are the interpreter under test.
func (im *image) run(t *testing.T, bins map[string]string) run {
	t.Helper()
	bin := preprocesstest.BinDir(t, bins)
	argv := im.res.Command
	exe := argv[0]
	if !filepath.IsAbs(exe) {
		exe = filepath.Join(bin, exe)
		if _, err := os.Stat(exe); err != nil {
			t.Fatalf("the command's program %q is not among %v", argv[0], bins)
		}
	}
	cmd := exec.Command(exe, argv[1:]...)
	cmd.Dir = im.res.WorkingDir
	home := t.TempDir()
	cmd.Env = preprocess.MergeEnv([]string{"PATH=" + bin + ":/usr/bin:/bin", "LANG=C.UTF-8", "HOME=" + home, "PYTHONDONTWRITEBYTECODE=1"}, im.res.Env)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := run{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run %v: %v", argv, err)
	}
	return r
}

func (r run) ok(t *testing.T) run {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	return r
}

func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// sdkCalls is what a Fairing user's script typically does to launch itself; in the image it
// must do nothing.
const sdkCalls = `import os
from kubeflow import fairing
from kubeflow.fairing.kubernetes.utils import mounting_pvc
import fairing as legacy_fairing
if os.getenv('FAIRING_RUNTIME') is None:
    raise SystemExit('not in the image')
fairing.config.set_builder('append', base_image='python:3.11', registry='example.com/x')
fairing.config.set_deployer('job', pod_spec_mutators=[mounting_pvc(pvc_name='p', pvc_mount_path='/m')])
_, _, deployer = fairing.config.run()
legacy_fairing.config.run()
`

func TestPythonPreprocessorRuns(t *testing.T) {
	py := preprocesstest.Python(t)
	ctx := writeTree(t, map[string]string{
		"main.py": sdkCalls + `
from pkg.helper import greet
with open('data/input.txt') as f:
    print(greet(f.read().strip()))
with open('config/settings.ini') as f:
    print(f.read().strip())
print('runtime', os.environ['FAIRING_RUNTIME'])
`,
		"pkg/__init__.py":                        "",
		"pkg/helper.py":                          "def greet(n):\n    return 'hello ' + n\n",
		"pkg/__pycache__/helper.cpython-311.pyc": "stale bytecode that must not reach the image",
		"data/input.txt":                         "world\n",
		"settings.ini":                           "[a]\nb = 1\n",
	})
	im := build(t, preprocess.Options{BaseDir: ctx, Inputs: []string{"main.py", "pkg", "data"},
		OutputMap: []preprocess.Mapping{{Src: "settings.ini", Dst: "config/"}}})
	r := im.run(t, map[string]string{"python3": py}).ok(t)
	if want := "hello world\n[a]\nb = 1\nruntime 1\n"; r.stdout != want {
		t.Errorf("stdout = %q, want %q", r.stdout, want)
	}
	if _, err := os.Stat(filepath.Join(im.root, "app/pkg/__pycache__")); !os.IsNotExist(err) {
		t.Errorf("__pycache__ reached the image: %v", err)
	}
}

// nb builds an nbformat 4 notebook from code and markdown cells ("md:" prefix).
func nb(t *testing.T, cells ...string) string {
	t.Helper()
	var cs []map[string]any
	for _, c := range cells {
		typ := "code"
		if rest, ok := strings.CutPrefix(c, "md:"); ok {
			typ, c = "markdown", rest
		}
		cell := map[string]any{"cell_type": typ, "metadata": map[string]any{}, "source": c}
		if typ == "code" {
			cell["outputs"], cell["execution_count"] = []any{}, nil
		}
		cs = append(cs, cell)
	}
	b, err := json.Marshal(map[string]any{
		"cells": cs, "nbformat": 4, "nbformat_minor": 5,
		"metadata": map[string]any{"kernelspec": map[string]any{"name": "python3", "display_name": "Python 3", "language": "python"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestNotebookPreprocessorRuns(t *testing.T) {
	py := preprocesstest.Python(t)
	notebook := nb(t,
		"md:# Training\nThis notebook *trains*.",
		sdkCalls,
		"%matplotlib inline\n!pip install -q torch\nfiles = !ls\n%load_ext autoreload",
		"%%bash\necho this is bash, not python\nexit 3",
		"%%writefile generated_mod.py\nVALUE = 41",
		"%%capture\nimport generated_mod\nfrom helper import add",
		"%time result = add(generated_mod.VALUE, 1)\nif result:\n    !echo shell in a block\nprint('result', result)",
		"len?\nget_ipython().run_line_magic('env', 'A=1')\ndisplay('displayed')",
		"# relative paths mean what they meant in Jupyter: the notebook's directory\nprint(open('data.txt').read().strip(), open('../shared/s.txt').read().strip())",
	)
	ctx := writeTree(t, map[string]string{"nb/train.ipynb": notebook, "nb/helper.py": "def add(a, b):\n    return a + b\n",
		"nb/data.txt": "beside the notebook", "shared/s.txt": "and next to it"})
	im := build(t, preprocess.Options{Kind: preprocess.Notebook, BaseDir: ctx, Notebook: "nb/train.ipynb", Inputs: []string{"nb/helper.py", "nb/data.txt", "shared"}})
	if got, want := im.res.Command, []string{"python3", filepath.Join(im.root, "app/nb/train.py")}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("command = %q, want %q", got, want)
	}
	r := im.run(t, map[string]string{"python3": py}).ok(t)
	if want := "result 42\ndisplayed\nbeside the notebook and next to it\n"; r.stdout != want {
		t.Errorf("stdout = %q, want %q\nstderr:\n%s", r.stdout, want, r.stderr)
	}
	// The notebook was not modified and nothing was written beside it.
	entries, _ := os.ReadDir(filepath.Join(ctx, "nb"))
	if len(entries) != 3 {
		t.Errorf("the context changed: %v", entries)
	}
}

func TestFullNotebookRunsWithNBConvert(t *testing.T) {
	jupyter := preprocesstest.Jupyter(t)
	py := preprocesstest.Python(t)
	notebook := nb(t,
		"md:# A notebook run as it is",
		sdkCalls+"print('sdk calls were no-ops')",
		"with open('data.txt') as f:\n    n = int(f.read())\nprint('n squared is', n * n)",
		"%%capture\nx = 5",
		"x * 2",
	)
	ctx := writeTree(t, map[string]string{"exp/run.ipynb": notebook, "exp/data.txt": "12"})
	im := build(t, preprocess.Options{Kind: preprocess.FullNotebook, BaseDir: ctx, Notebook: "exp/run.ipynb",
		Inputs: []string{"exp/data.txt"}, NotebookRunner: preprocess.NBConvert, NotebookOutput: "out/executed.ipynb"})
	r := im.run(t, map[string]string{"python3": py, "jupyter": jupyter}).ok(t)

	out, err := os.ReadFile(filepath.Join(im.root, "app/out/executed.ipynb"))
	if err != nil {
		t.Fatalf("no executed notebook: %v\nstderr:\n%s", err, r.stderr)
	}
	var doc struct {
		Cells []struct {
			CellType string `json:"cell_type"`
			Outputs  []struct {
				OutputType string          `json:"output_type"`
				Text       json.RawMessage `json:"text"`
				Data       map[string]json.RawMessage
			} `json:"outputs"`
		} `json:"cells"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, c := range doc.Cells {
		for _, o := range c.Outputs {
			raw := o.Text
			if raw == nil {
				raw = o.Data["text/plain"]
			}
			texts = append(texts, o.OutputType+": "+joinText(t, raw))
		}
	}
	want := []string{"stream: sdk calls were no-ops\n", "stream: n squared is 144\n", "execute_result: 10"}
	if strings.Join(texts, "|") != strings.Join(want, "|") {
		t.Errorf("outputs = %q, want %q", texts, want)
	}
	// The notebook in the context is untouched.
	if orig, _ := os.ReadFile(filepath.Join(ctx, "exp/run.ipynb")); string(orig) != notebook {
		t.Error("the user's notebook was modified")
	}
}

func joinText(t *testing.T, raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []string
	if err := json.Unmarshal(raw, &parts); err != nil {
		t.Fatalf("output text %s: %v", raw, err)
	}
	return strings.Join(parts, "")
}

func TestFullNotebookFailureFailsTheRun(t *testing.T) {
	jupyter := preprocesstest.Jupyter(t)
	py := preprocesstest.Python(t)
	ctx := writeTree(t, map[string]string{"bad.ipynb": nb(t, "print('before')", "raise ValueError('cell failed')", "print('never')")})
	im := build(t, preprocess.Options{Kind: preprocess.FullNotebook, BaseDir: ctx, Notebook: "bad.ipynb", NotebookRunner: preprocess.NBConvert})
	r := im.run(t, map[string]string{"python3": py, "jupyter": jupyter})
	if r.code == 0 || !strings.Contains(r.stderr, "ValueError: cell failed") {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
}

const trainPy = `import os, sys
from helper import scale
from kubeflow import fairing

def train():
    fairing.config.set_builder('append')
    return 'trained with scale %d' % scale(2)

def quiet():
    return None

def fail():
    raise ValueError('boom')

def leave():
    sys.exit(4)

class Model:
    def __init__(self):
        self.epochs = 3
    def train(self):
        print('epochs', self.epochs)
        return {'loss': 0.5}

class NoTrain:
    pass

NOT_CALLABLE = 3
`

func TestFunctionPreprocessorRuns(t *testing.T) {
	py := preprocesstest.Python(t)
	out, err := exec.Command(py, "-c", "import sys; print('%d.%d' % sys.version_info[:2])").Output()
	if err != nil {
		t.Fatal(err)
	}
	version := strings.TrimSpace(string(out))
	ctx := writeTree(t, map[string]string{"src/train.py": trainPy, "src/helper.py": "def scale(x):\n    return x * 10\n"})
	for _, tc := range []struct {
		name, function, version string
		code                    int
		stdout                  string
		stderr                  []string
	}{
		{"a function's truthy result is printed", "train", "", 0, "trained with scale 20\n", nil},
		{"a falsy result prints nothing", "quiet", version, 0, "", nil},
		{"a class is instantiated and trained", "Model", "", 0, "epochs 3\n{'loss': 0.5}\n", nil},
		{"an exception exits 1 with the traceback", "fail", "", 1, "",
			[]string{"Traceback (most recent call last):", `train.py", line 13, in fail`, "ValueError: boom", "fairing: " + "SRC:fail raised ValueError (traceback above)"}},
		{"sys.exit passes through", "leave", "", 4, "", nil},
		{"a missing name", "nope", "", 2, "", []string{"fairing: SRCFILE has no 'nope'"}},
		{"a class without train", "NoTrain", "", 2, "", []string{"fairing: SRC:NoTrain is a class without a train() method"}},
		{"not callable", "NOT_CALLABLE", "", 2, "", []string{"fairing: SRC:NOT_CALLABLE is a int, not a function or a class"}},
		{"a version mismatch is refused before loading", "train", "2.7", 3, "",
			[]string{"fairing: this image runs Python " + version + " but the function was declared for Python 2.7 (--python-version 2.7): use a base image with Python 2.7, or change --python-version"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			im := build(t, preprocess.Options{Kind: preprocess.Function, BaseDir: ctx, Function: "src/train.py:" + tc.function,
				Inputs: []string{"src/helper.py"}, PythonVersion: tc.version})
			r := im.run(t, map[string]string{"python3": py})
			file := filepath.Join(im.root, "app/src/train.py")
			if r.code != tc.code || r.stdout != tc.stdout {
				t.Fatalf("exit %d stdout %q, want %d %q\nstderr:\n%s", r.code, r.stdout, tc.code, tc.stdout, r.stderr)
			}
			for _, w := range tc.stderr {
				w = strings.ReplaceAll(strings.ReplaceAll(w, "SRCFILE", file), "SRC", file)
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
			if tc.code == 3 && strings.Contains(r.stderr, "Traceback") {
				t.Errorf("a version mismatch should not load the module:\n%s", r.stderr)
			}
		})
	}
}

func TestPickledFunctionRuns(t *testing.T) {
	py := preprocesstest.PythonWith(t, "cloudpickle")
	ctx := t.TempDir()
	// A lambda and a class defined in __main__ are pickled by value, as in a notebook.
	script := `import cloudpickle, sys
scale = 7
class Trainer:
    def train(self):
        return 'class from a pickle, scale %d' % scale
with open('fn.pkl', 'wb') as f:
    cloudpickle.dump(lambda: 'lambda from a pickle, scale %d' % scale, f)
with open('cls.pkl', 'wb') as f:
    cloudpickle.dump(Trainer, f)
print('%d.%d' % sys.version_info[:2])
`
	cmd := exec.Command(py, "-c", script)
	cmd.Dir = ctx
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make pickles: %v\n%s", err, out)
	}
	version := strings.TrimSpace(string(out))
	for _, tc := range []struct {
		file, want string
	}{
		{"fn.pkl", "lambda from a pickle, scale 7\n"},
		{"cls.pkl", "class from a pickle, scale 7\n"},
	} {
		im := build(t, preprocess.Options{Kind: preprocess.Function, BaseDir: ctx, PickledFunction: tc.file, PythonVersion: version})
		if r := im.run(t, map[string]string{"python3": py}).ok(t); r.stdout != tc.want {
			t.Errorf("%s: stdout %q, want %q", tc.file, r.stdout, tc.want)
		}
	}
	// Without cloudpickle in the image (-S hides Debian's dist-packages) the shim says what to do.
	im := build(t, preprocess.Options{Kind: preprocess.Function, BaseDir: ctx, PickledFunction: "fn.pkl", Command: []string{"python3", "-S"}})
	r := im.run(t, map[string]string{"python3": py})
	if want := "needs cloudpickle to load: install cloudpickle in the image"; r.code != 1 || !strings.Contains(r.stderr, want) {
		t.Errorf("exit %d, stderr lacks %q:\n%s", r.code, want, r.stderr)
	}
}

func TestShimUsageErrors(t *testing.T) {
	py := preprocesstest.Python(t)
	ctx := writeTree(t, map[string]string{"m.py": "def f():\n    return 1\n"})
	im := build(t, preprocess.Options{Kind: preprocess.Function, BaseDir: ctx, Function: "m.py:f"})
	shim := im.res.Command[1]
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--file", "m.py"}, "--file needs --name"},
		{[]string{"--pickle", "x", "--name", "f"}, "--name goes with --file, not --pickle"},
		{[]string{"--file", "m.py", "--name", "f", "--python-version", "three"}, "fairing: --python-version 'three' is not MAJOR.MINOR"},
		{nil, "one of the arguments --file --pickle is required"},
	} {
		cmd := exec.Command(py, append([]string{shim}, tc.args...)...)
		cmd.Dir = im.res.WorkingDir
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), tc.want) {
			t.Errorf("%v: %v\n%s\nwant exit 2 and %q", tc.args, err, out, tc.want)
		}
	}
}

// TestStubKeepsOtherKubeflowPackages: kubeflow stays a namespace package, so a kubeflow.*
// package installed in the base still imports next to the stub.
func TestStubKeepsOtherKubeflowPackages(t *testing.T) {
	py := preprocesstest.Python(t)
	site := writeTree(t, map[string]string{"kubeflow/training/__init__.py": "NAME = 'training sdk'\n"})
	ctx := writeTree(t, map[string]string{"main.py": "import kubeflow.training, kubeflow.fairing\nprint(kubeflow.training.NAME, kubeflow.fairing.config.fn(len)('ab'))\n"})
	im := build(t, preprocess.Options{BaseDir: ctx, Inputs: []string{"main.py"}})
	im.res.Env["PYTHONPATH"] += ":" + site // as if installed in the base image
	if r := im.run(t, map[string]string{"python3": py}).ok(t); r.stdout != "training sdk 2\n" {
		t.Errorf("stdout %q", r.stdout)
	}
}
