package buildkit

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConnectErrors(t *testing.T) {
	ctx := context.Background()
	t.Setenv("BUILDKIT_HOST", "")
	t.Setenv("PATH", t.TempDir()) // no buildkitd to start

	_, err := Connect(ctx, ConnectOptions{})
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "BUILDKIT_HOST") || !strings.Contains(err.Error(), "daemonless") {
		t.Errorf("no address, no buildkitd: %v", err)
	}
	_, err = Connect(ctx, ConnectOptions{Buildkitd: filepath.Join(t.TempDir(), "buildkitd")})
	if err == nil || !strings.Contains(err.Error(), "buildkitd") {
		t.Errorf("missing buildkitd binary: %v", err)
	}
	_, err = Connect(ctx, ConnectOptions{Addr: "unix:///x.sock", TLS: TLSOptions{CACert: "ca.pem"}})
	if err == nil || !strings.Contains(err.Error(), "tcp://") {
		t.Errorf("TLS on a unix socket: %v", err)
	}
	_, err = Connect(ctx, ConnectOptions{Addr: "tcp://127.0.0.1:1", TLS: TLSOptions{Cert: "c.pem"}})
	if err == nil || !strings.Contains(err.Error(), "both a client certificate and its key") {
		t.Errorf("cert without key: %v", err)
	}
	// BUILDKIT_HOST is the address when none is given: a socket where nothing listens
	sock := filepath.Join(t.TempDir(), "none.sock")
	t.Setenv("BUILDKIT_HOST", "unix://"+sock)
	start := time.Now()
	_, err = Connect(ctx, ConnectOptions{ConnectTimeout: 3 * time.Second})
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), sock) {
		t.Errorf("BUILDKIT_HOST not used or error unclear: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("an unreachable socket took %v to report", d)
	}
	_, err = Connect(ctx, ConnectOptions{Addr: "bogus://x"})
	if err == nil || !strings.Contains(err.Error(), "want SCHEME://") {
		t.Errorf("unknown scheme: %v", err)
	}
	_, err = Connect(ctx, ConnectOptions{Addr: "/run/buildkit/buildkitd.sock"})
	if err == nil || !strings.Contains(err.Error(), "want SCHEME://") {
		t.Errorf("a bare path: %v", err)
	}
	// connection helpers are registered
	_, err = Connect(ctx, ConnectOptions{Addr: "kube-pod://", ConnectTimeout: time.Second})
	if err == nil || strings.Contains(err.Error(), "unsupported") {
		t.Errorf("kube-pod:// without a pod: %v", err)
	}
}
