package testenv

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
)

// DropMidBody is DropConnection for large bodies only: for the first n requests that m matches
// (every one if n <= 0) whose body is longer than after bytes, it reads after bytes and closes the
// connection without an answer, as a network cut in the middle of a blob upload does. Requests
// with shorter bodies are forwarded untouched and do not count towards n, so a fault can target
// the big layer of a push and leave its small blobs (config, small layers) alone.
func DropMidBody(m Match, n int, after int64) Hook {
	var dropped atomic.Int64
	return func(w http.ResponseWriter, r *http.Request, req Request) bool {
		if m != nil && !m(req) {
			return false
		}
		head, err := io.ReadAll(io.LimitReader(r.Body, after+1))
		if int64(len(head)) <= after || err != nil || (n > 0 && dropped.Add(1) > int64(n)) {
			// a short body (or a read error the registry will see too): forward it whole
			r.Body = readCloser{io.MultiReader(bytes.NewReader(head), r.Body), r.Body}
			return false
		}
		hangUp(w)
		return true
	}
}

// LoseResponse forwards the first n requests that m matches (every one if n <= 0) to the
// registry, lets it process them fully, and then closes the client's connection instead of
// passing the answer on: the registry committed the blob or manifest, but the client never
// hears of it (a load balancer dying at the wrong moment). Such a request is recorded as Faulted,
// with status 0.
func (p *Proxy) LoseResponse(m Match, n int) Hook {
	hit := times(m, n)
	return func(w http.ResponseWriter, r *http.Request, req Request) bool {
		if !hit(req) {
			return false
		}
		p.rp.ServeHTTP(httptest.NewRecorder(), r)
		hangUp(w)
		return true
	}
}

// hangUp closes the connection under w without an answer (an abrupt 500 where it cannot: HTTP/2).
func hangUp(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	_ = conn.Close()
}

type readCloser struct {
	io.Reader
	io.Closer
}
