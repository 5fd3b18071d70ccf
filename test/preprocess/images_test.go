package preprocess_test

// End to end: images built by the real fairing-builder binary with each preprocessor onto the
// Debian python (or notebook) base, pushed to the real registry, unpacked with umoci and run with
// runc. Unpacking the 155 MB base takes about 9 s, so each scenario unpacks one image and, where
// several images differ only in their Cmd (checked), runs each one's Cmd in that one bundle.
//
// The python base has python3 but no `python` (Debian's python-is-python3 is not installed), and
// the notebook base has no `jupyter` launcher: the builds rely on the defaults (python3 and
// python3 -m nbconvert) working there.

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/fairing-dev/fairing/internal/testenv"
)

var fairingBuilder = testenv.Binary{Package: "github.com/fairing-dev/fairing/cmd/fairing-builder"}

func TestMain(m *testing.M) {
	code := m.Run()
	fairingBuilder.Remove()
	os.Exit(code)
}

// builderReport is the part of --metadata-file these tests read.
type builderReport struct {
	Digest       string   `json:"digest"`
	Dependencies []string `json:"dependencies"`
}

type builderRun struct {
	stdout, stderr string
	code           int
}

// runBuilder runs `fairing-builder build args...` with a fresh layer cache.
func runBuilder(t *testing.T, args ...string) builderRun {
	t.Helper()
	bin := fairingBuilder.Path(t)
	cmd := exec.Command(bin, append([]string{"build", "--cache-dir", t.TempDir()}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := builderRun{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run fairing-builder: %v", err)
	}
	return r
}

// builtImage is a successful build: the pushed NAME@sha256 (stdout's last line), what the builder
// printed on stderr, and its metadata file.
type builtImage struct {
	ref    string
	stderr string
	meta   builderReport
}

// buildImage runs a build that must succeed.
func buildImage(t *testing.T, args ...string) builtImage {
	t.Helper()
	metaFile := filepath.Join(t.TempDir(), "meta.json")
	r := runBuilder(t, append([]string{"--metadata-file", metaFile}, args...)...)
	if r.code != 0 {
		t.Fatalf("fairing-builder build %q: exit %d\n%s", args, r.code, r.stderr)
	}
	b, err := os.ReadFile(metaFile)
	if err != nil {
		t.Fatal(err)
	}
	var meta builderReport
	if err := json.Unmarshal(b, &meta); err != nil {
		t.Fatalf("--metadata-file: %v\n%s", err, b)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	ref := lines[len(lines)-1]
	if !strings.HasSuffix(ref, "@"+meta.Digest) {
		t.Fatalf("last stdout line %q does not end with the digest %s", ref, meta.Digest)
	}
	return builtImage{ref: ref, stderr: r.stderr, meta: meta}
}

func remoteImage(t *testing.T, ref string) v1.Image {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		t.Fatalf("read %s from the registry: %v", ref, err)
	}
	return img
}

func imageConfig(t *testing.T, ref string) v1.Config {
	t.Helper()
	cf, err := remoteImage(t, ref).ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return cf.Config
}

// addedFiles lists the paths (without leading "/") in the layers ref has on top of base's.
func addedFiles(t *testing.T, ref, base string) []string {
	t.Helper()
	baseLayers, err := remoteImage(t, base).Layers()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := remoteImage(t, ref).Layers()
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, l := range layers[len(baseLayers):] {
		rc, err := l.Uncompressed()
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
				t.Fatalf("read a layer of %s: %v", ref, err)
			}
			if h.Typeflag != tar.TypeDir {
				files = append(files, strings.TrimPrefix(h.Name, "./"))
			}
		}
		rc.Close()
	}
	sort.Strings(files)
	return files
}

// cmdOnlyDiffers checks that the images a and b have the same layers and the same config but for
// Cmd, so that running b's Cmd in a's unpacked bundle is running b. It returns b's Cmd.
func cmdOnlyDiffers(t *testing.T, a, b string) []string {
	t.Helper()
	ia, ib := remoteImage(t, a), remoteImage(t, b)
	la, _ := ia.Layers()
	lb, _ := ib.Layers()
	var da, db []v1.Hash
	for _, l := range la {
		d, _ := l.Digest()
		da = append(da, d)
	}
	for _, l := range lb {
		d, _ := l.Digest()
		db = append(db, d)
	}
	if !slices.Equal(da, db) {
		t.Fatalf("%s and %s have different layers:\n%v\n%v", a, b, da, db)
	}
	ca, _ := ia.ConfigFile()
	cb, _ := ib.ConfigFile()
	cmd := cb.Config.Cmd
	ca, cb = ca.DeepCopy(), cb.DeepCopy()
	ca.Config.Cmd, cb.Config.Cmd = nil, nil
	if !reflect.DeepEqual(ca, cb) {
		ja, _ := json.Marshal(ca)
		jb, _ := json.Marshal(cb)
		t.Fatalf("the configs of %s and %s differ in more than Cmd:\n%s\n%s", a, b, ja, jb)
	}
	return cmd
}

// notFound checks that nothing was pushed to ref.
func notFound(t *testing.T, ref string) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	_, err = remote.Head(r)
	var te *transport.Error
	if !errors.As(err, &te) || te.StatusCode != 404 {
		t.Errorf("%s after a refused build: want 404, got %v", ref, err)
	}
}

const pythonMain = `import os, sys
# before anything is imported from pkg, so that Python has not written bytecode yet
print("pkg:", sorted(os.listdir("pkg")))
from kubeflow import fairing
fairing.config.set_builder("append", base_image="python:3.11", registry="registry.example.com/me")
fairing.config.set_deployer("job")
fairing.config.run()
print("sdk: no-op from", fairing.__file__)
from pkg.helper import greet
with open("data/input.txt") as f:
    print(greet(f.read().strip()))
with open("data/nested/deeper/more.txt") as f:
    print("nested:", f.read().strip())
with open("/data/config/settings.ini") as f:
    print("settings:", f.read().strip())
print("cwd:", os.getcwd(), "argv:", sys.argv)
print("FAIRING_RUNTIME=" + os.environ.get("FAIRING_RUNTIME", "unset"))
print("PYTHONPATH=" + os.environ.get("PYTHONPATH", "unset"))
sys.exit(7)
`

// TestPythonImage: inputs of files and folders (recursed, __pycache__ left out), the executable
// picked automatically, the SDK stub, the environment, --output-map to an allowed root, the
// requirements.txt warning and metadata, and refused escapes that push nothing.
func TestPythonImage(t *testing.T) {
	reg, base := testenv.Registry(t), testenv.PythonBase(t)
	ctx := writeTree(t, map[string]string{
		"main.py":                     pythonMain,
		"pkg/__init__.py":             "",
		"pkg/helper.py":               "def greet(name):\n    return 'hello ' + name\n",
		"pkg/__pycache__/helper.pyc":  "stale bytecode that must not reach the image",
		"data/input.txt":              "world\n",
		"data/nested/deeper/more.txt": "found by recursion\n",
		"settings.ini":                "[train]\nepochs = 3\n",
		"requirements.txt":            "numpy==1.26.4\n",
		"notes.txt":                   "not an input: stays out of the image",
	})
	dest := reg + "/" + testenv.Repo(t) + ":v1"
	args := []string{"--builder", "append", "--context", ctx, "--base", base, "--destination", dest,
		"--input", "main.py", "--input", "pkg", "--input", "data", "--input", "requirements.txt",
		"--output-map", "settings.ini=/data/config/"}
	im := buildImage(t, args...)

	if want := "warning: /app/requirements.txt found: the append builder cannot install dependencies (pip install)"; !strings.Contains(im.stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, im.stderr)
	}
	if want := []string{"/app/requirements.txt"}; !slices.Equal(im.meta.Dependencies, want) {
		t.Errorf("metadata dependencies = %q, want %q", im.meta.Dependencies, want)
	}
	cfg := imageConfig(t, im.ref)
	if want := []string{"python3", "/app/main.py"}; !slices.Equal(cfg.Cmd, want) || len(cfg.Entrypoint) != 0 || cfg.WorkingDir != "/app" {
		t.Errorf("config: Entrypoint %q Cmd %q WorkingDir %q; want no entrypoint, Cmd %q, /app", cfg.Entrypoint, cfg.Cmd, cfg.WorkingDir, want)
	}
	wantFiles := []string{
		"app/data/input.txt", "app/data/nested/deeper/more.txt", "app/main.py", "app/pkg/__init__.py",
		"app/pkg/helper.py", "app/requirements.txt", "data/config/settings.ini",
	}
	var got []string
	for _, f := range addedFiles(t, im.ref, base) {
		if !strings.HasPrefix(f, "opt/fairing/") { // the SDK stub
			got = append(got, f)
		}
	}
	if !slices.Equal(got, wantFiles) {
		t.Errorf("files added to the base:\n%q\nwant\n%q", got, wantFiles)
	}

	out, code := testenv.RunImage(t, im.ref)
	want := "pkg: ['__init__.py', 'helper.py']\n" +
		"sdk: no-op from /opt/fairing/python/kubeflow/fairing/__init__.py\n" +
		"hello world\n" +
		"nested: found by recursion\n" +
		"settings: [train]\nepochs = 3\n" +
		"cwd: /app argv: ['/app/main.py']\n" +
		"FAIRING_RUNTIME=1\n" +
		"PYTHONPATH=/opt/fairing/python\n"
	if code != 7 || out != want {
		t.Errorf("run: exit %d, stdout:\n%s\nwant exit 7, stdout:\n%s", code, out, want)
	}

	// Bad input: a clear message, exit 1, nothing pushed, the context untouched.
	outside := filepath.Join(filepath.Dir(ctx), "outside.py")
	if err := os.WriteFile(outside, []byte("print('outside')\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		extra []string
		want  string
	}{
		{"input escapes", []string{"--input", "../outside.py"}, "--input ../outside.py is outside the context directory " + ctx},
		{"output-map escapes the prefix", []string{"--output-map", "settings.ini=../settings.ini"}, "destination ../settings.ini leaves /app"},
		{"output-map outside the roots", []string{"--output-map", "settings.ini=/etc/settings.ini"},
			"destination /etc/settings.ini is outside /app and the allowed roots"},
		{"two sources for one file", []string{"--output-map", "notes.txt=data/input.txt"}, "two sources for /app/data/input.txt in the image"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bad := reg + "/" + testenv.Repo(t) + ":v1"
			a := append([]string{"--context", ctx, "--base", base, "--destination", bad, "--input", "main.py", "--input", "data"}, tt.extra...)
			r := runBuilder(t, a...)
			if r.code != 1 || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and %q", r.code, r.stderr, tt.want)
			}
			notFound(t, bad)
		})
	}
	entries, _ := os.ReadDir(ctx)
	if len(entries) != 6 {
		t.Errorf("the context changed: %d entries", len(entries))
	}
}

// nbCell is a notebook cell: code unless markdown or raw is set; tags go in its metadata.
type nbCell struct {
	source        string
	markdown, raw bool
	tags          []string
}

func notebookJSON(t *testing.T, cells ...nbCell) string {
	t.Helper()
	var cs []map[string]any
	for _, c := range cells {
		meta := map[string]any{}
		if len(c.tags) > 0 {
			meta["tags"] = c.tags
		}
		cell := map[string]any{"cell_type": "code", "metadata": meta, "source": c.source}
		switch {
		case c.markdown:
			cell["cell_type"] = "markdown"
		case c.raw:
			cell["cell_type"] = "raw"
		default:
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

// TestNotebookImage: the converted notebook prints what the notebook prints without its
// IPython-only lines, reads files relative to the notebook's folder, imports modules beside it;
// the include-cell tag mode runs only the tagged cells.
func TestNotebookImage(t *testing.T) {
	reg, base := testenv.Registry(t), testenv.PythonBase(t)
	analysis := notebookJSON(t,
		nbCell{source: "# Analysis\nReads `data/points.csv`.", markdown: true},
		nbCell{source: "%matplotlib inline\n%load_ext autoreload\n!echo SHELL-ESCAPE-RAN\nfiles = !ls\nimport os\nimport helper\nprint('start')"},
		nbCell{source: "%%bash\necho CELL-MAGIC-RAN\nexit 3"},
		nbCell{source: "get_ipython().run_line_magic('env', 'A=1')\nwith open('data/points.csv') as f:\n    rows = [int(x) for x in f.read().split()]\nif rows:\n    !echo INDENTED-ESCAPE-RAN\n    print('rows:', len(rows))"},
		nbCell{source: "this is a raw cell, not python", raw: true},
		nbCell{source: "%time total = helper.total(rows)\nprint('total:', total)\nlen?"},
		nbCell{source: "from kubeflow import fairing\nfairing.config.set_deployer('job')\nfairing.config.run()\nprint('cwd:', os.getcwd())"},
	)
	tagged := notebookJSON(t,
		nbCell{source: "raise SystemExit('an untagged cell ran')"},
		nbCell{source: "print('tagged by metadata')", tags: []string{"fairing:include-cell"}},
		nbCell{source: "import sys\nsys.exit('another untagged cell ran')", tags: []string{"other"}},
		nbCell{source: "# fairing:include-cell\nprint('tagged in a comment')"},
	)
	ctx := writeTree(t, map[string]string{
		"notebooks/analysis.ipynb":   analysis,
		"notebooks/tagged.ipynb":     tagged,
		"notebooks/helper.py":        "def total(xs):\n    return sum(xs)\n",
		"notebooks/data/points.csv":  "1\n2\n3\n",
		"notebooks/data/unused.json": "{}",
	})
	repo := reg + "/" + testenv.Repo(t)
	common := []string{"--context", ctx, "--base", base, "--input", "notebooks/helper.py", "--input", "notebooks/data"}

	t.Run("convert", func(t *testing.T) {
		im := buildImage(t, append(common, "--destination", repo+":analysis", "--notebook", "notebooks/analysis.ipynb")...)
		if want := "warning: notebook notebooks/analysis.ipynb: commented out 8 IPython-only line(s) (magics, shell escapes) in cell(s) 2, 3, 4, 6;"; !strings.Contains(im.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, im.stderr)
		}
		cfg := imageConfig(t, im.ref)
		if want := []string{"python3", "/app/notebooks/analysis.py"}; !slices.Equal(cfg.Cmd, want) || cfg.WorkingDir != "/app/notebooks" {
			t.Errorf("Cmd %q WorkingDir %q; want %q, /app/notebooks", cfg.Cmd, cfg.WorkingDir, want)
		}
		out, code := testenv.RunImage(t, im.ref)
		if want := "start\nrows: 3\ntotal: 6\ncwd: /app/notebooks\n"; code != 0 || out != want {
			t.Errorf("run: exit %d, stdout %q; want 0, %q", code, out, want)
		}
		// The script was generated into the image, not beside the notebook.
		entries, _ := os.ReadDir(filepath.Join(ctx, "notebooks"))
		if len(entries) != 4 {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Errorf("the notebook's folder changed: %q", names)
		}
	})

	t.Run("include-cell tag", func(t *testing.T) {
		im := buildImage(t, append(common, "--destination", repo+":tagged", "--notebook", "notebooks/tagged.ipynb",
			"--include-cell-tag", "fairing:include-cell")...)
		out, code := testenv.RunImage(t, im.ref)
		if want := "tagged by metadata\ntagged in a comment\n"; code != 0 || out != want {
			t.Errorf("run: exit %d, stdout %q; want 0, %q", code, out, want)
		}
	})
}

// TestFullNotebookImage runs whole notebooks with nbconvert on the notebook base: the executed
// notebook is written where --notebook-output says, with the cells' outputs, and a failing cell
// fails the container.
func TestFullNotebookImage(t *testing.T) {
	reg, base := testenv.Registry(t), testenv.NotebookBase(t)
	ok := notebookJSON(t,
		nbCell{source: "with open('data/x.txt') as f:\n    x = int(f.read())\nprint('x is', x)"},
		nbCell{source: "import os\nprint('cwd', os.getcwd(), 'FAIRING_RUNTIME', os.environ['FAIRING_RUNTIME'])"},
		nbCell{source: "x * 7"},
	)
	failing := notebookJSON(t,
		nbCell{source: "print('before the failure')"},
		nbCell{source: "raise ValueError('the loss is NaN')"},
		nbCell{source: "print('never printed')"},
	)
	ctx := writeTree(t, map[string]string{"nb/ok.ipynb": ok, "nb/fail.ipynb": failing, "nb/data/x.txt": "6\n"})
	repo := reg + "/" + testenv.Repo(t)
	common := []string{"--context", ctx, "--base", base, "--preprocessor", "full_notebook", "--notebook-runner", "nbconvert",
		"--notebook-output", "/tmp/out/executed.ipynb", "--input", "nb/data"}
	// Both notebooks are in both images (one as --notebook, the other as --input): only the
	// command differs, so both run in one unpacked bundle.
	good := buildImage(t, append(common, "--destination", repo+":ok", "--notebook", "nb/ok.ipynb", "--input", "nb/fail.ipynb")...)
	bad := buildImage(t, append(common, "--destination", repo+":fail", "--notebook", "nb/fail.ipynb", "--input", "nb/ok.ipynb")...)
	cfg := imageConfig(t, good.ref)
	wantCmd := []string{"python3", "-m", "nbconvert", "--to", "notebook", "--execute", "--ExecutePreprocessor.timeout=-1",
		"--output-dir", "/tmp/out", "--output", "executed.ipynb", "/app/nb/ok.ipynb"}
	if !slices.Equal(cfg.Cmd, wantCmd) {
		t.Errorf("Cmd %q, want %q", cfg.Cmd, wantCmd)
	}
	badCmd := cmdOnlyDiffers(t, good.ref, bad.ref)

	b := testenv.UnpackImage(t, good.ref)
	executedPath := filepath.Join(b.Rootfs(), "tmp/out/executed.ipynb")
	if _, err := os.Stat(executedPath); !os.IsNotExist(err) {
		t.Fatalf("the image already holds the executed notebook: %v", err)
	}
	if _, code := b.Run(t, testenv.WithTimeout(5*time.Minute)); code != 0 {
		t.Fatalf("nbconvert exit %d", code)
	}
	data, err := os.ReadFile(executedPath)
	if err != nil {
		t.Fatalf("the executed notebook: %v", err)
	}
	var executed struct {
		Cells []struct {
			Outputs []struct {
				OutputType string          `json:"output_type"`
				Text       json.RawMessage `json:"text"`
				Data       map[string]json.RawMessage
			} `json:"outputs"`
		} `json:"cells"`
	}
	if err := json.Unmarshal(data, &executed); err != nil {
		t.Fatalf("the executed notebook is not JSON: %v\n%s", err, data)
	}
	var outputs []string
	for _, c := range executed.Cells {
		for _, o := range c.Outputs {
			switch o.OutputType {
			case "stream":
				outputs = append(outputs, joinText(t, o.Text))
			case "execute_result":
				outputs = append(outputs, joinText(t, o.Data["text/plain"]))
			}
		}
	}
	want := []string{"x is 6\n", "cwd /app/nb FAIRING_RUNTIME 1\n", "42"}
	if !slices.Equal(outputs, want) {
		t.Errorf("outputs of the executed notebook %q, want %q", outputs, want)
	}

	var stderr bytes.Buffer
	_, code := b.Run(t, testenv.WithArgs(badCmd...), testenv.WithStderr(&stderr), testenv.WithTimeout(5*time.Minute))
	if code == 0 || !strings.Contains(stderr.String(), "ValueError: the loss is NaN") {
		t.Errorf("failing notebook: exit %d; want non-zero and the error in stderr:\n%s", code, stderr.String())
	}
}

const jobsPy = `import os
from helpers import scale

def train_fn():
    print("training in", os.getcwd())
    return {"accuracy": scale(0.5)}

class Model:
    def train(self):
        print("Model.train, FAIRING_RUNTIME=" + os.environ["FAIRING_RUNTIME"])
        return "saved model.pt"

def broken():
    raise ValueError("learning rate must be positive")
`

// TestFunctionImage: a function whose return is printed, a class whose train() runs, an exception
// (exit 1 and the traceback) and a Python version mismatch (exit 3). The four images differ only
// in their Cmd, so they run in one unpacked bundle.
func TestFunctionImage(t *testing.T) {
	reg, base := testenv.Registry(t), testenv.PythonBase(t)
	ctx := writeTree(t, map[string]string{"jobs.py": jobsPy, "helpers.py": "def scale(x):\n    return x * 2\n"})
	repo := reg + "/" + testenv.Repo(t)
	build := func(tag string, extra ...string) string {
		return buildImage(t, append([]string{"--context", ctx, "--base", base, "--destination", repo + ":" + tag,
			"--input", "helpers.py"}, extra...)...).ref
	}
	fn := build("fn", "--function", "jobs.py:train_fn")
	cfg := imageConfig(t, fn)
	wantCmd := []string{"python3", "/opt/fairing/function_shim.py", "--file", "/app/jobs.py", "--name", "train_fn"}
	if !slices.Equal(cfg.Cmd, wantCmd) || cfg.WorkingDir != "/app" {
		t.Errorf("Cmd %q WorkingDir %q; want %q, /app", cfg.Cmd, cfg.WorkingDir, wantCmd)
	}
	b := testenv.UnpackImage(t, fn)
	for _, tt := range []struct {
		name, ref  string
		wantCode   int
		wantStdout string
		wantStderr []string
	}{
		{"function", fn, 0, "training in /app\n{'accuracy': 1.0}\n", nil},
		{"class", build("class", "--function", "jobs.py:Model"), 0, "Model.train, FAIRING_RUNTIME=1\nsaved model.pt\n", nil},
		{"exception", build("broken", "--function", "jobs.py:broken"), 1, "", []string{
			"Traceback (most recent call last):", `File "/app/jobs.py", line 14, in broken`,
			"ValueError: learning rate must be positive", "fairing: /app/jobs.py:broken raised ValueError"}},
		{"version mismatch", build("py310", "--function", "jobs.py:train_fn", "--python-version", "3.10"), 3, "", []string{
			"fairing: this image runs Python 3.11 but the function was declared for Python 3.10"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd := cmdOnlyDiffers(t, fn, tt.ref)
			var stderr bytes.Buffer
			out, code := b.Run(t, testenv.WithArgs(cmd...), testenv.WithStderr(&stderr))
			if code != tt.wantCode || out != tt.wantStdout {
				t.Errorf("exit %d, stdout %q; want %d, %q", code, out, tt.wantCode, tt.wantStdout)
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
		})
	}
}

// TestPreprocessedDigestsReproducible: the same inputs give the same digest from a fresh cache
// and another copy of the context (other path, other file times), whatever the order of --input.
func TestPreprocessedDigestsReproducible(t *testing.T) {
	base := testenv.PythonBase(t)
	files := map[string]string{
		"main.py": "import lib.util\nprint(lib.util.X)\n", "lib/__init__.py": "", "lib/util.py": "X = 1\n",
		"data/a.txt": "a", "data/b/c.txt": "c", "requirements.txt": "requests\n", "jobs.py": jobsPy, "helpers.py": "def scale(x):\n    return x\n",
		"nb/train.ipynb": notebookJSON(t, nbCell{source: "%matplotlib inline\nprint(1)"}, nbCell{source: "# Title", markdown: true}),
	}
	for _, tt := range []struct {
		name          string
		first, second []string
	}{
		{"python", []string{"--input", "main.py", "--input", "lib", "--input", "data", "--input", "requirements.txt"},
			[]string{"--input", "data", "--input", "requirements.txt", "--input", "lib", "--input", "main.py"}},
		{"notebook", []string{"--notebook", "nb/train.ipynb", "--input", "data", "--input", "lib"},
			[]string{"--input", "lib", "--notebook", "nb/train.ipynb", "--input", "data"}},
		{"full_notebook", []string{"--preprocessor", "full_notebook", "--notebook", "nb/train.ipynb", "--input", "data/a.txt", "--input", "data/b"},
			[]string{"--preprocessor", "full_notebook", "--input", "data/b", "--input", "data/a.txt", "--notebook", "nb/train.ipynb"}},
		{"function", []string{"--function", "jobs.py:Model", "--input", "helpers.py", "--input", "lib"},
			[]string{"--input", "lib", "--input", "helpers.py", "--function", "jobs.py:Model"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			age := 0
			digest := func(args []string) string {
				ctx := writeTree(t, files)
				age++
				when := time.Now().Add(-time.Duration(age) * 24 * time.Hour)
				filepath.Walk(ctx, func(p string, _ os.FileInfo, _ error) error { return os.Chtimes(p, when, when) })
				r := runBuilder(t, append([]string{"--context", ctx, "--base", base, "--no-push", "--quiet"}, args...)...)
				if r.code != 0 {
					t.Fatalf("build %q: exit %d\n%s", args, r.code, r.stderr)
				}
				return strings.TrimSpace(r.stdout)
			}
			a, b := digest(tt.first), digest(tt.second)
			if !strings.HasPrefix(a, "sha256:") || a != b {
				t.Errorf("digests %q and %q, want one and the same", a, b)
			}
		})
	}
}
