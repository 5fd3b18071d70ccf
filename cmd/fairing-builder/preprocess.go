package main

import (
	"fmt"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/fairing-dev/fairing/pkg/builder"
	"github.com/fairing-dev/fairing/pkg/preprocess"
)

func preprocessFlags() []cli.Flag {
	cat := "Preprocessing (python, notebook, full_notebook, function inputs):"
	return []cli.Flag{
		&cli.StringFlag{Category: cat, Name: "preprocessor", EnvVars: env("PREPROCESSOR"), Usage: "python, notebook, full_notebook or function (default: python when --input is given, notebook with --notebook, function with --function; without any, the whole context is copied as is)"},
		&cli.StringSliceFlag{Category: cat, Name: "input", Aliases: []string{"i"}, EnvVars: env("INPUT"), Usage: "file or folder (recursed) to put under --workdir, relative to --context (repeatable)"},
		&cli.StringFlag{Category: cat, Name: "executable", EnvVars: env("EXECUTABLE"), Usage: "the .py file to run (default: the only .py among the inputs)"},
		&cli.StringFlag{Category: cat, Name: "command", EnvVars: env("COMMAND"), Usage: `interpreter / runner prefix, shell-quoted (default "python"; full_notebook: papermill or jupyter nbconvert)`},
		&cli.StringSliceFlag{Category: cat, Name: "output-map", EnvVars: env("OUTPUT_MAP"), Usage: "SRC=DST: put a local file or folder at DST in the image (repeatable)"},
		&cli.StringSliceFlag{Category: cat, Name: "output-root", EnvVars: env("OUTPUT_ROOT"), Usage: "extra image folder allowed as an absolute --output-map destination (repeatable)"},
		&cli.StringFlag{Category: cat, Name: "notebook", EnvVars: env("NOTEBOOK"), Usage: "the .ipynb to convert (notebook) or run with papermill/nbconvert (full_notebook)"},
		&cli.StringFlag{Category: cat, Name: "include-cell-tag", EnvVars: env("INCLUDE_CELL_TAG"), Usage: "keep only code cells carrying this tag (e.g. fairing:include-cell)"},
		&cli.StringFlag{Category: cat, Name: "notebook-output", EnvVars: env("NOTEBOOK_OUTPUT"), Usage: "where full_notebook writes the executed notebook (a path or a URL papermill understands)"},
		&cli.StringSliceFlag{Category: cat, Name: "parameter", Aliases: []string{"p"}, EnvVars: env("PARAMETER"), Usage: "NAME=VALUE passed to papermill as -p NAME VALUE (repeatable)"},
		&cli.StringFlag{Category: cat, Name: "notebook-runner", EnvVars: env("NOTEBOOK_RUNNER"), Usage: "papermill (default) or nbconvert"},
		&cli.StringFlag{Category: cat, Name: "kernel", EnvVars: env("KERNEL"), Usage: "kernel name for full_notebook"},
		&cli.StringFlag{Category: cat, Name: "function", EnvVars: env("FUNCTION"), Usage: "FILE.py:NAME: a function to call, or a class whose train() is called"},
		&cli.StringFlag{Category: cat, Name: "pickled-function", EnvVars: env("PICKLED_FUNCTION"), Usage: "a cloudpickle file of a function or class to run"},
		&cli.StringFlag{Category: cat, Name: "python-version", EnvVars: env("PYTHON_VERSION"), Usage: "MAJOR.MINOR the image's Python must have (function)"},
	}
}

// preprocessOptions reads the preprocessing flags; ok is false when none was given, and the
// context folder is then copied as it is.
func preprocessOptions(c *cli.Context, ctxDir, workdir string, canInstall bool) (opts preprocess.Options, ok bool, err error) {
	kind := c.String("preprocessor")
	switch {
	case kind != "":
	case c.IsSet("notebook"):
		kind = string(preprocess.Notebook)
	case c.IsSet("function"), c.IsSet("pickled-function"):
		kind = string(preprocess.Function)
	case c.IsSet("input"), c.IsSet("executable"), c.IsSet("output-map"):
		kind = string(preprocess.Python)
	default:
		return opts, false, nil
	}
	if opts.Kind, err = preprocess.ParseKind(kind); err != nil {
		return opts, false, err
	}
	opts.BaseDir = ctxDir
	opts.Inputs = c.StringSlice("input")
	if len(opts.Inputs) == 0 && opts.Kind == preprocess.Python {
		opts.Inputs = []string{"."}
	}
	if opts.Ignore, err = preprocess.ReadIgnoreFile(ctxDir); err != nil {
		return opts, false, err
	}
	if f := c.String("dockerignore"); f != "" {
		if opts.Ignore, err = preprocess.ReadIgnoreFile(filepath.Dir(f)); err != nil {
			return opts, false, err
		}
	}
	for _, m := range c.StringSlice("output-map") {
		mm, err := preprocess.ParseOutputMap(m)
		if err != nil {
			return opts, false, err
		}
		opts.OutputMap = append(opts.OutputMap, mm)
	}
	opts.OutputRoots = c.StringSlice("output-root")
	opts.PathPrefix = workdir + "/"
	if s := c.String("command"); s != "" {
		if opts.Command, err = preprocess.ParseCommand(s); err != nil {
			return opts, false, err
		}
	}
	opts.Executable = c.String("executable")
	opts.Notebook = c.String("notebook")
	opts.IncludeCellTag = c.String("include-cell-tag")
	opts.NotebookOutput = c.String("notebook-output")
	for _, p := range c.StringSlice("parameter") {
		pp, err := preprocess.ParseParameter(p)
		if err != nil {
			return opts, false, err
		}
		opts.Parameters = append(opts.Parameters, pp)
	}
	if s := c.String("notebook-runner"); s != "" {
		if opts.NotebookRunner, err = preprocess.ParseRunner(s); err != nil {
			return opts, false, err
		}
	}
	opts.Kernel = c.String("kernel")
	opts.Function = c.String("function")
	opts.PickledFunction = c.String("pickled-function")
	opts.PythonVersion = c.String("python-version")
	opts.CanInstallDeps = canInstall
	return opts, true, nil
}

// runPreprocess applies the preprocessor, if one was asked for, to the build's options.
func runPreprocess(c *cli.Context, o *builder.Options, ctxDir, workdir string, canInstall bool) error {
	popts, ok, err := preprocessOptions(c, ctxDir, workdir, canInstall)
	if err != nil || !ok {
		return err
	}
	res, err := preprocess.Preprocess(c.Context, popts)
	if err != nil {
		return err
	}
	if !c.Bool("quiet") {
		for _, w := range res.Warnings {
			fmt.Fprintf(c.App.ErrWriter, "warning: %s\n", w)
		}
	}
	o.UsePreprocessed(res)
	return nil
}
