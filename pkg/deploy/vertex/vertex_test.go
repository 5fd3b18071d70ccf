package vertex

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRequestBody(t *testing.T) {
	body, err := Request(Options{Project: "p", Image: "img", Command: []string{"python"}, Env: []EnvVar{{"A", "1"}},
		AcceleratorType: "NVIDIA_TESLA_T4", AcceleratorCount: 1, ServiceAccount: "sa@p.iam", Labels: map[string]string{"team": "a"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(body)
	for _, w := range []string{`"imageUri":"img"`, `"command":["python"]`, `"machineType":"n1-standard-4"`, `"replicaCount":"1"`,
		`"serviceAccount":"sa@p.iam"`, `"labels":{"team":"a"}`, `"acceleratorCount":1`} {
		if !strings.Contains(string(b), w) {
			t.Errorf("body lacks %s: %s", w, b)
		}
	}
	for _, bad := range []Options{{Image: "img"}, {Project: "p"}, {Project: "p", Image: "i", AcceleratorType: "T4"}} {
		if _, err := Request(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// API errors are reported with Google's status and message.
func TestSubmitAPIError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `{"error":{"code":403,"message":"Permission 'aiplatform.customJobs.create' denied","status":"PERMISSION_DENIED"}}`)
	}))
	defer srv.Close()
	_, err := Submit(context.Background(), Options{Project: "p", Image: "i", Endpoint: srv.URL, HTTPClient: srv.Client(), PollInterval: time.Millisecond}, true, nil)
	if err == nil || !strings.Contains(err.Error(), "PERMISSION_DENIED") || !strings.Contains(err.Error(), "aiplatform.customJobs.create") {
		t.Errorf("err %v", err)
	}
}

// An endpoint that is not the Vertex AI API (a proxy's HTML page, a JSON answer without a job) is
// reported as such, pointing at --vertex-endpoint, not as a bare decode error or a nameless job.
func TestSubmitWrongEndpoint(t *testing.T) {
	tests := []struct {
		name        string
		contentType string
		body        string
		want        []string
	}{
		{"html", "text/html; charset=utf-8", "<!DOCTYPE html><html><body>Welcome to nginx!</body></html>",
			[]string{"vertex: create CustomJob in projects/p/locations/us-central1", "is not the Vertex AI API's JSON", "is --vertex-endpoint right?",
				"200 OK", "text/html", `it begins "<!DOCTYPE html>`}},
		{"empty-object", "application/json", "{}",
			[]string{"vertex: create CustomJob in projects/p/locations/us-central1", "names no job", "is --vertex-endpoint the Vertex AI API?"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.contentType)
				fmt.Fprint(w, tc.body)
			}))
			defer srv.Close()
			// bounded: a nameless job must not be polled forever
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			res, err := Submit(ctx, Options{Project: "p", Image: "i", Endpoint: srv.URL, HTTPClient: srv.Client(), PollInterval: time.Millisecond}, true, nil)
			if err == nil {
				t.Fatalf("accepted: %+v", res)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if tc.name == "empty-object" && !strings.Contains(err.Error(), srv.URL) {
				t.Errorf("error %q does not name the endpoint %s", err, srv.URL)
			}
		})
	}
}

// writeKey writes a service account key file whose token endpoint is tokenURL, and points
// GOOGLE_APPLICATION_CREDENTIALS at it.
func writeKey(t *testing.T, tokenURL string) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := json.Marshal(map[string]string{"type": "service_account", "project_id": "p", "private_key_id": "k1",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": "trainer@p.iam.gserviceaccount.com", "client_id": "1", "token_uri": tokenURL})
	f := filepath.Join(t.TempDir(), "key.json")
	if err := os.WriteFile(f, key, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", f)
	return f
}

// Application Default Credentials give a token before anything is created: unusable ones (a
// malformed or revoked key) are reported with the file and what to do, and no job is created;
// good ones authenticate the API calls.
func TestSubmitDefaultCredentials(t *testing.T) {
	var created atomic.Int32
	var revoked atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/token" && revoked.Load():
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"invalid_grant","error_description":"Invalid JWT Signature."}`)
		case r.URL.Path == "/token":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"access_token":"tok-1","token_type":"Bearer","expires_in":3600}`)
		case r.Header.Get("Authorization") != "Bearer tok-1":
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":{"code":401,"message":"no token","status":"UNAUTHENTICATED"}}`)
		default:
			created.Add(1)
			fmt.Fprint(w, `{"name":"projects/p/locations/us-central1/customJobs/42","state":"JOB_STATE_PENDING"}`)
		}
	}))
	defer srv.Close()
	o := Options{Project: "p", Image: "i", Endpoint: srv.URL}

	t.Run("malformed", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "key.json")
		os.WriteFile(f, []byte("not json"), 0o600)
		t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", f)
		_, err := Submit(context.Background(), o, false, nil)
		if err == nil || !strings.Contains(err.Error(), "vertex: no usable Application Default Credentials in "+f) ||
			!strings.Contains(err.Error(), "fix or replace that key file") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("revoked", func(t *testing.T) {
		revoked.Store(true)
		defer revoked.Store(false)
		f := writeKey(t, srv.URL+"/token")
		_, err := Submit(context.Background(), o, false, nil)
		if err == nil || !strings.Contains(err.Error(), "vertex: the Application Default Credentials in "+f+" (GOOGLE_APPLICATION_CREDENTIALS) give no access token") ||
			!strings.Contains(err.Error(), "invalid_grant") {
			t.Errorf("error %v", err)
		}
	})
	if n := created.Load(); n != 0 {
		t.Fatalf("%d jobs created with unusable credentials", n)
	}
	t.Run("good", func(t *testing.T) {
		writeKey(t, srv.URL+"/token")
		res, err := Submit(context.Background(), o, false, nil)
		if err != nil || res.Name != "projects/p/locations/us-central1/customJobs/42" || created.Load() != 1 {
			t.Errorf("result %+v, %v; %d created", res, err, created.Load())
		}
	})
}
