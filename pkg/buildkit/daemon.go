package buildkit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/moby/buildkit/client"
)

// DaemonOptions configure a buildkitd started as a child process (daemonless mode).
type DaemonOptions struct {
	// Binary is the buildkitd executable.
	Binary string
	// Root is the state directory; empty means a private one, removed by Stop.
	Root string
	// Flags are extra buildkitd flags.
	Flags []string
	// Timeout bounds the wait for the daemon to answer; default 20s.
	Timeout time.Duration
	// InsecureRegistries are written into the daemon's config as plain-HTTP, unverified-TLS
	// registries.
	InsecureRegistries []string
}

// Daemon is a buildkitd child process on a private unix socket, like buildctl-daemonless.sh.
type Daemon struct {
	cmd      *exec.Cmd
	dir      string // private dir: socket, log, and the root unless one was given
	root     string
	ownsRoot bool
	exited   chan struct{}
	waitErr  error
}

// Addr is the daemon's unix:// address.
func (d *Daemon) Addr() string { return "unix://" + filepath.Join(d.dir, "buildkitd.sock") }

// Dir is the daemon's private directory (socket, log; the root too unless one was given).
func (d *Daemon) Dir() string { return d.dir }

// Root is the daemon's state directory.
func (d *Daemon) Root() string { return d.root }

// Pid is the daemon's process id.
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// StartDaemon starts buildkitd with the OCI worker on a private socket and waits until it
// answers. Stop it with Stop; if this process dies first, the kernel sends it SIGTERM.
func StartDaemon(ctx context.Context, o DaemonOptions) (*Daemon, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("daemonless mode runs buildkitd with the OCI worker, which needs root; run as root or give the address of a running (possibly rootless) buildkitd")
	}
	bin, err := exec.LookPath(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("daemonless buildkitd: %w", err)
	}
	// a short path: unix socket paths are limited to 108 bytes
	dir, err := os.MkdirTemp("", "fairing-buildkitd-")
	if err != nil {
		return nil, fmt.Errorf("daemonless buildkitd: %w", err)
	}
	d := &Daemon{dir: dir, root: o.Root, exited: make(chan struct{})}
	if d.root == "" {
		d.root, d.ownsRoot = filepath.Join(dir, "root"), true
	} else if d.root, err = filepath.Abs(d.root); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "buildkitd.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("daemonless buildkitd: %w", err)
	}
	// an explicit config, so the host's /etc/buildkit/buildkitd.toml does not change the build
	cfg := filepath.Join(dir, "buildkitd.toml")
	if err := os.WriteFile(cfg, daemonConfig(o.InsecureRegistries), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("daemonless buildkitd: %w", err)
	}
	args := append([]string{
		"--config", cfg,
		"--root", d.root,
		"--addr", d.Addr(),
		"--containerd-worker=false",
		"--oci-worker=true",
	}, o.Flags...)
	d.cmd = exec.Command(bin, args...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = daemonProcAttr()
	if err := d.cmd.Start(); err != nil {
		logf.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("daemonless buildkitd: start %s: %w", bin, err)
	}
	logf.Close()
	go func() { d.waitErr = d.cmd.Wait(); close(d.exited) }()

	timeout := o.Timeout
	if timeout == 0 {
		timeout = 20 * time.Second
	}
	if err := d.waitReady(ctx, timeout); err != nil {
		d.Stop()
		return nil, err
	}
	return d, nil
}

func daemonConfig(insecure []string) []byte {
	var b strings.Builder
	b.WriteString("# written by fairing for a daemonless build\n")
	for _, h := range insecure {
		fmt.Fprintf(&b, "[registry.%q]\n  http = true\n  insecure = true\n", h)
	}
	return []byte(b.String())
}

func (d *Daemon) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	sock := filepath.Join(d.dir, "buildkitd.sock")
	for delay := 20 * time.Millisecond; ; delay = min(delay*2, 200*time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			c, err := client.New(ctx, d.Addr())
			if err == nil {
				pctx, cancel := context.WithTimeout(ctx, time.Second)
				ws, err := c.ListWorkers(pctx)
				cancel()
				c.Close()
				if err == nil && len(ws) > 0 {
					return nil
				}
			}
		}
		select {
		case <-d.exited:
			return fmt.Errorf("daemonless buildkitd exited at start (%v):\n%s", d.waitErr, d.logTail(20))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("daemonless buildkitd did not answer within %s:\n%s", timeout, d.logTail(20))
		}
	}
}

func (d *Daemon) logTail(n int) string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "buildkitd.log"))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// Stop stops the daemon (SIGTERM, then SIGKILL after 10s), makes sure nothing stays mounted
// under its directories, and removes its private directory (and its root, if private).
func (d *Daemon) Stop() error {
	if d.cmd.Process != nil {
		select {
		case <-d.exited:
		default:
			_ = d.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-d.exited:
			case <-time.After(10 * time.Second):
				_ = d.cmd.Process.Kill()
				<-d.exited
			}
		}
	}
	var errs []error
	dirs := []string{d.dir}
	if !d.ownsRoot {
		dirs = append(dirs, d.root)
	}
	for _, dir := range dirs {
		if err := unmountUnder(dir); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		// never remove a tree that may still have something mounted in it
		if err := os.RemoveAll(d.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// mountsUnder lists mount points at or below dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountPath(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	// deepest first, so nested mounts go before their parents
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, sc.Err()
}

func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func unmountUnder(dir string) error {
	mps, err := mountsUnder(dir)
	if err != nil {
		return fmt.Errorf("list mounts under %s: %w", dir, err)
	}
	var errs []error
	for _, mp := range mps {
		if err := unmount(mp); err != nil {
			errs = append(errs, fmt.Errorf("buildkitd left %s mounted and it could not be unmounted: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}
