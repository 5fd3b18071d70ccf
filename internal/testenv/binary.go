package testenv

import (
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sync"
	"testing"
)

// Binary is a program of this module that end-to-end tests run, built the first time a test asks
// for it and shared by the test binary's other tests. Declare one per program at package level,
// and call Remove from TestMain after m.Run:
//
//	var builder = testenv.Binary{Package: "github.com/fairing-dev/fairing/cmd/fairing-builder"}
//
//	func TestMain(m *testing.M) { code := m.Run(); builder.Remove(); os.Exit(code) }
type Binary struct {
	// Package is the import path of a main package of this module.
	Package string

	once sync.Once
	dir  string
	path string
	err  error
	out  []byte
}

// Path builds the program with `go build` (from the test's package directory, inside the
// module) on first use and returns the executable's path. A failed build fails every test that
// asks, with the compiler's output.
func (b *Binary) Path(t testing.TB) string {
	t.Helper()
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", "fairing-bin-"); b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, path.Base(b.Package))
		b.out, b.err = exec.Command("go", "build", "-o", b.path, b.Package).CombinedOutput()
	})
	if b.err != nil {
		t.Fatalf("go build %s: %v\n%s", b.Package, b.err, b.out)
	}
	return b.path
}

// Remove deletes the built program, if any.
func (b *Binary) Remove() {
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}
