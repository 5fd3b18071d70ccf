package reliability_test

// The Kubernetes half: fairing-submit following workloads while the real kube-apiserver of
// test/setup.d/50-kubernetes.sh is stopped and started again.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/fairing-dev/fairing/internal/testenv"
	"github.com/fairing-dev/fairing/pkg/incluster"
)

var submitBin = testenv.Binary{Package: "github.com/fairing-dev/fairing/cmd/fairing-submit"}

// cluster is the test cluster, through its admin kubeconfig.
type cluster struct {
	kubeconfig string
	dir        string // up.sh's run dir: pid files, logs, PKI
	cfg        *rest.Config
	cs         kubernetes.Interface
}

func needCluster(t *testing.T) *cluster {
	t.Helper()
	needBinary(t)
	kc := testenv.Need(t, testenv.EnvKubeconfig)
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &cluster{kubeconfig: kc, dir: filepath.Dir(kc), cfg: cfg, cs: cs}
}

// namespace creates a namespace for the test (deleted at its end) and waits for its default
// service account.
func (c *cluster) namespace(t *testing.T) string {
	t.Helper()
	ns := fmt.Sprintf("rel-%s-%04d", strings.Trim(regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(strings.ToLower(t.Name()), "-"), "-"), rand.IntN(10000))
	ctx := context.Background()
	if _, err := c.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		if os.Getenv("FAIRING_TEST_KEEP") != "1" {
			_ = c.cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
		}
	})
	waitUntil(t, 30*time.Second, "default service account of "+ns, func() bool {
		_, err := c.cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	})
	return ns
}

// applyBuildRBAC creates the shipped service account, Role and RoleBinding of the build pod in ns.
func (c *cluster) applyBuildRBAC(t *testing.T, ns string) {
	t.Helper()
	b, err := os.ReadFile("../../" + incluster.RBACHint)
	if err != nil {
		t.Fatal(err)
	}
	docs := regexp.MustCompile(`(?m)^---$`).Split(string(b), -1)
	var sa corev1.ServiceAccount
	var role rbacv1.Role
	var rb rbacv1.RoleBinding
	if len(docs) != 3 {
		t.Fatalf("%s: want 3 documents", incluster.RBACHint)
	}
	for i, into := range []any{&sa, &role, &rb} {
		if err := yaml.UnmarshalStrict([]byte(docs[i]), into); err != nil {
			t.Fatalf("%s document %d: %v", incluster.RBACHint, i+1, err)
		}
	}
	ctx := context.Background()
	if _, err := c.cs.CoreV1().ServiceAccounts(ns).Create(ctx, &sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.cs.RbacV1().Roles(ns).Create(ctx, &role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.cs.RbacV1().RoleBindings(ns).Create(ctx, &rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func waitUntil(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// apiServer is the kube-apiserver that up.sh started, as found through its pid file: the exact
// command line, environment and working directory it runs with, so that it can be started again
// as it was.
type apiServer struct {
	dir      string
	args     []string
	env      []string
	cwd      string
	pid      int
	restarts int
	exited   chan struct{} // closed when a process this test started has been reaped
	status   error         // then: how it exited
}

func (a *apiServer) pidFile() string { return filepath.Join(a.dir, "kube-apiserver.pid") }

func readNul(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}

func findAPIServer(t *testing.T, dir string) *apiServer {
	t.Helper()
	a := &apiServer{dir: dir}
	b, err := os.ReadFile(a.pidFile())
	if err != nil {
		t.Fatalf("the API server's pid file: %v", err)
	}
	if a.pid, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
		t.Fatalf("%s: %v", a.pidFile(), err)
	}
	proc := fmt.Sprintf("/proc/%d/", a.pid)
	a.args, a.env = readNul(t, proc+"cmdline"), readNul(t, proc+"environ")
	if a.cwd, err = os.Readlink(proc + "cwd"); err != nil {
		t.Fatal(err)
	}
	// as down.sh: only a kube-apiserver whose command line names the run dir is ours
	if filepath.Base(a.args[0]) != "kube-apiserver" || !strings.Contains(strings.Join(a.args, " "), dir) {
		t.Fatalf("pid %d of %s is not the test cluster's kube-apiserver: %q", a.pid, a.pidFile(), a.args)
	}
	return a
}

// running says whether the recorded process is alive (not gone, not a zombie).
func (a *apiServer) running() bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", a.pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// signal sends sig to the API server, once: a second SIGTERM makes it exit at once (status 1)
// instead of finishing its graceful shutdown.
func (a *apiServer) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(a.pid, sig); err != nil {
		t.Fatalf("signal the API server (pid %d): %v", a.pid, err)
	}
}

// waitExit waits until the process has exited. After SIGTERM the API server stops listening at
// once, and lets open requests (watches, log streams) go on for up to --request-timeout (60 s).
func (a *apiServer) waitExit(t *testing.T) {
	t.Helper()
	waitUntil(t, 2*time.Minute, fmt.Sprintf("the API server (pid %d) to exit", a.pid), func() bool { return !a.running() })
}

// start runs the API server again with the same command line, environment and working
// directory, detached (its own session; output appended to its log), and records its pid where
// up.sh did, so that down.sh stops it.
func (a *apiServer) start(t *testing.T) {
	t.Helper()
	log, err := os.OpenFile(filepath.Join(a.dir, "kube-apiserver.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(a.args[0], a.args[1:]...)
	cmd.Args[0] = a.args[0]
	cmd.Env, cmd.Dir = a.env, a.cwd
	cmd.Stdout, cmd.Stderr = log, log // no pipe to this test binary: go test must not wait for it
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the API server again: %v", err)
	}
	a.pid, a.restarts = cmd.Process.Pid, a.restarts+1
	a.exited = make(chan struct{})
	go func(exited chan struct{}) { a.status = cmd.Wait(); close(exited) }(a.exited) // reap it while this binary lives
	tmp := a.pidFile() + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(a.pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, a.pidFile()); err != nil {
		t.Fatal(err)
	}
	// exactly what up.sh started
	proc := fmt.Sprintf("/proc/%d/", a.pid)
	if args := readNul(t, proc+"cmdline"); !slices.Equal(args, a.args) {
		t.Fatalf("restarted with %q, want %q", args, a.args)
	}
	if env := readNul(t, proc+"environ"); !slices.Equal(env, a.env) {
		t.Fatalf("restarted with another environment")
	}
}

// waitReady polls /readyz until the API server answers ok and returns how long it took.
func (c *cluster) waitReady(t *testing.T, a *apiServer, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	waitUntil(t, timeout, "the restarted API server's /readyz", func() bool {
		if !a.running() {
			b, _ := os.ReadFile(filepath.Join(a.dir, "kube-apiserver.log"))
			t.Fatalf("the restarted API server exited:\n%s", lastLines(string(b), 30))
		}
		return c.ready()
	})
	return time.Since(start)
}

// ready says whether the API server answers /readyz with ok.
func (c *cluster) ready() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	b, err := c.cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	return err == nil && string(b) == "ok"
}

// waitNodeHealthy waits until node "localhost" is Ready again and carries no taint that the node
// controller adds to a node it lost touch with (as happens when the API server was away for
// longer than the node monitor grace period), so the tests that follow can schedule pods.
func (c *cluster) waitNodeHealthy(t *testing.T, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	waitUntil(t, timeout, "node localhost Ready without unreachable/not-ready taints", func() bool {
		n, err := c.cs.CoreV1().Nodes().Get(context.Background(), "localhost", metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, tn := range n.Spec.Taints {
			if strings.HasPrefix(tn.Key, "node.kubernetes.io/") {
				return false
			}
		}
		for _, cd := range n.Status.Conditions {
			if cd.Type == corev1.NodeReady {
				return cd.Status == corev1.ConditionTrue
			}
		}
		return false
	})
	return time.Since(start)
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// syncBuffer collects a process's output, and when each line arrived.
type syncBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	stamp []stampedLine
	part  string
}

type stampedLine struct {
	at   time.Time
	text string
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	lines := strings.Split(s.part+string(p), "\n")
	for _, l := range lines[:len(lines)-1] {
		s.stamp = append(s.stamp, stampedLine{now, l})
	}
	s.part = lines[len(lines)-1]
	return s.b.Write(p)
}

func (s *syncBuffer) stamped() []stampedLine {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.stamp)
}

func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// submitRun is one fairing-submit run in the background.
type submitRun struct {
	name        string
	cmd         *exec.Cmd
	stdout      syncBuffer
	stderr      syncBuffer
	resultFile  string
	done        chan struct{}
	err         error
	ended       time.Time
	hung        bool
	ctl         string // the workload's control folder (a hostPath): stop, done
	wantCode    int
	wantTickEnd bool // the workload prints "end after N ticks"
	jsonOut     bool // -o json: the result on stdout, the logs on stderr
}

// logs is what the run printed of its workload.
func (r *submitRun) logs() string {
	if r.jsonOut {
		return r.stderr.String()
	}
	return r.stdout.String()
}

var tickRE = regexp.MustCompile(`(?m)^\[[^\]]+\] tick (\d+)$`)

// ticks is the highest tick the run has printed.
func (r *submitRun) ticks() int {
	n := 0
	for _, m := range tickRE.FindAllStringSubmatch(r.logs(), -1) {
		i, _ := strconv.Atoi(m[1])
		n = max(n, i)
	}
	return n
}

func (r *submitRun) String() string {
	return fmt.Sprintf("%s: %v\n--- stdout:\n%s--- stderr:\n%s", r.name, r.err, lastLines(r.stdout.String(), 40)+"\n", r.stderr.String())
}

func startSubmit(t *testing.T, name string, timeout time.Duration, args ...string) *submitRun {
	t.Helper()
	r := &submitRun{name: name, done: make(chan struct{}), resultFile: filepath.Join(t.TempDir(), "result.json")}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	r.cmd = exec.CommandContext(ctx, submitBin.Path(t), append(args[:1:1], append([]string{"--result-file", r.resultFile}, args[1:]...)...)...)
	var env []string
	for _, e := range os.Environ() {
		if (strings.HasPrefix(e, "FAIRING_") && !strings.HasPrefix(e, "FAIRING_TEST_")) || strings.HasPrefix(e, "KUBECONFIG=") || strings.HasPrefix(e, "DOCKER_CONFIG=") {
			continue
		}
		env = append(env, e)
	}
	r.cmd.Env = env
	r.cmd.Stdout, r.cmd.Stderr = &r.stdout, &r.stderr
	if err := r.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		defer cancel()
		r.err = r.cmd.Wait()
		r.ended = time.Now()
		r.hung = ctx.Err() != nil
		close(r.done)
	}()
	t.Cleanup(func() { r.cmd.Process.Kill(); <-r.done })
	return r
}

func (r *submitRun) code() int {
	var ee *exec.ExitError
	if errors.As(r.err, &ee) {
		return ee.ExitCode()
	}
	if r.err != nil {
		return -1
	}
	return 0
}

// wait waits for the run to end, at most timeout.
func (r *submitRun) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(timeout):
		t.Fatalf("%s has not ended %s after the API server came back: a client-side hang\n%s", r.name, timeout, r)
	}
	if r.hung {
		t.Fatalf("%s hung (killed at its deadline)\n%s", r.name, r)
	}
}

// checkTicks checks that every line the workload printed was shown exactly once, in order:
// "tick 1" to "tick N", then "end after N ticks" (when the workload prints it).
func (r *submitRun) checkTicks(t *testing.T) int {
	t.Helper()
	var got []string
	for _, l := range strings.Split(r.logs(), "\n") {
		if _, text, ok := strings.Cut(l, "] "); ok && strings.HasPrefix(l, "[fairing-job-") {
			got = append(got, text)
		}
	}
	n := r.ticks()
	var want []string
	for i := 1; i <= n; i++ {
		want = append(want, fmt.Sprintf("tick %d", i))
	}
	if r.wantTickEnd {
		want = append(want, fmt.Sprintf("end after %d ticks", n))
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s: the workload's %d lines were not each shown once, in order (got %d lines; first difference at %s)\n%s", r.name, len(want), len(got), firstDiff(got, want), r)
	}
	return n
}

func firstDiff(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("line %d: %q, want %q", i+1, a[i], b[i])
		}
	}
	return fmt.Sprintf("line %d (lengths %d and %d)", min(len(a), len(b))+1, len(a), len(b))
}

// tickScript prints "tick N" five times a second until CTL/stop exists (or, without a control
// folder, COUNT times), then "end after N ticks", marks CTL/done, and exits with CODE.
const tickScript = `i=0
while [ ! -e /ctl/stop ] && [ "$i" -lt "${COUNT:-1000000}" ]; do i=$((i+1)); echo "tick $i"; sleep 0.2; done
echo "end after $i ticks"
[ -d /ctl ] && touch /ctl/done
exit "${CODE:-0}"
`

// ctlTemplate is a --pod-template that mounts the host folder dir at /ctl in the workload's
// container: the test stops the workload by creating dir/stop.
func ctlTemplate(t *testing.T, dir string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "ctl.yaml")
	tmpl := fmt.Sprintf("spec:\n  containers:\n  - name: main\n    volumeMounts: [{name: ctl, mountPath: /ctl}]\n  volumes:\n  - name: ctl\n    hostPath: {path: %q, type: Directory}\n", dir)
	if err := os.WriteFile(f, []byte(tmpl), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// timeline records, polling the API server directly, when each Job of a namespace and its pod
// were first seen ended: what a run takes after that is fairing-submit's own delay.
type timeline struct {
	mu       sync.Mutex
	job, pod map[string]time.Time // by Job name
}

func watchTimeline(t *testing.T, c *cluster, ns string) *timeline {
	tl := &timeline{job: map[string]time.Time{}, pod: map[string]time.Time{}}
	cfg := rest.CopyConfig(c.cfg)
	cfg.QPS, cfg.Burst, cfg.Timeout = 100, 100, time.Second
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	t.Cleanup(func() { cancel(); <-stopped })
	first := func(m map[string]time.Time, k string) {
		if m[k].IsZero() {
			m[k] = time.Now()
		}
	}
	go func() {
		defer close(stopped)
		for ctx.Err() == nil {
			jobs, jerr := cs.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
			pods, perr := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			tl.mu.Lock()
			for i := 0; jerr == nil && i < len(jobs.Items); i++ {
				for _, cd := range jobs.Items[i].Status.Conditions {
					if (cd.Type == "Complete" || cd.Type == "Failed" || cd.Type == "SuccessCriteriaMet" || cd.Type == "FailureTarget") && cd.Status == corev1.ConditionTrue {
						first(tl.job, jobs.Items[i].Name)
					}
				}
			}
			for i := 0; perr == nil && i < len(pods.Items); i++ {
				if p := pods.Items[i]; p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
					first(tl.pod, p.Labels["job-name"])
				}
			}
			tl.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return tl
}

var createdRE = regexp.MustCompile(`(?m)^job/(\S+) created in namespace`)

// log reports when the run's Job and pod were seen ended and when the run ended, from back (when
// the API server was ready again), and with -v what the run printed on stderr and when.
func (tl *timeline) log(t *testing.T, r *submitRun, back time.Time) {
	t.Helper()
	since := func(x time.Time) string {
		if x.IsZero() {
			return "-"
		}
		return x.Sub(back).Round(10 * time.Millisecond).String()
	}
	var job, pod time.Time
	if m := createdRE.FindStringSubmatch(r.stderr.String()); m != nil {
		tl.mu.Lock()
		job, pod = tl.job[m[1]], tl.pod[m[1]]
		tl.mu.Unlock()
	}
	var workload time.Time
	if fi, err := os.Stat(filepath.Join(r.ctl, "done")); r.ctl != "" && err == nil {
		workload = fi.ModTime()
	}
	t.Logf("%s, from the API server's return: workload ended %s, pod seen ended %s, Job seen ended %s, run ended %s",
		r.name, since(workload), since(pod), since(job), since(r.ended))
	if testing.Verbose() {
		var b strings.Builder
		for _, l := range r.stderr.stamped() {
			fmt.Fprintf(&b, "  %8s %s\n", since(l.at), l.text)
		}
		t.Logf("%s stderr:\n%s", r.name, b.String())
	}
}

// The API server is stopped and started again, twice, while fairing-submit follows workloads
// that print five lines a second: once killed (SIGKILL) with two Jobs ending while it is down,
// once stopped gracefully (SIGTERM: it stops listening, lets open watches and log streams run
// for up to 60 s, then exits) with two more Jobs ending in that window. An in-cluster build
// (fairing-submit run --build-in-cluster: the user's command follows the build pod, whose
// submit step follows the Job) runs through both. Each run must see its workload to the end:
// every line once and in order, the right final state and exit code (0, or the container's 3),
// and no hang once the API server is back. The API server comes back with the command line and
// environment up.sh gave it, under the pid file down.sh reads, and the node is Ready again before
// the test lets other tests use the cluster.
func TestAPIServerRestartWhileFollowing(t *testing.T) {
	c := needCluster(t)
	busybox := testenv.BusyboxBase(t)
	registry := testenv.Registry(t)
	builderImage := testenv.Need(t, "FAIRING_TEST_BUILDER_IMAGE")
	submitImage := testenv.Need(t, "FAIRING_TEST_SUBMIT_IMAGE")
	submitBin.Path(t)
	t.Parallel() // the other tests of this package do not use the cluster
	testenv.OwnCluster(t)
	a := findAPIServer(t, c.dir)
	t.Cleanup(func() {
		// whatever happened, leave the API server running with its flags, and the node usable
		if a.running() && !c.ready() { // stopping: let it finish
			waitUntil(t, 2*time.Minute, "the API server to exit", func() bool { return !a.running() })
		}
		if !a.running() {
			a.start(t)
		}
		c.waitReady(t, a, 2*time.Minute)
		t.Logf("node healthy %s after the test", c.waitNodeHealthy(t, 2*time.Minute).Round(time.Millisecond))
	})
	ns := c.namespace(t)
	c.applyBuildRBAC(t, ns)
	tl := watchTimeline(t, c, ns)
	common := []string{"--kubeconfig", c.kubeconfig, "-n", ns}

	start := func(name string, code int) *submitRun {
		ctl := filepath.Join(t.TempDir(), "ctl")
		if err := os.Mkdir(ctl, 0o755); err != nil {
			t.Fatal(err)
		}
		args := append([]string{"run"}, common...)
		args = append(args, "--image", busybox, "--pod-template", ctlTemplate(t, ctl), "--env", "CODE="+strconv.Itoa(code), "--", "sh", "-c", tickScript)
		r := startSubmit(t, name, 6*time.Minute, args...)
		r.ctl, r.wantCode, r.wantTickEnd = ctl, code, true
		return r
	}

	// the in-cluster build first: its workload starts last
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tick.sh"), []byte(tickScript), 0o644); err != nil {
		t.Fatal(err)
	}
	inc := startSubmit(t, "build-in-cluster", 6*time.Minute, append(append([]string{"run"}, common...),
		"--build-in-cluster", "--builder-image", builderImage, "--submit-image", submitImage, "--build-host-network",
		"--build-api-server", c.cfg.Host, "--cache-dir", filepath.Join(t.TempDir(), "cache"), "--builder", "append",
		"--build-context", dir, "--base", busybox, "--destination", registry+"/"+testenv.Repo(t),
		"--env", "COUNT=300", "--env", "CODE=0", "-o", "json", "--", "sh", "/app/tick.sh")...)
	inc.wantCode, inc.wantTickEnd, inc.jsonOut = 0, true, true
	killedOK, killedFail := start("ends-while-killed-ok", 0), start("ends-while-killed-exit-3", 3)
	drainedOK, drainedFail := start("ends-while-draining-ok", 0), start("ends-while-draining-exit-3", 3)
	all := []*submitRun{inc, killedOK, killedFail, drainedOK, drainedFail}
	ticking := func(n int, rs ...*submitRun) func() bool {
		return func() bool {
			for _, r := range rs {
				select {
				case <-r.done:
					t.Fatalf("%s ended early\n%s", r.name, r)
				default:
				}
				if r.ticks() < n {
					return false
				}
			}
			return true
		}
	}
	waitUntil(t, 3*time.Minute, "every workload's fifth line", ticking(5, all...))

	// 1. SIGKILL; two workloads end while the API server is away
	downFor := time.Now()
	a.signal(t, syscall.SIGKILL)
	a.waitExit(t)
	for _, r := range []*submitRun{killedOK, killedFail} {
		os.WriteFile(filepath.Join(r.ctl, "stop"), nil, 0o644)
	}
	waitUntil(t, 30*time.Second, "the workloads to end", func() bool {
		for _, r := range []*submitRun{killedOK, killedFail} {
			if _, err := os.Stat(filepath.Join(r.ctl, "done")); err != nil {
				return false
			}
		}
		return true
	})
	time.Sleep(time.Second) // the containers have exited
	a.start(t)
	ready := c.waitReady(t, a, 2*time.Minute)
	back := time.Now()
	t.Logf("SIGKILL: API server away for %s (ready %s after its start)", time.Since(downFor).Round(time.Millisecond), ready.Round(time.Millisecond))
	for _, r := range []*submitRun{killedOK, killedFail} {
		r.wait(t, 60*time.Second)
		tl.log(t, r, back)
	}
	// the others resume
	before := map[*submitRun]int{}
	for _, r := range []*submitRun{inc, drainedOK, drainedFail} {
		before[r] = r.ticks()
	}
	waitUntil(t, 60*time.Second, "the other workloads' lines after the restart", func() bool {
		for r, n := range before {
			if r.ticks() < n+5 {
				return false
			}
		}
		return true
	})

	// 2. SIGTERM; two workloads end while it drains (their log streams are still open, nothing can be written)
	downFor = time.Now()
	a.signal(t, syscall.SIGTERM)
	for _, r := range []*submitRun{drainedOK, drainedFail} {
		os.WriteFile(filepath.Join(r.ctl, "stop"), nil, 0o644)
	}
	a.waitExit(t)
	stopped := time.Since(downFor)
	<-a.exited // this test started it: it must have shut down cleanly, not died
	if a.status != nil {
		t.Errorf("the API server's graceful shutdown ended with %v", a.status)
	}
	a.start(t)
	ready = c.waitReady(t, a, 2*time.Minute)
	back = time.Now()
	t.Logf("SIGTERM: API server exited after %s, away for %s (ready %s after its start)", stopped.Round(time.Millisecond),
		time.Since(downFor).Round(time.Millisecond), ready.Round(time.Millisecond))
	for _, r := range []*submitRun{drainedOK, drainedFail, inc} {
		r.wait(t, 90*time.Second)
		tl.log(t, r, back)
	}

	// every run: its exit code, its result, every line once
	for _, r := range all {
		if r.code() != r.wantCode {
			t.Errorf("%s: exit code %d, want %d\n%s", r.name, r.code(), r.wantCode, r)
		}
		n := r.checkTicks(t)
		var res struct {
			State    string `json:"state"`
			ExitCode int    `json:"exitCode"`
			Kind     string `json:"kind"`
		}
		b, err := os.ReadFile(r.resultFile)
		if r.jsonOut {
			b, err = []byte(r.stdout.String()), nil
		}
		if err == nil {
			err = json.Unmarshal(b, &res)
		}
		want := "Succeeded"
		if r.wantCode != 0 {
			want = "Failed"
		}
		if err != nil || res.State != want || res.ExitCode != r.wantCode || res.Kind != "job" {
			t.Errorf("%s: --result-file %s (%v), want state %s, exit code %d\n%s", r.name, b, err, want, r.wantCode, r)
		}
		t.Logf("%s: exit %d, %d lines, each once", r.name, r.code(), n+1)
	}
	if a.restarts != 2 {
		t.Errorf("restarted %d times, want 2", a.restarts)
	}
}
