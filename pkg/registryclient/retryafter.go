package registryclient

import (
	"io"
	"net/http"
	"strconv"
	"time"
)

// retryAfter waits as long as a registry's Retry-After asks and sends the request again, when
// the registry answered 429 or 503 with one of at most max. go-containerregistry's own retries
// back off 1 s then 3 s whatever the registry said and give up after three tries; a
// rate-limited registry says exactly when to come back, and a client that comes back then
// gets through. Requests whose body cannot be replayed are not retried here.
type retryAfter struct {
	rt    http.RoundTripper
	max   time.Duration
	tries int
}

func (r retryAfter) RoundTrip(req *http.Request) (*http.Response, error) {
	for i := 0; ; i++ {
		resp, err := r.rt.RoundTrip(req)
		if err != nil || i >= r.tries || (resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable) {
			return resp, err
		}
		d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		if !ok || d > r.max {
			return resp, nil
		}
		next := req.Clone(req.Context())
		if req.Body != nil && req.Body != http.NoBody {
			if req.GetBody == nil {
				return resp, nil
			}
			if next.Body, err = req.GetBody(); err != nil {
				return resp, nil
			}
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		t := time.NewTimer(d)
		select {
		case <-req.Context().Done():
			t.Stop()
			return nil, req.Context().Err()
		case <-t.C:
		}
		req = next
	}
}

// parseRetryAfter reads delta-seconds or an HTTP date (RFC 9110, 10.2.3).
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0, false
		}
		return time.Duration(s) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(0, t.Sub(now)), true
}
