package testenv

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Kind classifies a request of the registry API (OCI distribution spec).
type Kind string

// The kinds of registry requests the proxy tells apart.
const (
	Ping           Kind = "ping"            // GET /v2/
	Catalog        Kind = "catalog"         // GET /v2/_catalog
	BlobHead       Kind = "blob HEAD"       // HEAD /v2/<repo>/blobs/<digest>
	BlobGet        Kind = "blob GET"        // GET /v2/<repo>/blobs/<digest>
	BlobDelete     Kind = "blob DELETE"     // DELETE /v2/<repo>/blobs/<digest>
	BlobMount      Kind = "blob mount"      // POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<repo>
	UploadStart    Kind = "upload POST"     // POST /v2/<repo>/blobs/uploads/ (with ?digest=: monolithic)
	UploadPatch    Kind = "upload PATCH"    // PATCH /v2/<repo>/blobs/uploads/<id>
	UploadPut      Kind = "upload PUT"      // PUT /v2/<repo>/blobs/uploads/<id>?digest=<digest>
	UploadStatus   Kind = "upload GET"      // GET /v2/<repo>/blobs/uploads/<id>
	UploadCancel   Kind = "upload DELETE"   // DELETE /v2/<repo>/blobs/uploads/<id>
	ManifestHead   Kind = "manifest HEAD"   // HEAD /v2/<repo>/manifests/<ref>
	ManifestGet    Kind = "manifest GET"    // GET /v2/<repo>/manifests/<ref>
	ManifestPut    Kind = "manifest PUT"    // PUT /v2/<repo>/manifests/<ref>
	ManifestDelete Kind = "manifest DELETE" // DELETE /v2/<repo>/manifests/<ref>
	TagList        Kind = "tag list"        // GET /v2/<repo>/tags/list
	Referrers      Kind = "referrers"       // GET /v2/<repo>/referrers/<digest>
	Other          Kind = "other"           // anything else
)

// Request is one request the proxy received, classified, with the answer it got.
type Request struct {
	Kind   Kind
	Method string
	URL    string // path and query as received
	Repo   string // repository, when the path names one
	// Digest is the blob digest for blob requests, mounts and completed uploads (?digest=), or the
	// manifest digest when a manifest is addressed by digest.
	Digest string
	Ref    string // manifest reference (tag or digest)
	From   string // source repository of a mount
	// Status is the status code of the answer; 0 when the connection was dropped without one.
	Status    int
	BodyBytes int64  // request body bytes read (what the client sent)
	Faulted   bool   // answered (or dropped) by the hook, not by the registry
	Err       string // why the proxy could not reach the registry, if it could not
}

func (r Request) String() string {
	s := fmt.Sprintf("%s %s", r.Kind, r.Repo)
	if r.Ref != "" && r.Ref != r.Digest {
		s += ":" + r.Ref
	}
	if r.Digest != "" {
		s += " " + r.Digest
	}
	if r.From != "" {
		s += " from " + r.From
	}
	s += fmt.Sprintf(" -> %d", r.Status)
	if r.Faulted {
		s += " (fault)"
	}
	if r.Err != "" {
		s += " (" + r.Err + ")"
	}
	return s
}

// Classify tells which registry API request method and u are.
func Classify(method string, u *url.URL) Request {
	req := Request{Kind: Other, Method: method, URL: u.RequestURI()}
	p, ok := strings.CutPrefix(u.Path, "/v2/")
	switch {
	case !ok:
		return req
	case p == "":
		req.Kind = Ping
		return req
	case p == "_catalog":
		req.Kind = Catalog
		return req
	}
	q := u.Query()
	if repo, rest, ok := cutLast(p, "/blobs/uploads"); ok && (rest == "" || rest[0] == '/') {
		req.Repo = repo
		id := strings.Trim(rest, "/")
		switch {
		case method == http.MethodPost && id == "" && q.Get("mount") != "":
			req.Kind, req.Digest, req.From = BlobMount, q.Get("mount"), q.Get("from")
		case method == http.MethodPost && id == "":
			req.Kind, req.Digest = UploadStart, q.Get("digest")
		case method == http.MethodPatch && id != "":
			req.Kind = UploadPatch
		case method == http.MethodPut && id != "":
			req.Kind, req.Digest = UploadPut, q.Get("digest")
		case method == http.MethodGet && id != "":
			req.Kind = UploadStatus
		case method == http.MethodDelete && id != "":
			req.Kind = UploadCancel
		}
		return req
	}
	if repo, d, ok := cutLast(p, "/blobs/"); ok && d != "" && !strings.Contains(d, "/") {
		req.Repo, req.Digest = repo, d
		switch method {
		case http.MethodHead:
			req.Kind = BlobHead
		case http.MethodGet:
			req.Kind = BlobGet
		case http.MethodDelete:
			req.Kind = BlobDelete
		}
		return req
	}
	if repo, ref, ok := cutLast(p, "/manifests/"); ok && ref != "" && !strings.Contains(ref, "/") {
		req.Repo, req.Ref = repo, ref
		if strings.Contains(ref, ":") {
			req.Digest = ref
		}
		switch method {
		case http.MethodHead:
			req.Kind = ManifestHead
		case http.MethodGet:
			req.Kind = ManifestGet
		case http.MethodPut:
			req.Kind = ManifestPut
		case http.MethodDelete:
			req.Kind = ManifestDelete
		}
		return req
	}
	if repo, ok := strings.CutSuffix(p, "/tags/list"); ok && method == http.MethodGet {
		req.Kind, req.Repo = TagList, repo
		return req
	}
	if repo, d, ok := cutLast(p, "/referrers/"); ok && method == http.MethodGet {
		req.Kind, req.Repo, req.Digest = Referrers, repo, d
	}
	return req
}

// cutLast is strings.Cut around the last sep.
func cutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i <= 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// Proxy is a reverse proxy in front of a registry that records every request, classified, and
// can inject faults (see SetHook). Point clients at Addr() instead of the registry.
type Proxy struct {
	upstream  *url.URL
	server    *httptest.Server
	transport *http.Transport
	rp        *httputil.ReverseProxy

	mu   sync.Mutex
	reqs []*Request
	hook Hook
}

// NewProxy starts a proxy on 127.0.0.1 (so go-containerregistry and other clients use plain HTTP)
// in front of the registry at upstream ("host:port" or "http://host:port"). It stops when the test
// ends.
func NewProxy(t testing.TB, upstream string) *Proxy {
	t.Helper()
	if !strings.Contains(upstream, "://") {
		upstream = "http://" + upstream
	}
	u, err := url.Parse(upstream)
	if err != nil || u.Host == "" {
		t.Fatalf("proxy upstream %q: want host:port or http://host:port (%v)", upstream, err)
	}
	p := &Proxy{upstream: u, transport: http.DefaultTransport.(*http.Transport).Clone()}
	p.transport.Proxy = nil
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			// the registry builds absolute upload Locations from Host: keep them pointing at us
			pr.Out.Host = pr.In.Host
		},
		Transport:      p.transport,
		ModifyResponse: p.rewriteLocation,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if sw, ok := w.(*statusWriter); ok {
				sw.err = err
			}
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	p.server = httptest.NewServer(p)
	t.Cleanup(func() {
		p.server.Close()
		p.transport.CloseIdleConnections()
	})
	return p
}

// Addr returns the proxy's host:port, to use in image references in place of the registry's.
func (p *Proxy) Addr() string { return p.server.Listener.Addr().String() }

// rewriteLocation makes an absolute Location that names the registry name the proxy instead, in
// case the registry ignores Host.
func (p *Proxy) rewriteLocation(resp *http.Response) error {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil
	}
	u, err := url.Parse(loc)
	if err != nil || u.Host != p.upstream.Host {
		return nil
	}
	u.Scheme, u.Host = "http", p.Addr()
	resp.Header.Set("Location", u.String())
	return nil
}

// ServeHTTP records, offers the request to the hook, and forwards it.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req := Classify(r.Method, r.URL)
	rec := &req
	p.mu.Lock()
	p.reqs = append(p.reqs, rec)
	hook := p.hook
	p.mu.Unlock()

	body := &countingReader{r: r.Body}
	r.Body = body
	sw := &statusWriter{ResponseWriter: w}
	faulted := false
	defer func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		rec.Status, rec.BodyBytes, rec.Faulted = sw.status, body.n.Load(), faulted
		if sw.hijacked {
			rec.Status = 0
		}
		if sw.err != nil {
			rec.Err = sw.err.Error()
		}
	}()
	if hook != nil && hook(sw, r, req) {
		faulted = true
		return
	}
	p.rp.ServeHTTP(sw, r)
}

// Reset forgets the requests recorded so far.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reqs = nil
}

// Requests returns the requests recorded since the start or the last Reset, in arrival order.
func (p *Proxy) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Request, len(p.reqs))
	for i, r := range p.reqs {
		out[i] = *r
	}
	return out
}

// Count returns how many recorded requests are of one of the kinds (all requests if none given).
func (p *Proxy) Count(kinds ...Kind) int {
	n := 0
	for _, r := range p.Requests() {
		if len(kinds) == 0 || slices.Contains(kinds, r.Kind) {
			n++
		}
	}
	return n
}

// Uploaded returns the digests of the blobs whose upload the registry accepted (201 to the
// closing PUT, or to a monolithic POST ?digest=), in order.
func (p *Proxy) Uploaded() []string {
	var out []string
	for _, r := range p.Requests() {
		if (r.Kind == UploadPut || r.Kind == UploadStart) && r.Digest != "" && r.Status == http.StatusCreated {
			out = append(out, r.Digest)
		}
	}
	return out
}

// Mounted returns the digests of the blobs the registry mounted from another repository (201 to
// POST ?mount=&from=), in order. A mount answered 202 fell back to an upload and is not listed.
func (p *Proxy) Mounted() []string {
	var out []string
	for _, r := range p.Requests() {
		if r.Kind == BlobMount && r.Status == http.StatusCreated {
			out = append(out, r.Digest)
		}
	}
	return out
}

// Summary counts the recorded requests by kind, e.g. "blob HEAD×3 manifest PUT×1", for messages.
func (p *Proxy) Summary() string {
	counts := map[Kind]int{}
	for _, r := range p.Requests() {
		counts[r.Kind]++
	}
	kinds := make([]string, 0, len(counts))
	for k := range counts {
		kinds = append(kinds, string(k))
	}
	slices.Sort(kinds)
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		parts[i] = fmt.Sprintf("%s×%d", k, counts[Kind(k)])
	}
	return strings.Join(parts, " ")
}

// Log writes every recorded request to the test log (useful before a failing assertion).
func (p *Proxy) Log(t testing.TB) {
	t.Helper()
	for i, r := range p.Requests() {
		t.Logf("proxy request %d: %s", i, r)
	}
}

// countingReader counts the bytes read through it; the transport may read from another goroutine.
type countingReader struct {
	r io.ReadCloser
	n atomic.Int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingReader) Close() error { return c.r.Close() }

// statusWriter remembers the status code sent, and whether the connection was taken over.
type statusWriter struct {
	http.ResponseWriter
	status   int
	hijacked bool
	err      error
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (Flush for streamed answers).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack hands the connection to a hook (to drop it).
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.hijacked = true
	}
	return c, rw, err
}
