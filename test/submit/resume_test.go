package submit

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// cutProxy forwards TCP to the API server and can cut every open connection at once, as a network
// blip or an API server restart would (client-go multiplexes watches and log streams over HTTP/2).
// It can also hold what the API server sends on the open connections (a stall), until the cut.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	cuts   int
	held   chan struct{} // non-nil while the open connections are held; closed by cut
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { io.Copy(s, c); s.Close() }()
			go func() { io.Copy(c, heldReader{s, p}); c.Close() }()
		}
	}()
	t.Cleanup(func() { ln.Close(); p.cut() })
	return p
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.cuts++
	if p.held != nil {
		close(p.held)
		p.held = nil
	}
}

// hold stops passing on what the API server sends (it is read and kept back); cut drops it.
func (p *cutProxy) hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held == nil {
		p.held = make(chan struct{})
	}
}

// heldReader reads from the API server, and while the proxy holds, keeps what it read.
type heldReader struct {
	r io.Reader
	p *cutProxy
}

func (h heldReader) Read(b []byte) (int, error) {
	n, err := h.r.Read(b)
	h.p.mu.Lock()
	held := h.p.held
	h.p.mu.Unlock()
	if held != nil {
		<-held // cut: the connection is closed, what was read is lost
		return 0, io.ErrClosedPipe
	}
	return n, err
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// Following survives broken connections: the watches resume and the log stream reconnects without
// losing or repeating lines, and the result still arrives.
func TestFollowResumesAfterConnectionCuts(t *testing.T) {
	needCluster(t)
	t.Parallel()
	ns := namespace(t)
	u, err := url.Parse(cfg.Host)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newCutProxy(t, u.Host)
	kc := filepath.Join(t.TempDir(), "proxied.kubeconfig")
	orig, err := os.ReadFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(kc, []byte(strings.Replace(string(orig), u.Host, proxy.ln.Addr().String(), 1)), 0o600)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "run", "--kubeconfig", kc, "-n", ns, "--image", busybox, "--",
		"sh", "-c", "for i in 1 2 3 4 5 6 7 8; do echo tick $i; sleep 1; done; exit 6")
	cmd.Env = cleanEnv()
	var out, errb syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor := func(s string) {
		eventually(t, 60*time.Second, fmt.Sprintf("%q in the output", s), func() bool { return strings.Contains(out.String(), s) })
	}
	waitFor("tick 2")
	proxy.cut()
	waitFor("tick 5")
	proxy.cut()
	err = cmd.Wait()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	if ctx.Err() != nil {
		t.Fatalf("hung after connection cuts\nstdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	}
	if code != 6 {
		t.Errorf("exit code %d, want 6\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	for i := 1; i <= 8; i++ {
		if n := strings.Count(out.String(), fmt.Sprintf("] tick %d\n", i)); n != 1 {
			t.Errorf("tick %d printed %d times, want once\n%s", i, n, out.String())
		}
	}
}

// A log stream that breaks just as the workload ends must not lose the workload's last lines: the
// stream stalls (what the API server sends is held), the workload prints its last lines and ends,
// the kubelet reports it ended, and only then are the connections cut. Following reconnects to a
// pod that has ended, and must read the rest of its log before it stops.
func TestFollowKeepsTheLastLinesWhenTheStreamBreaksAtTheEnd(t *testing.T) {
	needCluster(t)
	t.Parallel()
	ns := namespace(t)
	u, err := url.Parse(cfg.Host)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newCutProxy(t, u.Host)
	kc := filepath.Join(t.TempDir(), "proxied.kubeconfig")
	orig, err := os.ReadFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(kc, []byte(strings.Replace(string(orig), u.Host, proxy.ln.Addr().String(), 1)), 0o600)
	// the test stops the workload by creating ctl/stop in a host folder mounted into its container
	ctl := t.TempDir()
	tmpl := filepath.Join(t.TempDir(), "ctl.yaml")
	os.WriteFile(tmpl, []byte(fmt.Sprintf("spec:\n  containers:\n  - name: main\n    volumeMounts: [{name: ctl, mountPath: /ctl}]\n"+
		"  volumes:\n  - name: ctl\n    hostPath: {path: %q, type: Directory}\n", ctl)), 0o644)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "run", "--kubeconfig", kc, "-n", ns, "--image", busybox, "--pod-template", tmpl, "--", "sh", "-c",
		`i=0; while [ ! -e /ctl/stop ]; do i=$((i+1)); echo "tick $i"; sleep 0.2; done; for j in 1 2 3; do echo "last $j"; done; touch /ctl/done`)
	cmd.Env = cleanEnv()
	var out, errb syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "tick 5 in the output", func() bool { return strings.Contains(out.String(), "] tick 5\n") })
	proxy.hold()
	os.WriteFile(filepath.Join(ctl, "stop"), nil, 0o644)
	eventually(t, 30*time.Second, "the workload's end", func() bool { _, err := os.Stat(filepath.Join(ctl, "done")); return err == nil })
	eventually(t, 30*time.Second, "the pod's end in the API", func() bool {
		l, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
		return err == nil && len(l.Items) == 1 && l.Items[0].Status.Phase == corev1.PodSucceeded
	})
	proxy.cut()
	err = cmd.Wait()
	if ctx.Err() != nil {
		t.Fatalf("hung after the cut\nstdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	}
	if err != nil {
		t.Errorf("exit: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errb.String())
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		_, text, _ := strings.Cut(l, "] ")
		got = append(got, text)
	}
	n := 0
	for _, l := range got {
		if strings.HasPrefix(l, "tick ") {
			n++
		}
	}
	var want []string
	for i := 1; i <= n; i++ {
		want = append(want, fmt.Sprintf("tick %d", i))
	}
	want = append(want, "last 1", "last 2", "last 3")
	if !slices.Equal(got, want) {
		t.Errorf("the workload's lines were not each shown once, in order: got\n%s", out.String())
	}
}
