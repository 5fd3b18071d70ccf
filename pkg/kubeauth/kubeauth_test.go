package kubeauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// apiServer answers GETs of service accounts and secrets in namespace "ns" for token "t0k".
func apiServer(t *testing.T, objects map[string]any) Options {
	t.Helper()
	s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer t0k" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"kind":"Status","message":"Unauthorized"}`)
			return
		}
		o, ok := objects[strings.TrimPrefix(r.URL.Path, "/api/v1/namespaces/ns/")]
		switch {
		case !ok:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"kind":"Status","message":"not found"}`)
		case o == http.StatusForbidden:
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, `{"kind":"Status","message":"secrets \"x\" is forbidden: User \"system:serviceaccount:ns:b\" cannot get resource \"secrets\""}`)
		default:
			json.NewEncoder(w).Encode(o)
		}
	}))
	t.Cleanup(s.Close)
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return Options{Server: s.URL, Token: "t0k", CAFile: ca, Namespace: "ns", ServiceAccount: "builder"}
}

func dockerConfigJSON(auths map[string]string) map[string]any {
	a := map[string]any{}
	for reg, userpass := range auths {
		a[reg] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(userpass))}
	}
	b, _ := json.Marshal(map[string]any{"auths": a})
	return map[string]any{"type": "kubernetes.io/dockerconfigjson", "data": map[string][]byte{".dockerconfigjson": b}}
}

func TestKeychainResolves(t *testing.T) {
	legacy, _ := json.Marshal(map[string]any{"old.example.org": map[string]string{"username": "old", "password": "pw-old"}})
	opts := apiServer(t, map[string]any{
		"serviceaccounts/builder": map[string]any{"imagePullSecrets": []map[string]string{{"name": "team"}, {"name": "gone"}, {"name": "legacy"}, {"name": "opaque"}}},
		"secrets/team": dockerConfigJSON(map[string]string{
			"*.example.com":                 "glob:pw-glob",
			"reg.example.com":               "host:pw-host",
			"reg.example.com/team":          "team:pw-team",
			"https://index.docker.io/v1/":   "hub:pw-hub",
			"http://127.0.0.1:5000":         "local:pw-local",
			"https://reg.example.com/v2/ml": "ml:pw-ml",
		}),
		"secrets/legacy": map[string]any{"type": "kubernetes.io/dockercfg", "data": map[string][]byte{".dockercfg": legacy}},
		"secrets/opaque": map[string]any{"type": "Opaque", "data": map[string][]byte{"x": []byte("y")}},
		"secrets/extra":  dockerConfigJSON(map[string]string{"extra.example.net": "extra:pw-extra"}),
	})
	opts.Secrets = []string{"extra"}
	kc, err := Keychain(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		repo, want string // want "user:password", or "" for anonymous
	}{
		{"reg.example.com/app", "host:pw-host"},
		{"reg.example.com/team/app", "team:pw-team"},
		{"reg.example.com/teamx/app", "host:pw-host"}, // a path matches whole segments
		{"reg.example.com/ml/app", "ml:pw-ml"},
		{"other.example.com/app", "glob:pw-glob"},
		{"a.b.example.com/app", ""}, // a glob label matches one label
		{"example.com/app", ""},
		{"index.docker.io/library/busybox", "hub:pw-hub"},
		{"busybox", "hub:pw-hub"},
		{"127.0.0.1:5000/x", "local:pw-local"},
		{"127.0.0.1:5001/x", ""}, // the port must match
		{"old.example.org/x", "old:pw-old"},
		{"extra.example.net/x", "extra:pw-extra"},
		{"elsewhere.io/x", ""},
	} {
		t.Run(tc.repo, func(t *testing.T) {
			repo, err := name.NewRepository(tc.repo)
			if err != nil {
				t.Fatal(err)
			}
			a, err := kc.Resolve(repo)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if a != authn.Anonymous {
					t.Errorf("want anonymous, got %v", a)
				}
				return
			}
			cfg, err := a.Authorization()
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Username + ":" + cfg.Password; got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// What cannot be read is named in the error; the keychain still answers from the rest.
func TestKeychainErrors(t *testing.T) {
	ctx := context.Background()
	readable := dockerConfigJSON(map[string]string{"reg.example.com": "ok:pw-ok"})
	for _, tc := range []struct {
		name    string
		objects map[string]any
		edit    func(*Options)
		want    string // "" for no error
		user    string // whom reg.example.com resolves to ("" anonymous)
	}{
		{name: "no service account, no secrets: an empty keychain", objects: map[string]any{}},
		{name: "a forbidden secret is left out", objects: map[string]any{
			"serviceaccounts/builder": map[string]any{"imagePullSecrets": []map[string]string{{"name": "x"}, {"name": "ok"}}},
			"secrets/x":               http.StatusForbidden,
			"secrets/ok":              readable,
		}, want: `read secret ns/x for registry credentials: secrets "x" is forbidden: User "system:serviceaccount:ns:b" cannot get resource "secrets" (403)`, user: "ok"},
		{name: "the service account forbidden, a named secret still read", objects: map[string]any{
			"serviceaccounts/builder": http.StatusForbidden,
			"secrets/ok":              readable,
		}, edit: func(o *Options) { o.Secrets = []string{"ok"} }, want: "read serviceaccount ns/builder for registry credentials", user: "ok"},
		{name: "wrong token", objects: map[string]any{}, edit: func(o *Options) { o.Token = "bad" }, want: "read serviceaccount ns/builder for registry credentials: Unauthorized (401)"},
		{name: "malformed config", objects: map[string]any{
			"serviceaccounts/builder": map[string]any{"imagePullSecrets": []map[string]string{{"name": "x"}, {"name": "ok"}}},
			"secrets/x":               map[string]any{"type": "kubernetes.io/dockerconfigjson", "data": map[string][]byte{".dockerconfigjson": []byte("{")}},
			"secrets/ok":              readable,
		}, want: "secret ns/x: .dockerconfigjson: unexpected end of JSON input", user: "ok"},
		{name: "untrusted server", objects: map[string]any{}, edit: func(o *Options) { o.CAFile = "" }, want: "certificate signed by unknown authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := apiServer(t, tc.objects)
			if tc.edit != nil {
				tc.edit(&o)
			}
			kc, err := Keychain(ctx, o)
			switch {
			case tc.want == "" && err != nil:
				t.Fatal(err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			case err != nil && strings.Contains(err.Error(), o.Token):
				t.Error("the token is in the error")
			}
			a, err := kc.Resolve(name.MustParseReference("reg.example.com/x").Context())
			if err != nil {
				t.Fatal(err)
			}
			user := ""
			if a != authn.Anonymous {
				cfg, _ := a.Authorization()
				user = cfg.Username
			}
			if user != tc.user {
				t.Errorf("reg.example.com resolved to %q, want %q", user, tc.user)
			}
		})
	}
}

func TestInCluster(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "token"), []byte("t0k\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "namespace"), []byte("mounted-ns"), 0o600)
	for _, tc := range []struct {
		name string
		env  map[string]string
		dir  string
		want Options
		ok   bool
	}{
		{name: "outside a pod", env: map[string]string{}, dir: dir},
		{name: "no token mounted", env: map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}, dir: t.TempDir()},
		{name: "downward API", env: map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443", "POD_NAMESPACE": "ns", "POD_SERVICE_ACCOUNT": "sa"}, dir: dir, ok: true,
			want: Options{Server: "https://10.0.0.1:443", Token: "t0k", CAFile: filepath.Join(dir, "ca.crt"), Namespace: "ns", ServiceAccount: "sa"}},
		{name: "IPv6, mounted namespace", env: map[string]string{"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"}, dir: dir, ok: true,
			want: Options{Server: "https://[fd00::1]:6443", Token: "t0k", CAFile: filepath.Join(dir, "ca.crt"), Namespace: "mounted-ns"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, ok := inCluster(func(k string) string { return tc.env[k] }, tc.dir)
			if ok != tc.ok || fmt.Sprint(o) != fmt.Sprint(tc.want) {
				t.Errorf("got %+v, %v; want %+v, %v", o, ok, tc.want, tc.ok)
			}
		})
	}
}
