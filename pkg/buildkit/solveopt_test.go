package buildkit

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/moby/buildkit/client"

	"github.com/fairing-dev/fairing/pkg/publish"
	"github.com/fairing-dev/fairing/pkg/registryclient"
)

func mustDests(t *testing.T, ss ...string) []publish.Destination {
	t.Helper()
	var ds []publish.Destination
	for _, s := range ss {
		d, err := publish.ParseDestination(s, registryclient.Config{})
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	return ds
}

func TestSolveOptMapping(t *testing.T) {
	out := t.TempDir()
	epoch := time.Unix(1700000000, 0)
	secretFile := filepath.Join(t.TempDir(), "pip.conf")
	if err := os.WriteFile(secretFile, []byte("[global]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	in := input{context: newFileFS("a", nil, 0), dockerfile: newFileFS("Dockerfile.train", nil, 0), filename: "Dockerfile.train", sharedKey: "k"}
	for _, tc := range []struct {
		name        string
		o           Options
		secrets     []secret
		wantAttrs   map[string]string
		wantExports []client.ExportEntry // Output/OutputStore checked separately
		wantCache   string
		insecure    bool
		wantErr     string
	}{
		{
			name: "registry destinations, args, target, platforms",
			o: Options{
				Destinations:     mustDests(t, "127.0.0.1:5000/team/app:1", "127.0.0.1:5000/team/app:latest", "127.0.0.1:5001/mirror/app:1"),
				Target:           "runtime",
				BuildArgs:        map[string]string{"PY": "3.11"},
				Labels:           map[string]string{"org.opencontainers.image.source": "https://example.com/x"},
				Annotations:      map[string]string{"org.opencontainers.image.revision": "abc"},
				Platforms:        []string{"linux/amd64", "linux/arm64"},
				NoCache:          true,
				SourceDateEpoch:  &epoch,
				RewriteTimestamp: true,
			},
			wantAttrs: map[string]string{
				"filename": "Dockerfile.train", "target": "runtime", "build-arg:PY": "3.11",
				"build-arg:SOURCE_DATE_EPOCH": "1700000000", "platform": "linux/amd64,linux/arm64", "no-cache": "",
				"label:org.opencontainers.image.source": "https://example.com/x",
			},
			wantExports: []client.ExportEntry{{Type: "image", Attrs: map[string]string{
				"name": "127.0.0.1:5000/team/app:1,127.0.0.1:5000/team/app:latest,127.0.0.1:5001/mirror/app:1", "push": "true",
				"compression": "gzip", "force-compression": "true", "oci-mediatypes": "true", "rewrite-timestamp": "true", "source-date-epoch": "1700000000",
				"annotation.org.opencontainers.image.revision": "abc",
			}}},
		},
		{
			name: "no destination still reports a digest; epoch defaults to 0",
			o:    Options{},
			wantAttrs: map[string]string{
				"filename": "Dockerfile.train", "build-arg:SOURCE_DATE_EPOCH": "0",
			},
			wantExports: []client.ExportEntry{{Type: "image", Attrs: map[string]string{
				"compression": "gzip", "force-compression": "true", "oci-mediatypes": "true", "source-date-epoch": "0",
			}}},
		},
		{
			name: "oci and tar only, zstd level 3, cache repo without tag",
			o: Options{
				Destinations: mustDests(t, "oci:"+filepath.Join(out, "layout")+":v2", "tar:"+filepath.Join(out, "img.tar")),
				Compression:  Compression{Type: "zstd", Level: 3},
				CacheRepo:    "127.0.0.1:5000/team/cache",
			},
			wantAttrs: map[string]string{"filename": "Dockerfile.train", "build-arg:SOURCE_DATE_EPOCH": "0"},
			wantExports: []client.ExportEntry{
				{Type: "oci", Attrs: map[string]string{"compression": "zstd", "compression-level": "3", "force-compression": "true", "oci-mediatypes": "true", "source-date-epoch": "0"}},
				{Type: "docker", Attrs: map[string]string{"compression": "zstd", "compression-level": "3", "force-compression": "true", "oci-mediatypes": "true", "source-date-epoch": "0"}},
			},
			wantCache: "127.0.0.1:5000/team/cache:buildcache",
		},
		{
			name:      "estargz forces recompression; docker media types",
			o:         Options{Destinations: mustDests(t, "127.0.0.1:5000/a:1"), Compression: Compression{Type: "estargz"}},
			wantAttrs: map[string]string{"filename": "Dockerfile.train", "build-arg:SOURCE_DATE_EPOCH": "0"},
			wantExports: []client.ExportEntry{{Type: "image", Attrs: map[string]string{
				"name": "127.0.0.1:5000/a:1", "push": "true", "compression": "estargz", "force-compression": "true",
				"oci-mediatypes": "true", "source-date-epoch": "0",
			}}},
		},
		{
			name:      "tagged cache ref kept; tar named after the registry destination",
			o:         Options{Destinations: mustDests(t, "127.0.0.1:5000/a:1", "tar:"+filepath.Join(out, "a.tar")), CacheRepo: "127.0.0.1:5000/c:main", DockerMediaTypes: true},
			wantAttrs: map[string]string{"filename": "Dockerfile.train", "build-arg:SOURCE_DATE_EPOCH": "0"},
			wantExports: []client.ExportEntry{
				{Type: "image", Attrs: map[string]string{"name": "127.0.0.1:5000/a:1", "push": "true", "compression": "gzip", "force-compression": "true", "oci-mediatypes": "false", "source-date-epoch": "0"}},
				{Type: "docker", Attrs: map[string]string{"name": "127.0.0.1:5000/a:1", "compression": "gzip", "force-compression": "true", "oci-mediatypes": "false", "source-date-epoch": "0"}},
			},
			wantCache: "127.0.0.1:5000/c:main",
		},
		{
			name: "insecure registry: push and cache over plain HTTP",
			o: Options{
				ConnectOptions: ConnectOptions{InsecureRegistries: []string{"reg.internal:5000"}},
				Destinations:   mustDests(t, "reg.internal:5000/a:1"),
				CacheRepo:      "reg.internal:5000/cache",
			},
			wantAttrs: map[string]string{"filename": "Dockerfile.train", "build-arg:SOURCE_DATE_EPOCH": "0"},
			wantExports: []client.ExportEntry{{Type: "image", Attrs: map[string]string{
				"name": "reg.internal:5000/a:1", "push": "true", "registry.insecure": "true", "compression": "gzip", "force-compression": "true",
				"oci-mediatypes": "true", "source-date-epoch": "0",
			}}},
			wantCache: "reg.internal:5000/cache:buildcache",
			insecure:  true,
		},
		{name: "zstd with docker media types", o: Options{Compression: Compression{Type: "zstd"}, DockerMediaTypes: true}, wantErr: "needs OCI media types"},
		{name: "unknown compression", o: Options{Compression: Compression{Type: "lz4"}}, wantErr: `compression "lz4"`},
		{name: "bad build arg", o: Options{BuildArgs: map[string]string{"A=B": "x"}}, wantErr: "build arg"},
		{name: "bad annotation", o: Options{Annotations: map[string]string{"a,b": "x"}}, wantErr: "annotation"},
		{name: "cache digest", o: Options{CacheRepo: "127.0.0.1:5000/c@sha256:" + strings.Repeat("a", 64)}, wantErr: "not a digest"},
		{
			name:      "secrets become a session attachable",
			o:         Options{},
			secrets:   []secret{{id: "pip.conf", file: secretFile}},
			wantAttrs: map[string]string{"filename": "Dockerfile.train", "build-arg:SOURCE_DATE_EPOCH": "0"},
			wantExports: []client.ExportEntry{{Type: "image", Attrs: map[string]string{
				"compression": "gzip", "force-compression": "true", "oci-mediatypes": "true", "source-date-epoch": "0",
			}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("SOURCE_DATE_EPOCH", "")
			opt, outs, err := solveOpt(context.Background(), &tc.o, in, tc.secrets)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if opt.Frontend != "dockerfile.v0" {
				t.Errorf("frontend = %q", opt.Frontend)
			}
			if !reflect.DeepEqual(opt.FrontendAttrs, tc.wantAttrs) {
				t.Errorf("frontend attrs\n got %v\nwant %v", opt.FrontendAttrs, tc.wantAttrs)
			}
			if len(opt.Exports) != len(tc.wantExports) {
				t.Fatalf("%d exports, want %d: %+v", len(opt.Exports), len(tc.wantExports), opt.Exports)
			}
			for i, e := range opt.Exports {
				if e.Type != tc.wantExports[i].Type || !reflect.DeepEqual(e.Attrs, tc.wantExports[i].Attrs) {
					t.Errorf("export %d\n got %s %v\nwant %s %v", i, e.Type, e.Attrs, tc.wantExports[i].Type, tc.wantExports[i].Attrs)
				}
				if e.Type == "docker" && e.Output == nil {
					t.Errorf("tar export has no output")
				}
				if e.Type == "oci" && e.Output == nil {
					t.Errorf("oci export has no output")
				}
			}
			if _, ok := opt.LocalMounts["context"]; !ok {
				t.Error("no context mount")
			}
			if _, ok := opt.LocalMounts["dockerfile"]; !ok {
				t.Error("no dockerfile mount")
			}
			if opt.SharedKey != "k" {
				t.Errorf("shared key %q", opt.SharedKey)
			}
			if want := 1 + len(tc.secrets); len(opt.Session) != want {
				t.Errorf("%d session attachables, want %d (auth + secrets)", len(opt.Session), want)
			}
			if tc.wantCache == "" {
				if len(opt.CacheImports)+len(opt.CacheExports) != 0 {
					t.Errorf("cache set without a cache repo")
				}
			} else {
				wantImp := []client.CacheOptionsEntry{{Type: "registry", Attrs: map[string]string{"ref": tc.wantCache}}}
				wantExp := []client.CacheOptionsEntry{{Type: "registry", Attrs: map[string]string{"ref": tc.wantCache, "mode": "max", "image-manifest": "true", "oci-mediatypes": "true"}}}
				if tc.insecure {
					wantImp[0].Attrs["registry.insecure"] = "true"
					wantExp[0].Attrs["registry.insecure"] = "true"
				}
				if !reflect.DeepEqual(opt.CacheImports, wantImp) || !reflect.DeepEqual(opt.CacheExports, wantExp) {
					t.Errorf("cache\n got %v %v\nwant %v %v", opt.CacheImports, opt.CacheExports, wantImp, wantExp)
				}
			}
			outs.abort()
		})
	}
}

func TestEpochFromEnv(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1234")
	o := Options{}
	if e, err := o.epoch(); err != nil || e.Unix() != 1234 {
		t.Fatalf("epoch = %v, %v", e, err)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
	if _, err := o.epoch(); err == nil || !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH") {
		t.Fatalf("bad SOURCE_DATE_EPOCH accepted: %v", err)
	}
}

func TestParseSecret(t *testing.T) {
	f := filepath.Join(t.TempDir(), "s")
	os.WriteFile(f, []byte("x"), 0o600)
	t.Setenv("FAIRING_TEST_SECRET", "v")
	for _, tc := range []struct {
		in   string
		want secret
		err  string
	}{
		{in: "id=pip.conf,src=" + f, want: secret{id: "pip.conf", file: f}},
		{in: "id=tok,env=FAIRING_TEST_SECRET", want: secret{id: "tok", env: "FAIRING_TEST_SECRET"}},
		{in: "type=env,id=tok,src=FAIRING_TEST_SECRET", want: secret{id: "tok", env: "FAIRING_TEST_SECRET"}},
		{in: "env=FAIRING_TEST_SECRET", want: secret{id: "FAIRING_TEST_SECRET", env: "FAIRING_TEST_SECRET"}},
		{in: "src=" + f, err: "no id"},
		{in: "id=x", err: "want id=ID,src=FILE"},
		{in: "id=x,src=/nonexistent/file", err: "no such file"},
		{in: "id=x,env=FAIRING_TEST_UNSET_VAR", err: "is not set"},
		{in: "id=x,path=y", err: `unknown key "path"`},
		{in: "id", err: "not key=value"},
	} {
		got, err := parseSecret(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		o   Options
		err string
	}{
		{Options{}, "nothing to build"},
		{Options{Spec: &Spec{Base: "b"}, ContextDir: "."}, "not both"},
		{Options{Spec: &Spec{Base: "b"}, Dockerfile: "Dockerfile"}, "not to a generated one"},
		{Options{ContextDir: ".", Progress: "fancy"}, "progress mode"},
		{Options{ContextDir: ".", Destinations: mustDests(t, "oci:/a:x", "oci:/b:x", "oci:/a:y")}, ""},
	} {
		err := tc.o.validate()
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%+v: err = %v, want %q", tc.o, err, tc.err)
		}
	}
}

// staticKeychain answers one registry with fixed credentials.
type staticKeychain struct {
	registry string
	cfg      authn.AuthConfig
	calls    int
}

func (k *staticKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	k.calls++
	if r.RegistryStr() == k.registry {
		return authn.FromConfig(k.cfg), nil
	}
	return authn.Anonymous, nil
}

func TestKeychainAuthConfig(t *testing.T) {
	kc := &staticKeychain{registry: "registry.example.com", cfg: authn.AuthConfig{Auth: base64.StdEncoding.EncodeToString([]byte("robot:s3cret:with:colons"))}}
	p := KeychainAuthConfig(kc)
	ctx := context.Background()
	ac, err := p(ctx, "registry.example.com", []string{"repository:team/app:pull,push"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ac.Username != "robot" || ac.Password != "s3cret:with:colons" {
		t.Errorf("got %q/%q from the encoded auth field", ac.Username, ac.Password)
	}
	never := func(time.Time, string) bool { return false }
	if _, err := p(ctx, "registry.example.com", []string{"repository:team/app:pull"}, never); err != nil || kc.calls != 1 {
		t.Errorf("cached answer not reused: %d keychain calls, %v", kc.calls, err)
	}
	always := func(time.Time, string) bool { return true }
	if _, err := p(ctx, "registry.example.com", []string{"repository:team/app:pull"}, always); err != nil || kc.calls != 2 {
		t.Errorf("expired answer reused: %d keychain calls, %v", kc.calls, err)
	}
	anon, err := p(ctx, "other.example.com", nil, nil)
	if err != nil || anon.Username != "" || anon.Password != "" {
		t.Errorf("anonymous registry got %+v, %v", anon, err)
	}
	// Docker Hub's API host maps to the keychain's name for it
	res, _, err := authResource("registry-1.docker.io", []string{"repository:library/python:pull"})
	if err != nil || res.RegistryStr() != name.DefaultRegistry || res.String() != "index.docker.io/library/python" {
		t.Errorf("docker hub resource = %v, %v", res, err)
	}
	tok := &staticKeychain{registry: "r.example.com", cfg: authn.AuthConfig{IdentityToken: "idt", RegistryToken: "bearer"}}
	ac, err = KeychainAuthConfig(tok)(ctx, "r.example.com", nil, nil)
	if err != nil || ac.IdentityToken != "idt" || ac.RegistryToken != "bearer" {
		t.Errorf("tokens lost: %+v, %v", ac, err)
	}
}

func TestDaemonConfig(t *testing.T) {
	got := string(daemonConfig([]string{"reg.internal:5000"}))
	want := "# written by fairing for a daemonless build\n[registry.\"reg.internal:5000\"]\n  http = true\n  insecure = true\n"
	if got != want {
		t.Errorf("config\n%s\nwant\n%s", got, want)
	}
}
