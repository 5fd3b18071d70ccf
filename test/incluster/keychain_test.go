package incluster

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fairing-dev/fairing/pkg/kubeauth"
)

// The build step's Kubernetes keychain, against the real API server, with the shipped service
// account and Role: the pull secret the Role names, attached to the account, gives its
// credentials (and is passed over while it does not exist); one the Role does not name is left
// out, and the error names the right that is missing; an account without the Role reads nothing.
func TestBuildStepKeychain(t *testing.T) {
	e := need(t)
	t.Parallel()
	ns := e.namespace(t, true)
	ctx := context.Background()
	const user, pass = "puller", "pw-for-the-keychain-test"
	cfg := fmt.Sprintf(`{"auths":{"reg.example.com":{"auth":%q}}}`, base64.StdEncoding.EncodeToString([]byte(user+":"+pass)))
	attach := func(sa string, secrets ...string) {
		t.Helper()
		a, err := e.cs.CoreV1().ServiceAccounts(ns).Get(ctx, sa, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		a.ImagePullSecrets = nil
		for _, s := range secrets {
			a.ImagePullSecrets = append(a.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
		}
		if _, err := e.cs.CoreV1().ServiceAccounts(ns).Update(ctx, a, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// resolve builds the keychain of account sa and says whom reg.example.com resolves to.
	resolve := func(sa string) (string, error) {
		t.Helper()
		exp := int64(600)
		tok, err := e.cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		kc, kerr := kubeauth.Keychain(ctx, kubeauth.Options{Server: e.cfg.Host, CAFile: e.cfg.TLSClientConfig.CAFile,
			Token: tok.Status.Token, Namespace: ns, ServiceAccount: sa})
		if kerr != nil && strings.Contains(kerr.Error(), tok.Status.Token) {
			t.Fatal("the token is in the error")
		}
		a, err := kc.Resolve(name.MustParseReference("reg.example.com/team/app:1").Context())
		if err != nil {
			t.Fatal(err)
		}
		if a == authn.Anonymous {
			return "", kerr
		}
		got, err := a.Authorization()
		if err != nil {
			t.Fatal(err)
		}
		if got.Username == user && got.Password != pass {
			t.Errorf("password %q, want the secret's", got.Password)
		}
		return got.Username, kerr
	}

	// attached, but not created yet: passed over
	attach("fairing-build", "fairing-registry")
	if who, err := resolve("fairing-build"); who != "" || err != nil {
		t.Fatalf("with the secret missing: resolved to %q, err %v; want anonymous, no error", who, err)
	}

	for _, n := range []string{"fairing-registry", "unlisted"} {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: n}, Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(cfg)}}
		if _, err := e.cs.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if who, err := resolve("fairing-build"); who != user || err != nil {
		t.Fatalf("resolved to %q, err %v; want %q", who, err, user)
	}

	// a pull secret the Role does not name, before the one it does
	attach("fairing-build", "unlisted", "fairing-registry")
	who, err := resolve("fairing-build")
	if who != user {
		t.Errorf("with an unreadable secret attached: resolved to %q, want %q from the readable one", who, user)
	}
	if err == nil || !strings.Contains(err.Error(), `read secret `+ns+`/unlisted for registry credentials: secrets "unlisted" is forbidden`) ||
		!strings.Contains(err.Error(), "system:serviceaccount:"+ns+":fairing-build") {
		t.Errorf("err = %v, want the refusal to read the unlisted secret", err)
	}

	// an account without the Role
	attach("default", "fairing-registry")
	who, err = resolve("default")
	if who != "" || err == nil || !strings.Contains(err.Error(), "forbidden") || !strings.Contains(err.Error(), "(403)") {
		t.Errorf("account without the Role: resolved to %q, err %v; want anonymous and forbidden", who, err)
	}
}
