package builder

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/fairing-dev/fairing/pkg/buildkit"
	"github.com/fairing-dev/fairing/pkg/layer"
	"github.com/fairing-dev/fairing/pkg/publish"
)

// Builder kinds for --builder.
const (
	Append   = "append"
	BuildKit = "buildkit"
	Auto     = "auto"
)

// BuildKitOptions are what the BuildKit path needs beyond Options.
type BuildKitOptions struct {
	Connect buildkit.ConnectOptions
	// Dockerfile is the user's Dockerfile; empty means one generated from Options.Sources.
	Dockerfile string
	// ContextDir is the user's Dockerfile's context.
	ContextDir string
	Target     string
	BuildArgs  map[string]string
	Secrets    []string
	CacheRepo  string
	NoCache    bool
	// RewriteTimestamp clamps the file times of RUN layers too (slower, byte-reproducible).
	RewriteTimestamp bool
	Progress         buildkit.ProgressMode
}

// Choose decides the builder for --builder auto: append when nothing needs installing, BuildKit
// when a dependency file lists packages (or a Dockerfile is given) and a buildkitd can be
// reached or started; otherwise an error that says which file needs installing and how to give
// a buildkitd.
func Choose(ctx context.Context, o Options, bk BuildKitOptions) (string, error) {
	if bk.Dockerfile != "" {
		return BuildKit, nil
	}
	needed, err := NeedsInstall(ctx, o)
	if err != nil {
		return "", err
	}
	if len(needed) == 0 {
		return Append, nil
	}
	if bk.Connect.Addr != "" || os.Getenv("BUILDKIT_HOST") != "" {
		return BuildKit, nil // Build reports an unreachable daemon with its address
	}
	bin := bk.Connect.Buildkitd
	if bin == "" {
		bin = "buildkitd"
	}
	if _, err := exec.LookPath(bin); err == nil {
		return BuildKit, nil // daemonless: started for this build
	}
	return "", fmt.Errorf("%s lists packages to install (pip install), which the append builder cannot run: "+
		"give a buildkitd with --buildkit-addr or BUILDKIT_HOST, put buildkitd on PATH for a daemonless build, "+
		"or pass --builder append to build without installing", strings.Join(needed, ", "))
}

// NeedsInstall lists the dependency files of o's sources that name packages to install, which
// only the BuildKit path can do.
func NeedsInstall(ctx context.Context, o Options) ([]string, error) {
	// It runs before every build in auto mode, so it answers without walking the context when
	// it can: the generated Dockerfile installs only WORKDIR/requirements.txt, and when no
	// source provides one that lists packages, nothing is installed. Otherwise the planner
	// decides (a .dockerignore may exclude the file, a source's class may move it).
	if !mayInstall(o) {
		return nil, nil
	}
	reqs, err := buildkit.Requirements(ctx, *baseSpec(o))
	if err != nil {
		return nil, err
	}
	var needed []string
	for _, r := range reqs {
		if local := localPath(o.Sources, r); local == "" || listsPackages(local) {
			needed = append(needed, r)
		}
	}
	return needed, nil
}

// RunBuildKit builds with BuildKit: the user's Dockerfile, or one generated from the sources
// (dependency files copied and installed before the code).
func RunBuildKit(ctx context.Context, o Options, bk BuildKitOptions) (*Report, error) {
	start := time.Now()
	bo, err := buildkitOptions(o, bk)
	if err != nil {
		return nil, err
	}
	res, err := buildkit.Build(ctx, bo)
	if err != nil {
		return nil, err
	}
	rep := &Report{Builder: BuildKit, Digest: res.Digest.String(), MediaType: string(res.Descriptor.MediaType), Dependencies: o.Dependencies}
	rep.Base.Name = o.Base
	for _, d := range bo.Destinations {
		rep.Refs = append(rep.Refs, d.WithDigest(rep.Digest))
	}
	if len(rep.Refs) > 0 {
		rep.Reference = rep.Refs[0]
	} else {
		rep.Reference = rep.Digest
	}
	rep.ContainerImageDigest = rep.Digest
	rep.BuildKit = &BuildKitReport{Steps: res.Steps, Warnings: res.Warnings, Metadata: res.Metadata()}
	rep.Platforms = o.Platforms
	rep.Timings.TotalMs = time.Since(start).Milliseconds()
	if err := writeOutputs(o, rep); err != nil {
		return nil, err
	}
	return rep, nil
}

// BuildKitReport is what a BuildKit build adds to the report.
type BuildKitReport struct {
	Steps    []buildkit.Step `json:"steps"`
	Warnings []string        `json:"warnings,omitempty"`
	// Metadata is buildctl's --metadata-file content.
	Metadata map[string]any `json:"metadata"`
}

// Dockerfile is what the BuildKit path would build (--print-dockerfile).
func Dockerfile(ctx context.Context, o Options, bk BuildKitOptions) ([]byte, []string, error) {
	bo, err := buildkitOptions(o, bk)
	if err != nil {
		return nil, nil, err
	}
	return buildkit.Dockerfile(ctx, bo)
}

func buildkitOptions(o Options, bk BuildKitOptions) (buildkit.Options, error) {
	bo := buildkit.Options{
		ConnectOptions:   bk.Connect,
		Target:           bk.Target,
		BuildArgs:        bk.BuildArgs,
		Labels:           o.Config.Labels,
		Annotations:      o.Config.Annotations,
		Platforms:        o.Platforms,
		NoCache:          bk.NoCache,
		Secrets:          bk.Secrets,
		CacheRepo:        bk.CacheRepo,
		RewriteTimestamp: bk.RewriteTimestamp,
		Registry:         o.Registry,
		Progress:         bk.Progress,
	}
	bo.ConnectOptions.InsecureRegistries = append(bo.ConnectOptions.InsecureRegistries, o.Registry.Insecure...)
	if !o.Config.Created.IsZero() {
		t := o.Config.Created
		bo.SourceDateEpoch = &t
	}
	c := string(o.Layer.Compression)
	if c == string(layer.Uncompressed) {
		c = "uncompressed"
	}
	bo.Compression = buildkit.Compression{Type: c, Level: o.Layer.Level}
	if o.Logf == nil {
		bo.Progress = buildkit.ProgressQuiet
	}
	for _, s := range o.Destinations {
		d, err := publish.ParseDestination(s, o.Registry)
		if err != nil {
			return bo, err
		}
		if o.NoPush && d.Kind == publish.Registry {
			continue
		}
		bo.Destinations = append(bo.Destinations, d)
	}
	if bk.Dockerfile != "" {
		bo.Dockerfile, bo.ContextDir = bk.Dockerfile, bk.ContextDir
		if bo.ContextDir == "" {
			bo.ContextDir = filepath.Dir(bk.Dockerfile)
		}
		return bo, nil
	}
	if o.ContextRef != "" {
		return bo, errors.New("the BuildKit path needs the context's files: a pushed context (oci://) builds with --builder append")
	}
	bo.Spec = spec(o)
	return bo, nil
}

// localRequirementPaths are the image paths of local packages, wheels and nested requirement
// files a requirements file names (./pkg, -e ./pkg, file:dist/x.whl, -r other.txt): they must
// be in the image before pip runs, so they go with the dependency files.
func localRequirementPaths(imagePath, local string) []string {
	f, err := os.Open(local)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	dir := path.Dir(imagePath)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if i := strings.Index(l, " #"); i >= 0 {
			l = strings.TrimSpace(l[:i])
		}
		for _, p := range []string{"-e ", "--editable ", "-r ", "--requirement ", "-c ", "--constraint "} {
			l = strings.TrimSpace(strings.TrimPrefix(l, p))
		}
		l = strings.TrimPrefix(l, "file:")
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "-") || strings.Contains(l, "://"):
			continue
		case strings.HasPrefix(l, "./"), strings.HasPrefix(l, "../"), strings.HasSuffix(l, ".whl"),
			strings.HasSuffix(l, ".tar.gz"), strings.HasSuffix(l, ".zip"), strings.HasSuffix(l, ".txt"):
			if i := strings.IndexAny(l, "[; "); i > 0 {
				l = l[:i] // ./pkg[extra] ; marker
			}
			out = append(out, path.Join(dir, l))
		}
	}
	return out
}

// mayInstall reports whether the requirements file the generated Dockerfile installs
// (WORKDIR/requirements.txt) is provided by a source and lists packages or is generated: when
// it is false, NeedsInstall's answer is "nothing", found without walking the context.
func mayInstall(o Options) bool {
	r := buildkit.DefaultRequirements(o.Config.WorkingDir)
	for _, s := range o.Sources {
		if s.Path == "" && path.Clean(s.Dest) == r {
			return true // generated: whatever it lists
		}
	}
	local := localPath(o.Sources, r)
	return local != "" && listsPackages(local)
}

// spec is the generated Dockerfile's description of o, with the local packages and files its
// requirements name moved next to them (which walks the context).
func spec(o Options) *buildkit.Spec {
	s := baseSpec(o)
	// What the requirement files point at locally is copied (and installed) with them.
	if reqs, err := buildkit.Requirements(context.Background(), *s); err == nil {
		s.Plan.DepsPaths = append([]string(nil), s.Plan.DepsPaths...)
		for _, r := range reqs {
			if local := localPath(o.Sources, r); local != "" {
				s.Plan.DepsPaths = append(s.Plan.DepsPaths, localRequirementPaths(r, local)...)
			}
		}
	}
	return s
}

// baseSpec is spec without the requirements' local paths: enough to find the requirements.
func baseSpec(o Options) *buildkit.Spec {
	s := &buildkit.Spec{
		Base:       o.Base,
		WorkDir:    o.Config.WorkingDir,
		Sources:    o.Sources,
		Plan:       o.Plan,
		User:       o.Config.User,
		Entrypoint: o.Config.Entrypoint,
		Cmd:        o.Config.Cmd,
	}
	for _, kv := range o.Config.Env {
		k, v, _ := strings.Cut(kv, "=")
		if s.Env == nil {
			s.Env = map[string]string{}
		}
		s.Env[k] = v
	}
	for _, kv := range o.Config.PathEnv {
		k, v, _ := strings.Cut(kv, "=")
		if s.PathEnv == nil {
			s.PathEnv = map[string]string{}
		}
		s.PathEnv[k] = v
	}
	return s
}

// localPath finds the local file a source puts at image path p ("" if none or generated).
func localPath(sources []layer.Source, p string) string {
	for _, s := range sources {
		if s.Path == "" {
			continue
		}
		dest := path.Clean(s.Dest)
		switch {
		case dest == p:
			return s.Path
		case strings.HasPrefix(p, dest+"/"):
			local := filepath.Join(s.Path, filepath.FromSlash(strings.TrimPrefix(p, dest+"/")))
			if _, err := os.Stat(local); err == nil {
				return local
			}
		}
	}
	return ""
}

// listsPackages reports whether a requirements file has anything but blank lines and comments.
func listsPackages(file string) bool {
	f, err := os.Open(file)
	if err != nil {
		return true // let the install step report it
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			return true
		}
	}
	return false
}
