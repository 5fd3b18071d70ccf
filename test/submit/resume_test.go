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
	"strings"
	"sync"
	"testing"
	"time"
)

// cutProxy forwards TCP to the API server and can cut every open connection at once, as a network
// blip or an API server restart would (client-go multiplexes watches and log streams over HTTP/2).
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	cuts   int
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
			go func() { io.Copy(c, s); c.Close() }()
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
