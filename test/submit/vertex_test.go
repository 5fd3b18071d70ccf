package submit

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fakeVertex is a loopback Google token endpoint plus the aiplatform v1 CustomJob API. It checks the
// OAuth2 refresh grant, the bearer token on API calls and records the CustomJob body.
type fakeVertex struct {
	mu       sync.Mutex
	body     map[string]any
	path     string
	gets     int
	final    string // final state
	badAuth  []string
	tokenReq int
}

func (f *fakeVertex) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.URL.Path == "/token":
		r.ParseForm()
		if r.Form.Get("grant_type") != "refresh_token" || r.Form.Get("refresh_token") != "test-refresh-token" {
			http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
			return
		}
		f.tokenReq++
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"access_token":"test-access-token","token_type":"Bearer","expires_in":3600}`)
		return
	case r.Header.Get("Authorization") != "Bearer test-access-token":
		f.badAuth = append(f.badAuth, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		http.Error(w, `{"error":{"code":401,"message":"bad token","status":"UNAUTHENTICATED"}}`, http.StatusUnauthorized)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/projects/my-proj/locations/europe-west4/customJobs":
		f.path = r.URL.Path
		json.NewDecoder(r.Body).Decode(&f.body)
		fmt.Fprint(w, `{"name":"projects/my-proj/locations/europe-west4/customJobs/42","state":"JOB_STATE_PENDING"}`)
	case r.Method == http.MethodGet && r.URL.Path == "/v1/projects/my-proj/locations/europe-west4/customJobs/42":
		f.gets++
		state := "JOB_STATE_RUNNING"
		if f.gets >= 3 {
			state = f.final
		}
		if state == "JOB_STATE_FAILED" {
			fmt.Fprintf(w, `{"name":"projects/my-proj/locations/europe-west4/customJobs/42","state":%q,"error":{"code":3,"message":"The replica workerpool0-0 exited with a non-zero status of 1."}}`, state)
			return
		}
		fmt.Fprintf(w, `{"name":"projects/my-proj/locations/europe-west4/customJobs/42","state":%q}`, state)
	default:
		http.NotFound(w, r)
	}
}

// Vertex AI CustomJob: Application Default Credentials (an authorized_user key whose token_uri is
// the loopback server) give the bearer token; the request body carries image, command, args, env,
// machine and accelerators; the job is polled to its end and its state becomes the exit code.
func TestVertex(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: skipped in -short mode")
	}
	for _, final := range []string{"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"} {
		t.Run(final, func(t *testing.T) {
			fv := &fakeVertex{final: final}
			srv := httptest.NewServer(fv)
			defer srv.Close()
			adc := filepath.Join(t.TempDir(), "adc.json")
			os.WriteFile(adc, []byte(fmt.Sprintf(`{"type":"authorized_user","client_id":"cid","client_secret":"csecret","refresh_token":"test-refresh-token","token_uri":%q}`, srv.URL+"/token")), 0o600)
			img := "europe-docker.pkg.dev/my-proj/repo/app@sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b"
			r := submitAs(t, "", "", []string{"GOOGLE_APPLICATION_CREDENTIALS=" + adc, "HOME=" + t.TempDir()},
				"run", "-d", "vertex", "--image", img, "--vertex-project", "my-proj", "--vertex-region", "europe-west4",
				"--vertex-endpoint", srv.URL, "--vertex-poll-interval", "50ms", "--machine-type", "n1-highmem-8",
				"--accelerator-type", "NVIDIA_TESLA_T4", "--accelerator-count", "2", "--replicas", "3", "--id", "v1",
				"--env", "EPOCHS=3", "--args", "--lr=0.1", "-o", "json", "--", "python", "-m", "trainer")
			want := 0
			if final == "JOB_STATE_FAILED" {
				want = 1
			}
			if r.code != want {
				t.Fatalf("want exit %d\n%s", want, r)
			}
			fv.mu.Lock()
			defer fv.mu.Unlock()
			if len(fv.badAuth) > 0 || fv.tokenReq == 0 {
				t.Fatalf("requests without the ADC token: %v (token requests %d)", fv.badAuth, fv.tokenReq)
			}
			b, _ := json.Marshal(fv.body)
			for _, w := range []string{`"displayName":"fairing-job-v1"`, `"imageUri":"` + img + `"`, `"command":["python","-m","trainer"]`,
				`"args":["--lr=0.1"]`, `"env":[{"name":"EPOCHS","value":"3"}]`, `"machineType":"n1-highmem-8"`,
				`"acceleratorType":"NVIDIA_TESLA_T4"`, `"acceleratorCount":2`, `"replicaCount":"3"`} {
				if !strings.Contains(string(b), w) {
					t.Errorf("CustomJob body lacks %s: %s", w, b)
				}
			}
			var res struct{ Kind, Name, State, Message string }
			if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.Name != "projects/my-proj/locations/europe-west4/customJobs/42" || res.State != final {
				t.Errorf("-o json result: %v %+v", err, res)
			}
			if final == "JOB_STATE_FAILED" && !strings.Contains(r.stderr, "exited with a non-zero status") {
				t.Errorf("the failure message is missing\n%s", r)
			}
		})
	}
	t.Run("no-credentials", func(t *testing.T) {
		r := submitAs(t, "", "", []string{"GOOGLE_APPLICATION_CREDENTIALS=" + filepath.Join(t.TempDir(), "missing.json"), "HOME=" + t.TempDir()},
			"run", "-d", "vertex", "--image", "example.com/app:1", "--vertex-project", "p", "--vertex-endpoint", "http://127.0.0.1:1")
		if r.code != 2 || !strings.Contains(r.stderr, "Application Default Credentials") {
			t.Errorf("want a clear ADC message\n%s", r)
		}
	})
}
