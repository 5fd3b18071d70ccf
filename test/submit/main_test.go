// Package submit holds the end-to-end tests of fairing-submit against the real single-node cluster
// started by test/setup.d/50-kubernetes.sh (etcd, kube-apiserver with RBAC, controller-manager,
// scheduler, containerd + runc and a real kubelet). The tests run the fairing-submit binary.
//
// They skip in -short mode, skip without the cluster, and fail without it when FAIRING_TEST_REAL=1.
package submit

import (
	"bytes"
	"context"
	"flag"
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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/fairing-dev/fairing/internal/testenv"
)

var (
	bin        string // the fairing-submit binary under test
	kubeconfig string
	busybox    string
	registry   string
	cfg        *rest.Config
	cs         kubernetes.Interface
	dyn        dynamic.Interface
	setupErr   error
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "fairing-submit-e2e")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "fairing-submit")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/fairing-dev/fairing/cmd/fairing-submit").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build fairing-submit: %v\n%s", err, out)
		os.Exit(1)
	}
	kubeconfig, busybox, registry = os.Getenv("TEST_KUBECONFIG"), os.Getenv(testenv.EnvBusyboxBase), os.Getenv(testenv.EnvRegistry)
	if kubeconfig != "" {
		// the CRDs are installed while no test restarts the API server (testenv.OwnCluster)
		release, err := testenv.LockCluster(kubeconfig, false)
		if setupErr = err; err == nil {
			setupErr = setup()
			release()
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func setup() error {
	var err error
	if cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig); err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 200, 400
	if cs, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	if dyn, err = dynamic.NewForConfig(cfg); err != nil {
		return err
	}
	return installCRDs()
}

// installCRDs installs TFJob, PyTorchJob and InferenceService CRDs once per suite (the API server
// sleeps 2 s before the first create of a new CRD's objects).
func installCRDs() error {
	ctx := context.Background()
	crds := []struct{ group, kind, plural, version string }{
		{"kubeflow.org", "TFJob", "tfjobs", "v1"},
		{"kubeflow.org", "PyTorchJob", "pytorchjobs", "v1"},
		{"serving.kserve.io", "InferenceService", "inferenceservices", "v1beta1"},
	}
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	for _, c := range crds {
		preserve := map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "apiextensions.k8s.io/v1",
			"kind":       "CustomResourceDefinition",
			"metadata":   map[string]any{"name": c.plural + "." + c.group},
			"spec": map[string]any{
				"group": c.group, "scope": "Namespaced",
				"names": map[string]any{"kind": c.kind, "plural": c.plural, "singular": strings.ToLower(c.kind), "listKind": c.kind + "List"},
				"versions": []any{map[string]any{
					"name": c.version, "served": true, "storage": true,
					"subresources": map[string]any{"status": map[string]any{}},
					"schema": map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "properties": map[string]any{
						"spec": preserve, "status": preserve}}},
				}},
			},
		}}
		if _, err := dyn.Resource(gvr).Create(ctx, u, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("install CRD %s: %w", u.GetName(), err)
		}
	}
	// wait until discovery serves them all
	deadline := time.Now().Add(30 * time.Second)
	for _, c := range crds {
		for {
			l, err := cs.Discovery().ServerResourcesForGroupVersion(c.group + "/" + c.version)
			if err == nil && hasResource(l, c.plural) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("CRD %s.%s not served after 30s: %v", c.plural, c.group, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	time.Sleep(2 * time.Second) // the API server's deliberate delay for new CRDs
	return nil
}

func hasResource(l *metav1.APIResourceList, plural string) bool {
	for _, r := range l.APIResources {
		if r.Name == plural {
			return true
		}
	}
	return false
}

// needCluster skips (or, with FAIRING_TEST_REAL=1, fails) a test when the real cluster or the
// busybox base image (test/setup.d/20-bases.sh) is missing. The test holds the cluster shared until
// it ends: a test that restarts the API server (test/reliability) waits for it.
func needCluster(t *testing.T) {
	t.Helper()
	testenv.Need(t, "TEST_KUBECONFIG")
	testenv.BusyboxBase(t)
	if setupErr != nil {
		t.Fatalf("cluster setup: %v", setupErr)
	}
	testenv.ShareCluster(t)
}

var nsCounter struct {
	sync.Mutex
	n int
}

// namespace creates a fresh namespace for one test and waits for its default service account.
func namespace(t *testing.T) string {
	t.Helper()
	nsCounter.Lock()
	nsCounter.n++
	n := nsCounter.n
	nsCounter.Unlock()
	base := strings.ToLower(regexp.MustCompile(`[^a-zA-Z0-9]+`).ReplaceAllString(t.Name(), "-"))
	if len(base) > 40 {
		base = base[:40]
	}
	name := fmt.Sprintf("e2e-%s-%d-%04d", strings.Trim(base, "-"), n, rand.IntN(10000))
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		if os.Getenv("FAIRING_TEST_KEEP") == "1" {
			return
		}
		_ = cs.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	eventually(t, 30*time.Second, "default service account of "+name, func() bool {
		_, err := cs.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	})
	return name
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

// submit runs fairing-submit against the test cluster in namespace ns (admin credentials).
func submit(t *testing.T, ns string, args ...string) result {
	t.Helper()
	return submitAs(t, kubeconfig, ns, nil, args...)
}

func submitAs(t *testing.T, kc, ns string, env []string, args ...string) result {
	t.Helper()
	full := []string{args[0]}
	if kc != "" {
		full = append(full, "--kubeconfig", kc)
	}
	if ns != "" {
		full = append(full, "-n", ns)
	}
	full = append(full, args[1:]...)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, full...)
	cmd.Env = append(cleanEnv(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
	if ctx.Err() != nil {
		t.Fatalf("fairing-submit %v hung (killed after 3m)\n%s", full, r)
	}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run fairing-submit: %v", err)
	}
	return r
}

// cleanEnv is the environment without FAIRING_* flag variables and KUBECONFIG, so the outer
// environment cannot change what a test asks for.
func cleanEnv() []string {
	var out []string
	for _, e := range os.Environ() {
		if (strings.HasPrefix(e, "FAIRING_") && !strings.HasPrefix(e, "FAIRING_TEST_")) || strings.HasPrefix(e, "KUBECONFIG=") {
			continue
		}
		out = append(out, e)
	}
	return out
}

// createdName extracts the workload name from fairing-submit's "KIND/NAME created" line.
func createdName(t *testing.T, r result) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\w+/(\S+) created in namespace`).FindStringSubmatch(r.stderr)
	if m == nil {
		t.Fatalf("no 'created' line in the output\n%s", r)
	}
	return m[1]
}
