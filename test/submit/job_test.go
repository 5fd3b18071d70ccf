package submit

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// jobGone says the Job is deleted or being deleted.
func jobGone(ns, name string) bool {
	j, err := cs.BatchV1().Jobs(ns).Get(context.Background(), name, metav1.GetOptions{})
	return apierrors.IsNotFound(err) || err == nil && j.DeletionTimestamp != nil
}

// A Job that succeeds: exit 0, its stdout and stderr streamed line by line with the pod prefix,
// the one-line summary, and (default cleanup on-success) the Job deleted afterwards.
func TestJobSucceeds(t *testing.T) {
	needCluster(t)
	t.Parallel()
	ns := namespace(t)
	r := submit(t, ns, "run", "--image", busybox, "--", "sh", "-c", "echo hello; echo to-stderr >&2; sleep 1; echo done")
	if r.code != 0 {
		t.Fatalf("want exit 0\n%s", r)
	}
	name := createdName(t, r)
	for _, want := range []string{"] hello\n", "] to-stderr\n", "] done\n"} {
		if !strings.Contains(r.stdout, "["+name+"-") || !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks the pod-prefixed line %q\n%s", want, r)
		}
	}
	if strings.Index(r.stdout, "hello") > strings.Index(r.stdout, "done") {
		t.Errorf("lines out of order\n%s", r)
	}
	if !strings.Contains(r.stderr, "job/"+name+" succeeded") || !strings.Contains(r.stderr, "deleted (--cleanup on-success)") {
		t.Errorf("summary or cleanup line missing\n%s", r)
	}
	if !jobGone(ns, name) {
		t.Errorf("job %s still there after on-success cleanup", name)
	}
	t.Logf("job succeeded in %s", r.took)
}

// A Job that fails: the container's exit code becomes fairing-submit's, its logs were shown, and
// the Job is kept; then status, logs, list and delete work on it.
func TestJobFailsAndManage(t *testing.T) {
	needCluster(t)
	t.Parallel()
	ns := namespace(t)
	r := submit(t, ns, "run", "--image", busybox, "--id", "failing-run", "--", "sh", "-c", "echo about to fail; echo oops >&2; exit 3")
	if r.code != 3 {
		t.Fatalf("want exit 3 (the container's)\n%s", r)
	}
	name := createdName(t, r)
	if !strings.Contains(r.stdout, "] about to fail") || !strings.Contains(r.stdout, "] oops") {
		t.Errorf("logs of the failed container missing\n%s", r)
	}
	if !strings.Contains(r.stderr, "failed (BackoffLimitExceeded)") || !strings.Contains(r.stderr, "exit code 3") || !strings.Contains(r.stderr, "kept for inspection") {
		t.Errorf("summary lacks the reason, exit code or kept note\n%s", r)
	}
	if jobGone(ns, name) {
		t.Fatalf("failed job %s was deleted; on-success cleanup must keep it", name)
	}

	// status
	st := submit(t, ns, "status", name, "-o", "json")
	if st.code != 0 {
		t.Fatalf("status: %s", st)
	}
	var item struct {
		Kind, Name, State, ID string
		Pods                  []struct {
			Name     string
			Problems []struct {
				Reason   string
				ExitCode int
			}
		}
	}
	if err := json.Unmarshal([]byte(st.stdout), &item); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, st)
	}
	if item.Kind != "job" || item.Name != name || item.State != "Failed" || item.ID != "failing-run" || len(item.Pods) != 1 ||
		len(item.Pods[0].Problems) == 0 || item.Pods[0].Problems[0].ExitCode != 3 {
		t.Errorf("status: %+v", item)
	}
	if txt := submit(t, ns, "status", name); !strings.Contains(txt.stdout, "job/"+name+" in namespace "+ns+": Failed") {
		t.Errorf("status text: %s", txt)
	}

	// logs
	lg := submit(t, ns, "logs", name)
	if lg.code != 0 || !strings.Contains(lg.stdout, "] about to fail") || !strings.Contains(lg.stdout, "["+item.Pods[0].Name+"] ") {
		t.Errorf("logs: %s", lg)
	}

	// list
	ls := submit(t, ns, "list", "-o", "json")
	var items []struct{ Kind, Name, State string }
	if err := json.Unmarshal([]byte(ls.stdout), &items); err != nil || len(items) != 1 || items[0].Name != name || items[0].State != "Failed" {
		t.Errorf("list -o json: %v %+v\n%s", err, items, ls)
	}
	if txt := submit(t, ns, "list"); !strings.Contains(txt.stdout, name) || !strings.Contains(txt.stdout, "failing-run") {
		t.Errorf("list: %s", txt)
	}

	// delete by name, then nothing is left
	del := submit(t, ns, "delete", name)
	if del.code != 0 || !strings.Contains(del.stdout, "job/"+name+" deleted") {
		t.Fatalf("delete: %s", del)
	}
	if !jobGone(ns, name) {
		t.Errorf("job %s still there after delete", name)
	}
	if miss := submit(t, ns, "status", name); miss.code != 2 || !strings.Contains(miss.stderr, "no workload named") {
		t.Errorf("status of a deleted job: %s", miss)
	}
}

// --runs 2: two pods, both followed, each line prefixed by its own pod; -o json gives the result.
func TestJobRunsJSON(t *testing.T) {
	needCluster(t)
	t.Parallel()
	ns := namespace(t)
	r := submit(t, ns, "run", "--image", busybox, "--runs", "2", "-o", "json", "--", "sh", "-c", "echo from $(hostname)")
	if r.code != 0 {
		t.Fatalf("want exit 0\n%s", r)
	}
	var res struct {
		Kind, Name, Namespace, State string
		ExitCode                     int
		Pods                         []string
		Deleted                      bool
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("-o json result: %v\n%s", err, r)
	}
	if res.Kind != "job" || res.Namespace != ns || res.State != "Succeeded" || res.ExitCode != 0 || len(res.Pods) != 2 || !res.Deleted {
		t.Errorf("result: %+v", res)
	}
	// with -o json the logs go to stderr, one prefixed line per pod
	for _, p := range res.Pods {
		if !strings.Contains(r.stderr, "["+p+"] from "+p+"\n") {
			t.Errorf("no log line of pod %s on stderr\n%s", p, r)
		}
	}
}

// Cleanup policies and TTL as documented: never keeps a succeeded Job, always deletes a failed one,
// and --ttl makes Kubernetes delete a finished Job nobody followed.
func TestCleanupAndTTL(t *testing.T) {
	needCluster(t)
	t.Parallel()
	ns := namespace(t)
	keep := submit(t, ns, "run", "--image", busybox, "--cleanup", "never", "--", "true")
	if keep.code != 0 || jobGone(ns, createdName(t, keep)) {
		t.Errorf("--cleanup never: the succeeded job must stay\n%s", keep)
	}
	del := submit(t, ns, "run", "--image", busybox, "--cleanup", "always", "--", "sh", "-c", "echo bye; exit 5")
	if del.code != 5 || !strings.Contains(del.stdout, "] bye") || !jobGone(ns, createdName(t, del)) {
		t.Errorf("--cleanup always: want exit 5, logs shown, job deleted\n%s", del)
	}
	ttl := submit(t, ns, "run", "--image", busybox, "--ttl", "1s", "--detach", "--", "true")
	if ttl.code != 0 {
		t.Fatalf("--detach: %s", ttl)
	}
	name := createdName(t, ttl)
	j, err := cs.BatchV1().Jobs(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil || j.Spec.TTLSecondsAfterFinished == nil || *j.Spec.TTLSecondsAfterFinished != 1 {
		t.Fatalf("job %s: ttlSecondsAfterFinished not 1: %v", name, err)
	}
	eventually(t, 90*time.Second, "the TTL controller to delete "+name, func() bool { return jobGone(ns, name) })
}
