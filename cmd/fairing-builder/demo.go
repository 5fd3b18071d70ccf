package main

import (
	"github.com/urfave/cli/v2"

	"github.com/fairing-dev/fairing/pkg/demo"
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "build examples/hello three times against a registry started on 127.0.0.1 (nothing to install)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "context", Value: "examples/hello", EnvVars: env("DEMO_CONTEXT"), Usage: "project to build"},
		},
		Action: func(c *cli.Context) error {
			return demo.Run(c.Context, demo.Options{Context: c.String("context"), Out: c.App.Writer})
		},
	}
}
