package kube

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

const kubeconfig = `apiVersion: v1
kind: Config
clusters:
- {name: c, cluster: {server: "https://127.0.0.1:6443"}}
users:
- {name: u, user: {token: t}}
contexts:
- {name: with-ns, context: {cluster: c, user: u, namespace: team-a}}
- {name: without-ns, context: {cluster: c, user: u}}
current-context: with-ns
`

// The namespace is resolved like kubectl: --namespace, then the context's, then default.
func TestNamespaceResolution(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(kc, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", "")
	tests := []struct {
		o    Options
		want string
	}{
		{Options{Kubeconfig: kc}, "team-a"},
		{Options{Kubeconfig: kc, Namespace: "explicit"}, "explicit"},
		{Options{Kubeconfig: kc, Context: "without-ns"}, "default"},
		{Options{Kubeconfig: kc, Context: "without-ns", Namespace: "x"}, "x"},
	}
	for _, tc := range tests {
		cfg, ns, err := Load(tc.o)
		if err != nil || ns != tc.want {
			t.Errorf("%+v: namespace %q, %v; want %q", tc.o, ns, err, tc.want)
		}
		if err == nil && (cfg.Host != "https://127.0.0.1:6443" || cfg.QPS < 50) {
			t.Errorf("config %s qps %v", cfg.Host, cfg.QPS)
		}
	}
	if _, _, err := Load(Options{Kubeconfig: kc, Context: "nope"}); err == nil {
		t.Error("unknown context accepted")
	}
}

func TestExplain(t *testing.T) {
	gr := schema.GroupResource{Group: "batch", Resource: "jobs"}
	forbidden := apierrors.NewForbidden(gr, "", errors.New(`User "dev" cannot create resource "jobs"`))
	nsMissing := apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "ghost")
	exists := apierrors.NewAlreadyExists(gr, "train")
	tests := []struct {
		err  error
		want []string
	}{
		{forbidden, []string{`not allowed to create jobs.batch in namespace "ns"`, RBACHint, `User "dev"`}},
		{nsMissing, []string{`namespace "ghost" does not exist`, "kubectl create namespace ghost"}},
		{exists, []string{`jobs.batch "train" already exists`, "fairing-submit delete train"}},
		{apierrors.NewUnauthorized("no"), []string{"rejected the credentials"}},
		{errors.New("dial tcp: refused"), []string{`create jobs.batch in namespace "ns": dial tcp: refused`}},
	}
	for _, tc := range tests {
		got := Explain(tc.err, "create", gr, "ns")
		for _, w := range tc.want {
			if !strings.Contains(got.Error(), w) {
				t.Errorf("Explain(%v) = %q, lacks %q", tc.err, got, w)
			}
		}
		if !errors.Is(got, tc.err) {
			t.Errorf("Explain(%v) lost the cause", tc.err)
		}
	}
	if Explain(nil, "create", gr, "ns") != nil {
		t.Error("Explain(nil) != nil")
	}
}

func TestCheckServed(t *testing.T) {
	cs := fake.NewClientset()
	d := cs.Discovery().(*fakediscovery.FakeDiscovery)
	d.Resources = []*metav1.APIResourceList{{GroupVersion: "kubeflow.org/v1", APIResources: []metav1.APIResource{{Name: "tfjobs"}}}}
	tf := schema.GroupVersionResource{Group: "kubeflow.org", Version: "v1", Resource: "tfjobs"}
	if err := CheckServed(d, tf, "TFJob", "install it"); err != nil {
		t.Errorf("served CRD: %v", err)
	}
	var missing *MissingAPIError
	err := CheckServed(d, schema.GroupVersionResource{Group: "kubeflow.org", Version: "v1", Resource: "pytorchjobs"}, "PyTorchJob", "install the Training Operator")
	if !errors.As(err, &missing) || !strings.Contains(err.Error(), "does not serve PyTorchJob (kubeflow.org/v1)") || !strings.Contains(err.Error(), "install the Training Operator") {
		t.Errorf("missing resource: %v", err)
	}
	err = CheckServed(d, schema.GroupVersionResource{Group: "serving.kserve.io", Version: "v1beta1", Resource: "inferenceservices"}, "InferenceService", "install KServe")
	if !errors.As(err, &missing) || !strings.Contains(err.Error(), "install KServe") {
		t.Errorf("missing group: %v", err)
	}
}

// MissingNamespace tells a missing namespace from a missing object; when it cannot tell (no right
// to read namespaces, another error) it says nothing and the caller's own message stands.
func TestMissingNamespace(t *testing.T) {
	tests := []struct {
		name    string
		objs    []runtime.Object
		reactor func(k8stesting.Action) (bool, runtime.Object, error)
		want    []string // nil: no error
	}{
		{name: "missing", want: []string{`namespace "team-b" does not exist`, "kubectl create namespace team-b", "--namespace"}},
		{name: "present", objs: []runtime.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-b"}}}},
		{name: "forbidden", reactor: func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "namespaces"}, "team-b", errors.New(`User "dev" cannot get namespaces`))
		}},
		{name: "unreachable", reactor: func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, errors.New("dial tcp 127.0.0.1:6443: connection refused")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset(tc.objs...)
			if tc.reactor != nil {
				cs.PrependReactor("get", "namespaces", tc.reactor)
			}
			err := MissingNamespace(context.Background(), &Clients{Typed: cs}, "team-b")
			if tc.want == nil {
				if err != nil {
					t.Fatalf("error %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("nil, want the missing namespace reported")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if !apierrors.IsNotFound(err) {
				t.Errorf("error %v: the NotFound cause is lost", err)
			}
		})
	}
}
