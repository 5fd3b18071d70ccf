package registryclient

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	cases := []struct {
		name       string
		status     int
		retryAfter string
		faults     int32 // answers with status before a 200
		method     string
		body       string
		replayable bool
		wantStatus int
		wantCalls  int32
	}{
		{name: "429 twice, then served", status: 429, retryAfter: "0", faults: 2, method: http.MethodHead, wantStatus: 200, wantCalls: 3},
		{name: "503 once, then served", status: 503, retryAfter: "0", faults: 1, method: http.MethodGet, wantStatus: 200, wantCalls: 2},
		{name: "429 every time: three retries, then the 429", status: 429, retryAfter: "0", faults: 100, method: http.MethodHead, wantStatus: 429, wantCalls: 4},
		{name: "no Retry-After: left to the caller's backoff", status: 429, faults: 1, method: http.MethodHead, wantStatus: 429, wantCalls: 1},
		{name: "Retry-After beyond the cap: left to the caller", status: 429, retryAfter: "3600", faults: 1, method: http.MethodHead, wantStatus: 429, wantCalls: 1},
		{name: "500 is not retried here", status: 500, retryAfter: "0", faults: 1, method: http.MethodHead, wantStatus: 500, wantCalls: 1},
		{name: "replayable body sent again whole", status: 429, retryAfter: "0", faults: 1, method: http.MethodPut, body: "manifest", replayable: true, wantStatus: 200, wantCalls: 2},
		{name: "streamed body not retried", status: 429, retryAfter: "0", faults: 1, method: http.MethodPatch, body: "blob", wantStatus: 429, wantCalls: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := calls.Add(1)
				b, _ := io.ReadAll(r.Body)
				if string(b) != tc.body {
					t.Errorf("call %d: body %q, want %q", n, b, tc.body)
				}
				if n <= tc.faults {
					if tc.retryAfter != "" {
						w.Header().Set("Retry-After", tc.retryAfter)
					}
					w.WriteHeader(tc.status)
					return
				}
				w.WriteHeader(http.StatusOK)
			}))
			defer s.Close()
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
				if !tc.replayable {
					body = io.MultiReader(body) // hides the type: no GetBody
				}
			}
			req, err := http.NewRequest(tc.method, s.URL, body)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := retryAfter{rt: http.DefaultTransport, max: 30 * time.Second, tries: 3}.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus || calls.Load() != tc.wantCalls {
				t.Errorf("status %d after %d calls, want %d after %d", resp.StatusCode, calls.Load(), tc.wantStatus, tc.wantCalls)
			}
		})
	}
}

func TestRetryAfterWaitsAndStopsWithTheContext(t *testing.T) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "20")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodHead, s.URL, nil)
	start := time.Now()
	_, err := retryAfter{rt: http.DefaultTransport, max: 30 * time.Second, tries: 3}.RoundTrip(req)
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("err %v after %v: want the context's error, promptly", err, time.Since(start))
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"5", 5 * time.Second, true},
		{"-1", 0, false},
		{"soon", 0, false},
		{now.Add(7 * time.Second).Format(http.TimeFormat), 7 * time.Second, true},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0, true},
	}
	for _, tc := range cases {
		got, ok := parseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
