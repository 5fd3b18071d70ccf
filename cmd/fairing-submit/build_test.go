package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func buildContext(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for n, c := range map[string]string{"train.py": "print('hi')\n", "requirements.txt": "requests\n", ".dockerignore": "secret.txt\n", "secret.txt": "no\n"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// The build Job of --build-in-cluster --dry-run: the context digest is computed (nothing is sent), the
// build step gets the build options, the submit step exactly the user's deployer options. With packages
// to install (requirements.txt lists one), --builder auto picks BuildKit: the BuildKit-capable image,
// privileged, buildkitd's state in the pod's emptyDir.
func TestBuildInClusterDryRun(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "")
	common := []string{"run", "--dry-run", "--build-in-cluster", "--cache-dir", t.TempDir(),
		"--base", "registry.example/base/python:3.11", "--destination", "registry.example/team/train", "--platform", "linux/amd64",
		"--image-env", "MODE=prod", "--image-label", "team=a",
		"--builder-image", "registry.example/fairing-builder:v1", "--submit-image", "registry.example/fairing-submit:v1",
		"--buildkit-image", "registry.example/fairing-builder-buildkit:v1",
		"--registry-secret", "regcred", "--id", "golden", "-n", "team-a",
		"-d", "job", "--gpu", "1", "--env", "A=1", "--volume", "pvc:data:/data", "--timeout", "10m", "--cleanup", "always", "--runs", "2"}
	for name, args := range map[string][]string{
		"build-in-cluster":          {"--builder", "append", "--input", "train.py", "--interpreter", "python3"},
		"build-in-cluster-buildkit": {"--cache-repo", "registry.example/team/cache"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := buildContext(t)
			out, errs, code := runCLI(t, append(append(append([]string{}, common...), "--build-context", dir), args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			golden := filepath.Join("testdata", name+".golden")
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

// Deployer options set through FAIRING_* variables reach the submit step too, and flags the user's
// command handles itself (cluster, output) do not.
func TestSubmitArgsForwarded(t *testing.T) {
	dir := buildContext(t)
	t.Setenv("FAIRING_MEMORY", "1Gi")
	t.Setenv("FAIRING_FAIL_FAST", "false")
	out, errs, code := runCLI(t, "run", "--dry-run", "-o", "json", "--build-in-cluster", "--build-context", dir, "--cache-dir", t.TempDir(),
		"--base", "registry.example/base:1", "--destination", "registry.example/app", "--builder-image", "b:1", "--submit-image", "s:1",
		"--builder", "append", "--kubeconfig", "/nonexistent", "--context", "other", "--quiet", "--", "sh", "-c", "echo hi")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, w := range []string{`"--memory=1Gi"`, `"--fail-fast=false"`, `"--quiet=true"`, `"--",`, `"echo hi"`} {
		if !strings.Contains(out, w) {
			t.Errorf("submit args lack %s:\n%s", w, out)
		}
	}
	for _, w := range []string{"--kubeconfig", "--context=other", "--output", "--build-context"} {
		if strings.Contains(out, w) {
			t.Errorf("%s must not reach the submit step:\n%s", w, out)
		}
	}
}

func TestBuildInClusterBadInput(t *testing.T) {
	dir := buildContext(t)
	common := []string{"run", "--dry-run", "--build-in-cluster", "--build-context", dir, "--builder-image", "b:1", "--submit-image", "s:1", "--buildkit-image", "bk:1"}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--destination", "r.example/app"}, "needs --base"},
		{[]string{"--base", "r.example/b:1"}, "needs --destination"},
		{[]string{"--base", "r.example/b:1", "--destination", "oci:/tmp/x:1"}, "not to a local file"},
		{[]string{"--base", "r.example/b:1", "--destination", "r.example/app", "--image", "r.example/x:1"}, "drop --image"},
		{[]string{"--base", "r.example/b:1", "--destination", "r.example/app", "--registry-secret", "x", "--create-registry-secret"}, "exclude each other"},
		{[]string{"--base", "r.example/b:1", "--destination", "r.example/app", "--build-context-volume", "nfs:x"}, "--build-context-volume"},
		{[]string{"--base", "r.example/b:1", "--destination", "r.example/app", "--build-context-volume", "pvc:x"}, "drop --build-context"},
		{[]string{"--base", "r.example/b:1", "--destination", "r.example/app", "--build-api-server", "http://x:1"}, "--build-api-server"},
		{[]string{"--base", "r.example/b:1", "--destination", "r.example/app", "--image-workdir", "app"}, "absolute"},
		{[]string{"--base", "r.example/b:1", "--destination", "r.example/app", "--build-context", filepath.Join(dir, "missing")}, "does not exist"},
		{[]string{"--base", "UPPER/b:1", "--destination", "r.example/app"}, "invalid image reference"},
		{[]string{"--base", "r.example/b:1", "--destination", "r.example/app", "--cache-from", "UPPER/app:main"}, "--cache-from: invalid image reference"},
		{[]string{"--base", "r.example/b:1", "--destination", "r.example/app", "--env", "NOVALUE"}, "NOVALUE"},
		{[]string{"--base", "r.example/b:1", "--destination", "r.example/app", "-d", "nope"}, "unknown deployer"},
		{[]string{"--base", "r.example/b:1", "--destination", "r.example/app", "--cleanup", "sometimes"}, "--cleanup"},
		{[]string{"--base", "r.example/b:1", "--destination", "r.example/app", "--builder", "kaniko"}, "--builder"},
		{[]string{"--base", "r.example/b:1", "--destination", "r.example/app", "--builder", "append", "--cache-repo", "r.example/c"}, "needs --builder buildkit"},
		{[]string{"--base", "r.example/b:1", "--destination", "r.example/app", "--buildkit-image", ""}, "pass --buildkit-image"},
		{[]string{"--base", "r.example/b:1", "--destination", "r.example/app", "--pod-template", filepath.Join(dir, "train.py")},
			"--pod-template cannot be used with --build-in-cluster"},
		{[]string{"--base", "r.example/b:1", "--destination", "r.example/app", "--build-service-account", "Builder"},
			`--build-service-account "Builder" is not a valid object name`},
		{[]string{"--base", "r.example/b:1", "--destination", "r.example/app", "--registry-secret", "reg_cred"},
			`--registry-secret "reg_cred" is not a valid object name`},
		{[]string{"--base", "r.example/b:1", "--destination", "r.example/app", "--service-account", "Trainer"},
			`--service-account "Trainer" is not a valid service account name`},
		{[]string{"--base", "r.example/b:1", "--destination", "r.example/app", "--gpu", "1", "--gpu-vendor", "Bad_Domain/gpu"},
			`--gpu-vendor "Bad_Domain/gpu" is not a valid resource name`},
		{[]string{"--base", "r.example/b:1", "--destination", "r.example/app", "-n", "Team-A"}, `--namespace "Team-A" is not a valid namespace name`},
	}
	for _, tc := range tests {
		out, errs, code := runCLI(t, append(append([]string{}, common...), tc.args...)...)
		if code != 2 || out != "" || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, errs, tc.want)
		}
	}
	// build options without --build-in-cluster are a mistake, not ignored
	_, errs, code := runCLI(t, "run", "--dry-run", "--image", testImage, "--base", "r.example/b:1")
	if code != 2 || !strings.Contains(errs, "--base is an option of the in-cluster build") {
		t.Errorf("--base without --build-in-cluster: exit %d, %s", code, errs)
	}
	// ... unless it comes from a FAIRING_* variable meant for fairing-builder
	t.Setenv("FAIRING_BASE", "r.example/b:1")
	if _, errs, code := runCLI(t, "run", "--dry-run", "--image", testImage); code != 0 {
		t.Errorf("FAIRING_BASE without --build-in-cluster: exit %d, %s", code, errs)
	}
}
