package preprocess

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fairing-dev/fairing/pkg/preprocess/notebook"
)

const trainNotebook = `{
 "cells": [
  {"cell_type": "markdown", "metadata": {}, "source": ["# Train\n"]},
  {"cell_type": "code", "execution_count": 1, "metadata": {}, "outputs": [], "source": ["!pip install torch\n", "%matplotlib inline\n", "print('training')"]},
  {"cell_type": "code", "execution_count": 2, "metadata": {"tags": ["fairing:include-cell"]}, "outputs": [], "source": ["x = 1"]}
 ],
 "metadata": {"kernelspec": {"language": "python", "name": "python3"}},
 "nbformat": 4, "nbformat_minor": 5
}`

func TestNotebook(t *testing.T) {
	base := mkContext(t, map[string]string{"nb/train.ipynb": trainNotebook, "nb/helpers.py": "", "data.csv": ""})
	r := mustPreprocess(t, Options{Kind: Notebook, BaseDir: base, Notebook: "nb/train.ipynb", Inputs: []string{"nb/helpers.py", "data.csv"}})
	equal(t, "command", r.Command, []string{"python3", "/app/nb/train.py"})
	equal(t, "working dir", r.WorkingDir, "/app/nb")
	equal(t, "sources", describe(base, r.Sources, false), []string{
		"/app/data.csv <- data.csv",
		"/app/nb/helpers.py <- nb/helpers.py",
		"/app/nb/train.py <- generated [top]",
	})
	equal(t, "prioritize", r.Prioritize, []string{"/app/nb/train.py"})
	want, err := notebook.ConvertBytes([]byte(trainNotebook), notebook.Options{Name: "train.ipynb"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range r.Sources {
		if s.Dest == "/app/nb/train.py" && string(s.Data) != string(want.Source) {
			t.Errorf("script:\n%s\nwant:\n%s", s.Data, want.Source)
		}
	}
	equal(t, "warnings", r.Warnings, []string{"notebook nb/train.ipynb: commented out 2 IPython-only line(s) (magics, shell escapes) in cell(s) 2; " +
		"they do not run under plain python; for the packages they installed, list them in requirements.txt and build with the BuildKit path (--builder buildkit)"})

	// Tag mode, another interpreter, and the notebook given by absolute path outside the context.
	outside := mkContext(t, map[string]string{"exp.ipynb": trainNotebook})
	r = mustPreprocess(t, Options{Kind: Notebook, BaseDir: base, Notebook: filepath.Join(outside, "exp.ipynb"),
		IncludeCellTag: notebook.DefaultIncludeTag, Command: []string{"python3"}})
	equal(t, "tag-mode command", r.Command, []string{"python3", "/app/exp.py"})
	equal(t, "tag-mode working dir", r.WorkingDir, "/app")
	for _, s := range r.Sources {
		if s.Dest == "/app/exp.py" && (strings.Contains(string(s.Data), "training") || !strings.Contains(string(s.Data), "x = 1")) {
			t.Errorf("tag mode kept the wrong cells:\n%s", s.Data)
		}
	}
	equal(t, "tag-mode warnings", r.Warnings, []string(nil))
}

func TestNotebookErrors(t *testing.T) {
	base := mkContext(t, map[string]string{
		"bad.ipynb":    `{"cells": [}`,
		"v3.ipynb":     `{"nbformat": 3, "worksheets": []}`,
		"nocell.ipynb": `{"nbformat": 4, "metadata": {}}`,
		"r.ipynb":      `{"nbformat": 4, "metadata": {"kernelspec": {"language": "R"}}, "cells": []}`,
		"ok.ipynb":     trainNotebook,
		"ok.py":        "print('a python file with the name the script needs')",
		"dir.ipynb/":   "",
	})
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no notebook", Options{}, "the notebook preprocessor needs --notebook FILE.ipynb"},
		{"missing", Options{Notebook: "nope.ipynb"}, "--notebook nope.ipynb: no such file or directory in " + base + " (relative paths are relative to the context directory)"},
		{"a directory", Options{Notebook: "dir.ipynb"}, "--notebook dir.ipynb is a directory, not a file"},
		{"bad JSON", Options{Notebook: "bad.ipynb"}, "notebook bad.ipynb: invalid JSON at line 1:12: invalid character '}' looking for beginning of value"},
		{"nbformat 3", Options{Notebook: "v3.ipynb"}, "notebook v3.ipynb: nbformat 3 is not supported (only nbformat 4): upgrade it with `jupyter nbconvert --to notebook --nbformat 4 --inplace FILE` or open and save it in a current Jupyter"},
		{"missing cells", Options{Notebook: "nocell.ipynb"}, `notebook nocell.ipynb: no "cells" list: an nbformat 4 notebook keeps its cells in a top-level "cells" array`},
		{"not python", Options{Notebook: "r.ipynb"}, `notebook r.ipynb: the notebook's kernel language is "R": only Python notebooks can be converted to a script; run it unchanged with the full_notebook preprocessor`},
		{"no tagged cell", Options{Notebook: "ok.ipynb", IncludeCellTag: "mine"}, `notebook ok.ipynb: no code cell carries the tag "mine" (as a cell tag or in a comment): tag the cells to run, or drop --include-cell-tag`},
		{"script over a user file", Options{Notebook: "ok.ipynb", Inputs: []string{"."}},
			"two sources for /app/ok.py in the image: --input . (" + filepath.Join(base, "ok.py") + ") and the script converted from ok.ipynb: drop one, or put one elsewhere with --output-map SRC=DST"},
		{"outside the context", Options{Notebook: "../x.ipynb"}, "--notebook ../x.ipynb: no such file or directory in " + base + " (relative paths are relative to the context directory)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Kind, tc.o.BaseDir = Notebook, base
			equal(t, "error", preprocessErr(t, tc.o), tc.want)
		})
	}
	// A notebook outside the context by a relative path that exists is refused like an input.
	parent := filepath.Dir(base)
	other := mkContext(t, map[string]string{"x.ipynb": trainNotebook})
	rel, _ := filepath.Rel(base, filepath.Join(other, "x.ipynb"))
	got := preprocessErr(t, Options{Kind: Notebook, BaseDir: base, Notebook: rel})
	if !strings.HasPrefix(got, "--notebook "+rel+" is outside the context directory "+base) {
		t.Errorf("error = %s (parent %s)", got, parent)
	}
}

func TestNotebookWithoutCodeWarns(t *testing.T) {
	base := mkContext(t, map[string]string{"e.ipynb": `{"nbformat": 4, "cells": [{"cell_type": "markdown", "source": "hi"}]}`})
	r := mustPreprocess(t, Options{Kind: Notebook, BaseDir: base, Notebook: "e.ipynb"})
	equal(t, "warnings", r.Warnings, []string{"notebook e.ipynb has no code cells: the script does nothing"})
}

func TestFullNotebookCommands(t *testing.T) {
	base := mkContext(t, map[string]string{"train.ipynb": trainNotebook, "exp/run.ipynb": trainNotebook, "data.csv": ""})
	for _, tc := range []struct {
		name string
		o    Options
		want []string
	}{
		{"papermill defaults (Fairing's command)", Options{Notebook: "train.ipynb"},
			[]string{"papermill", "/app/train.ipynb", "fairing_output_notebook.ipynb", "--log-output"}},
		{"papermill with parameters, kernel and an object-store output", Options{Notebook: "train.ipynb",
			Parameters: []Param{{"lr", "0.1"}, {"name", "run 1"}}, Kernel: "python3", NotebookOutput: "s3://bucket/out.ipynb"},
			[]string{"papermill", "/app/train.ipynb", "s3://bucket/out.ipynb", "--log-output", "-k", "python3", "-p", "lr", "0.1", "-p", "name", "run 1"}},
		{"papermill runs the kernel in the notebook's directory", Options{Notebook: "exp/run.ipynb", NotebookOutput: "/mnt/out/run.ipynb"},
			[]string{"papermill", "/app/exp/run.ipynb", "/mnt/out/run.ipynb", "--log-output", "--cwd", "/app/exp"}},
		{"papermill as a module", Options{Notebook: "train.ipynb", Command: []string{"python3", "-m", "papermill"}, NotebookRunner: Papermill},
			[]string{"python3", "-m", "papermill", "/app/train.ipynb", "fairing_output_notebook.ipynb", "--log-output"}},
		{"nbconvert defaults", Options{Notebook: "train.ipynb", NotebookRunner: NBConvert},
			[]string{"python3", "-m", "nbconvert", "--to", "notebook", "--execute", "--ExecutePreprocessor.timeout=-1",
				"--output-dir", "/app", "--output", "fairing_output_notebook.ipynb", "/app/train.ipynb"}},
		{"nbconvert with kernel and output", Options{Notebook: "exp/run.ipynb", NotebookRunner: NBConvert, Kernel: "py", NotebookOutput: "out/x.ipynb"},
			[]string{"python3", "-m", "nbconvert", "--to", "notebook", "--execute", "--ExecutePreprocessor.timeout=-1",
				"--ExecutePreprocessor.kernel_name=py", "--output-dir", "/app/out", "--output", "x.ipynb", "/app/exp/run.ipynb"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Kind, tc.o.BaseDir = FullNotebook, base
			r := mustPreprocess(t, tc.o)
			equal(t, "command", r.Command, tc.want)
		})
	}
	r := mustPreprocess(t, Options{Kind: FullNotebook, BaseDir: base, Notebook: "exp/run.ipynb", Inputs: []string{"data.csv"}})
	equal(t, "sources", describe(base, r.Sources, false), []string{"/app/data.csv <- data.csv", "/app/exp/run.ipynb <- exp/run.ipynb"})
	equal(t, "prioritize", r.Prioritize, []string{"/app/exp/run.ipynb"})
	// The notebook named again as an input is the same file: no conflict.
	r = mustPreprocess(t, Options{Kind: FullNotebook, BaseDir: base, Notebook: "train.ipynb", Inputs: []string{"."}})
	equal(t, "with the context as input", describe(base, r.Sources, false), []string{"/app <- ."})
}

func TestFullNotebookErrors(t *testing.T) {
	base := mkContext(t, map[string]string{"nb.ipynb": trainNotebook, "bad.ipynb": "not json"})
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no notebook", Options{}, "the full_notebook preprocessor needs --notebook FILE.ipynb"},
		{"bad JSON", Options{Notebook: "bad.ipynb"}, "notebook bad.ipynb: invalid JSON at line 1:2: invalid character 'o' in literal null (expecting 'u')"},
		{"unknown runner", Options{Notebook: "nb.ipynb", NotebookRunner: "voila"}, `unknown notebook runner "voila": want papermill or nbconvert`},
		{"parameters with nbconvert", Options{Notebook: "nb.ipynb", NotebookRunner: NBConvert, Parameters: []Param{{"a", "1"}}},
			"notebook parameters (-p) need --notebook-runner papermill: nbconvert cannot pass them"},
		{"URL with nbconvert", Options{Notebook: "nb.ipynb", NotebookRunner: NBConvert, NotebookOutput: "gs://b/o.ipynb"},
			"--notebook-output gs://b/o.ipynb: nbconvert writes local files only; use a path (e.g. on a mounted volume) or --notebook-runner papermill"},
		{"nbconvert output without .ipynb", Options{Notebook: "nb.ipynb", NotebookRunner: NBConvert, NotebookOutput: "/out/result"},
			"--notebook-output /out/result: nbconvert adds .ipynb to the name it writes; end the path with .ipynb"},
		{"bad parameter name", Options{Notebook: "nb.ipynb", Parameters: []Param{{"learning-rate", "1"}}},
			`notebook parameter "learning-rate": "learning-rate" is not a Python identifier`},
		{"duplicate parameter", Options{Notebook: "nb.ipynb", Parameters: []Param{{"a", "1"}, {"a", "2"}}}, `notebook parameter "a" given twice`},
		{"kernel with a space", Options{Notebook: "nb.ipynb", Kernel: "python 3"}, `--kernel "python 3": a kernel name has no spaces (see ` + "`jupyter kernelspec list`)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Kind, tc.o.BaseDir = FullNotebook, base
			equal(t, "error", preprocessErr(t, tc.o), tc.want)
		})
	}
}

func TestFunction(t *testing.T) {
	base := mkContext(t, map[string]string{
		"train.py":    "def train():\n    return 1\nclass Model:\n    def train(self): pass\n",
		"lib/util.py": "", "fn.pkl": "\x80\x04.",
	})
	for _, tc := range []struct {
		name    string
		o       Options
		command []string
		sources []string
		warning string
	}{
		{"a function", Options{Function: "train.py:train", Inputs: []string{"lib"}},
			[]string{"python3", "/opt/fairing/function_shim.py", "--file", "/app/train.py", "--name", "train"},
			[]string{"/app/lib <- lib", "/app/train.py <- train.py", "/opt/fairing/function_shim.py <- generated [deps]"}, ""},
		{"a class, with a Python version", Options{Function: "train.py:Model", PythonVersion: "3.11.4", Command: []string{"python3"}},
			[]string{"python3", "/opt/fairing/function_shim.py", "--file", "/app/train.py", "--name", "Model", "--python-version", "3.11"},
			[]string{"/app/train.py <- train.py", "/opt/fairing/function_shim.py <- generated [deps]"}, ""},
		{"a pickle", Options{PickledFunction: "fn.pkl", PythonVersion: "3.11"},
			[]string{"python3", "/opt/fairing/function_shim.py", "--pickle", "/app/fn.pkl", "--python-version", "3.11"},
			[]string{"/app/fn.pkl <- fn.pkl", "/opt/fairing/function_shim.py <- generated [deps]"}, ""},
		{"a pickle without a version warns", Options{PickledFunction: "fn.pkl"},
			[]string{"python3", "/opt/fairing/function_shim.py", "--pickle", "/app/fn.pkl"},
			[]string{"/app/fn.pkl <- fn.pkl", "/opt/fairing/function_shim.py <- generated [deps]"},
			"--pickled-function: a pickle only loads on the Python version that made it; pass --python-version MAJOR.MINOR to check it at start-up"},
		{"a name the file does not define warns", Options{Function: "train.py:trian"},
			[]string{"python3", "/opt/fairing/function_shim.py", "--file", "/app/train.py", "--name", "trian"},
			[]string{"/app/train.py <- train.py", "/opt/fairing/function_shim.py <- generated [deps]"},
			"--function train.py:trian: train.py does not seem to define trian; the image will fail if it does not"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Kind, tc.o.BaseDir = Function, base
			r := mustPreprocess(t, tc.o)
			equal(t, "command", r.Command, tc.command)
			equal(t, "sources", describe(base, r.Sources, false), tc.sources)
			var warns []string
			if tc.warning != "" {
				warns = []string{tc.warning}
			}
			equal(t, "warnings", r.Warnings, warns)
			equal(t, "prioritize", r.Prioritize, []string{"/opt/fairing/function_shim.py", tc.command[3]})
		})
	}
}

func TestFunctionErrors(t *testing.T) {
	parent := mkContext(t, map[string]string{"up.py": "def f(): pass", "ctx/train.py": "def f(): pass", "ctx/d.py/": "", "ctx/fn.pkl": ""})
	base := filepath.Join(parent, "ctx")
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"nothing", Options{}, "the function preprocessor needs exactly one of --function FILE.py:NAME and --pickled-function FILE"},
		{"both", Options{Function: "train.py:f", PickledFunction: "fn.pkl"}, "the function preprocessor needs exactly one of --function FILE.py:NAME and --pickled-function FILE"},
		{"no colon", Options{Function: "train.py"}, `--function "train.py": want FILE.py:NAME, e.g. train.py:train`},
		{"no name", Options{Function: "train.py:"}, `--function "train.py:": the name after ":" is empty`},
		{"no file", Options{Function: ":f"}, `--function ":f": the file before ":" is empty`},
		{"not python", Options{Function: "fn.pkl:f"}, `--function "fn.pkl:f": fn.pkl is not a .py file (a pickled function goes in --pickled-function)`},
		{"bad name", Options{Function: "train.py:f-g"}, `--function "train.py:f-g": "f-g" is not a Python identifier`},
		{"keyword", Options{Function: "train.py:class"}, `--function "train.py:class": "class" is a Python keyword`},
		{"missing file", Options{Function: "nope.py:f"}, "--function nope.py: no such file or directory in " + base + " (relative paths are relative to the context directory)"},
		{"a directory", Options{Function: "d.py:f"}, "--function d.py is a directory, not a file"},
		{"missing pickle", Options{PickledFunction: "nope.pkl"}, "--pickled-function nope.pkl: no such file or directory in " + base + " (relative paths are relative to the context directory)"},
		{"bad version", Options{Function: "train.py:f", PythonVersion: "3"}, `--python-version "3": want MAJOR.MINOR, e.g. 3.11`},
		{"bad version text", Options{Function: "train.py:f", PythonVersion: "py3.11"}, `--python-version "py3.11": want MAJOR.MINOR, e.g. 3.11`},
		{"escape", Options{Function: "../up.py:f"}, "--function ../up.py is outside the context directory " + base + ": move it inside, give it as an absolute path (it then lands at /app/up.py), or place it with --output-map SRC=DST"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Kind, tc.o.BaseDir = Function, base
			equal(t, "error", preprocessErr(t, tc.o), tc.want)
		})
	}
}

func TestDefinesName(t *testing.T) {
	for src, want := range map[string]bool{
		"def train():\n  pass":             true,
		"async def train():\n  pass":       true,
		"class train(object): pass":        true,
		"train = make()":                   true,
		"train: Callable = make()":         true,
		"from x import train":              true,
		"from x import a, train as t":      true,
		"import train":                     true,
		"from helpers import *":            true,
		"def trainer(): pass":              false,
		"train == 3":                       false,
		"  def train(): pass  # nested":    false,
		"# def train():\nprint('nothing')": false,
	} {
		if got := definesName(src, "train"); got != want {
			t.Errorf("definesName(%q) = %v, want %v", src, got, want)
		}
	}
}

func TestParsers(t *testing.T) {
	for in, want := range map[string]Mapping{
		"a=b":                  {"a", "b"},
		" data/x.csv = /data/": {"data/x.csv", "/data/"},
		"a=b=c":                {"a", "b=c"},
	} {
		got, err := ParseOutputMap(in)
		if err != nil || got != want {
			t.Errorf("ParseOutputMap(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"ab":  `--output-map "ab": want SRC=DST, e.g. data/train.csv=/data/train.csv`,
		"=b":  `--output-map "=b": SRC (the local file before "=") is empty`,
		"a= ": `--output-map "a= ": DST (the image path after "=") is empty`,
	} {
		if _, err := ParseOutputMap(in); err == nil || err.Error() != want {
			t.Errorf("ParseOutputMap(%q) error = %v, want %s", in, err, want)
		}
	}

	if p, err := ParseParameter("lr=0.1=x"); err != nil || p != (Param{"lr", "0.1=x"}) {
		t.Errorf("ParseParameter = %v, %v", p, err)
	}
	for in, want := range map[string]string{
		"lr":    `parameter "lr": want NAME=VALUE`,
		"1a=2":  `parameter "1a=2": "1a" is not a Python identifier`,
		"=2":    `parameter "=2": empty name`,
		"for=2": `parameter "for=2": "for" is a Python keyword`,
	} {
		if _, err := ParseParameter(in); err == nil || err.Error() != want {
			t.Errorf("ParseParameter(%q) error = %v, want %s", in, err, want)
		}
	}

	if f, n, err := ParseFunction("src/m.py:Trainer.fit"); err != nil || f != "src/m.py" || n != "Trainer.fit" {
		t.Errorf("ParseFunction = %q %q %v", f, n, err)
	}
	if f, n, err := ParseFunction("C:\\x\\m.py:f"); err != nil || f != "C:\\x\\m.py" || n != "f" {
		t.Errorf("ParseFunction (drive letter) = %q %q %v", f, n, err)
	}
	if _, _, err := ParseFunction("m.py:a..b"); err == nil || err.Error() != `--function "m.py:a..b": empty name` {
		t.Errorf("ParseFunction(a..b) error = %v", err)
	}

	if argv, err := ParseCommand(`"/opt/my python/bin/python" -X dev`); err != nil || len(argv) != 3 || argv[0] != "/opt/my python/bin/python" {
		t.Errorf("ParseCommand = %q, %v", argv, err)
	}
	if _, err := ParseCommand("  "); err == nil || err.Error() != `--command "  ": empty` {
		t.Errorf("ParseCommand(empty) error = %v", err)
	}
	if _, err := ParseCommand(`python "unterminated`); err == nil || !strings.HasPrefix(err.Error(), `--command "python \"unterminated": `) {
		t.Errorf("ParseCommand(unterminated) error = %v", err)
	}

	for in, want := range map[string]string{"3.11": "3.11", "3.9.18": "3.9", "10.0": "10.0"} {
		if got, err := ParsePythonVersion(in); err != nil || got != want {
			t.Errorf("ParsePythonVersion(%q) = %q, %v", in, got, err)
		}
	}
	for _, k := range []string{"python", "notebook", "full_notebook", "function"} {
		if got, err := ParseKind(k); err != nil || string(got) != k {
			t.Errorf("ParseKind(%q) = %q, %v", k, got, err)
		}
	}
	if _, err := ParseRunner("nbconvert"); err != nil {
		t.Error(err)
	}
	if _, err := ParseRunner("jupyter"); err == nil || err.Error() != `unknown notebook runner "jupyter": want papermill or nbconvert` {
		t.Errorf("ParseRunner(jupyter) error = %v", err)
	}
	if _, err := Preprocess(context.Background(), Options{BaseDir: t.TempDir(), RuntimeDir: "opt/f"}); err == nil || err.Error() != `runtime directory "opt/f" is not absolute` {
		t.Errorf("relative RuntimeDir: %v", err)
	}
}
