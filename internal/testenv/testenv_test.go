package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

// TestNeedHelper is run by TestNeed in a child process: it only calls Need.
func TestNeedHelper(t *testing.T) {
	if os.Getenv("FAIRING_TESTENV_HELPER") != "1" {
		t.Skip("helper for TestNeed")
	}
	t.Logf("value=%s", Need(t, "FAIRING_TESTENV_PART"))
}

// TestNeed checks the contract of test/run.sh: a missing real part skips a test, or fails it
// under FAIRING_TEST_REAL=1; a present one is returned; -short always skips.
func TestNeed(t *testing.T) {
	tests := []struct {
		name  string
		env   []string
		short bool
		want  string // in the child's -test.v output
		fails bool
	}{
		{"missing", nil, false, "--- SKIP: TestNeedHelper", false},
		{"missing, real", []string{"FAIRING_TEST_REAL=1"}, false, "FAIRING_TESTENV_PART is not set", true},
		{"present", []string{"FAIRING_TESTENV_PART=x:1"}, false, "value=x:1", false},
		{"present, short", []string{"FAIRING_TESTENV_PART=x:1", "FAIRING_TEST_REAL=1"}, true, "skipped in -short mode", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestNeedHelper$", "-test.v", "-test.short="+map[bool]string{true: "true", false: "false"}[tt.short])
			cmd.Env = append(withoutTestEnv(os.Environ()), append(tt.env, "FAIRING_TESTENV_HELPER=1")...)
			out, err := cmd.CombinedOutput()
			if (err != nil) != tt.fails {
				t.Errorf("child failed = %v, want %v\n%s", err != nil, tt.fails, out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("child output lacks %q:\n%s", tt.want, out)
			}
		})
	}
}

func withoutTestEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "FAIRING_TEST_REAL=") && !strings.HasPrefix(kv, "FAIRING_TESTENV_") {
			out = append(out, kv)
		}
	}
	return out
}

func TestRepo(t *testing.T) {
	a, b := Repo(t), Repo(t)
	if a == b {
		t.Errorf("Repo returned %q twice", a)
	}
	if !strings.HasPrefix(a, "test/testrepo-") {
		t.Errorf("Repo = %q, want test/testrepo-<random>", a)
	}
	t.Run("Odd Name/with ÜNICODE and a very long tail that goes on and on and on and on and on", func(t *testing.T) {
		r := Repo(t)
		if _, err := name.NewRepository("127.0.0.1:5000/"+r, name.StrictValidation); err != nil {
			t.Errorf("Repo = %q is not a valid repository: %v", r, err)
		}
	})
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"PATH=/bin", "A=1"}, []string{"A=2", "B=3", "PATH=/usr/bin"})
	want := "PATH=/usr/bin A=2 B=3"
	if strings.Join(got, " ") != want {
		t.Errorf("mergeEnv = %v, want %s", got, want)
	}
}
