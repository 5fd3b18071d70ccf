package buildkit_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fairing-dev/fairing/internal/testenv"
	"github.com/fairing-dev/fairing/pkg/buildkit"
	"github.com/fairing-dev/fairing/pkg/layer"
)

// Daemonless mode starts its own buildkitd on a private socket, builds, and on Close leaves no
// process, no mount and no directory behind.
func TestDaemonless(t *testing.T) {
	bkd := testenv.Need(t, envBuildkitd)
	reg := testenv.Registry(t)
	base := testenv.BusyboxBase(t)
	t.Setenv("BUILDKIT_HOST", "") // an address would turn daemonless mode off
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	start := time.Now()
	conn, err := buildkit.Connect(ctx, buildkit.ConnectOptions{Buildkitd: bkd})
	if err != nil {
		t.Fatal(err)
	}
	d := conn.Daemon()
	if d == nil {
		conn.Close()
		t.Fatal("no address was given but no daemon was started")
	}
	t.Logf("daemonless buildkitd pid %d answered after %s on %s", d.Pid(), time.Since(start).Round(time.Millisecond), conn.Addr)
	if !strings.HasPrefix(conn.Addr, "unix://"+d.Dir()) {
		t.Errorf("address %s is not in the daemon's private dir %s", conn.Addr, d.Dir())
	}
	id := uniq(t)
	res, err := conn.Build(ctx, buildkit.Options{
		Spec: &buildkit.Spec{
			Base:    base,
			Sources: []layer.Source{{Dest: "/app/hello.txt", Data: []byte(id + "\n")}},
			Cmd:     []string{"cat", "/app/hello.txt"},
		},
		Destinations: dest(t, reg+"/"+testenv.Repo(t)+":1"),
		Progress:     buildkit.ProgressQuiet,
	})
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	if got, ok := readFile(t, pull(t, res.References[0].String()), "/app/hello.txt"); !ok || got != id+"\n" {
		t.Errorf("/app/hello.txt = %q, %v", got, ok)
	}
	if p := processesWith(t, d.Dir()); len(p) == 0 {
		t.Errorf("the process probe does not see the running daemon %d", d.Pid())
	}
	stop := time.Now()
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped in %s", time.Since(stop).Round(time.Millisecond))
	if err := syscall.Kill(d.Pid(), 0); err == nil {
		t.Errorf("buildkitd pid %d still runs after Close", d.Pid())
	}
	if _, err := os.Stat(d.Dir()); !os.IsNotExist(err) {
		t.Errorf("private dir %s left behind (%v)", d.Dir(), err)
	}
	if m := mountsContaining(t, d.Dir()); len(m) > 0 {
		t.Errorf("mounts left behind: %v", m)
	}
	if p := processesWith(t, d.Dir()); len(p) > 0 {
		t.Errorf("processes left behind: %v", p)
	}
}

// buildkit.Build in daemonless mode with a kept root: the root stays (for the next build's
// cache), nothing runs and nothing is mounted after it returns.
func TestDaemonlessBuildKeepsRoot(t *testing.T) {
	bkd := testenv.Need(t, envBuildkitd)
	base := testenv.BusyboxBase(t)
	t.Setenv("BUILDKIT_HOST", "")
	root := filepath.Join(t.TempDir(), "bk-root")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"Dockerfile": "FROM " + base + "\nRUN echo " + uniq(t) + " > /x\n"})
	o := buildkit.Options{
		ConnectOptions: buildkit.ConnectOptions{Buildkitd: bkd, DaemonRoot: root},
		ContextDir:     dir,
		Progress:       buildkit.ProgressQuiet,
	}
	first, err := buildkit.Build(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if p := processesWith(t, root); len(p) > 0 {
		t.Errorf("processes left behind: %v", p)
	}
	if m := mountsContaining(t, root); len(m) > 0 {
		t.Errorf("mounts left behind: %v", m)
	}
	if _, err := os.Stat(root); err != nil {
		t.Fatalf("kept root removed: %v", err)
	}
	// a second daemonless build on the same root finds the RUN step in its cache
	second, err := buildkit.Build(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if first.Digest != second.Digest {
		t.Errorf("rebuild digest %s != %s", second.Digest, first.Digest)
	}
	if s := step(t, second, "RUN echo"); !s.Cached {
		t.Errorf("RUN step not cached on a kept root: %+v", s)
	}
}

func step(t *testing.T, r *buildkit.Result, prefix string) buildkit.Step {
	t.Helper()
	for _, s := range r.Steps {
		if i := strings.Index(s.Name, "] "); i >= 0 && strings.HasPrefix(s.Name[i+2:], prefix) {
			return s
		}
	}
	var names []string
	for _, s := range r.Steps {
		names = append(names, s.Name)
	}
	t.Fatalf("no step %q among %q", prefix, names)
	return buildkit.Step{}
}

func mountsContaining(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, dir) {
			out = append(out, l)
		}
	}
	return out
}

// processesWith lists the processes whose command line mentions s.
func processesWith(t *testing.T, s string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if strings.Contains(string(cmd), s) {
			out = append(out, e.Name()+": "+strings.ReplaceAll(string(cmd), "\x00", " "))
		}
	}
	return out
}
