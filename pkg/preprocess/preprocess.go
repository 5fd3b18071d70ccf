// Package preprocess turns what a data scientist hands over (a folder of Python files, a
// notebook, a Python function) into the files an image needs and the command that runs them.
//
// It reads the inputs and generates files, but writes nothing to disk: generated files (the
// converted notebook, the function shim, the fairing SDK stub) are returned as data in
// layer.Sources for the layer builder. The four preprocessors are those of Kubeflow Fairing,
// with its bugs fixed: directories are recursed, absolute inputs stay under the path prefix,
// collisions are errors, the order is deterministic, and notebook magics are really removed.
package preprocess

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/fairing-dev/fairing/pkg/layer"
)

// Kind names a preprocessor, as in Fairing's config.set_preprocessor.
type Kind string

// The preprocessors.
const (
	// Python copies inputs and runs an executable: `python /app/main.py`.
	Python Kind = "python"
	// Notebook converts a notebook into a Python script and runs it.
	Notebook Kind = "notebook"
	// FullNotebook runs the unmodified notebook with papermill (or nbconvert) and saves the
	// executed notebook.
	FullNotebook Kind = "full_notebook"
	// Function calls one function (or a class's train()) through a small shim.
	Function Kind = "function"
)

// Runner executes a whole notebook for FullNotebook.
type Runner string

// The notebook runners.
const (
	Papermill Runner = "papermill"
	NBConvert Runner = "nbconvert"
)

// Defaults, as in Fairing where it had one.
const (
	DefaultPathPrefix     = "/app/"
	DefaultNotebookOutput = "fairing_output_notebook.ipynb"
	// DefaultRuntimeDir holds what fairing adds to every image: the SDK stub packages (on
	// PYTHONPATH) and the function shim. It is outside the path prefix so it never collides with
	// user files.
	DefaultRuntimeDir = "/opt/fairing"
)

// DefaultCommand is the argv prefix for the python, notebook and function preprocessors:
// python3, which every Python image has (Debian's have no plain "python").
func DefaultCommand() []string { return []string{"python3"} }

// DefaultOutputRoots are where an absolute --output-map destination may point besides the path
// prefix: the usual places for data, models and home directories. Anything else (/etc, /usr,
// /bin, ...) must be allowed explicitly with Options.OutputRoots.
func DefaultOutputRoots() []string {
	return []string{"/data", "/home", "/mnt", "/models", "/opt", "/root", "/srv", "/tmp", "/workspace"}
}

// Mapping is one --output-map entry: a local Src placed at Dst in the image.
type Mapping struct {
	Src string
	Dst string
}

// Param is one notebook parameter (-p NAME VALUE).
type Param struct {
	Name  string
	Value string
}

// Options configures Preprocess. Each field is one CLI flag; the zero value of a field means
// the flag was not given. A field that does not apply to Kind is an error when set.
type Options struct {
	// Kind picks the preprocessor (--preprocessor); "" means Python.
	Kind Kind
	// BaseDir is the directory relative local paths are resolved against (--context); "" is
	// the current directory. Its .dockerignore is not read here: pass it as Ignore.
	BaseDir string
	// Inputs are local files and directories to put under PathPrefix, keeping their path
	// relative to BaseDir (--input, repeatable). Directories are recursed. Absolute paths
	// inside BaseDir keep their relative path; absolute paths elsewhere land at
	// PathPrefix/<base name>. Relative paths may not leave BaseDir ("..").
	Inputs []string
	// Ignore are .dockerignore patterns relative to BaseDir, applied to directory inputs
	// (after DefaultIgnore). Files named explicitly are always included.
	Ignore []string
	// OutputMap places extra local files or directories at chosen image paths
	// (--output-map SRC=DST). A relative DST is under PathPrefix; a DST ending in "/" is a
	// directory that receives SRC under its base name; an absolute DST must be under
	// PathPrefix or OutputRoots.
	OutputMap []Mapping
	// OutputRoots are allowed for absolute --output-map destinations besides PathPrefix and
	// DefaultOutputRoots (--output-root, repeatable). /proc, /sys and /dev never are.
	OutputRoots []string
	// PathPrefix is where inputs go in the image and the working directory
	// (--path-prefix); "" means DefaultPathPrefix.
	PathPrefix string
	// Command is the argv prefix (--command, see ParseCommand): the interpreter for the python,
	// notebook and function preprocessors (default DefaultCommand), or the notebook runner
	// program for full_notebook (default "papermill" or "jupyter nbconvert").
	Command []string

	// Executable is the file to run (python; --executable). When empty and exactly one .py
	// file is among the file inputs (or, if none, in the directory inputs), it is used.
	Executable string

	// Notebook is the .ipynb file (notebook, full_notebook; --notebook).
	Notebook string
	// IncludeCellTag keeps only the code cells carrying this tag, as a cell tag or in a
	// comment (notebook; --include-cell-tag; Fairing's marker is notebook.DefaultIncludeTag).
	IncludeCellTag string

	// NotebookOutput is where full_notebook writes the executed notebook (--notebook-output):
	// a path (relative to the working directory) or, with papermill, a URL it can write
	// (s3://, gs://, abfs://, ...). "" means DefaultNotebookOutput.
	NotebookOutput string
	// Parameters are passed to papermill as -p NAME VALUE (full_notebook; -p / --parameter).
	Parameters []Param
	// NotebookRunner is papermill (default) or nbconvert (--notebook-runner).
	NotebookRunner Runner
	// Kernel overrides the notebook's kernel name (full_notebook; --kernel).
	Kernel string

	// Function is "FILE.py:NAME" (function; --function): NAME is a function, or a class whose
	// instance's train() is called.
	Function string
	// PickledFunction is a cloudpickle file made by the user (function; --pickled-function).
	PickledFunction string
	// PythonVersion is the MAJOR.MINOR the image's Python must have (function;
	// --python-version). The shim exits with an error when it differs.
	PythonVersion string

	// CanInstallDeps says the builder will install the dependency manifests found (BuildKit or
	// in-cluster builds). When false and manifests are found, Result.Warnings says so.
	CanInstallDeps bool
	// RuntimeDir overrides DefaultRuntimeDir (tests run generated commands outside an image).
	RuntimeDir string
}

// DepKind is the format of a dependency manifest.
type DepKind string

// The dependency manifests recognised at the top of the working directory.
const (
	DepRequirements DepKind = "requirements.txt"
	DepPyproject    DepKind = "pyproject.toml"
	DepSetupPy      DepKind = "setup.py"
	DepSetupCfg     DepKind = "setup.cfg"
	DepPipfile      DepKind = "Pipfile"
	DepPipfileLock  DepKind = "Pipfile.lock"
	DepConda        DepKind = "environment.yml"
	DepCondaYAML    DepKind = "environment.yaml"
)

var depKinds = map[string]DepKind{
	"requirements.txt": DepRequirements, "pyproject.toml": DepPyproject, "setup.py": DepSetupPy,
	"setup.cfg": DepSetupCfg, "Pipfile": DepPipfile, "Pipfile.lock": DepPipfileLock,
	"environment.yml": DepConda, "environment.yaml": DepCondaYAML,
}

// Dependency is a dependency manifest that will be in the image.
type Dependency struct {
	Kind DepKind
	// Dest is its path in the image, e.g. "/app/requirements.txt".
	Dest string
	// Path is the local file it comes from.
	Path string
}

// Result is what goes into the image.
type Result struct {
	// Sources are the files, sorted by Dest. Generated files carry Data: they are never
	// written beside the user's files.
	Sources []layer.Source
	// Command is the argv the image runs: the image's Cmd, with Entrypoint cleared.
	Command []string
	// WorkingDir is the image's working directory: the path prefix without trailing slash, or
	// for the notebook preprocessor the notebook's directory, where Jupyter runs its kernel (so
	// relative paths in the notebook mean what they meant there).
	WorkingDir string
	// Env is added to the image's environment; merge it with MergeEnv.
	Env map[string]string
	// Dependencies are the manifests at the top of WorkingDir (requirements.txt, ...), for the
	// builders that install them.
	Dependencies []Dependency
	// Prioritize lists the image paths read first at start-up, entrypoint first (eStargz
	// prefetch).
	Prioritize []string
	// Warnings are things the user should know; the build can go on.
	Warnings []string
}

// Preprocess dispatches on opts.Kind.
func Preprocess(ctx context.Context, opts Options) (*Result, error) {
	p, err := newPlan(ctx, opts)
	if err != nil {
		return nil, err
	}
	switch p.kind {
	case Python:
		err = p.python()
	case Notebook:
		err = p.notebook()
	case FullNotebook:
		err = p.fullNotebook()
	case Function:
		err = p.function()
	}
	if err != nil {
		return nil, err
	}
	return p.result(), nil
}

// plan is one Preprocess call in progress.
type plan struct {
	opts       Options
	kind       Kind
	prefix     string // cleaned, no trailing slash: "/app"
	runtimeDir string
	command    []string
	t          *tree
	explicitPy []string // image paths of .py files named as --input
	walkedPy   []string // image paths of .py files found in --input directories
	argv       []string
	entry      []string // Prioritize
	workdir    string   // "" means prefix
}

func newPlan(ctx context.Context, opts Options) (*plan, error) {
	kind := opts.Kind
	if kind == "" {
		kind = Python
	}
	if _, err := ParseKind(string(kind)); err != nil {
		return nil, err
	}
	if err := checkFlags(kind, opts); err != nil {
		return nil, err
	}
	base := opts.BaseDir
	if base == "" {
		base = "."
	}
	base, err := filepath.Abs(base)
	if err != nil {
		return nil, fmt.Errorf("context directory: %w", err)
	}
	if fi, err := os.Stat(base); err != nil {
		return nil, fmt.Errorf("context directory: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("context directory %s is not a directory", base)
	}
	prefix, err := checkPrefix(opts.PathPrefix)
	if err != nil {
		return nil, err
	}
	runtimeDir := DefaultRuntimeDir
	if opts.RuntimeDir != "" {
		if !path.IsAbs(opts.RuntimeDir) {
			return nil, fmt.Errorf("runtime directory %q is not absolute", opts.RuntimeDir)
		}
		runtimeDir = path.Clean(opts.RuntimeDir)
	}
	if within(prefix, runtimeDir) || within(runtimeDir, prefix) {
		return nil, fmt.Errorf("--path-prefix %s overlaps %s, where fairing puts its own files: choose another prefix", prefix, runtimeDir)
	}
	t, err := newTree(ctx, base, opts.Ignore)
	if err != nil {
		return nil, err
	}
	return &plan{opts: opts, kind: kind, prefix: prefix, runtimeDir: runtimeDir, command: opts.Command, t: t}, nil
}

// checkFlags refuses options that the chosen preprocessor would silently ignore.
func checkFlags(kind Kind, o Options) error {
	type flag struct {
		set   bool
		name  string
		kinds []Kind
	}
	for _, f := range []flag{
		{o.Executable != "", "--executable", []Kind{Python}},
		{o.Notebook != "", "--notebook", []Kind{Notebook, FullNotebook}},
		{o.IncludeCellTag != "", "--include-cell-tag", []Kind{Notebook}},
		{o.NotebookOutput != "", "--notebook-output", []Kind{FullNotebook}},
		{len(o.Parameters) > 0, "-p (notebook parameters)", []Kind{FullNotebook}},
		{o.NotebookRunner != "", "--notebook-runner", []Kind{FullNotebook}},
		{o.Kernel != "", "--kernel", []Kind{FullNotebook}},
		{o.Function != "", "--function", []Kind{Function}},
		{o.PickledFunction != "", "--pickled-function", []Kind{Function}},
		{o.PythonVersion != "", "--python-version", []Kind{Function}},
	} {
		if !f.set {
			continue
		}
		ok := false
		var names []string
		for _, k := range f.kinds {
			ok = ok || k == kind
			names = append(names, string(k))
		}
		if !ok {
			return fmt.Errorf("%s does not apply to the %s preprocessor (only to %s)", f.name, kind, strings.Join(names, ", "))
		}
	}
	return nil
}

// Top-level directories that must not become the path prefix: the image's system would be
// overwritten or shadowed. Sub-directories such as /usr/src/app are fine.
var systemDirs = map[string]bool{
	"/": true, "/bin": true, "/boot": true, "/dev": true, "/etc": true, "/lib": true, "/lib32": true,
	"/lib64": true, "/libx32": true, "/proc": true, "/run": true, "/sbin": true, "/sys": true,
	"/usr": true, "/var": true, "/usr/bin": true, "/usr/lib": true, "/usr/local": true,
	"/usr/local/bin": true, "/usr/local/lib": true, "/usr/sbin": true,
}

func checkPrefix(p string) (string, error) {
	if p == "" {
		p = DefaultPathPrefix
	}
	if !path.IsAbs(p) {
		return "", fmt.Errorf("--path-prefix %q must be an absolute path in the image, such as %s", p, DefaultPathPrefix)
	}
	c := path.Clean(p)
	if systemDirs[c] || within("/proc", c) || within("/sys", c) || within("/dev", c) {
		return "", fmt.Errorf("--path-prefix %s would put your files over the image's system files: use a directory of its own, such as %s", p, DefaultPathPrefix)
	}
	return c, nil
}

// within reports whether p is dir or below it (both clean and absolute).
func within(dir, p string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// addInputs adds --input paths (sorted, so parents come before what they contain).
func (p *plan) addInputs() error {
	type in struct{ given, local string }
	var ins []in
	for _, g := range p.opts.Inputs {
		if strings.TrimSpace(g) == "" {
			return errors.New("--input: empty path")
		}
		ins = append(ins, in{g, p.t.local(g)})
	}
	sort.SliceStable(ins, func(i, j int) bool { return ins[i].local < ins[j].local })
	for _, in := range ins {
		dest, err := p.inputDest(in.given, in.local, "--input")
		if err != nil {
			return err
		}
		fi, err := statLocal(in.local, "--input", in.given, p.t.base)
		if err != nil {
			return err
		}
		what := "--input " + in.given
		if fi.IsDir() {
			files, err := p.t.addDir(in.local, dest, what)
			if err != nil {
				return err
			}
			for _, f := range files {
				if isScript(f) {
					p.walkedPy = append(p.walkedPy, f)
				}
			}
			continue
		}
		if err := p.t.addFile(in.local, dest, what, p.classFor(dest)); err != nil {
			return err
		}
		if isScript(dest) {
			p.explicitPy = append(p.explicitPy, dest)
		}
	}
	return nil
}

// isScript: a .py file that could be the program, not a package marker or build script.
func isScript(dest string) bool {
	switch path.Base(dest) {
	case "__init__.py", "__main__.py", "setup.py", "conftest.py":
		return false
	}
	return strings.HasSuffix(dest, ".py")
}

// inputDest maps a local input path to its image path under the prefix.
func (p *plan) inputDest(given, local, flag string) (string, error) {
	if !filepath.IsAbs(given) {
		rel := filepath.Clean(given)
		if rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return "", fmt.Errorf("%s %s is outside the context directory %s: move it inside, "+
				"give it as an absolute path (it then lands at %s/%s), or place it with --output-map SRC=DST",
				flag, given, p.t.base, p.prefix, filepath.Base(local))
		}
		return path.Join(p.prefix, filepath.ToSlash(rel)), nil
	}
	if rel, err := filepath.Rel(p.t.base, local); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return path.Join(p.prefix, filepath.ToSlash(rel)), nil
	}
	// Fairing put absolute inputs at the same absolute path in the image; keep them under
	// the prefix instead.
	return path.Join(p.prefix, filepath.Base(local)), nil
}

func (p *plan) classFor(dest string) layer.Class {
	if _, ok := depKinds[path.Base(dest)]; ok && path.Dir(dest) == p.prefix {
		return layer.ClassDeps
	}
	return layer.ClassAuto
}

// addOutputMap adds --output-map entries, after the inputs so that inputs keep their place.
func (p *plan) addOutputMap() error {
	ms := append([]Mapping(nil), p.opts.OutputMap...)
	sort.SliceStable(ms, func(i, j int) bool { return ms[i].Dst < ms[j].Dst })
	for _, m := range ms {
		flag := "--output-map " + m.Src + "=" + m.Dst
		if m.Src == "" || m.Dst == "" {
			return fmt.Errorf("%s: want SRC=DST with both sides non-empty", flag)
		}
		local := p.t.local(m.Src)
		fi, err := statLocal(local, "--output-map", m.Src, p.t.base)
		if err != nil {
			return err
		}
		dest, err := p.outputDest(m, local)
		if err != nil {
			return fmt.Errorf("%s: %w", flag, err)
		}
		if fi.IsDir() {
			if _, err := p.t.addDir(local, dest, flag); err != nil {
				return err
			}
			continue
		}
		if err := p.t.addFile(local, dest, flag, p.classFor(dest)); err != nil {
			return err
		}
	}
	return nil
}

func (p *plan) outputDest(m Mapping, local string) (string, error) {
	dst := filepath.ToSlash(m.Dst)
	intoDir := strings.HasSuffix(dst, "/")
	if !path.IsAbs(dst) {
		c := path.Clean(dst)
		if c == ".." || strings.HasPrefix(c, "../") {
			return "", fmt.Errorf("destination %s leaves %s: use a path inside it, or an absolute destination", m.Dst, p.prefix)
		}
		dst = path.Join(p.prefix, c)
	} else {
		dst = path.Clean(dst)
	}
	if intoDir {
		dst = path.Join(dst, filepath.Base(local))
	}
	if within(p.runtimeDir, dst) {
		return "", fmt.Errorf("destination %s is inside %s, which fairing reserves for its own files", dst, p.runtimeDir)
	}
	if within(p.prefix, dst) {
		return dst, nil
	}
	roots := append(DefaultOutputRoots(), p.opts.OutputRoots...)
	for _, r := range roots {
		r = path.Clean("/" + strings.TrimPrefix(r, "/"))
		if within(r, dst) {
			if within("/proc", dst) || within("/sys", dst) || within("/dev", dst) {
				break
			}
			return dst, nil
		}
	}
	return "", fmt.Errorf("destination %s is outside %s and the allowed roots (%s): use a relative destination "+
		"(it lands under %s) or allow its directory with --output-root", dst, p.prefix, strings.Join(roots, ", "), p.prefix)
}

// addRuntime adds the SDK stub packages.
func (p *plan) addRuntime() error {
	for _, f := range stubFiles() {
		if err := p.t.addData(path.Join(p.runtimeDir, f.rel), f.data, 0o644, layer.ClassDeps, "fairing's SDK stub"); err != nil {
			return err
		}
	}
	return nil
}

// localFile resolves a flag's file argument that must exist and be a regular file.
func (p *plan) localFile(flag, given string) (string, error) {
	if strings.TrimSpace(given) == "" {
		return "", fmt.Errorf("%s: empty path", flag)
	}
	local := p.t.local(given)
	fi, err := statLocal(local, flag, given, p.t.base)
	if err != nil {
		return "", err
	}
	if fi.IsDir() {
		return "", fmt.Errorf("%s %s is a directory, not a file", flag, given)
	}
	return local, nil
}

func (p *plan) interpreter() []string {
	if len(p.command) > 0 {
		return append([]string(nil), p.command...)
	}
	return DefaultCommand()
}

func (p *plan) python() error {
	if err := p.addRuntime(); err != nil {
		return err
	}
	if err := p.addInputs(); err != nil {
		return err
	}
	var exe string
	if p.opts.Executable != "" {
		local, err := p.localFile("--executable", p.opts.Executable)
		if err != nil {
			return err
		}
		if exe, err = p.inputDest(p.opts.Executable, local, "--executable"); err != nil {
			return err
		}
		// Fairing added the executable to the inputs; it is a no-op when an input holds it.
		if err := p.t.addFile(local, exe, "--executable "+p.opts.Executable, layer.ClassAuto); err != nil {
			return err
		}
	} else {
		candidates := p.explicitPy
		if len(candidates) == 0 {
			candidates = p.walkedPy
		}
		switch len(candidates) {
		case 1:
			exe = candidates[0]
		case 0:
			p.t.warn(fmt.Sprintf("no executable: no .py file among the inputs, so the image runs %q alone; pass --executable FILE", strings.Join(p.interpreter(), " ")))
		default:
			sort.Strings(candidates)
			shown := candidates
			if len(shown) > 5 {
				shown = append(shown[:5:5], "...")
			}
			p.t.warn(fmt.Sprintf("no executable: %d .py files among the inputs (%s), so the image runs %q alone; pass --executable FILE",
				len(candidates), strings.Join(shown, ", "), strings.Join(p.interpreter(), " ")))
		}
	}
	if err := p.addOutputMap(); err != nil {
		return err
	}
	p.argv = p.interpreter()
	if exe != "" {
		p.argv = append(p.argv, exe)
		p.entry = append(p.entry, exe)
	}
	return nil
}

func (p *plan) result() *Result {
	srcs := append([]layer.Source(nil), p.t.sources...)
	sort.SliceStable(srcs, func(i, j int) bool { return srcs[i].Dest < srcs[j].Dest })
	workdir := p.workdir
	if workdir == "" {
		workdir = p.prefix
	}
	r := &Result{
		Sources:    srcs,
		Command:    p.argv,
		WorkingDir: workdir,
		Env: map[string]string{
			"FAIRING_RUNTIME": "1",
			"PYTHONPATH":      path.Join(p.runtimeDir, "python"),
			// Logs reach `kubectl logs` as they are printed, not when a buffer fills.
			"PYTHONUNBUFFERED": "1",
		},
		Prioritize: p.entry,
		Warnings:   p.t.warnings,
	}
	var found []string
	for dest, o := range p.t.files {
		kind, ok := depKinds[path.Base(dest)]
		if !ok || path.Dir(dest) != p.prefix || o.local == "" {
			continue
		}
		r.Dependencies = append(r.Dependencies, Dependency{Kind: kind, Dest: dest, Path: o.local})
	}
	sort.Slice(r.Dependencies, func(i, j int) bool { return r.Dependencies[i].Dest < r.Dependencies[j].Dest })
	for _, d := range r.Dependencies {
		found = append(found, d.Dest)
	}
	if len(found) > 0 && !p.opts.CanInstallDeps {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%s found: the append builder cannot install dependencies (pip install); "+
			"build with the BuildKit path (--builder buildkit), or use a base image that already has them", strings.Join(found, ", ")))
	}
	return r
}
