// Package preprocesstest helps tests run what the preprocessors produce with a real Python:
// it finds an interpreter, lays sources out on disk as an image would hold them, and builds a
// PATH with the programs a generated command names.
package preprocesstest

import (
	"bytes"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/patternmatcher"

	"github.com/fairing-dev/fairing/pkg/layer"
)

// Python returns a python3 for tests that run generated code: $FAIRING_TEST_PYTHON (set by
// test/setup.d/15-python.sh), else Debian's /usr/bin/python3, else python3 on PATH. It skips in
// -short mode; when none is found it skips, or fails under FAIRING_TEST_REAL=1.
func Python(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a real python3; skipped in -short mode")
	}
	for _, c := range []string{os.Getenv("FAIRING_TEST_PYTHON"), "/usr/bin/python3"} {
		if c != "" {
			if _, err := os.Stat(c); err == nil {
				return c
			}
		}
	}
	if p, err := exec.LookPath("python3"); err == nil {
		return p
	}
	missing(t, "no python3 (run test/setup.d/15-python.sh up)")
	return ""
}

// PythonWith is Python, and also requires that the interpreter imports every module in mods.
func PythonWith(t testing.TB, mods ...string) string {
	t.Helper()
	py := Python(t)
	script := "import " + strings.Join(mods, ", ")
	if out, err := exec.Command(py, "-c", script).CombinedOutput(); err != nil {
		missing(t, py+" cannot "+script+" (run test/setup.d/15-python.sh up): "+string(out))
	}
	return py
}

// Jupyter returns the jupyter command beside the interpreter that Python returns, after
// checking that it can run notebooks (nbconvert, nbclient, ipykernel).
func Jupyter(t testing.TB) string {
	t.Helper()
	py := PythonWith(t, "nbconvert", "nbclient", "ipykernel")
	j := filepath.Join(filepath.Dir(py), "jupyter")
	if _, err := os.Stat(j); err != nil {
		missing(t, "no "+j+" (Debian package jupyter-core; run test/setup.d/15-python.sh up)")
	}
	return j
}

func missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("FAIRING_TEST_REAL") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// BinDir makes a directory of symlinks name -> target, for a PATH on which a generated command
// ("python", "jupyter") finds the interpreter under test.
func BinDir(t testing.TB, links map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Materialize writes sources below root as an image would hold them: each Dest becomes
// root+Dest. Directories are copied recursively, honouring Ignore; symlinks stay symlinks.
// Two sources writing the same file fail the test.
func Materialize(t testing.TB, root string, sources []layer.Source) {
	t.Helper()
	seen := map[string]string{}
	claim := func(dst, what string) {
		if prev, ok := seen[dst]; ok {
			t.Fatalf("materialize: %s written twice (%s, %s)", dst, prev, what)
		}
		seen[dst] = what
	}
	for _, s := range sources {
		if !filepath.IsAbs(s.Dest) {
			t.Fatalf("materialize: Dest %q is not absolute", s.Dest)
		}
		dst := filepath.Join(root, s.Dest)
		switch {
		case s.Path == "":
			claim(dst, "generated")
			mode := s.Mode
			if mode == 0 {
				mode = 0o644
			}
			writeFile(t, dst, bytes.NewReader(s.Data), mode)
		default:
			fi, err := os.Stat(s.Path)
			if err != nil {
				t.Fatalf("materialize: %v", err)
			}
			if !fi.IsDir() {
				claim(dst, s.Path)
				copyFile(t, s.Path, dst, fi.Mode())
				continue
			}
			parentInfo := map[string]patternmatcher.MatchInfo{}
			err = filepath.WalkDir(s.Path, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				rel, _ := filepath.Rel(s.Path, p)
				if rel != "." && s.Ignore != nil {
					// as pkg/layer matches
					rel := filepath.ToSlash(rel)
					skip, info, err := s.Ignore.MatchesUsingParentResults(rel, parentInfo[path.Dir(rel)])
					if err != nil {
						return err
					}
					if d.IsDir() {
						parentInfo[rel] = info
					}
					if skip {
						return nil
					}
				}
				out := filepath.Join(dst, rel)
				switch {
				case d.IsDir():
					return os.MkdirAll(out, 0o755)
				case d.Type()&fs.ModeSymlink != 0:
					claim(out, p)
					target, err := os.Readlink(p)
					if err != nil {
						return err
					}
					if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
						return err
					}
					return os.Symlink(target, out)
				default:
					claim(out, p)
					info, err := d.Info()
					if err != nil {
						return err
					}
					copyFile(t, p, out, info.Mode())
					return nil
				}
			})
			if err != nil {
				t.Fatalf("materialize %s: %v", s.Path, err)
			}
		}
	}
}

func copyFile(t testing.TB, src, dst string, mode fs.FileMode) {
	t.Helper()
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	writeFile(t, dst, f, mode.Perm())
}

func writeFile(t testing.TB, dst string, r io.Reader, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, r); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
