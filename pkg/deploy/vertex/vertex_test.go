package vertex

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
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
