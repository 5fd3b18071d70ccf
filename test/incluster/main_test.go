// Package incluster holds the end-to-end tests of in-cluster builds (fairing-submit run
// --build-in-cluster) on the real single-node cluster of test/setup.d/50-kubernetes.sh (kube-apiserver
// with RBAC, controller-manager, scheduler, containerd + runc, a real kubelet) and the real registry.
// The build pods run our own images, built by `make images` in test/setup.d/40-images.sh; the user's
// command is the fairing-submit binary of this tree.
//
// The build pods use the node's network (the registry listens on the node's 127.0.0.1) and reach the API
// server at its loopback address (the test cluster has no Service networking).
//
// They skip in -short mode, skip without the real parts, and fail without them when FAIRING_TEST_REAL=1.
package incluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/fairing-dev/fairing/internal/testenv"
	"github.com/fairing-dev/fairing/pkg/incluster"
)

var (
	submitBin  = testenv.Binary{Package: "github.com/fairing-dev/fairing/cmd/fairing-submit"}
	builderBin = testenv.Binary{Package: "github.com/fairing-dev/fairing/cmd/fairing-builder"}
)

func TestMain(m *testing.M) {
	code := m.Run()
	submitBin.Remove()
	builderBin.Remove()
	os.Exit(code)
}

// env is what every test needs: the cluster, the registry and our images.
type env struct {
	kubeconfig     string
	cfg            *rest.Config
	cs             kubernetes.Interface
	registry       string
	busybox        string // the busybox base, on the registry
	builder, submt string // our images, by digest
}

var (
	setupOnce sync.Once
	setupEnv  *env
	setupErr  error
)

// need returns the environment, skipping (or failing with FAIRING_TEST_REAL=1) when a part is missing.
func need(t *testing.T) *env {
	t.Helper()
	kc := testenv.Need(t, "TEST_KUBECONFIG")
	reg := testenv.Registry(t)
	bb := testenv.BusyboxBase(t)
	b := testenv.Need(t, "FAIRING_TEST_BUILDER_IMAGE")
	s := testenv.Need(t, "FAIRING_TEST_SUBMIT_IMAGE")
	setupOnce.Do(func() {
		e := &env{kubeconfig: kc, registry: reg, busybox: bb, builder: b, submt: s}
		if e.cfg, setupErr = clientcmd.BuildConfigFromFlags("", kc); setupErr != nil {
			return
		}
		e.cfg.QPS, e.cfg.Burst = 200, 400
		if e.cs, setupErr = kubernetes.NewForConfig(e.cfg); setupErr != nil {
			return
		}
		setupEnv = e
	})
	if setupErr != nil {
		t.Fatalf("cluster setup: %v", setupErr)
	}
	// held until the test ends: a test that restarts the API server (test/reliability) waits for it
	testenv.ShareCluster(t)
	return setupEnv
}

// namespace creates a fresh namespace for one test, waits for its default service account and, with
// rbac, applies the shipped deploy/rbac/fairing-build.yaml (nothing else) in it.
func (e *env) namespace(t *testing.T, rbac bool) string {
	t.Helper()
	base := strings.Trim(regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(base) > 40 {
		base = strings.Trim(base[:40], "-")
	}
	ns := fmt.Sprintf("ib-%s-%04d", base, rand.IntN(10000))
	ctx := context.Background()
	if _, err := e.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		if os.Getenv("FAIRING_TEST_KEEP") != "1" {
			_ = e.cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
		}
	})
	eventually(t, 30*time.Second, "default service account of "+ns, func() bool {
		_, err := e.cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	})
	if rbac {
		e.applyRBAC(t, ns, true)
	}
	return ns
}

// rbacObjects reads the shipped manifest (strictly: a typo in it fails here).
func rbacObjects(t *testing.T) (*corev1.ServiceAccount, *rbacv1.Role, *rbacv1.RoleBinding) {
	t.Helper()
	b, err := os.ReadFile("../../" + incluster.RBACHint)
	if err != nil {
		t.Fatal(err)
	}
	docs := regexp.MustCompile(`(?m)^---$`).Split(string(b), -1)
	if len(docs) != 3 {
		t.Fatalf("%s: want 3 documents (ServiceAccount, Role, RoleBinding), got %d", incluster.RBACHint, len(docs))
	}
	var sa corev1.ServiceAccount
	var role rbacv1.Role
	var rb rbacv1.RoleBinding
	for i, into := range []any{&sa, &role, &rb} {
		if err := yaml.UnmarshalStrict([]byte(docs[i]), into); err != nil {
			t.Fatalf("%s document %d: %v", incluster.RBACHint, i+1, err)
		}
	}
	if sa.Kind != "ServiceAccount" || role.Kind != "Role" || rb.Kind != "RoleBinding" {
		t.Fatalf("%s: want ServiceAccount, Role, RoleBinding; got %s, %s, %s", incluster.RBACHint, sa.Kind, role.Kind, rb.Kind)
	}
	return &sa, &role, &rb
}

// applyRBAC creates the shipped service account, and with bind its Role and RoleBinding, in ns.
func (e *env) applyRBAC(t *testing.T, ns string, bind bool) {
	t.Helper()
	ctx := context.Background()
	sa, role, rb := rbacObjects(t)
	if _, err := e.cs.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create the shipped service account: %v", err)
	}
	if !bind {
		return
	}
	if _, err := e.cs.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create the shipped role: %v", err)
	}
	if _, err := e.cs.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create the shipped role binding: %v", err)
	}
}

func eventually(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type result struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("exit %d after %s\n--- stdout:\n%s--- stderr:\n%s", r.code, r.took.Round(time.Millisecond), r.stdout, r.stderr)
}

// run is the user's command: fairing-submit run --build-in-cluster with the options every test needs
// (our images, the node's network and the API server's loopback address for the build pod), then args.
func (e *env) run(t *testing.T, ns string, extraEnv []string, args ...string) result {
	t.Helper()
	full := []string{"run", "--kubeconfig", e.kubeconfig, "-n", ns, "--build-in-cluster",
		"--builder-image", e.builder, "--submit-image", e.submt, "--build-host-network", "--build-api-server", e.cfg.Host,
		"--cache-dir", filepath.Join(t.TempDir(), "cache")}
	full = append(full, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, submitBin.Path(t), full...)
	cmd.Env = append(cleanEnv(), extraEnv...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
	if ctx.Err() != nil {
		t.Fatalf("fairing-submit %v hung (killed after 4m)\n%s", full, r)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run fairing-submit: %v", err)
	}
	t.Logf("fairing-submit run --build-in-cluster %s: exit %d in %s", strings.Join(args, " "), r.code, r.took.Round(time.Millisecond))
	if os.Getenv("FAIRING_TEST_SHOW") == "1" { // what the user saw
		t.Logf("%s", r)
	}
	return r
}

// cleanEnv is the environment without FAIRING_* flag variables, KUBECONFIG and DOCKER_CONFIG.
func cleanEnv() []string {
	var out []string
	for _, e := range os.Environ() {
		if (strings.HasPrefix(e, "FAIRING_") && !strings.HasPrefix(e, "FAIRING_TEST_")) || strings.HasPrefix(e, "KUBECONFIG=") || strings.HasPrefix(e, "DOCKER_CONFIG=") {
			continue
		}
		out = append(out, e)
	}
	return out
}

// jsonResult decodes the -o json result of a run.
func jsonResult(t *testing.T, r result) incluster.Result {
	t.Helper()
	var res incluster.Result
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("-o json: %v\n%s", err, r)
	}
	return res
}

// writeContext writes files (name → content) into a fresh folder.
func writeContext(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for n, c := range files {
		p := filepath.Join(dir, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }

func errorsAs(err error, target any) bool { return errors.As(err, target) }

// lastField is what follows the last sep in s.
func lastField(s, sep string) string { return s[strings.LastIndex(s, sep)+len(sep):] }
