package preprocess

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/fairing-dev/fairing/pkg/layer"
	"github.com/fairing-dev/fairing/pkg/preprocess/notebook"
)

// readNotebook checks --notebook and parses it.
func (p *plan) readNotebook() (local, dest string, nb *notebook.Notebook, err error) {
	if p.opts.Notebook == "" {
		return "", "", nil, fmt.Errorf("the %s preprocessor needs --notebook FILE.ipynb", p.kind)
	}
	if local, err = p.localFile("--notebook", p.opts.Notebook); err != nil {
		return "", "", nil, err
	}
	if dest, err = p.inputDest(p.opts.Notebook, local, "--notebook"); err != nil {
		return "", "", nil, err
	}
	data, err := os.ReadFile(local)
	if err != nil {
		return "", "", nil, fmt.Errorf("--notebook: %w", err)
	}
	if nb, err = notebook.Parse(data); err != nil {
		return "", "", nil, fmt.Errorf("notebook %s: %w", p.opts.Notebook, err)
	}
	return local, dest, nb, nil
}

// notebook converts the notebook to <prefix>/<dir>/<name>.py and runs it from <prefix>/<dir>.
// The notebook itself is not copied (add it with --input if the code reads it).
func (p *plan) notebook() error {
	_, nbDest, nb, err := p.readNotebook()
	if err != nil {
		return err
	}
	name := filepath.Base(p.opts.Notebook)
	script, err := notebook.Convert(nb, notebook.Options{Name: name, IncludeTag: p.opts.IncludeCellTag})
	if err != nil {
		return fmt.Errorf("notebook %s: %w", p.opts.Notebook, err)
	}
	if script.CodeCells == 0 {
		if p.opts.IncludeCellTag != "" {
			return fmt.Errorf("notebook %s: no code cell carries the tag %q (as a cell tag or in a comment): "+
				"tag the cells to run, or drop --include-cell-tag", p.opts.Notebook, p.opts.IncludeCellTag)
		}
		p.t.warn(fmt.Sprintf("notebook %s has no code cells: the script does nothing", p.opts.Notebook))
	}
	scriptDest := strings.TrimSuffix(nbDest, path.Ext(nbDest)) + ".py"
	if err := p.addRuntime(); err != nil {
		return err
	}
	if err := p.addInputs(); err != nil {
		return err
	}
	what := "the script converted from " + p.opts.Notebook
	if err := p.t.addData(scriptDest, script.Source, 0o644, layer.ClassTop, what); err != nil {
		return err
	}
	if w := removalWarning(p.opts.Notebook, script.Removed); w != "" {
		p.t.warn(w)
	}
	if err := p.addOutputMap(); err != nil {
		return err
	}
	p.argv = append(p.interpreter(), scriptDest)
	p.entry = []string{scriptDest}
	// Jupyter runs a notebook's kernel in the notebook's directory, with it on sys.path.
	p.workdir = path.Dir(scriptDest)
	return nil
}

// removalWarning summarises what the converter commented out, naming shell and pip lines, which
// users most often expect to run.
func removalWarning(name string, rs []notebook.Removal) string {
	var removed []notebook.Removal
	for _, r := range rs {
		if r.Kind != notebook.RewroteTime && r.Kind != notebook.RewroteWriteFile {
			removed = append(removed, r)
		}
	}
	if len(removed) == 0 {
		return ""
	}
	cells := map[int]bool{}
	installs := false
	installRE := regexp.MustCompile(`(^|[\s!%])(pip3?|conda|mamba|apt|apt-get)\s+install\b`)
	for _, r := range removed {
		cells[r.Cell] = true
		installs = installs || installRE.MatchString(r.Text)
	}
	var cs []int
	for c := range cells {
		cs = append(cs, c)
	}
	sort.Ints(cs)
	var cellList []string
	for _, c := range cs {
		cellList = append(cellList, strconv.Itoa(c))
	}
	w := fmt.Sprintf("notebook %s: commented out %d IPython-only line(s) (magics, shell escapes) in cell(s) %s; "+
		"they do not run under plain python", name, len(removed), strings.Join(cellList, ", "))
	if installs {
		w += "; for the packages they installed, list them in requirements.txt and build with the BuildKit path (--builder buildkit)"
	}
	return w
}

// fullNotebook runs the notebook unmodified: papermill <nb> <out> --log-output [-p N V]...
// or jupyter nbconvert --to notebook --execute.
func (p *plan) fullNotebook() error {
	nbLocal, nbDest, _, err := p.readNotebook()
	if err != nil {
		return err
	}
	runner := p.opts.NotebookRunner
	if runner == "" {
		runner = Papermill
	}
	if _, err := ParseRunner(string(runner)); err != nil {
		return err
	}
	out := p.opts.NotebookOutput
	if out == "" {
		out = DefaultNotebookOutput
	}
	isURL := strings.Contains(out, "://")
	seen := map[string]bool{}
	for _, prm := range p.opts.Parameters {
		if err := checkIdentifier(prm.Name); err != nil {
			return fmt.Errorf("notebook parameter %q: %w", prm.Name, err)
		}
		if seen[prm.Name] {
			return fmt.Errorf("notebook parameter %q given twice", prm.Name)
		}
		seen[prm.Name] = true
	}
	if strings.ContainsAny(p.opts.Kernel, " \t\n") {
		return fmt.Errorf("--kernel %q: a kernel name has no spaces (see `jupyter kernelspec list`)", p.opts.Kernel)
	}
	if err := p.addRuntime(); err != nil {
		return err
	}
	if err := p.addInputs(); err != nil {
		return err
	}
	// The notebook is an input like any other (Fairing appended it to input_files).
	if err := p.t.addFile(nbLocal, nbDest, "--notebook "+p.opts.Notebook, layer.ClassAuto); err != nil {
		return err
	}
	if err := p.addOutputMap(); err != nil {
		return err
	}
	nbDir := path.Dir(nbDest)
	switch runner {
	case Papermill:
		argv := p.command
		if len(argv) == 0 {
			argv = []string{"papermill"}
		}
		argv = append(append([]string(nil), argv...), nbDest, out, "--log-output")
		if p.opts.Kernel != "" {
			argv = append(argv, "-k", p.opts.Kernel)
		}
		if nbDir != p.prefix {
			// Jupyter runs a kernel in the notebook's directory; papermill runs it in its own
			// working directory unless told.
			argv = append(argv, "--cwd", nbDir)
		}
		for _, prm := range p.opts.Parameters {
			argv = append(argv, "-p", prm.Name, prm.Value)
		}
		p.argv = argv
	case NBConvert:
		if len(p.opts.Parameters) > 0 {
			return fmt.Errorf("notebook parameters (-p) need --notebook-runner papermill: nbconvert cannot pass them")
		}
		if isURL || out == "-" {
			return fmt.Errorf("--notebook-output %s: nbconvert writes local files only; use a path (e.g. on a mounted volume) or --notebook-runner papermill", out)
		}
		abs := out
		if !path.IsAbs(abs) {
			abs = path.Join(p.prefix, abs)
		}
		if !strings.HasSuffix(abs, ".ipynb") {
			return fmt.Errorf("--notebook-output %s: nbconvert adds .ipynb to the name it writes; end the path with .ipynb", out)
		}
		argv := p.command
		if len(argv) == 0 {
			// The module, not the "jupyter" launcher, which Debian's nbconvert does not ship.
			argv = []string{"python3", "-m", "nbconvert"}
		}
		argv = append(append([]string(nil), argv...), "--to", "notebook", "--execute",
			"--ExecutePreprocessor.timeout=-1")
		if p.opts.Kernel != "" {
			argv = append(argv, "--ExecutePreprocessor.kernel_name="+p.opts.Kernel)
		}
		p.argv = append(argv, "--output-dir", path.Dir(abs), "--output", path.Base(abs), nbDest)
	}
	p.entry = []string{nbDest}
	return nil
}

// function runs one function or class through the shim.
func (p *plan) function() error {
	if (p.opts.Function == "") == (p.opts.PickledFunction == "") {
		return fmt.Errorf("the function preprocessor needs exactly one of --function FILE.py:NAME and --pickled-function FILE")
	}
	var version string
	if p.opts.PythonVersion != "" {
		v, err := ParsePythonVersion(p.opts.PythonVersion)
		if err != nil {
			return err
		}
		version = v
	}
	var file, name, local string
	if p.opts.Function != "" {
		var err error
		if file, name, err = ParseFunction(p.opts.Function); err != nil {
			return err
		}
		if local, err = p.localFile("--function", file); err != nil {
			return err
		}
		src, err := os.ReadFile(local)
		if err != nil {
			return fmt.Errorf("--function: %w", err)
		}
		if !definesName(string(src), strings.Split(name, ".")[0]) {
			p.t.warn(fmt.Sprintf("--function %s: %s does not seem to define %s; the image will fail if it does not", p.opts.Function, file, name))
		}
	} else {
		var err error
		file = p.opts.PickledFunction
		if local, err = p.localFile("--pickled-function", file); err != nil {
			return err
		}
		if version == "" {
			p.t.warn("--pickled-function: a pickle only loads on the Python version that made it; pass --python-version MAJOR.MINOR to check it at start-up")
		}
	}
	flag := "--function"
	if p.opts.PickledFunction != "" {
		flag = "--pickled-function"
	}
	dest, err := p.inputDest(file, local, flag)
	if err != nil {
		return err
	}
	if err := p.addRuntime(); err != nil {
		return err
	}
	shim := shimFile()
	shimDest := path.Join(p.runtimeDir, shim.rel)
	if err := p.t.addData(shimDest, shim.data, 0o644, layer.ClassDeps, "the function shim"); err != nil {
		return err
	}
	if err := p.addInputs(); err != nil {
		return err
	}
	if err := p.t.addFile(local, dest, flag+" "+file, layer.ClassAuto); err != nil {
		return err
	}
	if err := p.addOutputMap(); err != nil {
		return err
	}
	argv := append(p.interpreter(), shimDest)
	if name != "" {
		argv = append(argv, "--file", dest, "--name", name)
	} else {
		argv = append(argv, "--pickle", dest)
	}
	if version != "" {
		argv = append(argv, "--python-version", version)
	}
	p.argv = argv
	p.entry = []string{shimDest, dest}
	return nil
}

// definesName is a cheap look for a top-level binding of name in Python source: def, class,
// assignment or import. It only feeds a warning, so a miss (exec, star import) costs nothing.
func definesName(src, name string) bool {
	q := regexp.QuoteMeta(name)
	re := regexp.MustCompile(`(?m)^(async\s+def\s+` + q + `\b|def\s+` + q + `\b|class\s+` + q + `\b|` + q + `\s*(:[^=]*)?=[^=]|.*\bimport\b.*\b` + q + `\b|from\s+\S+\s+import\s+\*)`)
	return re.MatchString(src)
}
