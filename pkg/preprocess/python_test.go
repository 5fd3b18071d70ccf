package preprocess

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/fairing-dev/fairing/pkg/layer"
)

func TestPythonBasics(t *testing.T) {
	base := mkContext(t, map[string]string{
		"main.py":            "print('hi')",
		"utils/__init__.py":  "",
		"utils/helper.py":    "X = 1",
		"utils/data/a.csv":   "1,2",
		"utils/empty/":       "",
		"utils/__pycache__/": "",
		"utils/__pycache__/helper.cpython-311.pyc": "junk",
		"utils/link.py":     "->helper.py",
		"requirements.txt":  "numpy",
		"notes/ignored.txt": "not an input",
	})
	r := mustPreprocess(t, Options{BaseDir: base, Inputs: []string{"utils", "main.py", "requirements.txt"}})
	equal(t, "command", r.Command, []string{"python3", "/app/main.py"})
	equal(t, "working dir", r.WorkingDir, "/app")
	equal(t, "env", r.Env, map[string]string{"FAIRING_RUNTIME": "1", "PYTHONPATH": "/opt/fairing/python", "PYTHONUNBUFFERED": "1"})
	equal(t, "sources", describe(base, r.Sources, true), []string{
		"/app/main.py <- main.py",
		"/app/requirements.txt <- requirements.txt [deps]",
		"/app/utils <- utils",
		"/opt/fairing/python/_fairing_stub.py <- generated [deps]",
		"/opt/fairing/python/fairing/__init__.py <- generated [deps]",
		"/opt/fairing/python/kubeflow/fairing/__init__.py <- generated [deps]",
	})
	equal(t, "image files", imageFiles(t, r.Sources), []string{
		"/app/main.py",
		"/app/requirements.txt",
		"/app/utils/__init__.py",
		"/app/utils/data/a.csv",
		"/app/utils/helper.py",
		"/app/utils/link.py -> helper.py",
	})
	equal(t, "prioritize", r.Prioritize, []string{"/app/main.py"})
	equal(t, "dependencies", r.Dependencies, []Dependency{{Kind: DepRequirements, Dest: "/app/requirements.txt", Path: filepath.Join(base, "requirements.txt")}})
	equal(t, "warnings", r.Warnings, []string{"/app/requirements.txt found: the append builder cannot install dependencies (pip install); " +
		"build with the BuildKit path (--builder buildkit), or use a base image that already has them"})

	r = mustPreprocess(t, Options{BaseDir: base, Inputs: []string{"main.py", "requirements.txt"}, CanInstallDeps: true})
	equal(t, "warnings with a builder that installs", r.Warnings, []string(nil))
}

func TestPythonStubsAreTheEmbeddedFiles(t *testing.T) {
	r := mustPreprocess(t, Options{BaseDir: mkContext(t, map[string]string{"a.py": ""}), Inputs: []string{"a.py"}})
	for _, s := range r.Sources {
		if !strings.HasPrefix(s.Dest, "/opt/fairing/") {
			continue
		}
		want, err := os.ReadFile(filepath.Join("runtime", strings.TrimPrefix(s.Dest, "/opt/fairing/")))
		if err != nil {
			t.Fatal(err)
		}
		if string(s.Data) != string(want) || len(want) == 0 {
			t.Errorf("%s differs from the file in runtime/", s.Dest)
		}
	}
}

func TestPythonExecutable(t *testing.T) {
	base := mkContext(t, map[string]string{
		"a.py": "", "b.py": "", "src/train.py": "", "src/__init__.py": "", "src/setup.py": "",
		"tools/x.py": "", "tools/y.py": "", "run.sh": "echo",
	})
	for _, tc := range []struct {
		name    string
		o       Options
		command []string
		warning string
	}{
		{"one .py file input", Options{Inputs: []string{"a.py", "run.sh"}}, []string{"python3", "/app/a.py"}, ""},
		{"one .py file in a directory input", Options{Inputs: []string{"src"}}, []string{"python3", "/app/src/train.py"}, ""},
		{"file inputs win over directories", Options{Inputs: []string{"tools", "a.py"}}, []string{"python3", "/app/a.py"}, ""},
		{"explicit executable not among the inputs", Options{Inputs: []string{"tools"}, Executable: "run.sh", Command: []string{"bash", "-e"}}, []string{"bash", "-e", "/app/run.sh"}, ""},
		{"explicit executable inside an input directory", Options{Inputs: []string{"tools"}, Executable: "tools/y.py"}, []string{"python3", "/app/tools/y.py"}, ""},
		{"two .py files: no executable", Options{Inputs: []string{"a.py", "b.py"}}, []string{"python3"},
			`no executable: 2 .py files among the inputs (/app/a.py, /app/b.py), so the image runs "python3" alone; pass --executable FILE`},
		{"no .py file: no executable", Options{Inputs: []string{"run.sh"}, Command: []string{"python3", "-u"}}, []string{"python3", "-u"},
			`no executable: no .py file among the inputs, so the image runs "python3 -u" alone; pass --executable FILE`},
		{"no inputs at all", Options{}, []string{"python3"},
			`no executable: no .py file among the inputs, so the image runs "python3" alone; pass --executable FILE`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.BaseDir = base
			r := mustPreprocess(t, tc.o)
			equal(t, "command", r.Command, tc.command)
			var want []string
			if tc.warning != "" {
				want = []string{tc.warning}
			}
			equal(t, "warnings", r.Warnings, want)
		})
	}
	// The explicit executable is added once, even when an input directory holds it.
	r := mustPreprocess(t, Options{BaseDir: base, Inputs: []string{"tools"}, Executable: "tools/y.py"})
	equal(t, "sources", describe(base, r.Sources, false), []string{"/app/tools <- tools"})
}

func TestPythonPaths(t *testing.T) {
	base := mkContext(t, map[string]string{"in/a.py": "", "in/d/x.txt": ""})
	outside := mkContext(t, map[string]string{"data.csv": "1", "models/m.bin": "w"})

	r := mustPreprocess(t, Options{BaseDir: base, Inputs: []string{
		filepath.Join(base, "in/a.py"),     // absolute, inside the context
		filepath.Join(outside, "data.csv"), // absolute, outside: under the prefix by base name
		filepath.Join(outside, "models"),   // a directory, same
		"./in/../in/d",                     // cleaned
	}, PathPrefix: "/srv/job/"})
	equal(t, "sources", describe(base, r.Sources, false), []string{
		"/srv/job/data.csv <- " + filepath.Join(outside, "data.csv"),
		"/srv/job/in/a.py <- in/a.py",
		"/srv/job/in/d <- in/d",
		"/srv/job/models <- " + filepath.Join(outside, "models"),
	})
	equal(t, "working dir", r.WorkingDir, "/srv/job")
	equal(t, "command", r.Command, []string{"python3", "/srv/job/in/a.py"})

	// BaseDir "" is the current directory.
	wd, _ := os.Getwd()
	if err := os.Chdir(base); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	r = mustPreprocess(t, Options{Inputs: []string{"in"}})
	equal(t, "cwd sources", describe(base, r.Sources, false), []string{"/app/in <- in"})
}

func TestPythonInputErrors(t *testing.T) {
	base := mkContext(t, map[string]string{"a.py": "", "d/x.py": "", "sub/a.py": "other"})
	outside := mkContext(t, map[string]string{"a.py": "elsewhere"})
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"missing input", Options{Inputs: []string{"nope.py"}},
			"--input nope.py: no such file or directory in " + base + " (relative paths are relative to the context directory)"},
		{"missing absolute input", Options{Inputs: []string{"/nonexistent/x.py"}}, "--input /nonexistent/x.py: no such file or directory"},
		{"empty input", Options{Inputs: []string{" "}}, "--input: empty path"},
		{"dot-dot escape", Options{Inputs: []string{"../x.py"}},
			"--input ../x.py is outside the context directory " + base + ": move it inside, give it as an absolute path (it then lands at /app/x.py), or place it with --output-map SRC=DST"},
		{"hidden dot-dot escape", Options{Inputs: []string{"d/../../x"}},
			"--input d/../../x is outside the context directory " + base + ": move it inside, give it as an absolute path (it then lands at /app/x), or place it with --output-map SRC=DST"},
		{"missing executable", Options{Executable: "main.py"},
			"--executable main.py: no such file or directory in " + base + " (relative paths are relative to the context directory)"},
		{"executable is a directory", Options{Executable: "d"}, "--executable d is a directory, not a file"},
		{"two sources for one path", Options{Inputs: []string{"a.py", filepath.Join(outside, "a.py")}, PathPrefix: "/app"},
			"two sources for /app/a.py in the image: " + sorted2("--input a.py ("+filepath.Join(base, "a.py")+")", "--input "+filepath.Join(outside, "a.py")+" ("+filepath.Join(outside, "a.py")+")") + ": drop one, or put one elsewhere with --output-map SRC=DST"},
		{"file over a directory", Options{Inputs: []string{"d"}, OutputMap: []Mapping{{"a.py", "d"}}},
			"/app/d in the image would be a file from --output-map a.py=d (" + filepath.Join(base, "a.py") + ") and a directory from --input d"},
		{"directory over a file", Options{Inputs: []string{"a.py"}, OutputMap: []Mapping{{"d", "a.py/"}}},
			"/app/a.py in the image would be a file from --input a.py (" + filepath.Join(base, "a.py") + ") and a directory from --output-map d=a.py/"},
		{"relative prefix", Options{PathPrefix: "app"}, `--path-prefix "app" must be an absolute path in the image, such as /app/`},
		{"root prefix", Options{PathPrefix: "/"}, "--path-prefix / would put your files over the image's system files: use a directory of its own, such as /app/"},
		{"system prefix", Options{PathPrefix: "/usr/bin/"}, "--path-prefix /usr/bin/ would put your files over the image's system files: use a directory of its own, such as /app/"},
		{"proc prefix", Options{PathPrefix: "/proc/x"}, "--path-prefix /proc/x would put your files over the image's system files: use a directory of its own, such as /app/"},
		{"prefix over the runtime dir", Options{PathPrefix: "/opt"}, "--path-prefix /opt overlaps /opt/fairing, where fairing puts its own files: choose another prefix"},
		{"bad ignore pattern", Options{Ignore: []string{"[a"}}, "ignore patterns: syntax error in pattern"},
		{"unknown kind", Options{Kind: "docker"}, `unknown preprocessor "docker": want python, notebook, full_notebook or function`},
		{"missing context", Options{BaseDir: filepath.Join(base, "nope")}, "context directory: stat " + filepath.Join(base, "nope") + ": no such file or directory"},
		{"context is a file", Options{BaseDir: filepath.Join(base, "a.py")}, "context directory " + filepath.Join(base, "a.py") + " is not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.o.BaseDir == "" {
				tc.o.BaseDir = base
			}
			equal(t, "error", preprocessErr(t, tc.o), tc.want)
		})
	}
}

func TestFlagsForOtherKinds(t *testing.T) {
	base := mkContext(t, nil)
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Executable: "x"}.with(Notebook), "--executable does not apply to the notebook preprocessor (only to python)"},
		{Options{Notebook: "x.ipynb"}, "--notebook does not apply to the python preprocessor (only to notebook, full_notebook)"},
		{Options{IncludeCellTag: "t"}.with(FullNotebook), "--include-cell-tag does not apply to the full_notebook preprocessor (only to notebook)"},
		{Options{NotebookOutput: "o.ipynb"}.with(Notebook), "--notebook-output does not apply to the notebook preprocessor (only to full_notebook)"},
		{Options{Parameters: []Param{{"a", "1"}}}, "-p (notebook parameters) does not apply to the python preprocessor (only to full_notebook)"},
		{Options{NotebookRunner: NBConvert}.with(Function), "--notebook-runner does not apply to the function preprocessor (only to full_notebook)"},
		{Options{Kernel: "python3"}, "--kernel does not apply to the python preprocessor (only to full_notebook)"},
		{Options{Function: "a.py:f"}, "--function does not apply to the python preprocessor (only to function)"},
		{Options{PickledFunction: "f.p"}.with(Notebook), "--pickled-function does not apply to the notebook preprocessor (only to function)"},
		{Options{PythonVersion: "3.11"}, "--python-version does not apply to the python preprocessor (only to function)"},
	} {
		tc.o.BaseDir = base
		equal(t, "error", preprocessErr(t, tc.o), tc.want)
	}
}

func (o Options) with(k Kind) Options { o.Kind = k; return o }

// sorted2 joins two origins in the order Preprocess meets them (inputs sorted by local path).
func sorted2(a, b string) string {
	if strings.Compare(a[strings.Index(a, "(")+1:], b[strings.Index(b, "(")+1:]) > 0 {
		a, b = b, a
	}
	return a + " and " + b
}

func TestOutputMap(t *testing.T) {
	base := mkContext(t, map[string]string{"main.py": "", "cfg.yaml": "a: 1", "data/x.csv": "", "w.bin": "", "conf/": ""})
	r := mustPreprocess(t, Options{BaseDir: base, Inputs: []string{"main.py"}, OutputMap: []Mapping{
		{"cfg.yaml", "config/app.yaml"},                    // relative: under the prefix
		{"data", "/data/train"},                            // a directory, to an allowed root
		{"w.bin", "/models/"},                              // into a directory, keeping the name
		{"cfg.yaml", "/root/.config/x/"},                   // a home directory
		{"main.py", "main.py"},                             // the same file at the same place: no conflict
		{"conf", "/app/conf"},                              // an empty directory, absolute under the prefix
		{"../" + filepath.Base(base) + "/w.bin", "w2.bin"}, // SRC may leave the context: DST is explicit
	}})
	equal(t, "sources", describe(base, r.Sources, false), []string{
		"/app/conf <- conf",
		"/app/config/app.yaml <- cfg.yaml",
		"/app/main.py <- main.py",
		"/app/w2.bin <- w.bin",
		"/data/train <- data",
		"/models/w.bin <- w.bin",
		"/root/.config/x/cfg.yaml <- cfg.yaml",
	})
	// Allowing another root.
	r = mustPreprocess(t, Options{BaseDir: base, OutputMap: []Mapping{{"cfg.yaml", "/etc/app/cfg.yaml"}}, OutputRoots: []string{"/etc/app"}})
	equal(t, "allowed /etc/app", describe(base, r.Sources, false), []string{"/etc/app/cfg.yaml <- cfg.yaml"})
	r = mustPreprocess(t, Options{BaseDir: base, OutputMap: []Mapping{{"cfg.yaml", "/etc/x.yaml"}}, OutputRoots: []string{"/"}})
	equal(t, "allowed everywhere", describe(base, r.Sources, false), []string{"/etc/x.yaml <- cfg.yaml"})

	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"outside the allowed roots", Options{OutputMap: []Mapping{{"cfg.yaml", "/etc/passwd"}}},
			"--output-map cfg.yaml=/etc/passwd: destination /etc/passwd is outside /app and the allowed roots (/data, /home, /mnt, /models, /opt, /root, /srv, /tmp, /workspace): use a relative destination (it lands under /app) or allow its directory with --output-root"},
		{"dot-dot out of an allowed root", Options{OutputMap: []Mapping{{"cfg.yaml", "/data/../etc/x"}}},
			"--output-map cfg.yaml=/data/../etc/x: destination /etc/x is outside /app and the allowed roots (/data, /home, /mnt, /models, /opt, /root, /srv, /tmp, /workspace): use a relative destination (it lands under /app) or allow its directory with --output-root"},
		{"relative escape", Options{OutputMap: []Mapping{{"cfg.yaml", "conf/../../etc/x"}}},
			"--output-map cfg.yaml=conf/../../etc/x: destination conf/../../etc/x leaves /app: use a path inside it, or an absolute destination"},
		{"the runtime directory", Options{OutputMap: []Mapping{{"cfg.yaml", "/opt/fairing/python/fairing/__init__.py"}}},
			"--output-map cfg.yaml=/opt/fairing/python/fairing/__init__.py: destination /opt/fairing/python/fairing/__init__.py is inside /opt/fairing, which fairing reserves for its own files"},
		{"/proc even when / is allowed", Options{OutputMap: []Mapping{{"cfg.yaml", "/proc/x"}}, OutputRoots: []string{"/", "/proc"}},
			"--output-map cfg.yaml=/proc/x: destination /proc/x is outside /app and the allowed roots (/data, /home, /mnt, /models, /opt, /root, /srv, /tmp, /workspace, /, /proc): use a relative destination (it lands under /app) or allow its directory with --output-root"},
		{"missing source", Options{OutputMap: []Mapping{{"nope", "x"}}},
			"--output-map nope: no such file or directory in " + base + " (relative paths are relative to the context directory)"},
		{"empty side", Options{OutputMap: []Mapping{{"", "x"}}}, "--output-map =x: want SRC=DST with both sides non-empty"},
		{"two sources for one destination", Options{Inputs: []string{"main.py"}, OutputMap: []Mapping{{"cfg.yaml", "main.py"}}},
			"two sources for /app/main.py in the image: --input main.py (" + filepath.Join(base, "main.py") + ") and --output-map cfg.yaml=main.py (" + filepath.Join(base, "cfg.yaml") + "): drop one, or put one elsewhere with --output-map SRC=DST"},
		{"two mappings to one destination", Options{OutputMap: []Mapping{{"cfg.yaml", "/data/x"}, {"w.bin", "/data/x"}}},
			"two sources for /data/x in the image: --output-map cfg.yaml=/data/x (" + filepath.Join(base, "cfg.yaml") + ") and --output-map w.bin=/data/x (" + filepath.Join(base, "w.bin") + "): drop one, or put one elsewhere with --output-map SRC=DST"},
		{"a directory colliding inside another", Options{Inputs: []string{"data"}, OutputMap: []Mapping{{"cfg.yaml", "data/x.csv"}}},
			"two sources for /app/data/x.csv in the image: --input data (" + filepath.Join(base, "data/x.csv") + ") and --output-map cfg.yaml=data/x.csv (" + filepath.Join(base, "cfg.yaml") + "): drop one, or put one elsewhere with --output-map SRC=DST"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.BaseDir = base
			equal(t, "error", preprocessErr(t, tc.o), tc.want)
		})
	}
}

func TestOverlappingInputsAreDeduplicated(t *testing.T) {
	base := mkContext(t, map[string]string{"src/a.py": "", "src/b.py": "", "src/sub/c.py": "", "top.py": ""})
	r := mustPreprocess(t, Options{BaseDir: base, Inputs: []string{"src/sub", ".", "src/a.py", "src"}, Executable: "top.py"})
	equal(t, "sources", describe(base, r.Sources, false), []string{"/app <- ."})
	equal(t, "files", imageFiles(t, r.Sources), []string{"/app/src/a.py", "/app/src/b.py", "/app/src/sub/c.py", "/app/top.py"})

	// A directory mapped over an input that holds part of it keeps only the rest.
	r = mustPreprocess(t, Options{BaseDir: base, Inputs: []string{"src/a.py"}, OutputMap: []Mapping{{"src", "src"}}})
	equal(t, "sources", describe(base, r.Sources, false), []string{"/app/src <- src", "/app/src/a.py <- src/a.py"})
	equal(t, "files", imageFiles(t, r.Sources), []string{"/app/src/a.py", "/app/src/b.py", "/app/src/sub/c.py"})
}

func TestIgnore(t *testing.T) {
	base := mkContext(t, map[string]string{
		"main.py": "", "secret.env": "", "logs/1.log": "", "src/a.py": "", "src/a.log": "",
		"src/build/x.o": "", "src/keep.log": "", "data/big.bin": "", "data/small.txt": "",
		".git/HEAD": "", "src/.ipynb_checkpoints/a-checkpoint.py": "", "src/__pycache__/a.pyc": "",
		"src/pkg/__pycache__/b.pyc": "", "src/old.pyc": "",
		"weird/*star.txt": "", "weird/plain.txt": "",
	})
	ignore := []string{"secret.env", "logs", "**/*.log", "!src/keep.log", "src/build", "data", "/weird/\\*star.txt"}
	r := mustPreprocess(t, Options{BaseDir: base, Inputs: []string{"."}, Ignore: ignore})
	equal(t, "files of .", imageFiles(t, r.Sources), []string{"/app/main.py", "/app/src/a.py", "/app/src/keep.log", "/app/weird/plain.txt"})

	// The same patterns, rebased onto sub-directory inputs; an input a pattern excludes as a
	// whole (data) is included because it was asked for, but patterns inside it still apply.
	r = mustPreprocess(t, Options{BaseDir: base, Inputs: []string{"src", "data", "weird", "secret.env"}, Ignore: append(ignore, "data/*.bin")})
	equal(t, "files of sub-directories", imageFiles(t, r.Sources), []string{
		"/app/data/small.txt", "/app/secret.env", "/app/src/a.py", "/app/src/keep.log", "/app/weird/plain.txt",
	})
	// An explicitly named file wins over the patterns.
	r = mustPreprocess(t, Options{BaseDir: base, Inputs: []string{".", "logs/1.log"}, Ignore: ignore})
	equal(t, "named file", imageFiles(t, r.Sources), []string{"/app/logs/1.log", "/app/main.py", "/app/src/a.py", "/app/src/keep.log", "/app/weird/plain.txt"})
	// Re-including a default.
	r = mustPreprocess(t, Options{BaseDir: base, Inputs: []string{"src/pkg"}, Ignore: []string{"!**/__pycache__"}})
	equal(t, "re-included cache", imageFiles(t, r.Sources), []string{"/app/src/pkg/__pycache__/b.pyc"})
}

func TestRebasePattern(t *testing.T) {
	for _, tc := range []struct {
		pattern, rel string
		want         []string
		ok           bool
	}{
		{"sr{1}c/x", ".", []string{"sr{1}c/x"}, true},
		{"sr{1}c/x", "src", nil, false},
		{"*rc/^*", "src", nil, false},
		{"a|b", "src", nil, false},
		{" /0", " ", nil, true},
		{"**/ / /", "x", []string{"**/ / /."}, true},
		{"**/ / ", "x", []string{"**/ /."}, true},
		{"x/ a/ b /", "x", []string{"./ a/ b /."}, true},
		{"!x/ a ", "x", []string{"! a"}, true},
		{" src/./a.log ", "src", []string{"a.log"}, true},
		{"*.log", ".", []string{"*.log"}, true},
		{"*.log", "src", nil, true},
		{"src/*.log", "src", []string{"*.log"}, true},
		{"s*/b/*.o", "src/b", []string{"*.o"}, true},
		{"src", "src", nil, true},
		{"src", "src/deep", nil, true},
		{"src/**", "src", nil, true},
		{"other/x", "src", nil, true},
		{"**/*.pyc", "src/pkg", []string{"**/*.pyc"}, true},
		{"**/build/x", "a/build", []string{"**/build/x", "x"}, true},
		{"!src/keep.log", "src", []string{"!keep.log"}, true},
		{"src/a**b", "src", nil, false},
	} {
		got, err := rebasePattern(tc.pattern, tc.rel)
		if ok := err == nil; ok != tc.ok || !equalStrings(got, tc.want) {
			t.Errorf("rebasePattern(%q, %q) = %q, %v; want %q, %v", tc.pattern, tc.rel, got, ok, tc.want, tc.ok)
		}
	}
	base := mkContext(t, map[string]string{"src/a.py": ""})
	r := mustPreprocess(t, Options{BaseDir: base, Inputs: []string{"src"}, Ignore: []string{"src/a**b"}})
	equal(t, "warning", r.Warnings, []string{`ignore pattern "src/a**b" is not applied to ` + filepath.Join(base, "src") + `: ** inside a path segment cannot be rebased: write it as **/NAME`})
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestReadIgnoreFile(t *testing.T) {
	base := mkContext(t, map[string]string{".dockerignore": "# comment\n/data\n!data/keep\n  *.log  \n"})
	p, err := ReadIgnoreFile(base)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "patterns", p, []string{"data", "!data/keep", "*.log"})
	p, err = ReadIgnoreFile(t.TempDir())
	if err != nil || p != nil {
		t.Fatalf("missing file: %v %v", p, err)
	}
}

func TestSymlinkedDirectoryInput(t *testing.T) {
	real := mkContext(t, map[string]string{"lib/m.py": ""})
	base := mkContext(t, map[string]string{"main.py": "", "lib": "->" + filepath.Join(real, "lib")})
	r := mustPreprocess(t, Options{BaseDir: base, Inputs: []string{"main.py", "lib"}})
	equal(t, "files", imageFiles(t, r.Sources), []string{"/app/lib/m.py", "/app/main.py"})
}

func TestSpecialFilesAreRefused(t *testing.T) {
	base := mkContext(t, map[string]string{"d/a.py": ""})
	fifo := filepath.Join(base, "d", "pipe")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skip("mkfifo:", err)
	}
	got := preprocessErr(t, Options{BaseDir: base, Inputs: []string{"d"}})
	equal(t, "error", got, "--input d: read "+filepath.Join(base, "d")+": "+fifo+" is not a regular file, directory or symlink (p---------): it cannot go into an image; exclude it in .dockerignore")
	r := mustPreprocess(t, Options{BaseDir: base, Inputs: []string{"d"}, Ignore: []string{"d/pipe"}})
	equal(t, "files", imageFiles(t, r.Sources), []string{"/app/d/a.py"})
}

func TestUnreadableDirectory(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads every directory")
	}
	base := mkContext(t, map[string]string{"d/sub/a.py": ""})
	os.Chmod(filepath.Join(base, "d/sub"), 0)
	defer os.Chmod(filepath.Join(base, "d/sub"), 0o755)
	if !strings.Contains(preprocessErr(t, Options{BaseDir: base, Inputs: []string{"d"}}), "permission denied") {
		t.Fatal("no permission error")
	}
}

func TestDeterministic(t *testing.T) {
	base := mkContext(t, map[string]string{"b/x.py": "", "a/y.py": "", "c.txt": "", "m.py": "", "requirements.txt": "", "pyproject.toml": ""})
	o1 := Options{BaseDir: base, Inputs: []string{"b", "c.txt", "a", "m.py", "requirements.txt", "pyproject.toml"},
		OutputMap: []Mapping{{"c.txt", "/data/c"}, {"m.py", "/data/a"}}}
	o2 := o1
	o2.Inputs = []string{"pyproject.toml", "m.py", "a", "requirements.txt", "c.txt", "b"}
	o2.OutputMap = []Mapping{{"m.py", "/data/a"}, {"c.txt", "/data/c"}}
	r1, r2 := mustPreprocess(t, o1), mustPreprocess(t, o2)
	equal(t, "sources", describe(base, r2.Sources, true), describe(base, r1.Sources, true))
	equal(t, "command", r2.Command, r1.Command)
	equal(t, "dependencies", r2.Dependencies, r1.Dependencies)
	equal(t, "dependency order", []DepKind{r1.Dependencies[0].Kind, r1.Dependencies[1].Kind}, []DepKind{DepPyproject, DepRequirements})
	for i := range r1.Sources {
		if string(r1.Sources[i].Data) != string(r2.Sources[i].Data) {
			t.Errorf("generated %s differs", r1.Sources[i].Dest)
		}
	}
}

func TestDependencies(t *testing.T) {
	base := mkContext(t, map[string]string{
		"requirements.txt": "", "environment.yml": "", "Pipfile": "", "setup.py": "", "sub/requirements.txt": "", "m.py": "",
	})
	r := mustPreprocess(t, Options{BaseDir: base, Inputs: []string{"."}, Executable: "m.py", CanInstallDeps: true})
	var got []string
	for _, d := range r.Dependencies {
		got = append(got, string(d.Kind)+" "+d.Dest)
	}
	// Only the top of the working directory counts (as in Fairing); sub/requirements.txt does not.
	equal(t, "dependencies", got, []string{"Pipfile /app/Pipfile", "environment.yml /app/environment.yml", "requirements.txt /app/requirements.txt", "setup.py /app/setup.py"})
	// A manifest placed with --output-map counts; generated files never do.
	r = mustPreprocess(t, Options{BaseDir: base, OutputMap: []Mapping{{"sub/requirements.txt", "requirements.txt"}}, CanInstallDeps: true})
	equal(t, "mapped", r.Dependencies, []Dependency{{DepRequirements, "/app/requirements.txt", filepath.Join(base, "sub/requirements.txt")}})
	equal(t, "mapped class", describe(base, r.Sources, false), []string{"/app/requirements.txt <- sub/requirements.txt [deps]"})
}

func TestCanceled(t *testing.T) {
	base := mkContext(t, map[string]string{"d/a.py": ""})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Preprocess(ctx, Options{BaseDir: base, Inputs: []string{"d"}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestMergeEnv(t *testing.T) {
	env := map[string]string{"FAIRING_RUNTIME": "1", "PYTHONPATH": "/opt/fairing/python", "PYTHONUNBUFFERED": "1"}
	equal(t, "plain base", MergeEnv([]string{"PATH=/usr/bin", "LANG=C.UTF-8"}, env),
		[]string{"PATH=/usr/bin", "LANG=C.UTF-8", "FAIRING_RUNTIME=1", "PYTHONPATH=/opt/fairing/python", "PYTHONUNBUFFERED=1"})
	equal(t, "base with PYTHONPATH", MergeEnv([]string{"PYTHONPATH=/usr/lib/x", "FAIRING_RUNTIME=0"}, env),
		[]string{"PYTHONPATH=/opt/fairing/python:/usr/lib/x", "FAIRING_RUNTIME=1", "PYTHONUNBUFFERED=1"})
	equal(t, "base built by fairing", MergeEnv([]string{"PYTHONPATH=/opt/fairing/python:/x"}, env),
		[]string{"PYTHONPATH=/opt/fairing/python:/x", "FAIRING_RUNTIME=1", "PYTHONUNBUFFERED=1"})
	equal(t, "empty PYTHONPATH", MergeEnv([]string{"PYTHONPATH="}, env),
		[]string{"PYTHONPATH=/opt/fairing/python", "FAIRING_RUNTIME=1", "PYTHONUNBUFFERED=1"})
}

func TestSourcesAreValidForTheLayerBuilder(t *testing.T) {
	base := mkContext(t, map[string]string{"a.py": "", "d/b.py": ""})
	r := mustPreprocess(t, Options{BaseDir: base, Inputs: []string{"a.py", "d"}})
	for _, s := range r.Sources {
		if !filepath.IsAbs(s.Dest) || filepath.Clean(s.Dest) != s.Dest {
			t.Errorf("Dest %q is not clean and absolute", s.Dest)
		}
		if (s.Path == "") == (s.Data == nil) {
			t.Errorf("%s: exactly one of Path and Data must be set", s.Dest)
		}
		if s.Path != "" && !filepath.IsAbs(s.Path) {
			t.Errorf("%s: Path %q is not absolute", s.Dest, s.Path)
		}
		if s.Data != nil && s.Class == layer.ClassAuto {
			t.Errorf("%s: generated content without a class", s.Dest)
		}
	}
}
