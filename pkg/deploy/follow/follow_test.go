package follow

import (
	"bytes"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func podWith(restart corev1.RestartPolicy, cs ...corev1.ContainerStatus) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec: corev1.PodSpec{RestartPolicy: restart, Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
			Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("16Mi")}}}}},
		Status: corev1.PodStatus{ContainerStatuses: cs},
	}
}

func TestInspect(t *testing.T) {
	waiting := func(reason string) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: "c", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: "m"}}}
	}
	waitingMsg := func(reason, msg string) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: "c", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}}
	}
	terminated := func(code int32, reason string, restarts int32) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: "c", RestartCount: restarts, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason}}}
	}
	tests := []struct {
		name   string
		pod    *corev1.Pod
		reason string
		code   int
		fatal  bool
		msg    string
	}{
		{"pull-transient", podWith(corev1.RestartPolicyNever, waiting("ErrImagePull")), "ErrImagePull", 0, false, "m"},
		{"pull-not-found", podWith(corev1.RestartPolicyNever, waitingMsg("ErrImagePull", "x:1: not found")), "ErrImagePull", 0, true, "not found"},
		{"backoff-denied", podWith(corev1.RestartPolicyNever, waitingMsg("ImagePullBackOff", "pull access denied")), "ImagePullBackOff", 0, true, "denied"},
		{"config", podWith(corev1.RestartPolicyNever, waitingMsg("CreateContainerConfigError", `couldn't find key token in Secret ns/api`)), "CreateContainerConfigError", 0, true, "couldn't find key"},
		{"invalid-name", podWith(corev1.RestartPolicyNever, waiting("InvalidImageName")), "InvalidImageName", 0, true, "m"},
		{"creating", podWith(corev1.RestartPolicyNever, waiting("ContainerCreating")), "", 0, false, ""},
		{"error", podWith(corev1.RestartPolicyNever, terminated(3, "Error", 0)), "Error", 3, false, ""},
		{"ok", podWith(corev1.RestartPolicyNever, terminated(0, "Completed", 0)), "", 0, false, ""},
		{"oom", podWith(corev1.RestartPolicyNever, terminated(137, "OOMKilled", 0)), "OOMKilled", 137, false, "memory limit 16Mi"},
		{"first-crash", podWith(corev1.RestartPolicyAlways, terminated(4, "Error", 0)), "Error", 4, false, ""},
		{"crash-again", podWith(corev1.RestartPolicyAlways, terminated(4, "Error", 1)), "CrashLoopBackOff", 4, true, "after 1 restart"},
	}
	crash := waiting("CrashLoopBackOff")
	crash.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled"}
	tests = append(tests, struct {
		name   string
		pod    *corev1.Pod
		reason string
		code   int
		fatal  bool
		msg    string
	}{"crashloop-oom", podWith(corev1.RestartPolicyAlways, crash), "CrashLoopBackOff", 137, true, "OOMKilled (memory limit 16Mi)"})
	unsched := podWith(corev1.RestartPolicyNever)
	unsched.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable", Message: "0/1 nodes are available: insufficient cpu"}}
	tests = append(tests, struct {
		name   string
		pod    *corev1.Pod
		reason string
		code   int
		fatal  bool
		msg    string
	}{"unschedulable", unsched, "Unschedulable", 0, true, "insufficient cpu"})
	for _, tc := range tests {
		ps := Inspect(tc.pod)
		if tc.reason == "" {
			if len(ps) != 0 {
				t.Errorf("%s: unexpected problems %+v", tc.name, ps)
			}
			continue
		}
		if len(ps) != 1 {
			t.Fatalf("%s: problems %+v", tc.name, ps)
		}
		p := ps[0]
		if p.Reason != tc.reason || p.ExitCode != tc.code || p.Fatal != tc.fatal || !strings.Contains(p.Message, tc.msg) {
			t.Errorf("%s: %+v", tc.name, p)
		}
	}
}

func TestCopyLinesSkipsSeenLines(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ts := func(ms int) string { return t0.Add(time.Duration(ms) * time.Millisecond).Format(time.RFC3339Nano) }
	var out bytes.Buffer
	w := NewLineWriter(&out)
	last := copyLines(strings.NewReader(ts(100)+" one\n"+ts(200)+" two\n"+ts(300)+"\n"), "[p] ", time.Time{}, w)
	// a reconnect asks from the whole second: the lines already shown come again and are skipped
	copyLines(strings.NewReader(ts(100)+" one\n"+ts(200)+" two\n"+ts(300)+"\n"+ts(400)+" three\npartial"), "[p] ", last, w)
	want := "[p] one\n[p] two\n[p] \n[p] three\n[p] partial\n"
	if out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}

func TestDone(t *testing.T) {
	term := corev1.ContainerStatus{Name: "c", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1}}}
	run := corev1.ContainerStatus{Name: "c", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
	for _, tc := range []struct {
		pod  *corev1.Pod
		want bool
	}{
		{podWith(corev1.RestartPolicyNever, term), true},
		{podWith(corev1.RestartPolicyAlways, term), false},
		{podWith(corev1.RestartPolicyOnFailure, term), false},
		{podWith(corev1.RestartPolicyNever, run), false},
	} {
		if got := done(tc.pod, "c"); got != tc.want {
			t.Errorf("done(%s, %+v) = %v", tc.pod.Spec.RestartPolicy, tc.pod.Status.ContainerStatuses[0].State, got)
		}
	}
}

func TestFatalEvent(t *testing.T) {
	for _, tc := range []struct {
		reason, msg string
		want        bool
	}{
		{"FailedCreate", `Error creating: pods "x-" is forbidden: error looking up service account ns/typo: serviceaccount "typo" not found`, true},
		{"FailedMount", `MountVolume.SetUp failed for volume "v" : configmap "typo" not found`, true},
		{"FailedMount", `MountVolume.SetUp failed for volume "kube-api-access-x" : failed to sync configmap cache: timed out waiting for the condition`, false},
		{"BackOff", `Back-off restarting failed container`, false},
	} {
		if got := FatalEvent(&corev1.Event{Reason: tc.reason, Message: tc.msg}); got != tc.want {
			t.Errorf("%s %q: %v", tc.reason, tc.msg, got)
		}
	}
}
