// Package kubeauth finds registry credentials where the kubelet finds them for image pulls: in
// the image pull secrets of a pod's service account. It reads them over the Kubernetes REST API
// with net/http alone. ggcr's authn/kubernetes does the same through client-go, whose package
// initialisation costs every fairing-builder run ~15 ms and ~18 MB before any work starts, in
// and out of a cluster alike.
package kubeauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
)

// saDir is where Kubernetes mounts a pod's service account token, CA and namespace.
const saDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// Options say which API server to ask, as whom, and about which service account.
type Options struct {
	// Server is the API server's URL (https://HOST:PORT).
	Server string
	// Token is a bearer token; CAFile the PEM file of the CA that signed the server's certificate.
	Token  string
	CAFile string
	// Namespace and ServiceAccount name the account whose image pull secrets are read; with
	// ServiceAccount empty only Secrets are.
	Namespace      string
	ServiceAccount string
	// Secrets are more pull secrets to read by name.
	Secrets []string
}

// InCluster gives the Options of the pod this runs in: the API server from
// KUBERNETES_SERVICE_HOST/PORT, the pod's token and CA, and the namespace and service account
// from POD_NAMESPACE and POD_SERVICE_ACCOUNT (set from the downward API; the namespace falls
// back to the mounted one). ok is false outside a pod.
func InCluster() (o Options, ok bool) { return inCluster(os.Getenv, saDir) }

func inCluster(getenv func(string) string, dir string) (o Options, ok bool) {
	host, port := getenv("KUBERNETES_SERVICE_HOST"), getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return Options{}, false
	}
	tok, err := os.ReadFile(filepath.Join(dir, "token"))
	if err != nil {
		return Options{}, false
	}
	o = Options{
		Server:         "https://" + net.JoinHostPort(host, port),
		Token:          strings.TrimSpace(string(tok)),
		CAFile:         filepath.Join(dir, "ca.crt"),
		Namespace:      getenv("POD_NAMESPACE"),
		ServiceAccount: getenv("POD_SERVICE_ACCOUNT"),
	}
	if o.Namespace == "" {
		if b, err := os.ReadFile(filepath.Join(dir, "namespace")); err == nil {
			o.Namespace = strings.TrimSpace(string(b))
		}
	}
	return o, true
}

// Keychain reads the pull secrets now and answers from them. A secret or service account that
// does not exist is passed over, as the kubelet does. One that cannot be read (no right to, or
// an API server that does not answer) is left out too, and named in the error that comes back
// with the keychain of the others; the keychain is nil only when no request could be made.
func Keychain(ctx context.Context, o Options) (authn.Keychain, error) {
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	c, err := newClient(o)
	if err != nil {
		return nil, err
	}
	var errs []error
	names := append([]string(nil), o.Secrets...)
	if o.ServiceAccount != "" {
		var sa struct {
			ImagePullSecrets []struct{ Name string } `json:"imagePullSecrets"`
		}
		if found, err := c.get(ctx, "serviceaccounts", o.ServiceAccount, &sa); err != nil {
			errs = append(errs, err)
		} else if found {
			for _, s := range sa.ImagePullSecrets {
				names = append(names, s.Name)
			}
		}
	}
	kr := keyring{}
	for _, n := range names {
		var s struct {
			Type string            `json:"type"`
			Data map[string][]byte `json:"data"` // base64 in JSON, decoded by encoding/json
		}
		found, err := c.get(ctx, "secrets", n, &s)
		if err == nil && found {
			err = kr.add(s.Type, s.Data)
			if err != nil {
				err = fmt.Errorf("secret %s/%s: %w", o.Namespace, n, err)
			}
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	kr.sort()
	return kr, errors.Join(errs...)
}

type client struct {
	http   *http.Client
	server *url.URL
	token  string
	ns     string
}

func newClient(o Options) (*client, error) {
	u, err := url.Parse(o.Server)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("kubernetes API server %q: not a URL", o.Server)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kubernetes API server CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kubernetes API server CA %s: no PEM certificate in it", o.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &client{http: &http.Client{Transport: tr, Timeout: 30 * time.Second}, server: u, token: o.Token, ns: o.Namespace}, nil
}

// get reads one object of the namespace into v; found is false when it does not exist.
func (c *client) get(ctx context.Context, resource, name string, v any) (found bool, err error) {
	u := c.server.JoinPath("api/v1/namespaces", c.ns, resource, name)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	what := fmt.Sprintf("read %s %s/%s for registry credentials", strings.TrimSuffix(resource, "s"), c.ns, name)
	resp, err := c.http.Do(req)
	if err != nil {
		return false, fmt.Errorf("%s: %w", what, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return false, fmt.Errorf("%s: %w", what, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return false, nil
	case resp.StatusCode != http.StatusOK:
		// a Status object says why (forbidden: which user lacks which right)
		var st struct{ Message string }
		if json.Unmarshal(body, &st) != nil || st.Message == "" {
			st.Message = http.StatusText(resp.StatusCode)
		}
		return false, fmt.Errorf("%s: %s (%d)", what, st.Message, resp.StatusCode)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return false, fmt.Errorf("%s: %w", what, err)
	}
	return true, nil
}

// keyring holds credentials by registry pattern: HOST[:PORT][/PATH], where each dot-separated
// label of HOST may be a glob (*.example.com), as in the kubelet's credential keyring.
type keyring []entry

type entry struct {
	host []string // labels
	port string
	path string
	cfg  authn.AuthConfig
	key  string
}

var errNoConfig = errors.New("holds neither .dockerconfigjson nor .dockercfg")

// add takes the registries of a kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg
// secret; other secrets are not pull secrets and are passed over.
func (kr *keyring) add(typ string, data map[string][]byte) error {
	var auths map[string]authn.AuthConfig
	switch typ {
	case "kubernetes.io/dockerconfigjson":
		var cfg struct{ Auths map[string]authn.AuthConfig }
		b, ok := data[".dockerconfigjson"]
		if !ok {
			return errNoConfig
		}
		if err := json.Unmarshal(b, &cfg); err != nil {
			return fmt.Errorf(".dockerconfigjson: %w", err)
		}
		auths = cfg.Auths
	case "kubernetes.io/dockercfg":
		b, ok := data[".dockercfg"]
		if !ok {
			return errNoConfig
		}
		if err := json.Unmarshal(b, &auths); err != nil {
			return fmt.Errorf(".dockercfg: %w", err)
		}
	default:
		return nil
	}
	for k, cfg := range auths {
		e, err := parseKey(k)
		if err != nil {
			return err
		}
		cfg.Auth = "" // decoded into Username and Password by AuthConfig's UnmarshalJSON
		e.cfg = cfg
		*kr = append(*kr, e)
	}
	return nil
}

// parseKey reads a docker config key: a bare host, a URL, or either with a path
// ("https://index.docker.io/v1/" is the host alone).
func parseKey(k string) (entry, error) {
	s := k
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return entry{}, fmt.Errorf("registry %q: not a host or URL", k)
	}
	p := strings.TrimSuffix(u.Path, "/")
	if strings.HasPrefix(p, "/v1") || strings.HasPrefix(p, "/v2") {
		p = p[3:]
	}
	h, port := splitHostPort(u.Host)
	return entry{host: strings.Split(h, "."), port: port, path: strings.TrimPrefix(p, "/"), key: u.Host + p}, nil
}

func splitHostPort(hp string) (host, port string) {
	if h, p, err := net.SplitHostPort(hp); err == nil {
		return h, p
	}
	return hp, ""
}

// sort puts the most specific patterns first, as the kubelet does: in reverse lexical order a
// key comes before the keys that are its prefixes, and a literal label before a glob ('*'
// sorts low).
func (kr keyring) sort() {
	sort.SliceStable(kr, func(i, j int) bool { return kr[i].key > kr[j].key })
}

func (e entry) matches(host, port, repo string) bool {
	labels := strings.Split(host, ".")
	if port != e.port || len(labels) != len(e.host) {
		return false
	}
	if e.path != "" && repo != e.path && !strings.HasPrefix(repo, e.path+"/") {
		return false
	}
	for i, l := range e.host {
		if ok, _ := path.Match(l, labels[i]); !ok {
			return false
		}
	}
	return true
}

// Resolve gives the credentials of the most specific pattern matching the target's registry
// (and repository), or Anonymous.
func (kr keyring) Resolve(target authn.Resource) (authn.Authenticator, error) {
	host, port := splitHostPort(target.RegistryStr())
	repo := strings.TrimPrefix(strings.TrimPrefix(target.String(), target.RegistryStr()), "/")
	for _, e := range kr {
		if e.matches(host, port, repo) {
			return authn.FromConfig(e.cfg), nil
		}
	}
	return authn.Anonymous, nil
}
