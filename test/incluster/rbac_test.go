package incluster

import (
	"context"
	"strings"
	"testing"

	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fairing-dev/fairing/internal/testenv"
)

// The build pod's rights come from deploy/rbac/fairing-build.yaml alone. Without its service account the
// user's command says what to apply before sending anything; with the account but without the Role the
// submit step names the missing right and nothing is submitted; with the shipped Role it works (as in every
// other test here, which applies nothing else). And the Role grants no more than it says: a table of
// requests the API server's authorizer must refuse.
func TestRBAC(t *testing.T) {
	e := need(t)
	t.Parallel()
	ns := e.namespace(t, false)
	dir := writeContext(t, map[string]string{"run.sh": script, "greeting.txt": "a least-privileged pod\n"})
	args := []string{"--build-context", dir, "--base", e.busybox, "--destination", e.registry + "/" + testenv.Repo(t), "--", "sh", "/app/run.sh"}

	// no service account: nothing is sent or created
	r := e.run(t, ns, nil, args...)
	if r.code != 2 || !strings.Contains(r.stderr, `service account "fairing-build" does not exist in namespace "`+ns+`"`) ||
		!strings.Contains(r.stderr, "deploy/rbac/fairing-build.yaml") || strings.Contains(r.stderr, "context:") {
		t.Fatalf("want a message naming the missing service account and the manifest, before the context is sent\n%s", r)
	}

	// the account without its Role: the submit step cannot create the Job and says so
	e.applyRBAC(t, ns, false)
	r = e.run(t, ns, nil, args...)
	if r.code != 2 || !strings.Contains(r.stderr, `not allowed to create jobs.batch in namespace "`+ns+`"`) ||
		!strings.Contains(r.stderr, "system:serviceaccount:"+ns+":fairing-build") || !strings.Contains(r.stderr, "the submit step failed") {
		t.Fatalf("want the submit step's RBAC message\n%s", r)
	}
	ctx := context.Background()
	if l, _ := e.cs.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: "fairing-deployer=job"}); len(l.Items) != 0 {
		t.Errorf("a workload was created without the rights to follow it")
	}

	// the shipped Role and RoleBinding, nothing else
	_, role, rb := rbacObjects(t)
	if _, err := e.cs.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cs.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r = e.run(t, ns, nil, args...)
	if r.code != 0 || !strings.Contains(r.stdout, "] hello from a least-privileged pod") {
		t.Fatalf("with the shipped Role: want the Job's output and exit code 0\n%s", r)
	}

	// least privilege: what the build pod's account may and may not do in its namespace and elsewhere
	sa := "system:serviceaccount:" + ns + ":fairing-build"
	checks := []struct {
		allowed          bool
		verb, group, res string
		sub, name, inNS  string
	}{
		{true, "create", "batch", "jobs", "", "", ns},
		{true, "delete", "batch", "jobs", "", "", ns},
		{true, "get", "", "pods", "log", "", ns},
		{true, "get", "", "serviceaccounts", "", "fairing-build", ns},
		{true, "get", "", "secrets", "", "fairing-registry", ns},
		{false, "get", "", "secrets", "", "other", ns},
		{false, "list", "", "secrets", "", "", ns},
		{false, "create", "", "secrets", "", "", ns},
		{false, "get", "", "serviceaccounts", "", "default", ns},
		{false, "create", "", "serviceaccounts", "", "", ns},
		{false, "create", "", "serviceaccounts", "token", "fairing-build", ns},
		{false, "create", "", "pods", "", "", ns},
		{false, "create", "", "pods", "exec", "", ns},
		{false, "update", "batch", "jobs", "", "", ns},
		{false, "patch", "batch", "jobs", "", "", ns},
		{false, "get", "", "configmaps", "", "", ns},
		{false, "create", "rbac.authorization.k8s.io", "rolebindings", "", "", ns},
		{false, "escalate", "rbac.authorization.k8s.io", "roles", "", "", ns},
		{false, "create", "batch", "jobs", "", "", "default"},
		{false, "list", "", "pods", "", "", "kube-system"},
		{false, "list", "", "nodes", "", "", ""},
	}
	for _, c := range checks {
		rev, err := e.cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User: sa, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
			ResourceAttributes: &authzv1.ResourceAttributes{Namespace: c.inNS, Verb: c.verb, Group: c.group, Resource: c.res, Subresource: c.sub, Name: c.name},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if rev.Status.Allowed != c.allowed {
			t.Errorf("%s %s.%s/%s %q in %q: allowed=%v, want %v (%s)", c.verb, c.res, c.group, c.sub, c.name, c.inNS, rev.Status.Allowed, c.allowed, rev.Status.Reason)
		}
	}
}
