package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// runcRoot keeps the test containers' runc state apart from anything else on the machine
// (`runc --root /run/fairing-testenv-runc list` shows leftovers, if a test process was killed).
const runcRoot = "/run/fairing-testenv-runc"

// RunOption changes how RunImage and RunLayout run the container.
type RunOption func(*runConfig)

type runConfig struct {
	args    []string
	env     []string
	cwd     string
	hostNet bool
	timeout time.Duration
	stdin   io.Reader
	stderr  io.Writer
}

// WithArgs replaces the process the image would run (its Entrypoint + Cmd) with args.
func WithArgs(args ...string) RunOption { return func(c *runConfig) { c.args = args } }

// WithEnv sets environment variables ("KEY=value") on top of the image's.
func WithEnv(kv ...string) RunOption { return func(c *runConfig) { c.env = append(c.env, kv...) } }

// WithCwd sets the working directory instead of the image's.
func WithCwd(dir string) RunOption { return func(c *runConfig) { c.cwd = dir } }

// WithHostNetwork shares the host's network (to reach the test registry on 127.0.0.1, say). By
// default the container has a network namespace of its own with only a loopback interface.
func WithHostNetwork() RunOption { return func(c *runConfig) { c.hostNet = true } }

// WithTimeout bounds the run (default 2 minutes); a container still running then is killed and
// the test fails.
func WithTimeout(d time.Duration) RunOption { return func(c *runConfig) { c.timeout = d } }

// WithStdin feeds r to the process's standard input (default: empty).
func WithStdin(r io.Reader) RunOption { return func(c *runConfig) { c.stdin = r } }

// WithStderr also copies the process's standard error to w (it always goes to the test log).
func WithStderr(w io.Writer) RunOption { return func(c *runConfig) { c.stderr = w } }

// RunImage really runs the image ref from a registry: skopeo copies it into an OCI layout (an
// index resolves to linux/amd64), umoci unpacks it into a runtime bundle, and runc runs it with a
// unique container id, without a terminal. It returns the process's standard output and exit code.
// Standard error goes to the test log. If runc cannot start the process (no such entrypoint, say)
// or it outlives the timeout, the test fails. The container and bundle are always removed.
// Needs root, skopeo, umoci and runc (installed by test/setup.d/20-bases.sh).
func RunImage(t testing.TB, ref string, opts ...RunOption) (stdout string, exitCode int) {
	t.Helper()
	NeedTools(t, "skopeo", "umoci", "runc")
	dir := t.TempDir()
	layout := filepath.Join(dir, "oci")
	// the test registry is plain HTTP on 127.0.0.1; the policy is "accept anything" on purpose
	command(t, "skopeo", "copy", "--quiet", "--insecure-policy", "--src-tls-verify=false",
		"docker://"+ref, "oci:"+layout+":run")
	return run(t, layout, "run", dir, opts)
}

// RunLayout is RunImage for the image tagged tag in the OCI image layout layoutDir (as written by
// go-containerregistry's layout package with an "org.opencontainers.image.ref.name" annotation,
// skopeo, or umoci). The layout is only read.
func RunLayout(t testing.TB, layoutDir, tag string, opts ...RunOption) (stdout string, exitCode int) {
	t.Helper()
	NeedTools(t, "umoci", "runc")
	return run(t, layoutDir, tag, t.TempDir(), opts)
}

func run(t testing.TB, layout, tag, dir string, opts []RunOption) (string, int) {
	t.Helper()
	bundle := filepath.Join(dir, "bundle")
	command(t, "umoci", "unpack", "--image", layout+":"+tag, bundle)
	return runBundle(t, bundle, layout+":"+tag, opts)
}

// runBundle runs a container from the unpacked bundle; image names it in messages.
func runBundle(t testing.TB, bundle, image string, opts []RunOption) (string, int) {
	t.Helper()
	cfg := runConfig{timeout: 2 * time.Minute}
	for _, o := range opts {
		o(&cfg)
	}
	if err := editSpec(filepath.Join(bundle, "config.json"), cfg); err != nil {
		t.Fatalf("prepare the runtime bundle of %s: %v", image, err)
	}
	if err := os.MkdirAll(runcRoot, 0o700); err != nil {
		t.Fatalf("runc state dir: %v", err)
	}

	id := "fairing-test-" + randomHex(6)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "runc", "--root", runcRoot, "run", "--bundle", bundle, id)
	cmd.Stdin = cfg.stdin
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if cfg.stderr != nil {
		cmd.Stderr = io.MultiWriter(&stderr, cfg.stderr)
	}
	// Killing runc would orphan the container: kill the container, and runc returns.
	cmd.Cancel = func() error {
		return exec.Command("runc", "--root", runcRoot, "kill", id, "KILL").Run()
	}
	cmd.WaitDelay = 10 * time.Second
	defer func() {
		// `runc run` deletes the container when it exits; this is for the paths where it did not
		out, err := exec.Command("runc", "--root", runcRoot, "delete", "--force", id).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "does not exist") {
			t.Logf("runc delete %s: %v: %s", id, err, out)
		}
	}()
	err := cmd.Run()
	if stderr.Len() > 0 {
		t.Logf("stderr of %s in container %s:\n%s", image, id, stderr.String())
	}
	code := 0
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("container %s (%s) still ran after %v: killed; stdout so far:\n%s", id, image, cfg.timeout, stdout.String())
	case errors.As(err, &exitErr):
		code = exitErr.ExitCode()
	case err != nil:
		t.Fatalf("runc run %s: %v", id, err)
	}
	if code != 0 && strings.Contains(stderr.String(), "runc run failed") {
		t.Fatalf("runc could not start the container from %s: %s", image, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), code
}

// editSpec adapts the runtime config umoci wrote from the image config.
func editSpec(path string, cfg runConfig) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	if spec.Process == nil || spec.Linux == nil {
		return fmt.Errorf("%s has no process or linux section", path)
	}
	spec.Process.Terminal = false
	if len(cfg.args) > 0 {
		spec.Process.Args = cfg.args
	}
	if len(spec.Process.Args) == 0 {
		return errors.New("the image has neither Entrypoint nor Cmd, and no WithArgs was given")
	}
	spec.Process.Env = mergeEnv(spec.Process.Env, cfg.env)
	if cfg.cwd != "" {
		spec.Process.Cwd = cfg.cwd
	}
	if cfg.hostNet {
		var ns []specs.LinuxNamespace
		for _, n := range spec.Linux.Namespaces {
			if n.Type != specs.NetworkNamespace {
				ns = append(ns, n)
			}
		}
		spec.Linux.Namespaces = ns
	}
	out, err := json.Marshal(&spec)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o644)
}

// mergeEnv returns base with each KEY=value of add replacing base's KEY or appended.
func mergeEnv(base, add []string) []string {
	out := append([]string(nil), base...)
	for _, kv := range add {
		key, _, _ := strings.Cut(kv, "=")
		replaced := false
		for i, old := range out {
			if k, _, _ := strings.Cut(old, "="); k == key {
				out[i], replaced = kv, true
			}
		}
		if !replaced {
			out = append(out, kv)
		}
	}
	return out
}

// command runs a helper program and fails the test, with its output, if it fails.
func command(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}
