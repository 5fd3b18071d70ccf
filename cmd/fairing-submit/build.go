package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/urfave/cli/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/fairing-dev/fairing/internal/buildflags"
	"github.com/fairing-dev/fairing/pkg/build"
	"github.com/fairing-dev/fairing/pkg/builder"
	"github.com/fairing-dev/fairing/pkg/contextimage"
	"github.com/fairing-dev/fairing/pkg/deploy"
	"github.com/fairing-dev/fairing/pkg/deploy/follow"
	"github.com/fairing-dev/fairing/pkg/incluster"
	"github.com/fairing-dev/fairing/pkg/layer"
	"github.com/fairing-dev/fairing/pkg/registryclient"
)

// Set at link time (make images): the default images of the build pod are
// IMAGE_REPO/fairing-builder:VERSION and IMAGE_REPO/fairing-submit:VERSION.
var (
	version   = "dev"
	imageRepo = ""
)

const catBuild = "In-cluster build (--build-in-cluster)"

// preprocessNames renames the preprocessing flag that fairing-submit already uses for the
// container's command.
var preprocessNames = buildflags.Names{"command": "interpreter"}

func buildFlags() []cli.Flag {
	fs := cat(catBuild,
		boolean("build-in-cluster", "build the image in the cluster first, then submit it from there: the context is sent through the registry, a build pod runs fairing-builder and then fairing-submit with these options"),
		strDef("build-context", ".", "folder to build (its .dockerignore is honoured)"),
		str("build-context-volume", "build from a volume that already holds the files instead of sending them: pvc:CLAIM[:SUBPATH] or hostpath:/PATH"),
		str("dockerignore", "ignore file to use instead of BUILD-CONTEXT/.dockerignore"),
		str("base", "base image the build appends the context to (a registry reference)"),
		strs("destination", "where the built image is pushed (repeatable; the first one is deployed)"),
		strs("platform", "platforms to build, e.g. linux/amd64,linux/arm64 (default: every platform of the base)"),
		strDef("image-workdir", "/app", "where the context lands in the image; also its working directory"),
		strs("image-env", "environment variable KEY=VALUE of the image (repeatable)"),
		strs("image-label", "image label KEY=VALUE (repeatable)"),
		strs("insecure-registry", "registry HOST[:PORT] reachable over plain HTTP or unverified TLS (repeatable; loopback always may use HTTP)"),
		str("cache-dir", "local layer cache (default $XDG_CACHE_HOME/fairing)"),
		strs("cache-from", "image whose layers the context reuses, by content, when the local cache lacks them (repeatable; e.g. the last image built from this project, on a fresh machine)"),
		str("context-repo", "repository that receives the context artifact (default: the first destination's repository)"),
		strDef("builder", "auto", "append (no steps run), buildkit (install the dependency files' packages in the build pod, with BuildKit), or auto: buildkit when a dependency file lists packages"),
		str("builder-image", "image of an append build step, running fairing-builder (default: "+defaultImage("fairing-builder")+")"),
		str("buildkit-image", "image of a BuildKit build step: fairing-builder with buildkitd and runc, run privileged (default: "+defaultImage("fairing-builder-buildkit")+")"),
		str("cache-repo", "registry repository for BuildKit's cache, so build pods reuse installed packages"),
		str("submit-image", "image of the submit step, running fairing-submit (default: "+defaultImage("fairing-submit")+")"),
		strDef("build-service-account", "fairing-build", "service account of the build pod (deploy/rbac/fairing-build.yaml)"),
		str("registry-secret", "existing docker-registry Secret the build step pushes with (mounted as its Docker config) and the build pod pulls with"),
		boolean("create-registry-secret", "create the registry Secret from your local Docker credentials for the base, destination and context registries; it is deleted with the build"),
		boolean("build-host-network", "run the build pod on the node's network (a registry on the node's loopback)"),
		str("build-api-server", "https://HOST:PORT where the build pod reaches the API server, when the cluster's kubernetes Service does not"),
		&cli.DurationFlag{Name: "build-ttl", Value: 24 * time.Hour, Usage: "delete the finished build Job this long after it ended (ttlSecondsAfterFinished); 0: never", EnvVars: env("build-ttl")},
		&cli.DurationFlag{Name: "build-timeout", Value: 30 * time.Minute, Usage: "give up the build step after this long; 0: no limit", EnvVars: env("build-timeout")},
	)
	return append(fs, preprocessNames.Flags()...)
}

func defaultImage(name string) string {
	if imageRepo == "" {
		return "none: this fairing-submit was built without image defaults"
	}
	return imageRepo + "/" + name + ":" + version
}

// fromEnv says whether a flag's FAIRING_* variable is set (FAIRING_BASE and the like may be meant
// for fairing-builder, which shares them).
func fromEnv(f cli.Flag) bool {
	if ef, ok := f.(interface{ GetEnvVars() []string }); ok {
		for _, e := range ef.GetEnvVars() {
			if _, set := os.LookupEnv(e); set {
				return true
			}
		}
	}
	return false
}

// notForwarded are run flags that the user's command handles itself: they are not passed to the
// submit step in the build pod.
var notForwarded = map[string]bool{
	"kubeconfig": true, "context": true, "namespace": true, "image": true, "image-from-file": true,
	"dry-run": true, "output": true, "id": true, "result-file": true,
}

// submitArgs are the user's deployer options for `fairing-submit run` in the build pod: every
// run flag the user set (by flag or FAIRING_* variable), and the container command.
func submitArgs(c *cli.Context) []string {
	var out []string
	for _, f := range runFlags() {
		nm := f.Names()[0]
		if notForwarded[nm] || !c.IsSet(nm) {
			continue
		}
		switch f.(type) {
		case *cli.StringSliceFlag:
			for _, v := range c.StringSlice(nm) {
				out = append(out, "--"+nm+"="+v)
			}
		case *cli.BoolFlag:
			out = append(out, "--"+nm+"="+strconv.FormatBool(c.Bool(nm)))
		case *cli.DurationFlag:
			out = append(out, "--"+nm+"="+c.Duration(nm).String())
		case *cli.IntFlag:
			out = append(out, "--"+nm+"="+strconv.Itoa(c.Int(nm)))
		case *cli.Int64Flag:
			out = append(out, "--"+nm+"="+strconv.FormatInt(c.Int64(nm), 10))
		default:
			out = append(out, "--"+nm+"="+c.String(nm))
		}
	}
	if c.Args().Present() {
		out = append(append(out, "--"), c.Args().Slice()...)
	}
	return out
}

// inClusterOptions reads the build flags into incluster.Options (nothing is sent yet).
func inClusterOptions(c *cli.Context, ns string) (incluster.Options, error) {
	var o incluster.Options
	if c.String("image") != "" || c.String("image-from-file") != "" {
		return o, usageErr("--build-in-cluster builds the image: drop --image and --image-from-file")
	}
	if c.String("pod-template") != "" {
		// the file is on this machine; the submit step in the build pod would not find it, after the build
		return o, usageErr("--pod-template cannot be used with --build-in-cluster: the workload is submitted from the build pod, " +
			"which does not have the file; give the pod's settings with the pod flags (--volume, --env, --node-selector, --toleration, ...), " +
			"or build with fairing-builder and then run fairing-submit run --image-from-file --pod-template")
	}
	if c.String("base") == "" {
		return o, usageErr("--build-in-cluster needs --base: the image the context is appended to")
	}
	var dests []string
	for _, d := range c.StringSlice("destination") {
		for _, s := range strings.Split(d, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			if strings.HasPrefix(s, "oci:") || strings.HasPrefix(s, "tar:") {
				return o, usageErr("--destination %s: the build pod pushes to a registry the cluster can pull from, not to a local file", s)
			}
			dests = append(dests, s)
		}
	}
	if len(dests) == 0 {
		return o, usageErr("--build-in-cluster needs --destination: the registry repository the built image is pushed to")
	}
	rc := registryclient.Config{Insecure: c.StringSlice("insecure-registry"), UserAgent: "fairing-submit/" + version}
	var registries []string
	for _, r := range append([]string{c.String("base")}, dests...) {
		ref, err := rc.ParseReference(r)
		if err != nil {
			return o, usageErr("%v", err)
		}
		registries = append(registries, ref.Context().RegistryStr())
	}
	workdir := c.String("image-workdir")
	if !strings.HasPrefix(workdir, "/") {
		return o, usageErr("--image-workdir %q must be an absolute path", workdir)
	}
	id := c.String("id")
	if id == "" {
		id = randomID()
	}

	s := incluster.Spec{
		Namespace: ns, ID: id,
		BuilderImage: c.String("builder-image"), SubmitImage: c.String("submit-image"),
		ServiceAccount: c.String("build-service-account"), RegistrySecret: c.String("registry-secret"),
		HostNetwork: c.Bool("build-host-network"), APIServer: c.String("build-api-server"),
		TTL: c.Duration("build-ttl"), BuildTimeout: c.Duration("build-timeout"),
	}
	if imageRepo != "" {
		if s.BuilderImage == "" {
			s.BuilderImage = defaultImage("fairing-builder")
		}
		if s.SubmitImage == "" {
			s.SubmitImage = defaultImage("fairing-submit")
		}
	}
	for _, f := range []string{"build-service-account", "registry-secret"} {
		if v := c.String(f); v != "" {
			if errs := validation.IsDNS1123Subdomain(v); len(errs) > 0 {
				return o, usageErr("--%s %q is not a valid object name: %s", f, v, strings.Join(errs, "; "))
			}
		}
	}
	kind := c.String("builder")
	if kind != builder.Append && kind != builder.BuildKit && kind != builder.Auto {
		return o, usageErr("--builder %q: use append, buildkit or auto", kind)
	}
	s.BuildArgs = append(s.BuildArgs, "--base", c.String("base"))
	for _, d := range dests {
		s.BuildArgs = append(s.BuildArgs, "--destination", d)
	}
	for _, flag := range [][2]string{{"platform", "platform"}, {"insecure-registry", "insecure-registry"}, {"image-env", "env"}, {"image-label", "label"}} {
		for _, v := range c.StringSlice(flag[0]) {
			s.BuildArgs = append(s.BuildArgs, "--"+flag[1], v)
		}
	}
	if e := os.Getenv("SOURCE_DATE_EPOCH"); e != "" {
		// the same file times and creation time as a local build
		s.BuildEnv = []corev1.EnvVar{{Name: "SOURCE_DATE_EPOCH", Value: e}}
	}
	// the deployer options are checked here, before anything is sent: the submit step would refuse
	// them only after the build
	if _, err := podOptions(c, "registry.invalid/placeholder@sha256:"+strings.Repeat("0", 64)); err != nil {
		return o, err
	}
	if k := strings.ToLower(c.String("deployer")); k != "vertex" {
		v, err := versions(c)
		if err != nil {
			return o, err
		}
		if _, err := deploy.Driver(k, v); err != nil {
			return o, usageErr("%v", err)
		}
	}
	if l := follow.LogMode(c.String("logs")); l != follow.LogsMain && l != follow.LogsAll && l != follow.LogsNone {
		return o, usageErr("--logs %q: want main, all or none", l)
	}
	s.SubmitArgs = submitArgs(c)
	if c.IsSet("registry-secret") && c.Bool("create-registry-secret") {
		return o, usageErr("--registry-secret and --create-registry-secret exclude each other")
	}

	if v := c.String("build-context-volume"); v != "" {
		vol, err := incluster.ParseVolume(v)
		if err != nil {
			return o, usageErr("%v", err)
		}
		if c.IsSet("build-context") || c.IsSet("dockerignore") {
			return o, usageErr("--build-context-volume holds the context: drop --build-context and --dockerignore (the volume's .dockerignore is used)")
		}
		s.ContextVolume = vol
		s.BuildArgs = append(append(s.BuildArgs, "--workdir", workdir), preprocessNames.Args(c)...)
		// the files are in the cluster only: the build step decides, and with the plain builder
		// image it refuses clearly a context that needs installing (--builder buildkit then)
	} else {
		epoch, err := sourceDateEpoch()
		if err != nil {
			return o, usageErr("%v", err)
		}
		ctxDir := c.String("build-context")
		src, err := builder.LocalSources(ctxDir, c.String("dockerignore"), workdir)
		if err != nil {
			return o, usageErr("%v", err)
		}
		p := &builder.Options{
			Base:      c.String("base"),
			Sources:   src,
			Config:    build.Config{WorkingDir: workdir},
			Layer:     layer.Options{Tar: layer.TarOptions{Epoch: epoch}},
			CacheDir:  c.String("cache-dir"),
			CacheFrom: c.StringSlice("cache-from"),
			Registry:  rc,
		}
		if w := c.App.ErrWriter; w != nil && !c.Bool("quiet") {
			p.Warnf = func(format string, args ...any) { fmt.Fprintf(w, "warning: "+format+"\n", args...) }
		}
		if err := preprocessNames.Run(c, p, ctxDir, c.String("dockerignore"), workdir, kind != builder.Append, c.Bool("quiet")); err != nil {
			return o, usageErr("%v", err)
		}
		if kind == builder.Auto {
			// decided here, where the files are: the build pod gets the image and rights it needs
			needed, err := builder.NeedsInstall(c.Context, *p)
			if err != nil {
				return o, usageErr("%v", err)
			}
			kind = builder.Append
			if len(needed) > 0 {
				kind = builder.BuildKit
			}
		}
		s.BuildKit = kind == builder.BuildKit
		o.Push = p
		o.Meta = contextimage.Meta{Workdir: p.Config.WorkingDir, Command: append(p.Config.Entrypoint, p.Config.Cmd...),
			Env: p.Config.Env, PathEnv: p.Config.PathEnv, Dependencies: p.Dependencies}
		o.ContextRepo = c.String("context-repo")
		if o.ContextRepo == "" {
			ref, _ := rc.ParseReference(dests[0])
			o.ContextRepo = ref.Context().String()
		}
		cr, err := rc.ParseReference(o.ContextRepo)
		if err != nil {
			return o, usageErr("--context-repo: %v", err)
		}
		registries = append(registries, cr.Context().RegistryStr())
	}
	s.BuildArgs = append(s.BuildArgs, "--builder", kind)
	if s.BuildKit {
		s.BuilderImage = c.String("buildkit-image")
		if s.BuilderImage == "" && imageRepo != "" {
			s.BuilderImage = defaultImage("fairing-builder-buildkit")
		}
		if s.BuilderImage == "" {
			return o, usageErr("this build installs packages with BuildKit: pass --buildkit-image (the fairing-builder-buildkit image `make images` pushes), or --builder append to skip the install")
		}
		if r := c.String("cache-repo"); r != "" {
			s.BuildArgs = append(s.BuildArgs, "--cache-repo", r)
		}
	} else if c.IsSet("cache-repo") {
		return o, usageErr("--cache-repo is BuildKit's cache: it needs --builder buildkit (or auto with packages to install)")
	}
	o.Spec = s
	o.CreateRegistrySecret = c.Bool("create-registry-secret")
	o.Keychain = authn.DefaultKeychain
	o.Registries = registries
	cleanup, err := deploy.ParseCleanup(c.String("cleanup"))
	if err != nil {
		return o, usageErr("%v", err)
	}
	o.Cleanup = cleanup
	o.Logs = follow.LogMode(c.String("logs"))
	o.FailFast = c.Bool("fail-fast")
	if err := incluster.Check(o); err != nil {
		return o, usageErr("%v", err)
	}
	return o, nil
}

// doBuildInCluster is `fairing-submit run --build-in-cluster`.
func doBuildInCluster(c *cli.Context, stdout, stderr io.Writer) error {
	out := c.String("output")
	if c.Bool("dry-run") {
		o, err := inClusterOptions(c, c.String("namespace"))
		if err != nil {
			return err
		}
		s := o.Spec
		if o.Push != nil {
			// the reference the context would have; nothing is sent
			p := *o.Push
			p.NoPush = true
			if s.Context, _, err = builder.PushContext(c.Context, p, o.ContextRepo, o.Meta); err != nil {
				return usageErr("%v", err)
			}
		}
		if o.CreateRegistrySecret {
			s.RegistrySecret = "fairing-registry-(created)"
		}
		j, err := incluster.Job(s)
		if err != nil {
			return usageErr("%v", err)
		}
		format := "yaml"
		if out == "json" {
			format = "json"
		}
		b, err := deploy.Render([]runtime.Object{j}, format)
		if err != nil {
			return err
		}
		_, err = stdout.Write(b)
		return err
	}
	cl, err := clients(c)
	if err != nil {
		return usageErr("%v", err)
	}
	o, err := inClusterOptions(c, cl.Namespace)
	if err != nil {
		return err
	}
	o.Out, o.Progress = stdout, stderr
	if out == "json" {
		o.Out = stderr
	}
	if c.Bool("quiet") {
		o.Progress = io.Discard
	}
	res, err := incluster.Run(c.Context, cl, o)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if res.Kind != "" && o.Logs == follow.LogsNone {
		// the submit step's own summary was not streamed
		fmt.Fprintln(stderr, deploy.Summary(&res.Result))
	}
	fmt.Fprintln(stderr, incluster.Summary(res))
	if out == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	}
	if res.ExitCode != 0 {
		return &exitError{code: res.ExitCode}
	}
	return nil
}

// sourceDateEpoch reads SOURCE_DATE_EPOCH (reproducible-builds.org), as fairing-builder does.
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

// resultJSON is the -o json / --result-file result of a run: the workload's result and the image.
type resultJSON struct {
	*deploy.Result
	Image string `json:"image,omitempty"`
}
