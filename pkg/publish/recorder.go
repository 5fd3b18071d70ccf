package publish

import (
	"io"
	"net/http"
	"strings"
	"sync"
)

type httpRoundTripper = http.RoundTripper

// recorder watches the registry conversation under go-containerregistry's auth and retry
// layers and notes, per blob, whether it was found (HEAD 200), mounted (POST 201) or uploaded
// (PUT ?digest= 201), and the bytes sent: the report a user (and a test) can trust, taken from
// what the registry answered rather than from what we meant to do.
type recorder struct {
	mu        sync.Mutex
	skipped   map[string]bool
	mounted   map[string]bool
	pushed    map[string]bool
	manifests map[string]bool
	bytes     int64
}

func (r *recorder) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		var body *countingReader
		if req.Body != nil && (req.Method == http.MethodPatch || req.Method == http.MethodPut) {
			body = &countingReader{ReadCloser: req.Body}
			req.Body = body
		}
		resp, err := rt.RoundTrip(req)
		if err != nil {
			return resp, err
		}
		r.observe(req, resp, body)
		return resp, nil
	})
}

func (r *recorder) observe(req *http.Request, resp *http.Response, body *countingReader) {
	p := req.URL.Path
	r.mu.Lock()
	defer r.mu.Unlock()
	if body != nil && resp.StatusCode < 300 {
		r.bytes += body.n
	}
	add := func(m *map[string]bool, k string) {
		if *m == nil {
			*m = map[string]bool{}
		}
		(*m)[k] = true
	}
	switch {
	case req.Method == http.MethodHead && strings.Contains(p, "/blobs/sha256:") && resp.StatusCode == http.StatusOK:
		add(&r.skipped, p[strings.LastIndex(p, "/")+1:])
	case req.Method == http.MethodPost && strings.HasSuffix(strings.TrimSuffix(p, "/"), "/blobs/uploads") && resp.StatusCode == http.StatusCreated:
		if d := req.URL.Query().Get("mount"); d != "" {
			add(&r.mounted, d)
		}
	case req.Method == http.MethodPut && strings.Contains(p, "/blobs/uploads/") && resp.StatusCode == http.StatusCreated:
		if d := req.URL.Query().Get("digest"); d != "" {
			add(&r.pushed, d)
		}
	case req.Method == http.MethodPut && strings.Contains(p, "/manifests/") && resp.StatusCode == http.StatusCreated:
		add(&r.manifests, p[strings.LastIndex(p, "/manifests/")+len("/manifests/"):])
	}
}

// present notes a blob known to be in the registry without asking.
func (r *recorder) present(digest string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pushed[digest] {
		return // sent by this push: not a blob that was there
	}
	if r.skipped == nil {
		r.skipped = map[string]bool{}
	}
	r.skipped[digest] = true
}

func (r *recorder) fill(rep *Report) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep.Pushed = sortedKeys(r.pushed)
	rep.Mounted = sortedKeys(r.mounted)
	rep.Skipped = sortedKeys(r.skipped)
	rep.Manifests = sortedKeys(r.manifests)
	rep.BytesUploaded = r.bytes
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

type countingReader struct {
	io.ReadCloser
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n += int64(n)
	return n, err
}
