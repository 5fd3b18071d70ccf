package main

import (
	"github.com/urfave/cli/v2"

	"github.com/fairing-dev/fairing/internal/buildflags"
	"github.com/fairing-dev/fairing/pkg/builder"
)

// preprocessFlags are the preprocessing flags, under their own names (fairing-submit
// --build-in-cluster shares them, see internal/buildflags).
func preprocessFlags() []cli.Flag { return buildflags.Names(nil).Flags() }

// runPreprocess applies the preprocessor, if one was asked for, to the build's options.
func runPreprocess(c *cli.Context, o *builder.Options, ctxDir, workdir string, canInstall bool) error {
	return buildflags.Names(nil).Run(c, o, ctxDir, c.String("dockerignore"), workdir, canInstall, c.Bool("quiet"))
}
