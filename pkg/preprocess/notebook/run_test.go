package notebook

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fairing-dev/fairing/pkg/preprocess/preprocesstest"
)

// TestConvertedScriptsRun runs every converted script of the table with a real python3 (plain,
// no IPython on the path of the script's process besides what the interpreter has) and checks it
// prints what the notebook's cells print.
func TestConvertedScriptsRun(t *testing.T) {
	py := preprocesstest.Python(t)
	for _, tc := range convertCases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ConvertBytes(nbJSON(t, tc.cells...), Options{Name: "t.ipynb", IncludeTag: tc.includeTag})
			if err != nil {
				t.Fatal(err)
			}
			stdout, stderr := runScript(t, py, s.Source)
			if tc.stdout != "-" && stdout != tc.stdout {
				t.Errorf("stdout = %q, want %q", stdout, tc.stdout)
			}
			if stderr != "" {
				t.Errorf("stderr: %s", stderr)
			}
		})
	}
}

// TestDisplayFallback checks both sides of the display() prelude: with IPython importable the
// real display is used; without it, print.
func TestDisplayFallback(t *testing.T) {
	py := preprocesstest.Python(t)
	s, err := ConvertBytes(nbJSON(t, code("display('shown')")), Options{Name: "t.ipynb"})
	if err != nil {
		t.Fatal(err)
	}
	// -S drops site-packages, so IPython is not importable.
	out, errOut := runScript(t, py, s.Source, "-S")
	if out != "shown\n" || errOut != "" {
		t.Errorf("without IPython: stdout %q stderr %q", out, errOut)
	}
	if exec.Command(py, "-c", "import IPython").Run() == nil {
		out, errOut = runScript(t, py, s.Source)
		if out != "shown\n" || errOut != "" {
			t.Errorf("with IPython: stdout %q stderr %q", out, errOut)
		}
	}
}

func runScript(t *testing.T, py string, script []byte, pyArgs ...string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "t.py")
	if err := os.WriteFile(path, script, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, append(pyArgs, path)...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1"}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("python3 %s: %v\nstderr:\n%s\nscript:\n%s", strings.Join(pyArgs, " "), err, stderr.String(), script)
	}
	return stdout.String(), stderr.String()
}
