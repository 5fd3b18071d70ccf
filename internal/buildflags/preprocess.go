// Package buildflags holds the preprocessing flags that fairing-builder and fairing-submit
// --build-in-cluster share, so both read them the same way and the build pod receives exactly
// what the user gave.
package buildflags

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/fairing-dev/fairing/pkg/builder"
	"github.com/fairing-dev/fairing/pkg/preprocess"
)

// Category groups the preprocessing flags in --help.
const Category = "Preprocessing (python, notebook, full_notebook, function inputs):"

// Names maps a preprocessing flag's fairing-builder name to the name a command gives it; names
// not in the map are kept. fairing-submit renames --command, which there is the container's
// command. A renamed set has no one-letter aliases (they may clash too).
type Names map[string]string

func (n Names) name(s string) string {
	if m, ok := n[s]; ok {
		return m
	}
	return s
}

// env is the FAIRING_* variable of a flag as the command names it.
func env(name string) []string {
	return []string{"FAIRING_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))}
}

type spec struct {
	name  string
	slice bool
	alias string
	usage string
}

// specs are the preprocessing flags by their fairing-builder names, in --help order.
var specs = []spec{
	{"preprocessor", false, "", "python, notebook, full_notebook or function (default: python when --input is given, notebook with --notebook, function with --function; without any, the whole context is copied as is)"},
	{"input", true, "i", "file or folder (recursed) to put under --workdir, relative to --context (repeatable)"},
	{"executable", false, "", "the .py file to run (default: the only .py among the inputs)"},
	{"command", false, "", `interpreter / runner prefix, shell-quoted (default "python"; full_notebook: papermill or jupyter nbconvert)`},
	{"output-map", true, "", "SRC=DST: put a local file or folder at DST in the image (repeatable)"},
	{"output-root", true, "", "extra image folder allowed as an absolute --output-map destination (repeatable)"},
	{"notebook", false, "", "the .ipynb to convert (notebook) or run with papermill/nbconvert (full_notebook)"},
	{"include-cell-tag", false, "", "keep only code cells carrying this tag (e.g. fairing:include-cell)"},
	{"notebook-output", false, "", "where full_notebook writes the executed notebook (a path or a URL papermill understands)"},
	{"parameter", true, "p", "NAME=VALUE passed to papermill as -p NAME VALUE (repeatable)"},
	{"notebook-runner", false, "", "papermill (default) or nbconvert"},
	{"kernel", false, "", "kernel name for full_notebook"},
	{"function", false, "", "FILE.py:NAME: a function to call, or a class whose train() is called"},
	{"pickled-function", false, "", "a cloudpickle file of a function or class to run"},
	{"python-version", false, "", "MAJOR.MINOR the image's Python must have (function)"},
}

// Flags are the preprocessing flags.
func (n Names) Flags() []cli.Flag {
	out := make([]cli.Flag, 0, len(specs))
	for _, s := range specs {
		nm := n.name(s.name)
		var alias []string
		if s.alias != "" && n == nil {
			alias = []string{s.alias}
		}
		if s.slice {
			out = append(out, &cli.StringSliceFlag{Category: Category, Name: nm, Aliases: alias, EnvVars: env(nm), Usage: s.usage})
		} else {
			out = append(out, &cli.StringFlag{Category: Category, Name: nm, Aliases: alias, EnvVars: env(nm), Usage: s.usage})
		}
	}
	return out
}

// Options reads the preprocessing flags; ok is false when none was given, and the context folder
// is then copied as it is. dockerignore is the ignore file given instead of CONTEXT/.dockerignore.
func (n Names) Options(c *cli.Context, ctxDir, dockerignore, workdir string, canInstall bool) (opts preprocess.Options, ok bool, err error) {
	get := func(s string) string { return c.String(n.name(s)) }
	list := func(s string) []string { return c.StringSlice(n.name(s)) }
	set := func(s string) bool { return c.IsSet(n.name(s)) }
	kind := get("preprocessor")
	switch {
	case kind != "":
	case set("notebook"):
		kind = string(preprocess.Notebook)
	case set("function"), set("pickled-function"):
		kind = string(preprocess.Function)
	case set("input"), set("executable"), set("output-map"):
		kind = string(preprocess.Python)
	default:
		return opts, false, nil
	}
	if opts.Kind, err = preprocess.ParseKind(kind); err != nil {
		return opts, false, err
	}
	opts.BaseDir = ctxDir
	opts.Inputs = list("input")
	if len(opts.Inputs) == 0 && opts.Kind == preprocess.Python {
		opts.Inputs = []string{"."}
	}
	if opts.Ignore, err = preprocess.ReadIgnoreFile(ctxDir); err != nil {
		return opts, false, err
	}
	if dockerignore != "" {
		if opts.Ignore, err = preprocess.ReadIgnoreFile(filepath.Dir(dockerignore)); err != nil {
			return opts, false, err
		}
	}
	for _, m := range list("output-map") {
		mm, err := preprocess.ParseOutputMap(m)
		if err != nil {
			return opts, false, err
		}
		opts.OutputMap = append(opts.OutputMap, mm)
	}
	opts.OutputRoots = list("output-root")
	opts.PathPrefix = workdir + "/"
	if s := get("command"); s != "" {
		if opts.Command, err = preprocess.ParseCommand(s); err != nil {
			return opts, false, err
		}
	}
	opts.Executable = get("executable")
	opts.Notebook = get("notebook")
	opts.IncludeCellTag = get("include-cell-tag")
	opts.NotebookOutput = get("notebook-output")
	for _, p := range list("parameter") {
		pp, err := preprocess.ParseParameter(p)
		if err != nil {
			return opts, false, err
		}
		opts.Parameters = append(opts.Parameters, pp)
	}
	if s := get("notebook-runner"); s != "" {
		if opts.NotebookRunner, err = preprocess.ParseRunner(s); err != nil {
			return opts, false, err
		}
	}
	opts.Kernel = get("kernel")
	opts.Function = get("function")
	opts.PickledFunction = get("pickled-function")
	opts.PythonVersion = get("python-version")
	opts.CanInstallDeps = canInstall
	return opts, true, nil
}

// Run applies the preprocessor, if one was asked for, to the build's options; its warnings go
// to c.App.ErrWriter unless quiet.
func (n Names) Run(c *cli.Context, o *builder.Options, ctxDir, dockerignore, workdir string, canInstall, quiet bool) error {
	popts, ok, err := n.Options(c, ctxDir, dockerignore, workdir, canInstall)
	if err != nil || !ok {
		return err
	}
	res, err := preprocess.Preprocess(c.Context, popts)
	if err != nil {
		return err
	}
	if !quiet {
		for _, w := range res.Warnings {
			fmt.Fprintf(c.App.ErrWriter, "warning: %s\n", w)
		}
	}
	o.UsePreprocessed(res)
	return nil
}

// Args returns the preprocessing flags the user set as fairing-builder arguments, for a build
// pod that preprocesses a context it already holds (a volume).
func (n Names) Args(c *cli.Context) []string {
	var out []string
	for _, s := range specs {
		nm := n.name(s.name)
		if !c.IsSet(nm) {
			continue
		}
		if !s.slice {
			out = append(out, "--"+s.name+"="+c.String(nm))
			continue
		}
		for _, v := range c.StringSlice(nm) {
			out = append(out, "--"+s.name+"="+v)
		}
	}
	return out
}
