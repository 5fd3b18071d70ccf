package registryclient

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

func TestExplain(t *testing.T) {
	urlErr := func(op string, err error) error {
		return &url.Error{Op: op, URL: "http://r.example/v2/a/blobs/sha256:0", Err: err}
	}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"401", &transport.Error{StatusCode: http.StatusUnauthorized}, "refused the credentials (401 Unauthorized)"},
		{"403", &transport.Error{StatusCode: http.StatusForbidden}, "access denied (403 Forbidden)"},
		{"404", &transport.Error{StatusCode: http.StatusNotFound}, "not found (404)"},
		{"429", &transport.Error{StatusCode: http.StatusTooManyRequests}, "rate limiting (429) and retries ran out"},
		{"503", &transport.Error{StatusCode: http.StatusServiceUnavailable}, "the registry failed (503) and retries ran out"},
		{"unknown CA", urlErr("Get", &tls509{x509.UnknownAuthorityError{}}), "TLS certificate is not trusted"},
		{"refused", urlErr("Get", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), "cannot reach the registry"},
		{"deadline", urlErr("Get", context.DeadlineExceeded), "timed out talking to the registry"},
		{"EOF", urlErr("Head", io.EOF), "the registry closed the connection"},
		{"unexpected EOF", urlErr("Put", io.ErrUnexpectedEOF), "the registry closed the connection"},
		{"reset", urlErr("Patch", &net.OpError{Op: "write", Net: "tcp", Err: syscall.ECONNRESET}), "the registry closed the connection"},
		{"broken pipe", urlErr("Patch", &net.OpError{Op: "write", Net: "tcp", Err: syscall.EPIPE}), "the registry closed the connection"},
		{"closed under the writer", urlErr("Patch", &net.OpError{Op: "write", Net: "tcp", Err: net.ErrClosed}), "the registry closed the connection"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wrapped := fmt.Errorf("push: %w", tc.err)
			got := Explain(wrapped)
			if !strings.Contains(got.Error(), tc.want) {
				t.Errorf("Explain(%v) = %q, want it to say %q", tc.err, got, tc.want)
			}
			if !errors.Is(got, tc.err) {
				t.Errorf("Explain dropped the original error from the chain")
			}
		})
	}
	// An upload location's query (session state, a signed URL) is left out of the message.
	state := &url.Error{Op: "Patch", URL: "http://r.example/v2/a/blobs/uploads/u1?_state=c2VjcmV0&X-Amz-Signature=abc", Err: syscall.ECONNRESET}
	if got := Explain(fmt.Errorf("push: %w", state)).Error(); strings.Contains(got, "_state") || strings.Contains(got, "Signature") || !strings.Contains(got, `"http://r.example/v2/a/blobs/uploads/u1?…"`) {
		t.Errorf("Explain kept the upload location's query: %s", got)
	}
	if Explain(nil) != nil {
		t.Error("Explain(nil) != nil")
	}
	if err := errors.New("something else"); Explain(err) != err {
		t.Error("an error Explain knows nothing of must come back unchanged")
	}
}

// tls509 wraps an x509 error as crypto/tls does.
type tls509 struct{ err x509.UnknownAuthorityError }

func (e *tls509) Error() string { return "tls: failed to verify certificate: " + e.err.Error() }
func (e *tls509) Unwrap() error { return e.err }

// A reference that does not parse is refused with what is wrong in it, not just "could not
// parse reference".
func TestParseReferenceSaysWhatIsWrong(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"127.0.0.1:5000/Team/app:v1", "repository can only contain"},
		{"registry.example.com/team/app:bad tag!", "tag can only contain"},
		{"registry.example.com/team/app@sha256:abc", "digest"},
		{"registry.example.com/team//app:v1", "not a valid repository name"},
	} {
		_, err := (Config{}).ParseReference(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "expected e.g.") {
			t.Errorf("ParseReference(%q) = %v, want an error that says %q", c.in, err, c.want)
		}
	}
}
