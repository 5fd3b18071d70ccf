package submit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// A service account without rights gets a message that names the missing verb and points at the
// shipped Role; once the Role from deploy/rbac is bound, the same command runs the Job, follows its
// logs and cleans up.
func TestRBAC(t *testing.T) {
	needCluster(t)
	t.Parallel()
	ns := namespace(t)
	ctx := context.Background()
	sa, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "runner"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	exp := int64(3600)
	tok, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa.Name, &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s: %v", sa.Name, err)
	}
	kc := filepath.Join(t.TempDir(), "runner.kubeconfig")
	os.WriteFile(kc, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q, certificate-authority: %q}}]
users: [{name: runner, user: {token: %q}}]
contexts: [{name: c, context: {cluster: c, user: runner, namespace: %s}}]
current-context: c
`, cfg.Host, cfg.TLSClientConfig.CAFile, tok.Status.Token, ns)), 0o600)

	// no rights: the namespace comes from the kubeconfig context (as with kubectl)
	r := submitAs(t, kc, "", nil, "run", "--image", busybox, "--", "echo", "hi")
	if r.code != 2 {
		t.Fatalf("want exit code 2 without rights\n%s", r)
	}
	for _, w := range []string{`not allowed to create jobs.batch in namespace "` + ns + `"`, "deploy/rbac/fairing-submit.yaml",
		`system:serviceaccount:` + ns + `:runner`} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr lacks %q\n%s", w, r)
		}
	}
	if strings.Contains(r.stderr, tok.Status.Token) {
		t.Fatal("the token was printed")
	}

	// create alone is not enough to follow: the missing right is named and nothing is created
	bind := func(name string, rules []rbacv1.PolicyRule) {
		t.Helper()
		if _, err := cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa.Name, Namespace: ns}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	bind("create-only", []rbacv1.PolicyRule{{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"create"}}})
	r = submitAs(t, kc, "", nil, "run", "--image", busybox, "--", "echo", "hi")
	if r.code != 2 || !strings.Contains(r.stderr, `not allowed to list jobs.batch in namespace "`+ns+`"`) || !strings.Contains(r.stderr, "--detach") {
		t.Errorf("create-only: want the missing list right named\n%s", r)
	}
	if l, _ := cs.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{}); len(l.Items) != 0 {
		t.Errorf("a job was created although it could not be followed")
	}
	// --detach needs only create
	if d := submitAs(t, kc, "", nil, "run", "--detach", "--image", busybox, "--", "true"); d.code != 0 {
		t.Errorf("--detach with create only: %s", d)
	}

	// the shipped Role, bound to the service account
	b, err := os.ReadFile("../../deploy/rbac/fairing-submit.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.Role
	if err := yaml.UnmarshalStrict(b, &role); err != nil {
		t.Fatalf("deploy/rbac/fairing-submit.yaml: %v", err)
	}
	if _, err := cs.RbacV1().Roles(ns).Create(ctx, &role, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create the shipped role: %v", err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "fairing-submit"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa.Name, Namespace: ns}},
	}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r = submitAs(t, kc, "", nil, "run", "--image", busybox, "--", "echo", "hi with rights")
	if r.code != 0 || !strings.Contains(r.stdout, "] hi with rights") || !strings.Contains(r.stderr, "deleted (--cleanup on-success)") {
		t.Fatalf("with the shipped role: want exit 0, logs and cleanup\n%s", r)
	}
	// and every kind it names can be listed with it
	if l := submitAs(t, kc, "", nil, "list"); l.code != 0 {
		t.Errorf("list with the shipped role: %s", l)
	}
}

// The user "dev" of TEST_DEV_KUBECONFIG has no rights at all: list explains what is missing.
func TestRBACListForbidden(t *testing.T) {
	needCluster(t)
	t.Parallel()
	dev := os.Getenv("TEST_DEV_KUBECONFIG")
	if dev == "" {
		t.Fatal("TEST_DEV_KUBECONFIG unset")
	}
	ns := namespace(t)
	r := submitAs(t, dev, ns, nil, "list", "-d", "job")
	if r.code != 2 || !strings.Contains(r.stderr, `not allowed to list jobs.batch in namespace "`+ns+`"`) || !strings.Contains(r.stderr, `User "dev"`) {
		t.Errorf("want a clear RBAC message for user dev\n%s", r)
	}
}
