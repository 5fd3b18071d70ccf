package main

import (
	"bufio"

	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/moby/buildkit/client"
)

// job is one tool run: what it builds, onto what, to where.
type job struct {
	suite    string // main or deps
	ctxDir   string
	base     string // base image reference, on the registry the run pushes to
	registry string // host:port of that registry
	dest     string // destination tag
	// fresh: the run starts from empty local caches (cold: also an empty registry).
	fresh bool
	cold  bool
}

// tool is one way to build the image. Every run's tool process goes through the launcher
// (wall, CPU, peak RSS); for a client of a daemon (buildctl, docker) the daemon's CPU time
// and peak RSS during the run are added from /proc.
type tool struct {
	name string
	// ours: one of fairing-builder's paths.
	ours bool
	desc string
	// daemon returns the PID of the daemon that does the work, or 0.
	daemon func(b *bench) int
	// reset empties the tool's local state before a fresh run (untimed); it reports whether
	// the warm state of the main scenarios was lost (a warm-up build is then needed).
	reset func(b *bench, ctx context.Context, j *job) (lostWarm bool, err error)
	run   func(b *bench, ctx context.Context, j *job, s *Sample) error
	// after runs untimed after every run: drops what the run made obsolete (old images)
	// so that repetitions of large workloads do not fill the disk.
	after func(b *bench, ctx context.Context, j *job) error
}

// Tool names.
const (
	tFairing      = "fairing"
	tFairingZstd  = "fairing-zstd"
	tFairingEstgz = "fairing-estargz"
	tFairingBK    = "fairing-bk"
	tInCluster    = "in-cluster"
	tCrane        = "crane"
	tBuildctl     = "buildctl"
	tBuildah      = "buildah"
	tDocker       = "docker"
)

// peers are the tools users could pick instead of fairing, in report order.
var peers = []string{tCrane, tBuildctl, tBuildah, tDocker}

func allTools() []string {
	return []string{tFairing, tFairingBK, tInCluster, tFairingZstd, tFairingEstgz, tCrane, tBuildctl, tBuildah, tDocker}
}

func (b *bench) toolSet() map[string]*tool {
	return map[string]*tool{
		tFairing: {name: tFairing, ours: true, desc: "fairing-builder build (append path, gzip)",
			run: func(b *bench, ctx context.Context, j *job, s *Sample) error {
				return b.runAppend(ctx, j, s, tFairing)
			}},
		tFairingZstd: {name: tFairingZstd, ours: true, desc: "fairing-builder build --compression zstd",
			run: func(b *bench, ctx context.Context, j *job, s *Sample) error {
				return b.runAppend(ctx, j, s, tFairingZstd, "--compression", "zstd")
			}},
		tFairingEstgz: {name: tFairingEstgz, ours: true, desc: "fairing-builder build --compression estargz",
			run: func(b *bench, ctx context.Context, j *job, s *Sample) error {
				return b.runAppend(ctx, j, s, tFairingEstgz, "--compression", "estargz")
			}},
		tInCluster: {name: tInCluster, ours: true, desc: "push-context from the laptop's cache, then a build pod: build --context oci://… with an empty cache",
			run: (*bench).runInCluster},
		tFairingBK: {name: tFairingBK, ours: true, desc: "fairing-builder build --builder buildkit, on a buildkitd of its own",
			daemon: func(b *bench) int { return b.bkOurs.p.pid() },
			reset: func(b *bench, ctx context.Context, j *job) (bool, error) {
				return true, b.bkOurs.prune(ctx)
			},
			run: (*bench).runFairingBK},
		tCrane: {name: tCrane, desc: "GNU tar of the context + crane append",
			run: (*bench).runCrane},
		tBuildctl: {name: tBuildctl, desc: "buildctl build, hand-written Dockerfile, default exporter options",
			daemon: func(b *bench) int { return b.bkPeer.p.pid() },
			reset: func(b *bench, ctx context.Context, j *job) (bool, error) {
				return true, b.bkPeer.prune(ctx)
			},
			run: (*bench).runBuildctl},
		tBuildah: {name: tBuildah, desc: "buildah build --layers (vfs, chroot) + buildah push",
			reset: func(b *bench, ctx context.Context, j *job) (bool, error) {
				return true, removeTree(b.buildahDir())
			},
			run:   (*bench).runBuildah,
			after: (*bench).buildahPrune},
		tDocker: {name: tDocker, desc: "docker build (dockerd's BuildKit, --network host) + docker push",
			daemon: func(b *bench) int { return b.docker.p.pid() },
			reset: func(b *bench, ctx context.Context, j *job) (bool, error) {
				return true, b.docker.reset(ctx)
			},
			run:   (*bench).runDocker,
			after: (*bench).dockerPrune},
	}
}

// cacheDir is the tool's persistent layer cache, or a fresh one for a fresh run (removed
// after it).
func (b *bench) cacheDir(name string, j *job) string {
	if j.fresh {
		return filepath.Join(b.cfg.Work, "cache", j.suite, name+"-fresh")
	}
	return filepath.Join(b.cfg.Work, "cache", j.suite, name)
}

func (b *bench) metaFile() string { return filepath.Join(b.cfg.Work, "meta.json") }

func (b *bench) readMeta(s *Sample) error {
	raw, err := os.ReadFile(b.metaFile())
	if err != nil {
		return fmt.Errorf("fairing-builder wrote no metadata: %w", err)
	}
	s.Meta = &OurMeta{}
	if err := json.Unmarshal(raw, s.Meta); err != nil {
		return fmt.Errorf("read fairing-builder metadata: %w", err)
	}
	for _, l := range s.Meta.Layers {
		s.LayerBytes += l.Size
	}
	return nil
}

func (b *bench) runAppend(ctx context.Context, j *job, s *Sample, name string, extra ...string) error {
	cache := b.cacheDir(name, j)
	if j.fresh {
		defer os.RemoveAll(cache)
	}
	os.Remove(b.metaFile())
	args := append([]string{b.cfg.Builder, "build", "--builder", "append", "--context", j.ctxDir, "--base", j.base,
		"--destination", j.dest, "--cache-dir", cache, "--metadata-file", b.metaFile(), "--quiet"}, extra...)
	st, out, err := runStep(ctx, "build", nil, args...)
	s.Steps = append(s.Steps, st)
	if err != nil {
		return err
	}
	s.Ref = lastLine(out)
	return b.readMeta(s)
}

// runInCluster is the in-cluster style: the laptop sends its context (push-context, with its
// warm cache, or an empty one on a fresh machine), and a build pod with an empty cache
// builds from the pushed context. The pod's build is what is timed; push-context is kept
// beside it.
func (b *bench) runInCluster(ctx context.Context, j *job, s *Sample) error {
	laptop := b.cacheDir("in-cluster-laptop", j)
	pod := filepath.Join(b.cfg.Work, "cache", j.suite, "in-cluster-pod")
	os.RemoveAll(pod)
	defer os.RemoveAll(pod)
	if j.fresh {
		defer os.RemoveAll(laptop)
	}
	os.Remove(b.metaFile())
	st, out, err := runStep(ctx, "push-context", nil, b.cfg.Builder, "push-context", "--context", j.ctxDir, "--base", j.base,
		"--repo", j.registry+"/bench/in-cluster/context", "--cache-dir", laptop, "--quiet")
	st.Aside = true
	s.Steps = append(s.Steps, st)
	if err != nil {
		return err
	}
	ctxRef := lastLine(out)
	if !strings.HasPrefix(ctxRef, "oci://") {
		return fmt.Errorf("push-context printed %q, not oci://REPO@DIGEST", ctxRef)
	}
	st, out, err = runStep(ctx, "build", nil, b.cfg.Builder, "build", "--builder", "append", "--context", ctxRef, "--base", j.base,
		"--destination", j.dest, "--cache-dir", pod, "--metadata-file", b.metaFile(), "--quiet")
	s.Steps = append(s.Steps, st)
	if err != nil {
		return err
	}
	s.Ref = lastLine(out)
	return b.readMeta(s)
}

// runCrane is what a crane user does: a reproducible tar of the context (GNU tar, sorted,
// numeric owner, mtime 0, under app/ like ours), then crane append onto the base.
func (b *bench) runCrane(ctx context.Context, j *job, s *Sample) error {
	tarFile := filepath.Join(b.cfg.Work, "crane-ctx.tar")
	defer os.Remove(tarFile)
	st, _, err := runStep(ctx, "tar", []string{"LC_ALL=C"}, "tar", "--sort=name", "--numeric-owner", "--owner=0", "--group=0",
		"--mtime=@0", "--transform=s,^\\.,app,", "-C", j.ctxDir, "-cf", tarFile, ".")
	s.Steps = append(s.Steps, st)
	if err != nil {
		return err
	}
	st, out, err := runStep(ctx, "append", nil, b.cfg.Crane, "append", "-b", j.base, "-f", tarFile, "-t", j.dest)
	s.Steps = append(s.Steps, st)
	if err != nil {
		return err
	}
	s.Ref = lastLine(out)
	return nil
}

// dockerfileDir holds the hand-written Dockerfile of a suite: what a user writes for the
// same image (the base is a build argument, as the cold runs push to another registry).
func (b *bench) dockerfileDir(suite string) string {
	return filepath.Join(b.cfg.Work, "dockerfile-"+suite)
}

const mainDockerfile = `ARG BASE
FROM $BASE
WORKDIR /app
ENV FAIRING_RUNTIME=1
COPY . /app
`

// depsDockerfile installs the requirements before the code, as the BuildKit path's
// generated Dockerfile does.
const depsDockerfile = `ARG BASE
FROM $BASE
WORKDIR /app
ENV FAIRING_RUNTIME=1
COPY requirements.txt /app/requirements.txt
COPY pkgs/ /app/pkgs/
RUN PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --no-cache-dir -r requirements.txt
COPY . /app/
CMD ["python3", "/app/main.py"]
`

func (b *bench) writeDockerfiles() error {
	for suite, df := range map[string]string{"main": mainDockerfile, "deps": depsDockerfile} {
		if err := os.MkdirAll(b.dockerfileDir(suite), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(b.dockerfileDir(suite), "Dockerfile"), []byte(df), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// runFairingBK: in the main suite, our BuildKit path on the same hand-written Dockerfile as
// the peers; in the deps suite, the Dockerfile it generates (requirements installed first).
func (b *bench) runFairingBK(ctx context.Context, j *job, s *Sample) error {
	os.Remove(b.metaFile())
	args := []string{b.cfg.Builder, "build", "--builder", "buildkit", "--buildkit-addr", b.bkOurs.addr(), "--context", j.ctxDir,
		"--destination", j.dest, "--metadata-file", b.metaFile(), "--quiet"}
	if j.suite == "deps" {
		args = append(args, "--base", j.base, "--cmd", "python3,/app/main.py")
	} else {
		args = append(args, "--dockerfile", filepath.Join(b.dockerfileDir(j.suite), "Dockerfile"), "--build-arg", "BASE="+j.base)
	}
	st, out, err := runStep(ctx, "build", nil, args...)
	s.Steps = append(s.Steps, st)
	if err != nil {
		return err
	}
	s.Ref = lastLine(out)
	if err := b.readMeta(s); err != nil {
		return err
	}
	s.LayerBytes = 0 // the BuildKit report lists steps, not layers
	if s.Meta.BuildKit != nil {
		s.DepsCached = stepCached(s.Meta.BuildKit.Steps)
	}
	return nil
}

// stepCached says whether the pip install step came from the cache (nil: no such step).
func stepCached(steps []bkStep) *bool {
	for _, st := range steps {
		if strings.Contains(st.Name, "pip install") {
			c := st.Cached
			return &c
		}
	}
	return nil
}

func (b *bench) runBuildctl(ctx context.Context, j *job, s *Sample) error {
	meta := filepath.Join(b.cfg.Work, "buildctl-meta.json")
	os.Remove(meta)
	// --progress rawjson on stderr: the step list with cache status, read afterwards.
	prog := filepath.Join(b.cfg.Work, "buildctl-progress.json")
	st, _, err := runStepStderr(ctx, "build", []string{"SOURCE_DATE_EPOCH="}, prog, b.cfg.Buildctl, "--addr", b.bkPeer.addr(), "build",
		"--progress", "rawjson", "--frontend", "dockerfile.v0",
		"--local", "context="+j.ctxDir, "--local", "dockerfile="+b.dockerfileDir(j.suite), "--opt", "build-arg:BASE="+j.base,
		"--output", "type=image,name="+j.dest+",push=true", "--metadata-file", meta)
	s.Steps = append(s.Steps, st)
	if err != nil {
		return err
	}
	var m map[string]any
	raw, err := os.ReadFile(meta)
	if err == nil {
		err = json.Unmarshal(raw, &m)
	}
	if err != nil {
		return fmt.Errorf("read buildctl metadata: %w", err)
	}
	dg, _ := m["containerimage.digest"].(string)
	s.Ref = trimTag(j.dest) + "@" + dg
	s.DepsCached = progressCached(prog)
	return nil
}

// progressCached reads buildctl's rawjson progress: was the pip install step cached?
func progressCached(path string) *bool {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var found, cached bool
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var st client.SolveStatus
		if json.Unmarshal(sc.Bytes(), &st) != nil {
			continue
		}
		for _, v := range st.Vertexes {
			if strings.Contains(v.Name, "pip install") {
				found = true
				cached = cached || v.Cached
			}
		}
	}
	if !found {
		return nil
	}
	return &cached
}

func (b *bench) buildahDir() string { return filepath.Join(b.cfg.Work, "buildah") }

// buildahArgv runs buildah with its own storage (vfs) and, in a private mount namespace, its
// own blob-info cache (c/image keeps it machine-wide under /var/lib/containers/cache for
// root): a fresh run must not learn from earlier ones which blobs the registry has.
func (b *bench) buildahArgv(args ...string) []string {
	d := b.buildahDir()
	bic := filepath.Join(d, "blob-info-cache")
	os.MkdirAll(bic, 0o755)
	os.MkdirAll("/var/lib/containers/cache", 0o755)
	return append([]string{"unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount --bind "$0" /var/lib/containers/cache && exec "$@"`, bic,
		"buildah", "--root", filepath.Join(d, "root"), "--runroot", filepath.Join(d, "run"), "--storage-driver", "vfs"}, args...)
}

func (b *bench) runBuildah(ctx context.Context, j *job, s *Sample) error {
	st, _, err := runStep(ctx, "build", nil, b.buildahArgv("build", "--layers", "--isolation", "chroot", "--tls-verify=false",
		"--build-arg", "BASE="+j.base, "-f", filepath.Join(b.dockerfileDir(j.suite), "Dockerfile"), "-t", j.dest, j.ctxDir)...)
	s.Steps = append(s.Steps, st)
	if err != nil {
		return err
	}
	df := filepath.Join(b.cfg.Work, "buildah-digest")
	os.Remove(df)
	st, _, err = runStep(ctx, "push", nil, b.buildahArgv("push", "--tls-verify=false", "--digestfile", df, j.dest)...)
	s.Steps = append(s.Steps, st)
	if err != nil {
		return err
	}
	dg, err := os.ReadFile(df)
	if err != nil {
		return fmt.Errorf("buildah push wrote no digest: %w", err)
	}
	s.Ref = trimTag(j.dest) + "@" + strings.TrimSpace(string(dg))
	return nil
}

// buildahPrune removes dangling images (the previous build of a tag); the --layers cache
// (intermediate images, which have children) stays.
func (b *bench) buildahPrune(ctx context.Context, j *job) error {
	out, err := exec.CommandContext(ctx, b.buildahArgv("images", "-q", "--filter", "dangling=true")[0], b.buildahArgv("images", "-q", "--filter", "dangling=true")[1:]...).Output()
	if err != nil {
		return fmt.Errorf("buildah images: %w", err)
	}
	ids := strings.Fields(string(out))
	if len(ids) == 0 {
		return nil
	}
	argv := b.buildahArgv(append([]string{"rmi"}, ids...)...)
	if out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("buildah rmi: %v: %s", err, lastLines(string(out), 5))
	}
	return nil
}

var dockerDigest = regexp.MustCompile(`digest: (sha256:[0-9a-f]{64})`)

func (b *bench) dockerEnv() []string {
	return []string{"DOCKER_HOST=" + b.docker.host(), "DOCKER_BUILDKIT=1", "DOCKER_CONFIG=" + filepath.Join(b.cfg.Work, "docker-config")}
}

func (b *bench) runDocker(ctx context.Context, j *job, s *Sample) error {
	st, _, err := runStep(ctx, "build", b.dockerEnv(), b.docker.client, "build", "--network", "host", "--progress", "plain",
		"--build-arg", "BASE="+j.base, "-f", filepath.Join(b.dockerfileDir(j.suite), "Dockerfile"), "-t", j.dest, j.ctxDir)
	s.Steps = append(s.Steps, st)
	if err != nil {
		return err
	}
	st, out, err := runStep(ctx, "push", b.dockerEnv(), b.docker.client, "push", j.dest)
	s.Steps = append(s.Steps, st)
	if err != nil {
		return err
	}
	m := dockerDigest.FindSubmatch(out)
	if m == nil {
		return fmt.Errorf("docker push printed no digest: %s", lastLines(string(out), 5))
	}
	s.Ref = trimTag(j.dest) + "@" + string(m[1])
	return nil
}

// dockerPrune drops dangling images and keeps the build cache within a few contexts' size.
func (b *bench) dockerPrune(ctx context.Context, j *job) error {
	keep := fmt.Sprintf("%dMB", 3*b.ctxBytes/1_000_000+500)
	for _, args := range [][]string{{"image", "prune", "-f"}, {"builder", "prune", "-f", "--keep-storage", keep}} {
		cmd := exec.CommandContext(ctx, b.docker.client, args...)
		cmd.Env = append(os.Environ(), b.dockerEnv()...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, lastLines(string(out), 5))
		}
	}
	return nil
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
