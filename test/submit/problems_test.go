package submit

import (
	"strings"
	"testing"
	"time"
)

// Workloads that cannot succeed are reported quickly, with the cause, a non-zero exit code, and
// no hang.
func TestProblemsReported(t *testing.T) {
	needCluster(t)
	tests := []struct {
		name     string
		args     []string
		code     int
		want     []string
		within   time.Duration
		logsWant string
	}{
		{name: "image-cannot-be-pulled", code: 1, within: 45 * time.Second,
			args: []string{"run", "--image", registry + "/does/not-exist:1"},
			want: []string{"ErrImagePull", "not-exist:1", "not found", "exit code 1"}},
		{name: "crash-looping-server", code: 4, within: 90 * time.Second,
			args:     []string{"run", "-d", "serving", "--image", busybox, "--", "sh", "-c", "echo crashing; exit 4"},
			want:     []string{"CrashLoopBackOff", "exit code 4"},
			logsWant: "] crashing"},
		{name: "unschedulable", code: 1, within: 30 * time.Second,
			args: []string{"run", "--image", busybox, "--node-selector", "pool=does-not-exist", "--", "true"},
			want: []string{"Unschedulable", "didn't match Pod's node affinity/selector"}},
		{name: "oom-killed", code: 137, within: 60 * time.Second,
			args: []string{"run", "--image", busybox, "--memory", "16Mi", "--", "sh", "-c", `echo filling; x=$(head -c 64m /dev/zero | tr '\0' a); echo survived ${#x}`},
			want: []string{"OOMKilled", "memory limit 16Mi", "exit code 137"}, logsWant: "] filling"},
		{name: "service-account-missing", code: 1, within: 30 * time.Second,
			args: []string{"run", "--image", busybox, "--service-account", "typo", "--", "true"},
			want: []string{"FailedCreate", `serviceaccount "typo" not found`}},
		{name: "configmap-missing", code: 1, within: 60 * time.Second,
			args: []string{"run", "-d", "serving", "--image", busybox, "--volume", "configmap:typo:/cfg", "--", "httpd", "-f"},
			want: []string{"FailedMount", `configmap "typo" not found`}},
		{name: "deadline-exceeded", code: 1, within: 40 * time.Second,
			args: []string{"run", "--image", busybox, "--timeout", "3s", "--", "sh", "-c", "echo started; sleep 600"},
			want: []string{"DeadlineExceeded", "exit code 1"}, logsWant: "] started"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := namespace(t)
			r := submit(t, ns, tc.args...)
			if r.code != tc.code {
				t.Errorf("want exit code %d\n%s", tc.code, r)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q\n%s", w, r)
				}
			}
			if tc.logsWant != "" && !strings.Contains(r.stdout, tc.logsWant) {
				t.Errorf("stdout lacks the log line %q\n%s", tc.logsWant, r)
			}
			if r.took > tc.within {
				t.Errorf("took %s, want the report within %s", r.took, tc.within)
			}
			t.Logf("%s reported in %s", tc.name, r.took.Round(time.Millisecond))
		})
	}
}

// What is missing (namespace, CRD version, secret) is said, with how to fix it, before anything
// is created; exit code 2.
func TestMissingThingsExplained(t *testing.T) {
	needCluster(t)
	t.Parallel()
	ns := namespace(t)
	tests := []struct {
		name string
		ns   string
		args []string
		want []string
	}{
		{"namespace", "no-such-namespace-here", []string{"run", "--image", busybox},
			[]string{`namespace "no-such-namespace-here" does not exist`, "kubectl create namespace no-such-namespace-here"}},
		{"crd-version", ns, []string{"run", "-d", "tfjob", "--deployer-api", "training=v1beta2", "--image", busybox},
			[]string{"does not serve TFJob kubeflow.org/v1beta2, only v1", "Training Operator"}},
		{"secret", ns, []string{"run", "--credentials", "aws", "--image", busybox},
			[]string{`secret "aws-secret" does not exist in namespace "` + ns + `"`}},
	}
	for _, tc := range tests {
		r := submit(t, tc.ns, tc.args...)
		if r.code != 2 {
			t.Errorf("%s: want exit code 2\n%s", tc.name, r)
		}
		for _, w := range tc.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("%s: stderr lacks %q\n%s", tc.name, w, r)
			}
		}
	}
	if l := submit(t, ns, "list", "-o", "json"); strings.TrimSpace(l.stdout) != "[]" {
		t.Errorf("something was created in %s: %s", ns, l)
	}
}
