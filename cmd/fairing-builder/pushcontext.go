package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/fairing-dev/fairing/pkg/builder"
	"github.com/fairing-dev/fairing/pkg/contextimage"
)

func pushContextCommand() *cli.Command {
	flags := append(append(buildFlags(), preprocessFlags()...),
		&cli.StringFlag{Name: "repo", Required: true, EnvVars: env("CONTEXT_REPO"), Usage: "repository that receives the context, e.g. registry.example.com/me/train"},
	)
	return &cli.Command{
		Name:  "push-context",
		Usage: "send a build context to a registry as a content-addressed artifact, for a build pod",
		Description: "The context's layers are made exactly as a build makes them (same cache, same digests) and\n" +
			"pushed as an OCI artifact; only blobs the repository lacks are uploaded. The last line of stdout\n" +
			"is oci://REPO@sha256:..., which `fairing-builder build --context` accepts: a build from it appends\n" +
			"those layers without downloading them and gives the same image as a local build.",
		Flags: flags,
		Action: func(c *cli.Context) error {
			o, err := buildOptions(c)
			if err != nil {
				return err
			}
			if o.ContextRef != "" {
				return fmt.Errorf("push-context needs a local --context folder")
			}
			ref, rep, err := builder.PushContext(c.Context, o, c.String("repo"), contextimage.Meta{
				Workdir: o.Config.WorkingDir, Command: append(o.Config.Entrypoint, o.Config.Cmd...),
				Env: o.Config.Env, PathEnv: o.Config.PathEnv, Dependencies: o.Dependencies,
			})
			if err != nil {
				return err
			}
			if err := printReport(c, rep); err != nil {
				return err
			}
			if !c.Bool("json") {
				fmt.Fprintln(c.App.Writer, ref)
			}
			return nil
		},
	}
}
