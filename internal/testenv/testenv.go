// Package testenv gives end-to-end tests the real parts that test/run.sh starts (a registry, base
// images, runc), a counting and fault-injecting proxy in front of a registry, and a way to really
// run an image and read its output.
//
// The real parts are found through environment variables that test/setup.d/*.sh export (see the
// README's "Test environment contract"). When one is missing a test skips, unless
// FAIRING_TEST_REAL=1 (set by test/run.sh): then it fails, so that CI cannot pass by skipping. In
// -short mode every test that needs a real part skips.
package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
)

// Environment variables exported by test/setup.d.
const (
	EnvReal               = "FAIRING_TEST_REAL"
	EnvRegistry           = "FAIRING_TEST_REGISTRY"
	EnvBusyboxBase        = "FAIRING_TEST_BUSYBOX_BASE"
	EnvBusyboxDockerBase  = "FAIRING_TEST_BUSYBOX_DOCKER_BASE"
	EnvMultiarchBase      = "FAIRING_TEST_MULTIARCH_BASE"
	EnvPythonBase         = "FAIRING_TEST_PYTHON_BASE"
	EnvNotebookBase       = "FAIRING_TEST_NOTEBOOK_BASE"
	howToGetRealParts     = "run `make test` (test/run.sh starts the real parts), or source $FAIRING_TEST_WORK/env.sh after test/run.sh's setup"
	skippedInShortMessage = "needs real parts: skipped in -short mode"
)

// Real reports whether tests that need a real part must fail, not skip, when it is missing
// (FAIRING_TEST_REAL=1).
func Real() bool { return os.Getenv(EnvReal) == "1" }

// Need returns the value of the environment variable env, which a setup script exports to describe
// a real part. When it is unset the test skips, or fails if Real(). In -short mode it always skips.
func Need(t testing.TB, env string) string {
	t.Helper()
	if testing.Short() {
		t.Skip(skippedInShortMessage)
	}
	v := os.Getenv(env)
	if v == "" {
		missing(t, "%s is not set: %s", env, howToGetRealParts)
	}
	return v
}

// NeedTools checks that the named programs are on PATH and that the test runs as root, as running
// images with runc requires. It skips (or fails if Real()) otherwise, and in -short mode.
func NeedTools(t testing.TB, tools ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip(skippedInShortMessage)
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing(t, "%s is not installed (test/setup.d/20-bases.sh installs it): %v", tool, err)
		}
	}
	if os.Geteuid() != 0 {
		missing(t, "running images with runc needs root (euid is %d)", os.Geteuid())
	}
}

// missing skips, or fails when the real parts are required.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if Real() {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// Registry returns host:port of the real registry (FAIRING_TEST_REGISTRY, plain HTTP on 127.0.0.1).
func Registry(t testing.TB) string { t.Helper(); return Need(t, EnvRegistry) }

// BusyboxBase returns the reference of an OCI linux/amd64 image holding busybox with its applets
// in /bin, /etc/passwd with root, /tmp, PATH, and Cmd ["/bin/sh"].
func BusyboxBase(t testing.TB) string { t.Helper(); return Need(t, EnvBusyboxBase) }

// BusyboxDockerBase returns the reference of the busybox base with Docker schema-2 media types.
func BusyboxDockerBase(t testing.TB) string { t.Helper(); return Need(t, EnvBusyboxDockerBase) }

// MultiarchBase returns the reference of an OCI image index with linux/amd64 (the busybox base)
// and linux/arm64/v8 (busybox for arm64; not runnable here).
func MultiarchBase(t testing.TB) string { t.Helper(); return Need(t, EnvMultiarchBase) }

// PythonBase returns the reference of a Debian bookworm minbase image with python3 and pip (one
// layer; Cmd ["python3"]).
func PythonBase(t testing.TB) string { t.Helper(); return Need(t, EnvPythonBase) }

// NotebookBase returns the reference of the python base plus one layer with nbconvert, nbclient
// and ipykernel (so `jupyter nbconvert --execute` works offline).
func NotebookBase(t testing.TB) string { t.Helper(); return Need(t, EnvNotebookBase) }

// MemRegistry starts go-containerregistry's in-memory registry for the test and returns its
// host:port (on 127.0.0.1, so clients use plain HTTP). For the fast tier: it is not a real
// registry (no cross-repository mount, for one), so end-to-end proof needs Registry.
func MemRegistry(t testing.TB) string {
	t.Helper()
	s := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

var notRepoChars = regexp.MustCompile(`[^a-z0-9]+`)

// Repo returns a repository path that no other test (or run) uses: "test/<test name>-<random>".
// Prefix it with a registry: Registry(t) + "/" + Repo(t).
func Repo(t testing.TB) string {
	t.Helper()
	name := strings.Trim(notRepoChars.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(name) > 60 {
		name = strings.Trim(name[:60], "-")
	}
	return "test/" + name + "-" + randomHex(4)
}

// randomHex returns n random bytes in hex (crypto/rand.Read does not fail since Go 1.24).
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
