package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/fairing-dev/fairing/pkg/builder"
	"github.com/fairing-dev/fairing/pkg/buildkit"
)

func buildkitFlags() []cli.Flag {
	cat := "BuildKit path (steps that must run, such as pip install):"
	return []cli.Flag{
		&cli.StringFlag{Category: cat, Name: "builder", Value: builder.Auto, EnvVars: env("BUILDER"), Usage: "append (no steps run), buildkit (through a buildkitd), or auto: buildkit when a dependency file lists packages or a --dockerfile is given, append otherwise"},
		&cli.StringFlag{Category: cat, Name: "buildkit-addr", EnvVars: append(env("BUILDKIT_ADDR"), "BUILDKIT_HOST"), Usage: "buildkitd address: unix://, tcp://, docker-container://, kube-pod://, ssh://; empty: start buildkitd from PATH for this build (daemonless)"},
		&cli.StringFlag{Category: cat, Name: "buildkit-tlscacert", EnvVars: env("BUILDKIT_TLSCACERT"), Usage: "CA certificate of a tcp:// buildkitd"},
		&cli.StringFlag{Category: cat, Name: "buildkit-tlscert", EnvVars: env("BUILDKIT_TLSCERT"), Usage: "client certificate for a tcp:// buildkitd"},
		&cli.StringFlag{Category: cat, Name: "buildkit-tlskey", EnvVars: env("BUILDKIT_TLSKEY"), Usage: "client key for a tcp:// buildkitd"},
		&cli.StringFlag{Category: cat, Name: "buildkit-tlsservername", EnvVars: env("BUILDKIT_TLSSERVERNAME"), Usage: "server name of a tcp:// buildkitd's certificate"},
		&cli.StringFlag{Category: cat, Name: "buildkitd", EnvVars: env("BUILDKITD"), Usage: "buildkitd binary for daemonless builds (default: buildkitd from PATH)"},
		&cli.StringFlag{Category: cat, Name: "buildkitd-root", EnvVars: env("BUILDKITD_ROOT"), Usage: "state directory kept between daemonless builds (default: a temporary one, so every build starts cold; see --cache-repo)"},
		&cli.StringFlag{Category: cat, Name: "dockerfile", Aliases: []string{"f"}, EnvVars: env("DOCKERFILE"), Usage: "build this Dockerfile (its context is --context) instead of generating one"},
		&cli.StringFlag{Category: cat, Name: "target", EnvVars: env("TARGET"), Usage: "stage of a multi-stage --dockerfile to build"},
		&cli.StringSliceFlag{Category: cat, Name: "build-arg", EnvVars: env("BUILD_ARG"), Usage: "KEY=VALUE build argument (repeatable)"},
		&cli.StringSliceFlag{Category: cat, Name: "secret", EnvVars: env("SECRET"), Usage: "id=ID,src=FILE or id=ID,env=VAR: a secret for RUN --mount=type=secret and the install step (ids pip.conf and netrc reach pip); never stored in the image"},
		&cli.StringFlag{Category: cat, Name: "cache-repo", EnvVars: env("CACHE_REPO"), Usage: "registry repository for BuildKit's cache (imported and exported, mode=max), so other machines reuse layers"},
		&cli.BoolFlag{Category: cat, Name: "no-cache", EnvVars: env("NO_CACHE"), Usage: "ignore BuildKit's cache"},
		&cli.BoolFlag{Category: cat, Name: "rewrite-timestamp", EnvVars: env("REWRITE_TIMESTAMP"), Usage: "also clamp file times in RUN layers to SOURCE_DATE_EPOCH (byte-reproducible installs, slower)"},
		&cli.StringFlag{Category: cat, Name: "progress", Value: "auto", EnvVars: env("PROGRESS"), Usage: "BuildKit progress: auto, tty, plain, quiet or rawjson"},
		&cli.BoolFlag{Category: cat, Name: "print-dockerfile", EnvVars: env("PRINT_DOCKERFILE"), Usage: "print the Dockerfile the BuildKit path would build, and stop"},
	}
}

func buildkitOptions(c *cli.Context) (builder.BuildKitOptions, error) {
	bk := builder.BuildKitOptions{
		Connect: buildkit.ConnectOptions{
			Addr: c.String("buildkit-addr"),
			TLS: buildkit.TLSOptions{
				CACert: c.String("buildkit-tlscacert"), Cert: c.String("buildkit-tlscert"),
				Key: c.String("buildkit-tlskey"), ServerName: c.String("buildkit-tlsservername"),
			},
			Buildkitd:  c.String("buildkitd"),
			DaemonRoot: c.String("buildkitd-root"),
		},
		Dockerfile:       c.String("dockerfile"),
		ContextDir:       c.String("context"),
		Target:           c.String("target"),
		Secrets:          c.StringSlice("secret"),
		CacheRepo:        c.String("cache-repo"),
		NoCache:          c.Bool("no-cache"),
		RewriteTimestamp: c.Bool("rewrite-timestamp"),
		Progress:         buildkit.ProgressMode(c.String("progress")),
	}
	if c.Bool("quiet") {
		bk.Progress = buildkit.ProgressQuiet
	}
	var err error
	if bk.BuildArgs, err = parseKV("--build-arg", c.StringSlice("build-arg")); err != nil {
		return bk, err
	}
	switch b := c.String("builder"); b {
	case builder.Append, builder.BuildKit, builder.Auto:
	default:
		return bk, fmt.Errorf("--builder %q: use append, buildkit or auto", b)
	}
	return bk, nil
}
