// Package buildkit_test runs the BuildKit path end to end: a real buildkitd (test/setup.d/30)
// and a real registry (test/setup.d/10).
package buildkit_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/fairing-dev/fairing/pkg/buildkit"
	"github.com/fairing-dev/fairing/pkg/publish"
	"github.com/fairing-dev/fairing/pkg/registryclient"
)

// need returns the values of the environment variables a test needs. In -short mode it skips;
// when one is missing it skips, or fails under FAIRING_TEST_REAL=1 (test/run.sh).
func need(t *testing.T, vars ...string) []string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs real parts (buildkitd, registry); skipped in -short")
	}
	out := make([]string, len(vars))
	for i, v := range vars {
		out[i] = os.Getenv(v)
		if out[i] == "" {
			if os.Getenv("FAIRING_TEST_REAL") == "1" {
				t.Fatalf("%s is not set: run the suite with test/run.sh (test/setup.d starts the real parts)", v)
			}
			t.Skipf("%s is not set (run test/run.sh to start the real parts)", v)
		}
	}
	return out
}

// uniq makes a name unique to this test run, so results never come from an earlier run's cache.
func uniq(t *testing.T) string {
	return fmt.Sprintf("%s-%d", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), time.Now().UnixNano())
}

var (
	busyboxOnce sync.Once
	busyboxRef  string
	busyboxErr  error
)

// busyboxBase is a base with a shell for RUN steps: $FAIRING_TEST_BUSYBOX_BASE when the test
// setup provides one, else a one-layer image of Debian's busybox-static pushed to the registry.
func busyboxBase(t *testing.T, registry string) string {
	t.Helper()
	if b := os.Getenv("FAIRING_TEST_BUSYBOX_BASE"); b != "" {
		return b
	}
	busyboxOnce.Do(func() { busyboxRef, busyboxErr = pushBusybox(registry) })
	if busyboxErr != nil {
		t.Fatalf("make a busybox base: %v (apt-get install busybox-static)", busyboxErr)
	}
	return busyboxRef
}

func pushBusybox(registry string) (string, error) {
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(n string, mode int64) {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: n, Mode: mode})
	}
	file := func(n string, mode int64, data []byte) {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: mode, Size: int64(len(data))})
		tw.Write(data)
	}
	dir("bin/", 0o755)
	dir("etc/", 0o755)
	dir("tmp/", 0o1777)
	dir("root/", 0o700)
	file("bin/busybox", 0o755, bb)
	for _, a := range []string{"sh", "ls", "cat", "echo", "mkdir", "cp", "rm", "id", "env", "test", "[", "true", "false", "find", "sha256sum", "grep", "wc", "sleep"} {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777})
	}
	file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n"))
	file("etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n"))
	if err := tw.Close(); err != nil {
		return "", err
	}
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		return "", err
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return "", err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return "", err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cf.Config.Cmd = []string{"/bin/sh"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return "", err
	}
	ref, err := name.ParseReference(registry + "/fairing-test/busybox:1")
	if err != nil {
		return "", err
	}
	if err := remote.Write(ref, img); err != nil {
		return "", err
	}
	return ref.String(), nil
}

// countingRegistry is a reverse proxy to the real registry that counts blob uploads, so a test
// can assert that a build pushed nothing new.
type countingRegistry struct {
	Host    string
	mu      sync.Mutex
	uploads int // POST /v2/<repo>/blobs/uploads/
	srv     *http.Server
}

func newCountingRegistry(t *testing.T, registry string) *countingRegistry {
	t.Helper()
	target, _ := url.Parse("http://" + registry)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &countingRegistry{Host: ln.Addr().String()}
	proxy := httputil.NewSingleHostReverseProxy(target)
	c.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if os.Getenv("FAIRING_TEST_PROXY_LOG") != "" {
			fmt.Fprintln(os.Stderr, "proxy:", r.Method, r.URL.String())
		}
		if r.Method == http.MethodPost && strings.Contains(r.URL.Path, "/blobs/uploads/") {
			c.mu.Lock()
			c.uploads++
			c.mu.Unlock()
		}
		proxy.ServeHTTP(w, r)
	})}
	go c.srv.Serve(ln)
	t.Cleanup(func() { c.srv.Close() })
	return c
}

func (c *countingRegistry) Uploads() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.uploads
}

func (c *countingRegistry) Reset() {
	c.mu.Lock()
	c.uploads = 0
	c.mu.Unlock()
}

func dest(t *testing.T, s string) []publish.Destination {
	t.Helper()
	d, err := publish.ParseDestination(s, registryclient.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return []publish.Destination{d}
}

func pull(t *testing.T, ref string) v1.Image {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	return img
}

func layerDigests(t *testing.T, img v1.Image) []v1.Hash {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]v1.Hash, len(ls))
	for i, l := range ls {
		if out[i], err = l.Digest(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// readFile returns a file's content in the image's file system (the topmost layer that has it),
// reading the pushed layers: it checks what the registry holds, not what the builder reported.
func readFile(t *testing.T, img v1.Image, p string) (string, bool) {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	want := strings.TrimPrefix(path.Clean(p), "/")
	for i := len(ls) - 1; i >= 0; i-- {
		rc, err := ls[i].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				rc.Close()
				t.Fatal(err)
			}
			if strings.TrimPrefix(path.Clean(h.Name), "./") == want && h.Typeflag == tar.TypeReg {
				b, err := io.ReadAll(tr)
				rc.Close()
				if err != nil {
					t.Fatal(err)
				}
				return string(b), true
			}
		}
		rc.Close()
	}
	return "", false
}

// connect connects to the test's buildkitd once per test.
func connect(t *testing.T, addr string) *buildkit.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := buildkit.Connect(ctx, buildkit.ConnectOptions{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := path.Join(dir, p)
		if err := os.MkdirAll(path.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
