package testenv

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
)

// A Hook sees each request the proxy receives, with its classification, before it is forwarded.
// It returns true when it has dealt with the request itself (answered it, or dropped the
// connection); the proxy then does not forward it and records the request as Faulted. Hooks are
// called concurrently.
type Hook func(w http.ResponseWriter, r *http.Request, req Request) (handled bool)

// SetHook installs h for the requests that arrive from now on (nil removes it). Combine several
// with Hooks.
func (p *Proxy) SetHook(h Hook) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hook = h
}

// Hooks chains hooks: each runs in turn until one handles the request.
func Hooks(hs ...Hook) Hook {
	return func(w http.ResponseWriter, r *http.Request, req Request) bool {
		for _, h := range hs {
			if h(w, r, req) {
				return true
			}
		}
		return false
	}
}

// A Match selects the requests a fault applies to.
type Match func(Request) bool

// OfKind matches requests of any of the kinds (every request if none given).
func OfKind(kinds ...Kind) Match {
	return func(r Request) bool { return len(kinds) == 0 || slices.Contains(kinds, r.Kind) }
}

// times returns a Match that lets through the first n requests m matches (all of them if n <= 0).
func times(m Match, n int) Match {
	var seen atomic.Int64
	return func(r Request) bool {
		if m != nil && !m(r) {
			return false
		}
		return n <= 0 || seen.Add(1) <= int64(n)
	}
}

// FailWith answers the first n requests that m matches (every one if n <= 0) with status and a
// registry-style JSON error, without forwarding them. retryAfter > 0 adds a Retry-After header
// (whole seconds, at least 1), as a rate-limiting (429) or overloaded (503) registry sends.
func FailWith(m Match, n, status int, retryAfter time.Duration) Hook {
	hit := times(m, n)
	return func(w http.ResponseWriter, r *http.Request, req Request) bool {
		if !hit(req) {
			return false
		}
		if retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(retryAfter.Round(time.Second)/time.Second))))
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"errors":[{"code":"UNAVAILABLE","message":"fault injected by testenv.Proxy: %d for %s"}]}`, status, req.Kind)
		return true
	}
}

// DropConnection, for the first n requests that m matches (every one if n <= 0), reads up to
// after bytes of the request body and then closes the connection without an answer, as a crashed
// registry or a cut network does mid-upload.
func DropConnection(m Match, n int, after int64) Hook {
	hit := times(m, n)
	return func(w http.ResponseWriter, r *http.Request, req Request) bool {
		if !hit(req) {
			return false
		}
		_, _ = io.CopyN(io.Discard, r.Body, after)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			// cannot take the connection over (HTTP/2): the closest thing is an abrupt 500
			w.WriteHeader(http.StatusInternalServerError)
			return true
		}
		_ = conn.Close()
		return true
	}
}

// Stall holds the first n requests that m matches (every one if n <= 0) for d, or until the
// client gives up, and then forwards them.
func Stall(m Match, n int, d time.Duration) Hook {
	hit := times(m, n)
	return func(_ http.ResponseWriter, r *http.Request, req Request) bool {
		if !hit(req) {
			return false
		}
		select {
		case <-time.After(d):
		case <-r.Context().Done():
		}
		return false
	}
}
