// Package vertex runs the built image as a Vertex AI CustomJob (aiplatform v1 REST API),
// authenticated with Application Default Credentials, and polls it until it ends.
package vertex

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
)

// Scope of the access token Vertex AI needs.
const Scope = "https://www.googleapis.com/auth/cloud-platform"

// Options of a CustomJob.
type Options struct {
	Project string
	Region  string // default us-central1
	// Endpoint overrides the API base URL (default https://REGION-aiplatform.googleapis.com).
	Endpoint    string
	DisplayName string // default fairing-job-<id>
	Image       string
	Command     []string
	Args        []string
	Env         []EnvVar
	// MachineType default n1-standard-4; AcceleratorType e.g. NVIDIA_TESLA_T4 with AcceleratorCount.
	MachineType      string
	AcceleratorType  string
	AcceleratorCount int32
	ReplicaCount     int64 // default 1
	ServiceAccount   string
	Labels           map[string]string
	// PollInterval between state checks (default 15 s).
	PollInterval time.Duration
	// HTTPClient, if set, is used as is (it must add authentication); otherwise Application
	// Default Credentials are used.
	HTTPClient *http.Client
}

// EnvVar is a plain environment variable of the container.
type EnvVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Result of a CustomJob.
type Result struct {
	Name     string `json:"name"` // projects/P/locations/R/customJobs/ID
	State    string `json:"state"`
	Message  string `json:"message,omitempty"`
	ExitCode int    `json:"exitCode"`
	URL      string `json:"url,omitempty"` // console URL
}

func (o *Options) defaults() error {
	if o.Project == "" {
		return fmt.Errorf("vertex: --vertex-project is required")
	}
	if o.Image == "" {
		return fmt.Errorf("vertex: no image: pass --image or --image-from-file")
	}
	if o.Region == "" {
		o.Region = "us-central1"
	}
	if o.Endpoint == "" {
		o.Endpoint = "https://" + o.Region + "-aiplatform.googleapis.com"
	}
	if o.MachineType == "" {
		o.MachineType = "n1-standard-4"
	}
	if o.ReplicaCount == 0 {
		o.ReplicaCount = 1
	}
	if o.PollInterval == 0 {
		o.PollInterval = 15 * time.Second
	}
	if (o.AcceleratorType == "") != (o.AcceleratorCount == 0) {
		return fmt.Errorf("vertex: --accelerator-type and --accelerator-count go together")
	}
	return nil
}

// Request is the CustomJob body (what --dry-run prints).
func Request(o Options) (map[string]any, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	machine := map[string]any{"machineType": o.MachineType}
	if o.AcceleratorType != "" {
		machine["acceleratorType"] = o.AcceleratorType
		machine["acceleratorCount"] = o.AcceleratorCount
	}
	container := map[string]any{"imageUri": o.Image}
	if len(o.Command) > 0 {
		container["command"] = o.Command
	}
	if len(o.Args) > 0 {
		container["args"] = o.Args
	}
	if len(o.Env) > 0 {
		container["env"] = o.Env
	}
	spec := map[string]any{"workerPoolSpecs": []any{map[string]any{
		"machineSpec":   machine,
		"replicaCount":  fmt.Sprint(o.ReplicaCount), // int64 fields are strings in Google's JSON
		"containerSpec": container,
	}}}
	if o.ServiceAccount != "" {
		spec["serviceAccount"] = o.ServiceAccount
	}
	body := map[string]any{"displayName": o.DisplayName, "jobSpec": spec}
	if len(o.Labels) > 0 {
		body["labels"] = o.Labels
	}
	return body, nil
}

// Submit creates the CustomJob and, if wait, polls it until it ends (or ctx ends).
func Submit(ctx context.Context, o Options, wait bool, progress io.Writer) (*Result, error) {
	body, err := Request(o)
	if err != nil {
		return nil, err
	}
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if progress == nil {
		progress = io.Discard
	}
	hc := o.HTTPClient
	if hc == nil {
		if hc, err = defaultClient(ctx); err != nil {
			return nil, err
		}
	}
	base := strings.TrimRight(o.Endpoint, "/")
	parent := "projects/" + url.PathEscape(o.Project) + "/locations/" + url.PathEscape(o.Region)
	var job struct {
		Name  string `json:"name"`
		State string `json:"state"`
		Error *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := call(ctx, hc, http.MethodPost, base+"/v1/"+parent+"/customJobs", body, &job); err != nil {
		return nil, fmt.Errorf("vertex: create CustomJob in %s: %w", parent, err)
	}
	if job.Name == "" {
		return nil, fmt.Errorf("vertex: create CustomJob in %s: the answer of %s names no job: is --vertex-endpoint the Vertex AI API?", parent, base)
	}
	res := &Result{Name: job.Name, State: job.State}
	if id := job.Name[strings.LastIndex(job.Name, "/")+1:]; id != "" {
		res.URL = "https://console.cloud.google.com/vertex-ai/locations/" + o.Region + "/training/" + id + "?project=" + o.Project
	}
	fmt.Fprintf(progress, "vertex: CustomJob %s created (%s)\n", job.Name, job.State)
	if !wait {
		return res, nil
	}
	last := job.State
	for {
		switch job.State {
		case "JOB_STATE_SUCCEEDED":
			res.State, res.ExitCode = job.State, 0
			return res, nil
		case "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED":
			res.State, res.ExitCode = job.State, 1
			if job.Error != nil {
				res.Message = job.Error.Message
			}
			return res, nil
		}
		select {
		case <-ctx.Done():
			res.State, res.ExitCode, res.Message = last, 1, "stopped waiting: "+ctx.Err().Error()+"; the job goes on"
			return res, nil
		case <-time.After(o.PollInterval):
		}
		if err := call(ctx, hc, http.MethodGet, base+"/v1/"+job.Name, nil, &job); err != nil {
			if ctx.Err() != nil {
				continue
			}
			return nil, fmt.Errorf("vertex: get %s: %w", res.Name, err)
		}
		if job.State != last {
			last = job.State
			fmt.Fprintf(progress, "vertex: %s: %s\n", job.Name, job.State)
		}
	}
}

func call(ctx context.Context, hc *http.Client, method, u string, body, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "fairing-submit")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var ge struct {
			Error struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
				Status  string `json:"status"`
			} `json:"error"`
		}
		if json.Unmarshal(b, &ge) == nil && ge.Error.Message != "" {
			return fmt.Errorf("%s %s: %s", resp.Status, ge.Error.Status, ge.Error.Message)
		}
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("the answer (%s, %s) is not the Vertex AI API's JSON: is --vertex-endpoint right? (%w; it begins %q)",
			resp.Status, resp.Header.Get("Content-Type"), err, b[:min(len(b), 80)])
	}
	return nil
}

// defaultClient authenticates with Application Default Credentials. It gets a token at once, so
// that unusable credentials (a malformed key file, a revoked key) are reported as such, before
// anything is created.
func defaultClient(ctx context.Context) (*http.Client, error) {
	where, fix := "Google Application Default Credentials", "run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS to a key file"
	if f := os.Getenv("GOOGLE_APPLICATION_CREDENTIALS"); f != "" {
		where, fix = "Application Default Credentials in "+f+" (GOOGLE_APPLICATION_CREDENTIALS)", "fix or replace that key file"
	}
	creds, err := google.FindDefaultCredentials(ctx, Scope)
	if err != nil {
		return nil, fmt.Errorf("vertex: no usable %s (%s): %w", where, fix, err)
	}
	ts := oauth2.ReuseTokenSource(nil, creds.TokenSource)
	if _, err := ts.Token(); err != nil {
		return nil, fmt.Errorf("vertex: the %s give no access token (%s): %w", where, fix, err)
	}
	return oauth2.NewClient(ctx, ts), nil
}
