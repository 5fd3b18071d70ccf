package submit

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/retry"
)

var (
	tfjobs     = schema.GroupVersionResource{Group: "kubeflow.org", Version: "v1", Resource: "tfjobs"}
	pytorchjob = schema.GroupVersionResource{Group: "kubeflow.org", Version: "v1", Resource: "pytorchjobs"}
	isvcs      = schema.GroupVersionResource{Group: "serving.kserve.io", Version: "v1beta1", Resource: "inferenceservices"}
)

// background runs fairing-submit while the test plays the operator.
func background(t *testing.T, ns string, args ...string) <-chan result {
	ch := make(chan result, 1)
	go func() { ch <- submit(t, ns, args...) }()
	return ch
}

func waitObject(t *testing.T, gvr schema.GroupVersionResource, ns, name string) *unstructured.Unstructured {
	t.Helper()
	var u *unstructured.Unstructured
	eventually(t, 60*time.Second, gvr.Resource+" "+name, func() bool {
		var err error
		u, err = dyn.Resource(gvr).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
		return err == nil
	})
	return u
}

func setStatus(t *testing.T, gvr schema.GroupVersionResource, ns, name string, status map[string]any) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		u, err := dyn.Resource(gvr).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		u.Object["status"] = status
		_, err = dyn.Resource(gvr).Namespace(ns).UpdateStatus(context.Background(), u, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("update status of %s: %v", name, err)
	}
}

func cond(typ, reason, msg string) map[string]any {
	return map[string]any{"type": typ, "status": "True", "reason": reason, "message": msg,
		"lastTransitionTime": time.Now().UTC().Format(time.RFC3339)}
}

// playTrainingOperator does what the Training Operator does: it runs a real pod (index 0) for
// every replica type from its template, with the operator's labels, and sets the job's conditions
// from the result of the given replica's pod. It returns that pod's exit code.
func playTrainingOperator(t *testing.T, gvr schema.GroupVersionResource, ns, name, specsField, replica string) int32 {
	t.Helper()
	u := waitObject(t, gvr, ns, name)
	specs, _, _ := unstructured.NestedMap(u.Object, "spec", specsField)
	if _, ok := specs[replica]; !ok {
		t.Fatalf("%s has no %s.%s", name, specsField, replica)
	}
	ctx := context.Background()
	var pod *corev1.Pod
	for typ := range specs {
		tm, _, err := unstructured.NestedMap(specs, typ, "template")
		if err != nil {
			t.Fatal(err)
		}
		var tmpl corev1.PodTemplateSpec
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(tm, &tmpl); err != nil {
			t.Fatal(err)
		}
		p := &corev1.Pod{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec}
		p.Name = fmt.Sprintf("%s-%s-0", name, strings.ToLower(typ))
		if p.Labels == nil {
			p.Labels = map[string]string{}
		}
		p.Labels["training.kubeflow.org/job-name"] = name
		p.Labels["training.kubeflow.org/replica-type"] = strings.ToLower(typ)
		p.Labels["training.kubeflow.org/replica-index"] = "0"
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: u.GetAPIVersion(), Kind: u.GetKind(), Name: name, UID: u.GetUID()}}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s: %v", p.Name, err)
		}
		if typ == replica {
			pod = p
		}
	}
	rt := strings.ToLower(replica)
	setStatus(t, gvr, ns, name, map[string]any{"conditions": []any{cond("Created", "JobCreated", "created"), cond("Running", "JobRunning", "running")}})
	var code int32
	eventually(t, 90*time.Second, "pod "+pod.Name+" to end", func() bool {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil || (p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed) {
			return false
		}
		for _, s := range p.Status.ContainerStatuses {
			if s.State.Terminated != nil {
				code = s.State.Terminated.ExitCode
			}
		}
		return true
	})
	final := cond("Succeeded", "JobSucceeded", "job succeeded")
	if code != 0 {
		final = cond("Failed", "JobFailed", fmt.Sprintf("%s-0 failed with exit code %d", rt, code))
	}
	running := cond("Running", "JobRunning", "running")
	running["status"] = "False"
	setStatus(t, gvr, ns, name, map[string]any{"conditions": []any{cond("Created", "JobCreated", "created"), running, final}})
	return code
}

// TFJob and PyTorchJob against their real CRDs, with the test as the operator: fairing-submit
// follows the chief's (or master's) logs and reports success and failure with the right exit code.
func TestTrainingJobs(t *testing.T) {
	needCluster(t)
	tests := []struct {
		name, kind, field, replica string
		gvr                        schema.GroupVersionResource
		extra                      []string
		script                     string
		code                       int
	}{
		{"tfjob-succeeds", "tfjob", "tfReplicaSpecs", "Chief", tfjobs, []string{"--chief", "1", "--workers", "2"}, "echo chief trains; echo chief done", 0},
		{"tfjob-fails", "tfjob", "tfReplicaSpecs", "Worker", tfjobs, []string{"--workers", "1", "--ps", "1"}, "echo worker breaks; exit 7", 7},
		{"pytorchjob-succeeds", "pytorchjob", "pytorchReplicaSpecs", "Master", pytorchjob, []string{"--workers", "1"}, "echo master trains", 0},
		{"pytorchjob-fails", "pytorchjob", "pytorchReplicaSpecs", "Master", pytorchjob, nil, "echo master breaks; exit 9", 9},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := namespace(t)
			name := "train-" + tc.kind
			args := append([]string{"run", "-d", tc.kind, "--name", name, "--image", busybox, "-o", "json"}, tc.extra...)
			args = append(args, "--", "sh", "-c", tc.script)
			done := background(t, ns, args...)
			code := playTrainingOperator(t, tc.gvr, ns, name, tc.field, tc.replica)
			r := <-done
			if int(code) != tc.code || r.code != tc.code {
				t.Fatalf("pod exit %d, fairing-submit exit %d, want %d\n%s", code, r.code, tc.code, r)
			}
			var res struct {
				Kind, Name, State string
				ExitCode          int
				Pods              []string
			}
			if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
				t.Fatalf("-o json: %v\n%s", err, r)
			}
			wantState := "Succeeded"
			if tc.code != 0 {
				wantState = "Failed"
			}
			podName := fmt.Sprintf("%s-%s-0", name, strings.ToLower(tc.replica))
			if res.Kind != tc.kind || res.Name != name || res.State != wantState || res.ExitCode != tc.code {
				t.Errorf("result %+v", res)
			}
			firstLine := strings.SplitN(strings.TrimPrefix(tc.script, "echo "), ";", 2)[0]
			if !strings.Contains(r.stderr, "["+podName+"] "+firstLine+"\n") {
				t.Errorf("the %s's log line %q is missing (logs go to stderr with -o json)\n%s", tc.replica, firstLine, r)
			}
			// only the main replica's logs are streamed: the other replicas' pods ran the same script
			if n := strings.Count(r.stderr, "] "+firstLine+"\n"); n != 1 {
				t.Errorf("the line %q was streamed %d times, want once (from %s only)\n%s", firstLine, n, podName, r)
			}
			// the default cleanup of training jobs is never: the job stays with its status
			if _, err := dyn.Resource(tc.gvr).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{}); err != nil {
				t.Errorf("%s was not kept: %v", name, err)
			}
			if tc.kind == "tfjob" && tc.code != 0 {
				// parameter servers never get GPUs, and the PS replica exists
				u, _ := dyn.Resource(tc.gvr).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
				if _, ok, _ := unstructured.NestedMap(u.Object, "spec", "tfReplicaSpecs", "PS"); !ok {
					t.Errorf("no PS replica spec")
				}
			}
		})
	}
}

// InferenceService against the real CRD, with the test as KServe's controller: Ready with a URL,
// and a failed model load.
func TestKServe(t *testing.T) {
	needCluster(t)
	t.Run("ready", func(t *testing.T) {
		t.Parallel()
		ns := namespace(t)
		done := background(t, ns, "run", "-d", "kserve", "--name", "iris", "--image", busybox, "--label", "team=a",
			"--annotation", "note=x", "--canary-traffic-percent", "10", "-o", "json", "--", "httpd", "-f", "-p", "8080")
		u := waitObject(t, isvcs, ns, "iris")
		img, _, _ := unstructured.NestedSlice(u.Object, "spec", "predictor", "containers")
		if len(img) != 1 || img[0].(map[string]any)["image"] != busybox || u.GetLabels()["team"] != "a" || u.GetAnnotations()["note"] != "x" {
			t.Errorf("the predictor must run the built image with the labels and annotations: %v", u.Object)
		}
		if p, _, _ := unstructured.NestedInt64(u.Object, "spec", "predictor", "canaryTrafficPercent"); p != 10 {
			t.Errorf("canaryTrafficPercent %d", p)
		}
		setStatus(t, isvcs, ns, "iris", map[string]any{"conditions": []any{map[string]any{"type": "Ready", "status": "False", "reason": "Starting"}}})
		time.Sleep(300 * time.Millisecond)
		setStatus(t, isvcs, ns, "iris", map[string]any{"url": "http://iris." + ns + ".example.com",
			"conditions": []any{cond("Ready", "", ""), cond("PredictorReady", "", "")}})
		r := <-done
		var res struct{ State, URL string }
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &res) != nil || res.State != "Ready" || res.URL != "http://iris."+ns+".example.com" {
			t.Fatalf("want Ready with the URL\n%s", r)
		}
		if !strings.Contains(r.stderr, "kserve/iris is ready at http://iris."+ns+".example.com") {
			t.Errorf("summary\n%s", r)
		}
	})
	t.Run("model-load-fails", func(t *testing.T) {
		t.Parallel()
		ns := namespace(t)
		done := background(t, ns, "run", "-d", "kserve", "--name", "broken", "--model-format", "sklearn", "--storage-uri", "gs://bucket/none", "--image", busybox)
		waitObject(t, isvcs, ns, "broken")
		setStatus(t, isvcs, ns, "broken", map[string]any{"modelStatus": map[string]any{"transitionStatus": "BlockedByFailedLoad",
			"lastFailureInfo": map[string]any{"reason": "ModelLoadFailed", "message": "no model at gs://bucket/none"}}})
		r := <-done
		if r.code != 1 || !strings.Contains(r.stderr, "ModelLoadFailed") || !strings.Contains(r.stderr, "no model at gs://bucket/none") {
			t.Fatalf("want exit 1 with the load failure\n%s", r)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		ns := namespace(t)
		r := submit(t, ns, "run", "-d", "kserve", "--name", "slow", "--image", busybox, "--timeout", "3s")
		if r.code != 1 || !strings.Contains(r.stderr, "Timeout") || !strings.Contains(r.stderr, "3s") {
			t.Fatalf("want a timeout report\n%s", r)
		}
		if _, err := dyn.Resource(isvcs).Namespace(ns).Get(context.Background(), "slow", metav1.GetOptions{}); apierrors.IsNotFound(err) {
			t.Errorf("the InferenceService must be kept (cleanup never)")
		}
	})
}
