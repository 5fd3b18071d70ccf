package main

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a daemon the harness started (registry, buildkitd, dockerd). It runs in a process
// group of its own, so a Ctrl-C on the terminal reaches the harness only, which stops its
// daemons in order; its PID is also written to PIDDIR/NAME.pid so that run.sh can stop it
// should the harness itself be killed.
type proc struct {
	name    string
	cmd     *exec.Cmd
	pidFile string
	done    chan struct{}
}

func startProc(name, pidDir, logPath string, env []string, argv ...string) (*proc, error) {
	if err := os.MkdirAll(pidDir, 0o755); err != nil {
		return nil, err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	logf.Close()
	p := &proc{name: name, cmd: cmd, pidFile: filepath.Join(pidDir, name+".pid"), done: make(chan struct{})}
	os.WriteFile(p.pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644)
	go func() { cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the daemon's group, waits up to grace, then kills the group.
func (p *proc) stop(grace time.Duration) {
	if p == nil {
		return
	}
	if !p.exited() {
		syscall.Kill(-p.pid(), syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			syscall.Kill(-p.pid(), syscall.SIGKILL)
			<-p.done
		}
	}
	os.Remove(p.pidFile)
}

// tail returns the last lines of a log file, for error messages.
func tailFile(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitFor polls ready every 50 ms until it succeeds, the process exits or timeout passes.
func waitFor(ctx context.Context, p *proc, logPath string, timeout time.Duration, ready func() bool) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if ready() {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited at start: %s", p.name, tailFile(logPath, 15))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not answer within %s: %s", p.name, timeout, tailFile(logPath, 15))
}

// unmountUnder lazily unmounts whatever is mounted at or below dir, deepest first (buildkitd
// and dockerd may leave overlay mounts behind when stopped hard).
func unmountUnder(dir string) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	var mps []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) > 4 && (fl[4] == abs || strings.HasPrefix(fl[4], abs+"/")) {
			mps = append(mps, fl[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(mps)))
	for _, m := range mps {
		syscall.Unmount(m, syscall.MNT_DETACH)
	}
}

// removeTree unmounts what is left below dir, then removes it.
func removeTree(dir string) error {
	unmountUnder(dir)
	return os.RemoveAll(dir)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// registry is a docker-registry (distribution 2.8) on 127.0.0.1 with its own storage.
type registry struct {
	name   string
	bin    string
	dir    string
	port   int
	pidDir string
	p      *proc
}

func (r *registry) addr() string { return fmt.Sprintf("127.0.0.1:%d", r.port) }
func (r *registry) cfg() string  { return filepath.Join(r.dir, "config.yml") }
func (r *registry) log() string  { return filepath.Join(r.dir, "log") }

func (r *registry) start(ctx context.Context) error {
	if r.port == 0 {
		p, err := freePort()
		if err != nil {
			return err
		}
		r.port = p
	}
	if err := os.MkdirAll(filepath.Join(r.dir, "storage"), 0o755); err != nil {
		return err
	}
	if resp, err := http.Get("http://" + r.addr() + "/v2/"); err == nil {
		resp.Body.Close()
		return fmt.Errorf("port %d already answers as a registry: pick another (FAIRING_BENCH_REGISTRY_PORT)", r.port)
	}
	cfg := fmt.Sprintf(`version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: %s}, delete: {enabled: true}, maintenance: {uploadpurging: {enabled: false}}}
http: {addr: %s, secret: fairing-bench-not-secret}
`, filepath.Join(r.dir, "storage"), r.addr())
	if err := os.WriteFile(r.cfg(), []byte(cfg), 0o644); err != nil {
		return err
	}
	p, err := startProc(r.name, r.pidDir, r.log(), nil, r.bin, "serve", r.cfg())
	if err != nil {
		return err
	}
	r.p = p
	return waitFor(ctx, p, r.log(), 20*time.Second, func() bool {
		resp, err := http.Get("http://" + r.addr() + "/v2/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func (r *registry) stop() {
	if r.p != nil {
		r.p.stop(10 * time.Second)
		r.p = nil
	}
}

// wipe empties the registry: stop, remove the storage, start on the same port.
func (r *registry) wipe(ctx context.Context) error {
	r.stop()
	if err := os.RemoveAll(filepath.Join(r.dir, "storage")); err != nil {
		return err
	}
	return r.start(ctx)
}

// gc drops untagged manifests and the blobs nothing tagged refers to (the registry is stopped
// meanwhile, as distribution requires), so repeated pushes of large layers do not fill the disk.
func (r *registry) gc(ctx context.Context) error {
	r.stop()
	// distribution 2.8's garbage-collect fails on a repository that was only ever pushed to by
	// digest (fairing's build contexts): it has no tags folder. An empty one lets it proceed.
	filepath.WalkDir(filepath.Join(r.dir, "storage", "docker", "registry", "v2", "repositories"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == "_manifests" {
			os.MkdirAll(filepath.Join(p, "tags"), 0o755)
			return filepath.SkipDir
		}
		return nil
	})
	out, err := exec.CommandContext(ctx, r.bin, "garbage-collect", "--delete-untagged", r.cfg()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("registry garbage-collect: %v: %s", err, lastLines(string(out), 10))
	}
	return r.start(ctx)
}

// deleteRepos removes repositories whose name starts with prefix from the storage (the
// registry keeps no cache of them); gc then frees their blobs.
func (r *registry) deleteRepos(prefix string) {
	root := filepath.Join(r.dir, "storage", "docker", "registry", "v2", "repositories")
	matches, _ := filepath.Glob(filepath.Join(root, prefix+"*"))
	for _, m := range matches {
		os.RemoveAll(m)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// buildkitd is one BuildKit daemon (OCI worker, overlayfs) on a unix socket. Each BuildKit
// client gets a daemon of its own, so that one tool's build cache never serves another's.
type buildkitd struct {
	name        string
	bin         string
	buildctl    string
	dir         string
	keepStorage int // MB kept by buildkitd's GC
	pidDir      string
	p           *proc
}

func (b *buildkitd) addr() string { return "unix://" + filepath.Join(b.dir, "buildkitd.sock") }
func (b *buildkitd) log() string  { return filepath.Join(b.dir, "log") }

func (b *buildkitd) start(ctx context.Context) error {
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		return err
	}
	p, err := startProc(b.name, b.pidDir, b.log(), nil, b.bin, "--root", filepath.Join(b.dir, "root"), "--addr", b.addr(),
		"--containerd-worker=false", "--oci-worker-snapshotter=overlayfs",
		"--oci-worker-gc", "--oci-worker-gc-keepstorage", strconv.Itoa(b.keepStorage))
	if err != nil {
		return err
	}
	b.p = p
	return waitFor(ctx, p, b.log(), 60*time.Second, func() bool {
		return exec.CommandContext(ctx, b.buildctl, "--addr", b.addr(), "debug", "workers").Run() == nil
	})
}

// prune empties the daemon's cache (a cold build, a fresh machine).
func (b *buildkitd) prune(ctx context.Context) error {
	if out, err := exec.CommandContext(ctx, b.buildctl, "--addr", b.addr(), "prune", "--all").CombinedOutput(); err != nil {
		return fmt.Errorf("buildctl prune --all: %v: %s", err, lastLines(string(out), 5))
	}
	return nil
}

func (b *buildkitd) stop() {
	if b.p != nil {
		b.p.stop(15 * time.Second)
		b.p = nil
	}
	unmountUnder(b.dir)
}

// dockerd is Debian's docker.io daemon with its own data root, exec root and socket, no
// iptables and no bridge (builds use --network host).
type dockerd struct {
	bin    string // dockerd
	client string // /usr/bin/docker (20.10, whose built-in BuildKit the daemon serves)
	dir    string
	pidDir string
	p      *proc
}

func (d *dockerd) host() string { return "unix://" + filepath.Join(d.dir, "docker.sock") }
func (d *dockerd) log() string  { return filepath.Join(d.dir, "log") }

func (d *dockerd) start(ctx context.Context) error {
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return err
	}
	p, err := startProc("dockerd", d.pidDir, d.log(), nil, d.bin,
		"--data-root", filepath.Join(d.dir, "root"), "--exec-root", filepath.Join(d.dir, "exec"),
		"--pidfile", filepath.Join(d.dir, "dockerd.pid"), "-H", d.host(),
		"--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver=overlay2")
	if err != nil {
		return err
	}
	d.p = p
	return waitFor(ctx, p, d.log(), 60*time.Second, func() bool {
		return exec.CommandContext(ctx, d.client, "-H", d.host(), "version").Run() == nil
	})
}

func (d *dockerd) stop() {
	if d.p != nil {
		d.p.stop(20 * time.Second)
		d.p = nil
	}
	unmountUnder(d.dir)
}

// reset is a fresh machine: stop, drop the data root (images, build cache, push metadata),
// start again.
func (d *dockerd) reset(ctx context.Context) error {
	d.stop()
	for _, sub := range []string{"root", "exec"} {
		if err := removeTree(filepath.Join(d.dir, sub)); err != nil {
			return err
		}
	}
	return d.start(ctx)
}

// procTree lists pid and its descendants.
func procTree(pid int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		children[pp] = append(children[pp], p)
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// daemonUsage is a daemon tree's CPU time so far (its own and that of the children it
// waited for, such as runc) and the sum of its processes' peak RSS since the last reset.
type daemonUsage struct {
	cpuMs  float64
	hwmKB  int64
	pids   []int
	ticker float64
}

const clkTck = 100 // USER_HZ on Linux

func readDaemonUsage(pid int) daemonUsage {
	u := daemonUsage{pids: procTree(pid)}
	for _, p := range u.pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		// fields after the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
		if len(f) > 14 {
			for _, i := range []int{11, 12, 13, 14} {
				v, _ := strconv.ParseFloat(f[i], 64)
				u.cpuMs += v * 1000 / clkTck
			}
		}
		if hwm := firstMatch(fmt.Sprintf("/proc/%d/status", p), "VmHWM:"); hwm != "" {
			if fl := strings.Fields(hwm); len(fl) > 0 {
				kb, _ := strconv.ParseInt(fl[0], 10, 64)
				u.hwmKB += kb
			}
		}
	}
	return u
}

// resetPeaks makes every process of the tree start a new peak-RSS record (VmHWM).
func resetPeaks(pid int) {
	for _, p := range procTree(pid) {
		os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p), []byte("5"), 0)
	}
}
