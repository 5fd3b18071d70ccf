package incluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fairing-dev/fairing/internal/testenv"
)

// A registry that wants credentials: the build step pushes with the user's own credentials, copied into a
// Secret only when asked (--create-registry-secret) and mounted as the build step's Docker config, never
// written into the Job or printed. Without them the build fails with the registry's refusal.
func TestRegistrySecret(t *testing.T) {
	e := need(t)
	t.Parallel()
	ns := e.namespace(t, true)
	const user, pass = "builder", "s3cret-for-the-test"
	p := testenv.NewProxy(t, e.registry)
	// every client but the node's containerd (which pulls the workload's image) must log in
	p.SetHook(func(w http.ResponseWriter, r *http.Request, _ testenv.Request) bool {
		if strings.HasPrefix(r.UserAgent(), "containerd/") {
			return false
		}
		if u, pw, ok := r.BasicAuth(); ok && u == user && pw == pass {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="fairing-test"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
		return true
	})
	docker := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, p.Addr(), auth)
	if err := os.WriteFile(filepath.Join(docker, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	withCreds := []string{"DOCKER_CONFIG=" + docker}
	dir := writeContext(t, map[string]string{"run.sh": script, "greeting.txt": "a private registry\n"})
	args := []string{"--build-context", dir, "--base", p.Addr() + strings.TrimPrefix(e.busybox, e.registry),
		"--destination", p.Addr() + "/" + testenv.Repo(t), "--cleanup", "never", "-o", "json", "--", "sh", "/app/run.sh"}

	// the context is sent with the local credentials, but the build pod has none
	r := e.run(t, ns, withCreds, args...)
	if r.code != 2 || !strings.Contains(r.stderr, "BuildFailed") || !strings.Contains(strings.ToLower(r.stderr), "unauthorized") {
		t.Fatalf("without credentials in the cluster: want the build to fail with the registry's refusal\n%s", r)
	}

	r = e.run(t, ns, withCreds, append([]string{"--create-registry-secret"}, args...)...)
	if r.code != 0 || !strings.Contains(r.stderr, "] hello from a private registry") {
		t.Fatalf("with --create-registry-secret: want the Job's output and exit code 0\n%s", r)
	}
	for _, s := range []string{pass, auth} {
		if strings.Contains(r.stdout+r.stderr, s) {
			t.Fatal("the credentials were printed")
		}
	}
	res := jsonResult(t, r)
	ctx := context.Background()
	job, err := e.cs.BatchV1().Jobs(ns).Get(ctx, res.Build.Job, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := json.Marshal(job)
	if strings.Contains(string(spec), pass) || strings.Contains(string(spec), auth) {
		t.Fatalf("the credentials are in the Job:\n%s", spec)
	}
	secretName := ""
	for _, v := range job.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			secretName = v.Secret.SecretName
		}
	}
	if secretName == "" {
		t.Fatalf("the build pod mounts no secret:\n%s", spec)
	}
	sec, err := e.cs.CoreV1().Secrets(ns).Get(ctx, secretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var dc struct {
		Auths map[string]struct{ Auth, Username, Password string }
	}
	if err := json.Unmarshal(sec.Data[corev1.DockerConfigJsonKey], &dc); err != nil || sec.Type != corev1.SecretTypeDockerConfigJson {
		t.Fatalf("secret %s: type %s, %v", secretName, sec.Type, err)
	}
	if a := dc.Auths[p.Addr()]; a.Auth != auth || len(dc.Auths) != 1 {
		t.Errorf("secret %s holds %v, want only the credentials of %s", secretName, dc.Auths, p.Addr())
	}
	if len(sec.OwnerReferences) != 1 || sec.OwnerReferences[0].UID != job.UID {
		t.Errorf("secret %s is not owned by the build Job (%v): it would outlive it", secretName, sec.OwnerReferences)
	}
}
