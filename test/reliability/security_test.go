package reliability_test

import (
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/fairing-dev/fairing/internal/testenv"
)

// Environment variables exported by test/setup.d/25-registry-secure.sh.
const (
	envAuthRegistry = "FAIRING_TEST_AUTH_REGISTRY"
	envAuthUser     = "FAIRING_TEST_AUTH_USER"
	envAuthPassword = "FAIRING_TEST_AUTH_PASSWORD"
	envTLSRegistry  = "FAIRING_TEST_TLS_REGISTRY"
	envTLSCA        = "FAIRING_TEST_TLS_CA"
)

// dockerConfig writes a Docker config dir whose config.json holds auths (registry → user:password
// as Docker stores it, base64) and credHelpers, and returns the dir for DOCKER_CONFIG.
func dockerConfig(t *testing.T, auths map[string][2]string, helpers map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := map[string]any{}
	a := map[string]any{}
	for reg, up := range auths {
		a[reg] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(up[0] + ":" + up[1]))}
	}
	cfg["auths"] = a
	if len(helpers) > 0 {
		cfg["credHelpers"] = helpers
	}
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// secrets are the forms a password can leak in.
func secrets(user, password string) map[string]string {
	return map[string]string{
		"password":                 password,
		"base64(user:password)":    base64.StdEncoding.EncodeToString([]byte(user + ":" + password)),
		"base64(password)":         base64.StdEncoding.EncodeToString([]byte(password)),
		"base64url(user:password)": base64.URLEncoding.EncodeToString([]byte(user + ":" + password)),
	}
}

// leaks reports which secrets data holds, and where.
func leaks(where string, data []byte, secret map[string]string) []string {
	var out []string
	for what, s := range secret {
		if bytes.Contains(data, []byte(s)) {
			out = append(out, fmt.Sprintf("%s in %s", what, where))
		}
	}
	// gzip streams (cached and pushed layers): look inside too
	if bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
		if zr, err := gzip.NewReader(bytes.NewReader(data)); err == nil {
			if plain, err := io.ReadAll(zr); err == nil {
				out = append(out, leaks(where+" (decompressed)", plain, secret)...)
			}
		}
	}
	return out
}

// leaksInTree looks at every file under dir.
func leaksInTree(t *testing.T, dir string, secret map[string]string) (found []string, files int) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files++
		found = append(found, leaks(p, b, secret)...)
		return nil
	})
	return found, files
}

// TestCredentialsNeverLeak pushes to a registry that requires htpasswd auth, with credentials
// from a Docker config (DOCKER_CONFIG) and from a credential helper, and greps everything the
// build produced for the password in every encoding: stdout and stderr (--verbose), the
// metadata, digest and name files, an OCI layout and a tarball written alongside, the cache
// dir, and the pushed manifest, config and layers. Wrong or missing credentials give the 401
// explanation, which holds no secret either.
func TestCredentialsNeverLeak(t *testing.T) {
	needBinary(t)
	reg := testenv.Need(t, envAuthRegistry)
	user, password := testenv.Need(t, envAuthUser), testenv.Need(t, envAuthPassword)
	secret := secrets(user, password)
	out := t.TempDir()
	ctxDir := project(t, 31, 20, 0, 0)
	cache := t.TempDir()
	base := testenv.BusyboxBase(t)

	// A credential helper, as Docker's config names it (docker-credential-NAME on PATH).
	helperPass := "helper-" + password[:12]
	secret["helper secret"] = helperPass
	bin := t.TempDir()
	helper := fmt.Sprintf("#!/bin/sh\ncat >/dev/null\nprintf '{\"ServerURL\":\"%s\",\"Username\":\"%s\",\"Secret\":\"%s\"}'\n", reg, user, password)
	if err := os.WriteFile(filepath.Join(bin, "docker-credential-fairingtest"), []byte(helper), 0o755); err != nil {
		t.Fatal(err)
	}
	pathEnv := "PATH=" + bin + ":" + os.Getenv("PATH")

	var everything []string
	check := func(what string, data []byte) {
		everything = append(everything, leaks(what, data, secret)...)
	}
	for i, creds := range []credentialCase{
		{"auths in config.json", []string{"DOCKER_CONFIG=" + dockerConfig(t, map[string][2]string{reg: {user, password}}, nil)}},
		{"credential helper", []string{"DOCKER_CONFIG=" + dockerConfig(t, nil, map[string]string{reg: "fairingtest"}), pathEnv}},
	} {
		dest := fmt.Sprintf("%s/%s:v%d", reg, testenv.Repo(t), i)
		files := filepath.Join(out, fmt.Sprint(i))
		os.MkdirAll(files, 0o755)
		r := run(t, runOpts{env: creds.env}, "--context", ctxDir, "--base", base, "--cache-dir", cache, "--verbose",
			"--destination", dest, "--destination", "oci:"+filepath.Join(files, "layout")+":v1", "--destination", "tar:"+filepath.Join(files, "image.tar"),
			"--digest-file", filepath.Join(files, "digest"), "--image-name-with-digest-file", filepath.Join(files, "name"))
		if r.Code != 0 {
			t.Fatalf("%s: push with credentials:\n%s", creds.name, r)
		}
		check(creds.name+": stdout", []byte(r.Stdout))
		check(creds.name+": stderr", []byte(r.Stderr))
		check(creds.name+": metadata file", r.MetaRaw)
		jr := run(t, runOpts{env: creds.env}, "--context", ctxDir, "--base", base, "--cache-dir", cache, "--destination", dest, "--json")
		if jr.Code != 0 {
			t.Fatalf("--json:\n%s", jr)
		}
		check(creds.name+": --json stdout", []byte(jr.Stdout))

		// What the registry holds.
		img := image(t, dest, remote.WithAuth(&authn.Basic{Username: user, Password: password}))
		m, _ := img.RawManifest()
		c, _ := img.RawConfigFile()
		check(dest+" manifest", m)
		check(dest+" config", c)
		layers, _ := img.Layers()
		for _, l := range layers {
			rc, err := l.Uncompressed()
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(rc)
			rc.Close()
			d, _ := l.Digest()
			check(dest+" layer "+d.String(), b)
		}
	}
	found, n := leaksInTree(t, cache, secret)
	everything = append(everything, found...)
	found, m := leaksInTree(t, out, secret)
	everything = append(everything, found...)
	t.Logf("looked through stdout, stderr, metadata, 2 pushed images, and %d files in the cache and %d written outputs", n, m)
	if m < 6 || n < 3 {
		t.Errorf("only %d output files and %d cache files: the grep looked at too little", m, n)
	}

	// Wrong and missing credentials.
	for _, tc := range badCredentials(t, reg, user, password, secret) {
		dest := reg + "/" + testenv.Repo(t) + ":v1"
		line := mustFail(t, runOpts{env: tc.env}, []string{"push:", "the registry refused the credentials (401 Unauthorized)", "docker login"},
			"--context", ctxDir, "--base", base, "--cache-dir", cache, "--destination", dest, "--verbose")
		t.Logf("%s: %s", tc.name, line)
		check(tc.name+": message", []byte(line))
		if present, _ := tagState(t, dest, remote.WithAuth(&authn.Basic{Username: user, Password: password})); present {
			t.Errorf("%s: %s was pushed", tc.name, dest)
		}
	}
	for _, l := range everything {
		t.Errorf("credential leaked: %s", l)
	}
}

// TestTLSVerifiedByDefault: a registry whose certificate no system root signs is refused,
// with the message saying what to do; --registry-ca with its CA, or --insecure-registry naming
// it (host:port or host), makes the push work. Naming another host insecure, or trusting a CA,
// never waives the check that the certificate is for this host.
func TestTLSVerifiedByDefault(t *testing.T) {
	needBinary(t)
	reg := testenv.Need(t, envTLSRegistry)
	ca := testenv.Need(t, envTLSCA)
	_, port, _ := net.SplitHostPort(reg)
	ctxDir := project(t, 41, 10, 0, 0)
	args := []string{"--context", ctxDir, "--cache-dir", t.TempDir()}
	pool := x509.NewCertPool()
	if pem, err := os.ReadFile(ca); err != nil || !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("CA %s: %v", ca, err)
	}
	trusting := remote.WithTransport(&http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}})

	dest := reg + "/" + testenv.Repo(t) + ":v1"
	t.Log(mustFail(t, runOpts{}, []string{"the registry's TLS certificate is not trusted: pass its CA with --registry-ca, or --insecure-registry HOST", "certificate signed by unknown authority"},
		append(args, "--destination", dest)...))
	if present, _ := tagState(t, dest, trusting); present {
		t.Errorf("%s pushed over an unverified connection", dest)
	}

	for i, tc := range []struct {
		name  string
		flags []string
		host  string
	}{
		{"--registry-ca", []string{"--registry-ca", ca}, "127.0.0.1"},
		{"--insecure-registry host:port", []string{"--insecure-registry", reg}, "127.0.0.1"},
		{"--insecure-registry host", []string{"--insecure-registry", "127.0.0.1"}, "127.0.0.1"},
		{"--insecure-registry by name", []string{"--insecure-registry", "localhost:" + port}, "localhost"},
		{"env FAIRING_REGISTRY_CA", nil, "127.0.0.1"},
	} {
		dest := fmt.Sprintf("%s:%s/%s:v%d", tc.host, port, testenv.Repo(t), i)
		o := runOpts{}
		if tc.flags == nil {
			o.env = []string{"FAIRING_REGISTRY_CA=" + ca}
		}
		r := run(t, o, append(append(args, tc.flags...), "--destination", dest)...)
		if r.Code != 0 {
			t.Errorf("%s:\n%s", tc.name, r)
			continue
		}
		if present, d := tagState(t, strings.Replace(dest, "localhost:", "127.0.0.1:", 1), trusting); !present || d != r.Meta.Digest {
			t.Errorf("%s: %s present=%v at %s, want %s", tc.name, dest, present, d, r.Meta.Digest)
		}
	}

	// A registry whose certificate a trusted CA signed, but for another name.
	otherCA, front := tlsFront(t, testenv.Registry(t), "registry.other.example")
	frontDest := front + "/" + testenv.Repo(t) + ":v1"
	for _, flags := range [][]string{
		{"--registry-ca", otherCA},
		{"--registry-ca", otherCA, "--insecure-registry", "registry.other.example"},
		{"--registry-ca", otherCA, "--insecure-registry", "some.other.host:5000"},
	} {
		line := mustFail(t, runOpts{}, []string{"the registry's TLS certificate is not trusted", "x509: cannot validate certificate for 127.0.0.1"},
			append(append(args, flags...), "--destination", frontDest)...)
		t.Logf("%v: %s", flags, line)
	}

	// Bad CA files.
	notPEM := filepath.Join(t.TempDir(), "ca.txt")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o644)
	mustFail(t, runOpts{}, []string{"registry CA " + notPEM + " holds no PEM certificate"}, append(args, "--registry-ca", notPEM, "--destination", dest)...)
	mustFail(t, runOpts{}, []string{"read registry CA", "/nonexistent/ca.pem"}, append(args, "--registry-ca", "/nonexistent/ca.pem", "--destination", dest)...)
}

// tlsFront serves HTTPS on 127.0.0.1 in front of the plain registry upstream, with a
// certificate for dnsName only (no IP address), signed by a fresh CA. It returns the CA's PEM
// file and the front's host:port.
func tlsFront(t *testing.T, upstream, dnsName string) (caFile, addr string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fairing test other CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: dnsName}, DNSNames: []string{dnsName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "other-ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)

	u, _ := url.Parse("http://" + upstream)
	s := httptest.NewUnstartedServer(httputil.NewSingleHostReverseProxy(u))
	s.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}}}
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
	s.StartTLS()
	t.Cleanup(s.Close)
	return caFile, s.Listener.Addr().String()
}

// TestCacheFromBehindAuth: a --cache-from image in a registry that wants credentials serves a
// build that has them (its layers copied to the destination's registry, not compressed again);
// for a build with wrong or no credentials it only costs the reuse: the build succeeds, builds
// every layer, and says why in one warning line that holds no credential.
func TestCacheFromBehindAuth(t *testing.T) {
	needBinary(t)
	authReg := testenv.Need(t, envAuthRegistry)
	user, password := testenv.Need(t, envAuthUser), testenv.Need(t, envAuthPassword)
	reg, base := testenv.Registry(t), testenv.BusyboxBase(t)
	secret := secrets(user, password)
	ctxDir := project(t, 33, 20, 0, 0)
	good := []string{"DOCKER_CONFIG=" + dockerConfig(t, map[string][2]string{authReg: {user, password}}, nil)}
	cached := authReg + "/" + testenv.Repo(t) + ":main"
	if r := run(t, runOpts{env: good}, "--context", ctxDir, "--base", base, "--cache-dir", t.TempDir(), "--destination", cached); r.Code != 0 {
		t.Fatalf("push the cache-from image:\n%s", r)
	}

	r := run(t, runOpts{env: good}, "--context", ctxDir, "--base", base, "--cache-dir", t.TempDir(),
		"--destination", reg+"/"+testenv.Repo(t)+":copied", "--cache-from", cached)
	if r.Code != 0 || r.Meta == nil {
		t.Fatalf("with credentials:\n%s", r)
	}
	for _, l := range r.Meta.Layers {
		if l.Origin != "registry" {
			t.Errorf("with credentials: layer %s came from %q, want the cache-from image", l.Name, l.Origin)
		}
	}

	for _, tc := range badCredentials(t, authReg, user, password, secret) {
		r := run(t, runOpts{env: tc.env}, "--context", ctxDir, "--base", base, "--cache-dir", t.TempDir(),
			"--destination", reg+"/"+testenv.Repo(t)+":v1", "--cache-from", cached)
		if r.Code != 0 || r.Meta == nil {
			t.Fatalf("%s: the build failed:\n%s", tc.name, r)
		}
		var warning string
		for _, l := range strings.Split(r.Stderr, "\n") {
			if strings.HasPrefix(l, "warning: --cache-from "+cached+": not used: ") {
				warning = l
			}
		}
		if warning == "" || !strings.Contains(warning, "401") {
			t.Errorf("%s: no warning that names the cache-from image and the refusal:\n%s", tc.name, r.Stderr)
		}
		t.Logf("%s: %s", tc.name, warning)
		for _, l := range r.Meta.Layers {
			if l.Origin != "built" {
				t.Errorf("%s: layer %s came from %q, want built", tc.name, l.Name, l.Origin)
			}
		}
		for _, l := range append(leaks(tc.name+": stderr", []byte(r.Stderr), secret), leaks(tc.name+": stdout", []byte(r.Stdout), secret)...) {
			t.Errorf("credential leaked: %s", l)
		}
	}
}

// credentialCase is an environment that gives fairing-builder some credentials.
type credentialCase struct {
	name string
	env  []string
}

// badCredentials are a Docker config with a wrong password for reg and one with none; the wrong
// password joins the secrets no output may hold.
func badCredentials(t *testing.T, reg, user, password string, secret map[string]string) []credentialCase {
	wrong := "wrong-" + password[:10]
	secret["wrong password"] = wrong
	secret["base64(user:wrong)"] = base64.StdEncoding.EncodeToString([]byte(user + ":" + wrong))
	return []credentialCase{
		{"wrong password", []string{"DOCKER_CONFIG=" + dockerConfig(t, map[string][2]string{reg: {user, wrong}}, nil)}},
		{"no credentials", []string{"DOCKER_CONFIG=" + t.TempDir()}},
	}
}
