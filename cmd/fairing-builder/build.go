package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/logs"
	"github.com/urfave/cli/v2"

	"github.com/fairing-dev/fairing/pkg/build"
	"github.com/fairing-dev/fairing/pkg/builder"
	"github.com/fairing-dev/fairing/pkg/contextimage"
	"github.com/fairing-dev/fairing/pkg/layer"
	"github.com/fairing-dev/fairing/pkg/progress"
	"github.com/fairing-dev/fairing/pkg/registryclient"
)

func env(name string) []string { return []string{"FAIRING_" + name} }

func buildFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "context", Aliases: []string{"c"}, Value: ".", EnvVars: env("CONTEXT"), Usage: "folder whose files go into the image (its .dockerignore is honoured), or oci://REPO@sha256:... a context sent with push-context"},
		&cli.StringFlag{Name: "dockerignore", EnvVars: env("DOCKERIGNORE"), Usage: "ignore file to use instead of CONTEXT/.dockerignore"},
		&cli.StringFlag{Name: "base", Aliases: []string{"b"}, Value: "scratch", EnvVars: env("BASE"), Usage: "base image: a registry reference, oci:DIR[:TAG] (an OCI layout) or scratch"},
		&cli.StringSliceFlag{Name: "destination", Aliases: []string{"d"}, EnvVars: env("DESTINATION"), Usage: "where the image goes (repeatable): a registry reference, oci:DIR:TAG, or tar:FILE (docker load format)"},
		&cli.BoolFlag{Name: "no-push", EnvVars: env("NO_PUSH"), Usage: "compute the image and print its digest without sending anything to registries"},
		&cli.StringSliceFlag{Name: "platform", EnvVars: env("PLATFORM"), Usage: "platforms to build, e.g. linux/amd64,linux/arm64 (default: every platform of the base)"},
		&cli.StringFlag{Name: "workdir", Aliases: []string{"path-prefix"}, Value: "/app", EnvVars: env("WORKDIR"), Usage: "where the context lands in the image; also the working directory"},
		&cli.StringFlag{Name: "entrypoint", EnvVars: env("ENTRYPOINT"), Usage: `entrypoint, comma-separated or a JSON array: python,/app/train.py or ["python","-c","..."]`},
		&cli.StringFlag{Name: "cmd", EnvVars: env("CMD"), Usage: "command (arguments to the entrypoint), same syntax as --entrypoint"},
		&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, EnvVars: env("ENV"), Usage: "environment variable KEY=VALUE (repeatable; $VAR expands against the base's environment)"},
		&cli.StringSliceFlag{Name: "label", Aliases: []string{"l"}, EnvVars: env("LABEL"), Usage: "image label KEY=VALUE (repeatable)"},
		&cli.StringSliceFlag{Name: "annotation", EnvVars: env("ANNOTATION"), Usage: "manifest annotation KEY=VALUE (repeatable; OCI images only)"},
		&cli.StringFlag{Name: "user", Aliases: []string{"u"}, EnvVars: env("USER"), Usage: "user the image runs as (name, UID or UID:GID)"},
		&cli.StringFlag{Name: "chown", EnvVars: env("CHOWN"), Usage: "owner UID:GID of the added files (default 0:0)"},
		&cli.IntFlag{Name: "jobs", Aliases: []string{"j"}, Value: max(4, runtime.GOMAXPROCS(0)), EnvVars: env("JOBS"), Usage: "concurrent uploads and layer writes"},
		&cli.StringSliceFlag{Name: "insecure-registry", EnvVars: env("INSECURE_REGISTRY"), Usage: "registry HOST[:PORT] reachable over plain HTTP or unverified TLS (repeatable; loopback always may use HTTP)"},
		&cli.StringSliceFlag{Name: "registry-ca", EnvVars: env("REGISTRY_CA"), Usage: "PEM file of a CA to trust for registries (repeatable)"},
		&cli.StringFlag{Name: "cache-dir", EnvVars: env("CACHE_DIR"), Usage: "layer and stat cache (default $XDG_CACHE_HOME/fairing)"},
		&cli.StringSliceFlag{Name: "cache-from", EnvVars: env("CACHE_FROM"), Usage: "image whose layers are reused, by content, when neither the cache nor the destination's tag has them (repeatable; e.g. the branch's latest image, for a CI runner that pushes a new tag per commit); append builds and push-context"},
		&cli.StringFlag{Name: "compression", Value: "gzip", EnvVars: env("COMPRESSION"), Usage: "layer compression: gzip, estargz (lazily pullable gzip), zstd (OCI bases only) or none"},
		&cli.StringSliceFlag{Name: "estargz-prioritize", EnvVars: env("ESTARGZ_PRIORITIZE"), Usage: "image path an eStargz layer puts first, for prefetch (repeatable; default: the files named in --entrypoint/--cmd)"},
		&cli.IntFlag{Name: "compression-level", EnvVars: env("COMPRESSION_LEVEL"), Usage: "compression level (default: gzip 1, zstd 2)"},
		&cli.Int64Flag{Name: "large-file", Value: 8 << 20, EnvVars: env("LARGE_FILE"), Usage: "files of at least this many bytes get a layer of their own"},
		&cli.StringFlag{Name: "digest-file", EnvVars: env("DIGEST_FILE"), Usage: "write the image digest (sha256:...) to this file"},
		&cli.StringFlag{Name: "image-name-with-digest-file", EnvVars: env("IMAGE_NAME_WITH_DIGEST_FILE"), Usage: "write NAME@sha256:... of the first registry destination to this file"},
		&cli.StringFlag{Name: "metadata-file", EnvVars: env("METADATA_FILE"), Usage: "write a JSON report (digest, layers, what was pushed, mounted or skipped, timings)"},
		&cli.DurationFlag{Name: "timeout", EnvVars: env("TIMEOUT"), Usage: "give up after this long (e.g. 10m); 0 means no limit"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, EnvVars: env("QUIET"), Usage: "print only the final NAME@DIGEST line"},
		&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, EnvVars: env("VERBOSE"), Usage: "log every layer and registry operation"},
		&cli.BoolFlag{Name: "json", EnvVars: env("JSON"), Usage: "print the JSON report on stdout instead of the NAME@DIGEST line"},
	}
}

func buildCommand() *cli.Command {
	return &cli.Command{
		Name:      "build",
		Usage:     "build an image from a folder and push it",
		ArgsUsage: " ",
		Description: "Example:\n" +
			"   fairing-builder build --context ./my-project --base registry.example.com/base/python:3.11 \\\n" +
			"       --destination registry.example.com/me/train:latest --cmd python,/app/train.py\n\n" +
			"The last line of stdout is the pushed reference NAME@sha256:...\n" +
			"SOURCE_DATE_EPOCH, if set, clamps file times and sets the creation time.",
		Flags:  append(append(buildFlags(), preprocessFlags()...), buildkitFlags()...),
		Action: runBuild,
	}
}

func runBuild(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: the context is given with --context", c.Args().First())
	}
	o, err := buildOptions(c)
	if err != nil {
		return err
	}
	ctx := c.Context
	if d := c.Duration("timeout"); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	bk, err := buildkitOptions(c)
	if err != nil {
		return err
	}
	if o.ContextRef != "" && c.String("builder") != builder.Append && bk.Dockerfile == "" {
		// BuildKit copies the files and installs what the dependency files name: a pushed context
		// that may need it is unpacked (the append path never downloads it)
		deps := []string{"(--builder buildkit)"}
		if c.String("builder") == builder.Auto {
			if deps, err = builder.ContextDependencies(ctx, o); err != nil {
				return err
			}
		}
		if len(deps) > 0 {
			dir, err := os.MkdirTemp("", "fairing-context-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			if err := builder.MaterializeContext(ctx, &o, dir); err != nil {
				return err
			}
		}
	}
	if c.Bool("print-dockerfile") {
		df, warnings, err := builder.Dockerfile(ctx, o, bk)
		if err != nil {
			return err
		}
		for _, w := range warnings {
			fmt.Fprintf(c.App.ErrWriter, "warning: %s\n", w)
		}
		_, err = c.App.Writer.Write(df)
		return err
	}
	kind := c.String("builder")
	if kind == builder.Auto {
		if kind, err = builder.Choose(ctx, o, bk); err != nil {
			return err
		}
	}
	run := builder.Run
	if kind == builder.BuildKit && len(o.CacheFrom) > 0 {
		return fmt.Errorf("--cache-from serves append builds, and this one runs on BuildKit: give BuildKit's cache a registry repository with --cache-repo instead")
	}
	if kind == builder.BuildKit {
		run = func(ctx context.Context, o builder.Options) (*builder.Report, error) {
			return builder.RunBuildKit(ctx, o, bk)
		}
	}
	rep, err := run(ctx, o)
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return fmt.Errorf("gave up after --timeout %s: %w", c.Duration("timeout"), err)
		}
		return err
	}
	return printReport(c, rep)
}

func buildOptions(c *cli.Context) (builder.Options, error) {
	var o builder.Options
	quiet, verbose := c.Bool("quiet"), c.Bool("verbose")
	stderr := c.App.ErrWriter
	if stderr == nil {
		stderr = os.Stderr
	}
	if !quiet {
		o.Logf = func(format string, args ...any) {
			if verbose {
				fmt.Fprintf(stderr, format+"\n", args...)
			}
		}
		o.Warnf = func(format string, args ...any) { fmt.Fprintf(stderr, "warning: "+format+"\n", args...) }
		if progress.IsTerminal(stderr) {
			o.Progress = stderr
		}
	}
	if verbose {
		logs.Progress = log.New(stderr, "", 0)
		logs.Warn = log.New(stderr, "warning: ", 0)
	} else {
		logs.Progress = log.New(io.Discard, "", 0)
	}

	ctxDir := c.String("context")
	workdir := c.String("workdir")
	if !strings.HasPrefix(workdir, "/") {
		return o, fmt.Errorf("--workdir %q must be an absolute path", workdir)
	}
	if contextimage.IsReference(ctxDir) {
		o.ContextRef = ctxDir
	} else if err := localContext(&o, c, ctxDir, workdir); err != nil {
		return o, err
	}

	o.Base = c.String("base")
	for _, d := range c.StringSlice("destination") {
		for _, s := range strings.Split(d, ",") { // references never hold commas
			if s = strings.TrimSpace(s); s != "" {
				o.Destinations = append(o.Destinations, s)
			}
		}
	}
	o.NoPush = c.Bool("no-push")
	if len(o.Destinations) == 0 && !o.NoPush && c.Command.Name == "build" {
		return o, fmt.Errorf("no --destination: say where the image goes (a registry reference, oci:DIR:TAG or tar:FILE), or pass --no-push to only compute its digest")
	}
	o.Platforms = c.StringSlice("platform")

	cfg := build.Config{WorkingDir: workdir, User: c.String("user")}
	var err error
	if s := c.String("entrypoint"); c.IsSet("entrypoint") {
		if cfg.Entrypoint, err = parseArgv("--entrypoint", s); err != nil {
			return o, err
		}
	}
	if s := c.String("cmd"); c.IsSet("cmd") {
		if cfg.Cmd, err = parseArgv("--cmd", s); err != nil {
			return o, err
		}
	}
	for _, kv := range c.StringSlice("env") {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return o, fmt.Errorf("--env %q: expected KEY=VALUE", kv)
		}
		cfg.Env = append(cfg.Env, kv)
	}
	if cfg.Labels, err = parseKV("--label", c.StringSlice("label")); err != nil {
		return o, err
	}
	if cfg.Annotations, err = parseKV("--annotation", c.StringSlice("annotation")); err != nil {
		return o, err
	}
	epoch, err := sourceDateEpoch()
	if err != nil {
		return o, err
	}
	cfg.Created = epoch
	if o.ContextRef != "" && !c.IsSet("workdir") {
		cfg.WorkingDir = "" // the pushed context knows its working directory
	}
	o.Config = cfg
	if o.ContextRef == "" {
		if err := runPreprocess(c, &o, ctxDir, workdir, c.String("builder") != builder.Append); err != nil {
			return o, err
		}
	}

	comp, err := layer.ParseCompression(c.String("compression"))
	if err != nil {
		return o, err
	}
	// Layers are written at most one per core: each compressor already uses every core.
	// Prioritize keeps what the preprocessor chose (UsePreprocessed, above).
	o.Layer = layer.Options{Compression: comp, Level: c.Int("compression-level"), Jobs: min(c.Int("jobs"), runtime.GOMAXPROCS(0)), Tar: layer.TarOptions{Epoch: epoch},
		Prioritize: o.Layer.Prioritize}
	if s := c.String("chown"); s != "" {
		if o.Layer.Tar.UID, o.Layer.Tar.GID, err = parseChown(s); err != nil {
			return o, err
		}
	}
	if p := c.StringSlice("estargz-prioritize"); len(p) > 0 {
		o.Layer.Prioritize = p
	}
	if len(o.Layer.Prioritize) == 0 {
		// What the container runs is what it reads first.
		for _, a := range append(append([]string{}, o.Config.Entrypoint...), o.Config.Cmd...) {
			if strings.HasPrefix(a, workdir+"/") {
				o.Layer.Prioritize = append(o.Layer.Prioritize, a)
			}
		}
	}
	o.Plan = layer.PlanOptions{LargeFile: c.Int64("large-file")}
	o.CacheDir = c.String("cache-dir")
	for _, r := range c.StringSlice("cache-from") {
		for _, s := range strings.Split(r, ",") { // references never hold commas
			if s = strings.TrimSpace(s); s != "" {
				o.CacheFrom = append(o.CacheFrom, s)
			}
		}
	}
	o.Registry = registryclient.Config{
		Insecure:  c.StringSlice("insecure-registry"),
		CAFiles:   c.StringSlice("registry-ca"),
		Jobs:      c.Int("jobs"),
		UserAgent: "fairing-builder/" + version,
	}
	o.DigestFile = c.String("digest-file")
	o.ImageNameWithDigestFile = c.String("image-name-with-digest-file")
	o.MetadataFile = c.String("metadata-file")
	return o, nil
}

// localContext makes the sources of a local --context folder, honouring its .dockerignore.
func localContext(o *builder.Options, c *cli.Context, ctxDir, workdir string) error {
	src, err := builder.LocalSources(ctxDir, c.String("dockerignore"), workdir)
	o.Sources = src
	return err
}

func printReport(c *cli.Context, rep *builder.Report) error {
	out := c.App.Writer
	if c.Bool("json") {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	if !c.Bool("quiet") {
		stderr := c.App.ErrWriter
		if stderr == nil {
			stderr = os.Stderr
		}
		if rep.BuildKit != nil {
			cached := 0
			for _, s := range rep.BuildKit.Steps {
				if s.Cached {
					cached++
				}
			}
			fmt.Fprintf(stderr, "built with BuildKit: %d steps (%d cached) in %s\n", len(rep.BuildKit.Steps), cached,
				(time.Duration(rep.Timings.TotalMs) * time.Millisecond).String())
		} else {
			printAppendSummary(stderr, rep)
		}
	}
	if len(rep.Refs) == 0 {
		fmt.Fprintln(out, rep.Digest)
	}
	for _, r := range rep.Refs {
		fmt.Fprintln(out, r)
	}
	return nil
}

func printAppendSummary(stderr io.Writer, rep *builder.Report) {
	cached := 0
	for _, l := range rep.Layers {
		if l.Cached {
			cached++
		}
	}
	fmt.Fprintf(stderr, "%d files, %d layers (%d unchanged), %d blobs pushed (%s), %d mounted, %d already there, in %s\n",
		rep.Entries, len(rep.Layers), cached, len(rep.Pushed), humanBytes(rep.BytesUploaded), len(rep.Mounted), len(rep.Skipped),
		(time.Duration(rep.Timings.TotalMs) * time.Millisecond).String())
}

// parseArgv reads python,/app/train.py or a JSON array ["python","-c","print(1,2)"].
func parseArgv(flag, s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "[") {
		var argv []string
		if err := json.Unmarshal([]byte(s), &argv); err != nil {
			return nil, fmt.Errorf("%s %s: not a JSON array of strings: %v", flag, s, err)
		}
		return argv, nil
	}
	if s == "" {
		return []string{}, nil
	}
	return strings.Split(s, ","), nil
}

func parseKV(flag string, kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s %q: expected KEY=VALUE", flag, kv)
		}
		m[k] = v
	}
	return m, nil
}

func parseChown(s string) (uid, gid int, err error) {
	u, g, ok := strings.Cut(s, ":")
	if !ok {
		g = u
	}
	if uid, err = strconv.Atoi(u); err == nil {
		gid, err = strconv.Atoi(g)
	}
	if err != nil || uid < 0 || gid < 0 {
		return 0, 0, fmt.Errorf("--chown %q: expected numeric UID:GID", s)
	}
	return uid, gid, nil
}

// sourceDateEpoch reads SOURCE_DATE_EPOCH (reproducible-builds.org): file times are clamped to
// it and it becomes the image's creation time.
func sourceDateEpoch() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Time{}, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: expected seconds since 1970", s)
	}
	return time.Unix(n, 0).UTC(), nil
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
