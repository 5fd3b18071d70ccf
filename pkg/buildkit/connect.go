package buildkit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/moby/buildkit/client"
	// connection helpers for docker-container://, kube-pod://, podman-container://,
	// nerdctl-container:// and ssh:// addresses (each dials through its CLI)
	_ "github.com/moby/buildkit/client/connhelper/dockercontainer"
	_ "github.com/moby/buildkit/client/connhelper/kubepod"
	_ "github.com/moby/buildkit/client/connhelper/nerdctlcontainer"
	_ "github.com/moby/buildkit/client/connhelper/podmancontainer"
	_ "github.com/moby/buildkit/client/connhelper/ssh"
)

// ErrUnreachable is wrapped by the error Connect returns when no buildkitd answers.
var ErrUnreachable = errors.New("buildkitd is unreachable")

// ConnectOptions says which buildkitd to use.
type ConnectOptions struct {
	// Addr is the buildkitd address: unix:///run/buildkit/buildkitd.sock, tcp://HOST:PORT,
	// docker-container://NAME, kube-pod://POD?namespace=NS, podman-container://NAME, ssh://...
	// Empty means $BUILDKIT_HOST; when that is empty too, daemonless mode.
	Addr string
	// TLS configures tcp:// addresses (mutual TLS as buildctl's --tlscacert/--tlscert/--tlskey).
	TLS TLSOptions
	// Buildkitd is the binary daemonless mode starts; default "buildkitd" from PATH.
	Buildkitd string
	// DaemonRoot is daemonless mode's state directory. Empty means a private temporary
	// directory removed after the build (every build starts cold; use CacheRepo). Set it to
	// keep BuildKit's cache between daemonless builds.
	DaemonRoot string
	// DaemonFlags are extra buildkitd flags for daemonless mode.
	DaemonFlags []string
	// InsecureRegistries (HOST or HOST:PORT) may be reached over plain HTTP or unverified TLS:
	// pushes to them get registry.insecure, and a daemonless buildkitd is configured to pull
	// from them. A running buildkitd needs the same in its own buildkitd.toml. Loopback
	// registries always may use HTTP.
	InsecureRegistries []string
	// ConnectTimeout bounds the wait for buildkitd to answer; default 20s.
	ConnectTimeout time.Duration
}

// TLSOptions are the files of a TLS connection to buildkitd.
type TLSOptions struct {
	CACert     string
	Cert       string
	Key        string
	ServerName string
}

// Conn is a connected BuildKit client; Close also stops a daemonless buildkitd.
type Conn struct {
	*client.Client
	// Addr is the address connected to.
	Addr   string
	daemon *Daemon
}

// Daemon is the buildkitd this connection started (daemonless mode), or nil.
func (c *Conn) Daemon() *Daemon { return c.daemon }

// Close closes the client and stops the daemon it started, if any.
func (c *Conn) Close() error {
	err := c.Client.Close()
	if c.daemon != nil {
		if derr := c.daemon.Stop(); derr != nil {
			return derr
		}
	}
	return err
}

// Connect connects to the buildkitd the options name, or starts a private one (daemonless mode)
// when no address is given. It returns once buildkitd has answered.
func Connect(ctx context.Context, o ConnectOptions) (*Conn, error) {
	addr := o.Addr
	if addr == "" {
		addr = os.Getenv("BUILDKIT_HOST")
	}
	timeout := o.ConnectTimeout
	if timeout == 0 {
		timeout = 20 * time.Second
	}
	if addr == "" {
		bin := o.Buildkitd
		if bin == "" {
			p, err := exec.LookPath("buildkitd")
			if err != nil {
				return nil, fmt.Errorf("%w: no address given (--buildkit-addr or BUILDKIT_HOST) and no buildkitd on PATH for daemonless mode; "+
					"start one (buildkitd --addr unix:///run/buildkit/buildkitd.sock) and pass its address, or install buildkitd", ErrUnreachable)
			}
			bin = p
		}
		d, err := StartDaemon(ctx, DaemonOptions{Binary: bin, Root: o.DaemonRoot, Flags: o.DaemonFlags, Timeout: timeout, InsecureRegistries: o.InsecureRegistries})
		if err != nil {
			return nil, err
		}
		c, err := dial(ctx, d.Addr(), TLSOptions{}, timeout)
		if err != nil {
			d.Stop()
			return nil, err
		}
		c.daemon = d
		return c, nil
	}
	return dial(ctx, addr, o.TLS, timeout)
}

// schemes are the buildkitd addresses the client can dial (the last five through a CLI).
var schemes = []string{"unix", "tcp", "npipe", "docker-container", "kube-pod", "podman-container", "nerdctl-container", "ssh"}

func dial(ctx context.Context, addr string, t TLSOptions, timeout time.Duration) (*Conn, error) {
	if scheme, _, ok := strings.Cut(addr, "://"); !ok || !slices.Contains(schemes, scheme) {
		return nil, fmt.Errorf("buildkitd address %q: want SCHEME://..., one of %s", addr, strings.Join(schemes, ", "))
	}
	var opts []client.ClientOpt
	if t.CACert != "" || t.Cert != "" || t.Key != "" || t.ServerName != "" {
		if !strings.HasPrefix(addr, "tcp://") {
			return nil, fmt.Errorf("buildkitd address %s: TLS options apply to tcp:// addresses only", addr)
		}
		if (t.Cert == "") != (t.Key == "") {
			return nil, errors.New("buildkitd TLS: give both a client certificate and its key, or neither")
		}
		if t.CACert != "" {
			opts = append(opts, client.WithServerConfig(t.ServerName, t.CACert))
		} else {
			opts = append(opts, client.WithServerConfigSystem(t.ServerName))
		}
		if t.Cert != "" {
			opts = append(opts, client.WithCredentials(t.Cert, t.Key))
		}
	}
	c, err := client.New(ctx, addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUnreachable, addr, err)
	}
	// client.New does not dial; ask for the workers to know that a daemon answers
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ws, err := c.ListWorkers(pctx)
	if err != nil {
		c.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w at %s: %v; check that buildkitd runs there (buildctl --addr %s debug workers) or give another --buildkit-addr", ErrUnreachable, addr, shortGRPC(err), addr)
	}
	if len(ws) == 0 {
		c.Close()
		return nil, fmt.Errorf("buildkitd at %s has no workers; check its log (is runc or containerd available to it?)", addr)
	}
	return &Conn{Client: c, Addr: addr}, nil
}

// shortGRPC trims gRPC's "rpc error: code = Unavailable desc = " wrapping.
func shortGRPC(err error) string {
	s := err.Error()
	if i := strings.Index(s, "desc = "); i >= 0 {
		s = s[i+len("desc = "):]
	}
	return s
}
