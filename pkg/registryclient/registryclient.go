// Package registryclient holds what every registry conversation shares: reference parsing
// (with insecure hosts), credentials (Docker config, credential helpers, the Kubernetes
// keychain in a cluster), TLS (system roots plus extra CAs), retries, and error messages that
// say what to do.
package registryclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Config describes how to reach registries.
type Config struct {
	// Insecure lists registries (host or host:port) that may be reached over plain HTTP or
	// HTTPS without certificate verification. Loopback registries always may use HTTP.
	Insecure []string
	// CAFiles are PEM files of extra certificate authorities to trust (self-signed registries).
	CAFiles []string
	// Jobs bounds concurrent uploads per push.
	Jobs int
	// Keychain overrides the default (Docker config + credential helpers).
	Keychain authn.Keychain
	// Wrap, if set, wraps the base HTTP transport (under auth and retries), e.g. to record
	// what was uploaded.
	Wrap func(http.RoundTripper) http.RoundTripper
	// UserAgent is sent with every request.
	UserAgent string
}

// ParseReference parses a registry reference, allowing plain HTTP for insecure hosts.
func (c Config) ParseReference(s string) (name.Reference, error) {
	ref, err := name.ParseReference(s)
	if err != nil {
		// ParseReference says only "could not parse reference"; parsed as what it looks like,
		// the error names the part that is wrong (an upper-case repository, a bad tag).
		if strings.Contains(s, "@") {
			_, err = name.NewDigest(s)
		} else {
			_, err = name.NewTag(s)
		}
		return nil, fmt.Errorf("invalid image reference %q: %v (expected e.g. registry.example.com/team/image:tag)", s, err)
	}
	// go-containerregistry checks characters only; registries also refuse empty or malformed
	// path components ("a//b", "-a", "a/"), with confusing errors after the build.
	if _, err := reference.WithName(ref.Context().Name()); err != nil {
		return nil, fmt.Errorf("invalid image reference %q: %s is not a valid repository name: path components are lowercase letters and digits, separated by '.', '_', '__' or '-' (expected e.g. registry.example.com/team/image:tag)", s, ref.Context().Name())
	}
	if c.isInsecure(ref.Context().RegistryStr()) {
		ref, err = name.ParseReference(s, name.Insecure)
		if err != nil {
			return nil, err
		}
	}
	return ref, nil
}

func (c Config) isInsecure(registry string) bool {
	host, _, err := net.SplitHostPort(registry)
	if err != nil {
		host = registry
	}
	for _, h := range c.Insecure {
		if h == registry || h == host {
			return true
		}
	}
	return false
}

// Keychain is Config.Keychain or Docker's config and credential helpers, plus, inside a
// Kubernetes pod, the pod's service account and image pull secrets.
func (c Config) keychain(ctx context.Context) authn.Keychain {
	if c.Keychain != nil {
		return c.Keychain
	}
	return DefaultKeychain(ctx)
}

// Transport is the HTTP transport under ggcr's auth and retry layers: system roots plus
// CAFiles, and verification skipped only for hosts listed as insecure.
func (c Config) Transport() (http.RoundTripper, error) {
	t := remote.DefaultTransport.(*http.Transport).Clone()
	if len(c.CAFiles) > 0 || len(c.Insecure) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		for _, f := range c.CAFiles {
			pem, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("read registry CA: %w", err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("registry CA %s holds no PEM certificate", f)
			}
		}
		cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		t.TLSClientConfig = cfg
		if len(c.Insecure) > 0 {
			// Whether to verify depends on the host:port dialed, which a VerifyConnection
			// callback does not see (nor the host at all when it is an IP address: no SNI).
			// Decide when dialing; every other host gets Go's full verification.
			dial := t.DialContext
			if dial == nil {
				dial = (&net.Dialer{}).DialContext
			}
			handshakeTimeout := t.TLSHandshakeTimeout
			t.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
				host, _, err := net.SplitHostPort(addr)
				if err != nil {
					host = addr
				}
				hc := cfg.Clone()
				hc.ServerName = host
				hc.InsecureSkipVerify = c.isInsecure(addr)
				conn, err := dial(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				if handshakeTimeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, handshakeTimeout)
					defer cancel()
				}
				tc := tls.Client(conn, hc)
				if err := tc.HandshakeContext(ctx); err != nil {
					conn.Close()
					return nil, err
				}
				return tc, nil
			}
		}
	}
	var rt http.RoundTripper = t
	if c.Wrap != nil {
		rt = c.Wrap(rt)
	}
	return retryAfter{rt: rt, max: 30 * time.Second, tries: 3}, nil
}

// RemoteOptions are the go-containerregistry options for one operation.
func (c Config) RemoteOptions(ctx context.Context) ([]remote.Option, error) {
	t, err := c.Transport()
	if err != nil {
		return nil, err
	}
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(c.keychain(ctx)),
		remote.WithTransport(t),
	}
	if c.Jobs > 0 {
		opts = append(opts, remote.WithJobs(c.Jobs))
	}
	if c.UserAgent != "" {
		opts = append(opts, remote.WithUserAgent(c.UserAgent))
	}
	return opts, nil
}

// PushTransport is an authenticated transport for writing to repo, for the few requests
// ggcr's remote does not make itself (an upload session opened before its blob exists).
func (c Config) PushTransport(ctx context.Context, repo name.Repository) (http.RoundTripper, error) {
	t, err := c.Transport()
	if err != nil {
		return nil, err
	}
	if c.UserAgent != "" {
		t = transport.NewUserAgent(t, c.UserAgent)
	}
	auth, err := authn.Resolve(ctx, c.keychain(ctx), repo)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", repo, err)
	}
	return transport.NewWithContext(ctx, repo.Registry, auth, t, []string{repo.Scope(transport.PushScope)})
}

// Explain turns the registry errors users hit most into a sentence that says what to do,
// keeping the original error wrapped. Credentials never appear: ggcr redacts them.
func Explain(err error) error {
	if err == nil {
		return nil
	}
	// An upload's location carries the registry's session state or a signed URL in its query:
	// hundreds of characters of noise in a message, and sometimes a credential.
	// (The messages of the errors wrapping it were formatted already: the text is rewritten.)
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		if i := strings.IndexByte(urlErr.URL, '?'); i >= 0 {
			err = reworded{strings.ReplaceAll(err.Error(), urlErr.URL, urlErr.URL[:i]+"?…"), err}
		}
	}
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusUnauthorized:
			return fmt.Errorf("the registry refused the credentials (401 Unauthorized): run `docker login` for it or fix its credential helper in ~/.docker/config.json: %w", err)
		case http.StatusForbidden:
			return fmt.Errorf("access denied (403 Forbidden): these credentials may not use this repository: %w", err)
		case http.StatusNotFound:
			return fmt.Errorf("not found (404): check the repository and tag: %w", err)
		case http.StatusTooManyRequests:
			return fmt.Errorf("the registry is rate limiting (429) and retries ran out: try again later: %w", err)
		}
		if te.StatusCode >= 500 {
			return fmt.Errorf("the registry failed (%d) and retries ran out: %w", te.StatusCode, err)
		}
	}
	var ue *x509.UnknownAuthorityError
	var he x509.HostnameError
	if errors.As(err, &ue) || errors.As(err, &he) || strings.Contains(err.Error(), "x509: certificate") {
		return fmt.Errorf("the registry's TLS certificate is not trusted: pass its CA with --registry-ca, or --insecure-registry HOST to skip verification: %w", err)
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return fmt.Errorf("cannot reach the registry: is it running and is the address right? %w", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("timed out talking to the registry (raise --timeout if it is just slow): %w", err)
	}
	// (net.ErrClosed: the transport closed its end after the registry hung up mid-request.)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("the registry closed the connection and retries ran out (is it, or a proxy in front of it, restarting or overloaded?); rerun to send what is missing: %w", err)
	}
	return err
}

// reworded is err with another message.
type reworded struct {
	msg string
	err error
}

func (r reworded) Error() string { return r.msg }
func (r reworded) Unwrap() error { return r.err }
