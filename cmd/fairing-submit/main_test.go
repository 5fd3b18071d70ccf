package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

const testImage = "registry.example/team/app@sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b"

func runCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"fairing-submit"}, args...), &out, &errb)
	return out.String(), errb.String(), code
}

// The --dry-run output of every deployer, compared with golden files (go test -update rewrites them).
func TestDryRunGolden(t *testing.T) {
	common := []string{"run", "--dry-run", "--image", testImage, "--id", "golden", "-n", "team-a"}
	tests := []struct {
		name string
		args []string
	}{
		{"job", []string{"--runs", "2", "--timeout", "10m", "--ttl", "1h", "--env", "MODE=train", "--cpu", "500m:2", "--memory", "1Gi",
			"--gpu", "1", "--volume", "pvc:data:/data:sub", "--volume", "emptydir:scratch:/scratch", "--node-selector", "pool=gpu",
			"--toleration", "nvidia.com/gpu:NoSchedule", "--service-account", "trainer", "--image-pull-secret", "regcred",
			"--annotation", "team=a", "--label", "project=x", "--env-from-secret", "TOKEN=api:token", "--credentials", "gcp",
			"--", "python", "/app/train.py"}},
		{"tfjob", []string{"-d", "tfjob", "--chief", "1", "--workers", "2", "--ps", "1", "--gpu", "1", "--timeout", "1h"}},
		{"pytorchjob", []string{"-d", "pytorchjob", "--workers", "3", "--clean-pod-policy", "all"}},
		{"serving", []string{"-d", "serving", "--name", "model", "--port", "80", "--target-port", "8080", "--replicas", "2",
			"--service-type", "LoadBalancer", "--url-path", "/predict"}},
		{"kserve", []string{"-d", "kserve", "--name", "iris", "--canary-traffic-percent", "20", "--memory", "512Mi", "--label", "team=a"}},
		{"kserve-model", []string{"-d", "kserve", "--name", "sk", "--model-format", "sklearn", "--storage-uri", "gs://bucket/model"}},
		{"vertex", []string{"-d", "vertex", "--vertex-project", "proj", "--accelerator-type", "NVIDIA_TESLA_T4", "--accelerator-count", "1",
			"--env", "A=1", "--", "python", "-m", "train"}},
		{"job-json", []string{"-o", "json"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errs, code := runCLI(t, append(append([]string{}, common...), tc.args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			golden := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if out != string(want) {
				t.Errorf("dry-run output differs from %s:\n%s", golden, out)
			}
		})
	}
}

// Bad input: a clear message, exit code 2, nothing printed on stdout.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	noDigest := filepath.Join(dir, "tag-only")
	os.WriteFile(noDigest, []byte("registry.example/app:latest\n"), 0o644)
	emptyTmpl, listTmpl := filepath.Join(dir, "empty.yaml"), filepath.Join(dir, "list.yaml")
	os.WriteFile(emptyTmpl, nil, 0o644)
	os.WriteFile(listTmpl, []byte("- name: main\n  image: x\n"), 0o644)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"run", "--dry-run"}, "no image"},
		{[]string{"run", "--dry-run", "--image", "UPPER/case"}, "image \"UPPER/case\""},
		{[]string{"run", "--dry-run", "--image-from-file", filepath.Join(dir, "missing")}, "--image-from-file"},
		{[]string{"run", "--dry-run", "--image-from-file", noDigest}, "not name@sha256:DIGEST"},
		{[]string{"run", "--dry-run", "--image", testImage, "-d", "cronjob"}, "unknown deployer \"cronjob\""},
		{[]string{"run", "--dry-run", "--image", testImage, "--cpu", "lots"}, "--cpu \"lots\" is not a Kubernetes quantity"},
		{[]string{"run", "--dry-run", "--image", testImage, "--memory", "2Gi:1Gi"}, "larger than its limit"},
		{[]string{"run", "--dry-run", "--image", testImage, "--volume", "nfs:x:/y"}, "unknown type \"nfs\""},
		{[]string{"run", "--dry-run", "--image", testImage, "--env", "NOVALUE"}, "want NAME=VALUE"},
		{[]string{"run", "--dry-run", "--image", testImage, "--toleration", "k:Sometimes"}, "effect \"Sometimes\""},
		{[]string{"run", "--dry-run", "--image", testImage, "--cleanup", "sometimes"}, "--cleanup \"sometimes\""},
		{[]string{"run", "--dry-run", "--image", testImage, "--credentials", "azure"}, "want gcp, aws or docker"},
		{[]string{"run", "--dry-run", "--image", testImage, "--label", "fairing-id=x"}, "set by fairing itself"},
		{[]string{"run", "--dry-run", "--image", testImage, "-d", "pytorchjob", "--ps", "1"}, "no chief or parameter servers"},
		{[]string{"run", "--dry-run", "--image", testImage, "-d", "serving", "--service-type", "ExternalName"}, "--service-type"},
		{[]string{"run", "--dry-run", "--image", testImage, "-d", "kserve", "--storage-uri", "gs://x"}, "go together"},
		{[]string{"run", "--dry-run", "--image", testImage, "-d", "vertex"}, "--vertex-project is required"},
		{[]string{"run", "--dry-run", "--image", testImage, "-d", "vertex", "--vertex-project", "p", "--volume", "pvc:a:/a"}, "Kubernetes options"},
		{[]string{"run", "--dry-run", "--image", testImage, "--pod-template", filepath.Join(dir, "nope.yaml")}, "read --pod-template"},
		{[]string{"delete"}, "needs workload names or --selector"},
		{[]string{"run", "--dry-run", "--image", testImage, "-n", "Bad_NS"}, `--namespace "Bad_NS" is not a valid namespace name: a lowercase RFC 1123 label`},
		{[]string{"run", "--dry-run", "--image", testImage, "--namespace", "team.a"}, `--namespace "team.a" is not a valid namespace name`},
		{[]string{"run", "--dry-run", "--image", testImage, "--service-account", "Trainer"}, `--service-account "Trainer" is not a valid service account name`},
		{[]string{"run", "--dry-run", "--image", testImage, "--gpu", "1", "--gpu-vendor", "gpu.intel.com/i915/x"}, `--gpu-vendor "gpu.intel.com/i915/x" is not a valid resource name`},
		{[]string{"run", "--dry-run", "--image", testImage, "--pod-template", emptyTmpl}, "--pod-template " + emptyTmpl + " is empty: want a Pod, PodTemplate"},
		{[]string{"run", "--dry-run", "--image", testImage, "--pod-template", listTmpl}, "--pod-template " + listTmpl + " is not a YAML mapping"},
	}
	for _, tc := range tests {
		out, errs, code := runCLI(t, tc.args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", tc.args, code, errs)
		}
		if !strings.Contains(errs, tc.want) {
			t.Errorf("%v: stderr %q does not contain %q", tc.args, errs, tc.want)
		}
		if out != "" {
			t.Errorf("%v: stdout %q, want nothing", tc.args, out)
		}
	}
}

// An invalid --namespace is refused by every command before the cluster is asked (which would only
// say that it does not exist), whether it comes from the flag or FAIRING_NAMESPACE; an empty one
// keeps the default.
func TestNamespaceValidation(t *testing.T) {
	// a cluster nobody listens at: a regression must not reach a real one
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600)
	t.Setenv("KUBECONFIG", kc)
	const want = `--namespace "Bad_NS" is not a valid namespace name`
	for _, args := range [][]string{
		{"run", "--dry-run", "--image", testImage, "-n", "Bad_NS"},
		{"run", "--image", testImage, "-n", "Bad_NS"},
		{"list", "-n", "Bad_NS"},
		{"status", "fairing-job-x", "--namespace=Bad_NS"},
		{"logs", "fairing-job-x", "-n", "Bad_NS"},
		{"delete", "fairing-job-x", "-n", "Bad_NS"},
	} {
		out, errs, code := runCLI(t, args...)
		if code != 2 || out != "" || !strings.Contains(errs, want) || strings.Contains(errs, "127.0.0.1:1") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 2 and %q", args, code, out, errs, want)
		}
	}
	t.Setenv("FAIRING_NAMESPACE", "Bad_NS")
	if _, errs, code := runCLI(t, "run", "--dry-run", "--image", testImage); code != 2 || !strings.Contains(errs, want) {
		t.Errorf("FAIRING_NAMESPACE=Bad_NS: exit %d, stderr %q", code, errs)
	}
	t.Setenv("FAIRING_NAMESPACE", "")
	if _, errs, code := runCLI(t, "run", "--dry-run", "--image", testImage, "--id", "x"); code != 0 {
		t.Errorf("empty FAIRING_NAMESPACE: exit %d, stderr %q; want the default namespace", code, errs)
	}
	if out, errs, code := runCLI(t, "run", "--dry-run", "--image", testImage, "--id", "x", "-n", "team-a"); code != 0 || !strings.Contains(out, "namespace: team-a") {
		t.Errorf("-n team-a: exit %d, stderr %q, out %s", code, errs, out)
	}
}

// Every flag of run can be given as a FAIRING_* environment variable.
func TestFlagsFromEnv(t *testing.T) {
	t.Setenv("FAIRING_IMAGE", testImage)
	t.Setenv("FAIRING_DEPLOYER", "job")
	t.Setenv("FAIRING_ENV", "A=1,B=2")
	t.Setenv("FAIRING_RUNS", "3")
	t.Setenv("FAIRING_ID", "from-env")
	out, errs, code := runCLI(t, "run", "--dry-run")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"fairing-id: from-env", "completions: 3", "name: B", imageLine(testImage)} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, f := range runFlags() {
		name := f.Names()[0]
		if ev, ok := f.(interface{ GetEnvVars() []string }); !ok || len(ev.GetEnvVars()) == 0 {
			t.Errorf("flag --%s has no FAIRING_* environment variable", name)
		}
	}
}

func imageLine(s string) string { return "image: " + s }

// --image-from-file reads the builder's digest file.
func TestImageFromFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "image")
	os.WriteFile(f, []byte(testImage+"\n"), 0o644)
	out, errs, code := runCLI(t, "run", "--dry-run", "--image-from-file", f, "--id", "x")
	if code != 0 || !strings.Contains(out, imageLine(testImage)) {
		t.Fatalf("exit %d, stderr %s, out %s", code, errs, out)
	}
}

// --pod-template is merged underneath: sidecars and other fields stay, the options win.
func TestPodTemplate(t *testing.T) {
	f := filepath.Join(t.TempDir(), "tmpl.yaml")
	os.WriteFile(f, []byte(`apiVersion: v1
kind: Pod
metadata:
  labels: {from-template: "yes"}
spec:
  priorityClassName: high
  restartPolicy: Always
  containers:
  - name: main
    image: ignored
    env: [{name: FROM_TEMPLATE, value: "1"}, {name: A, value: template}]
  - name: sidecar
    image: registry.example/sidecar:1
`), 0o644)
	out, errs, code := runCLI(t, "run", "--dry-run", "--image", testImage, "--id", "x", "--pod-template", f, "--env", "A=option")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"priorityClassName: high", "restartPolicy: Never", "name: sidecar", "from-template: \"yes\"",
		"name: FROM_TEMPLATE", "value: option", "name: fairing-job", imageLine(testImage)} {
		if !strings.Contains(out, want) {
			t.Errorf("merged template lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "value: template") || strings.Contains(out, "image: ignored") {
		t.Errorf("options did not win over the template:\n%s", out)
	}
}

func TestIntersperse(t *testing.T) {
	app := newApp(nil, nil)
	tests := []struct{ in, want string }{
		{"f status NAME -o json", "f status -o json -- NAME"},
		{"f logs -f NAME --all", "f logs -f --all -- NAME"},
		{"f delete a b -n ns", "f delete -n ns -- a b"},
		{"f delete --selector=x=y", "f delete --selector=x=y"},
		{"f run --image x -- sh -c 'a'", "f run --image x -- sh -c 'a'"},
	}
	for _, tc := range tests {
		if got := strings.Join(intersperse(app, strings.Fields(tc.in)), " "); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
		}
	}
}
