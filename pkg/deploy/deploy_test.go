package deploy

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fairing-dev/fairing/pkg/deploy/follow"
	"github.com/fairing-dev/fairing/pkg/deploy/job"
	"github.com/fairing-dev/fairing/pkg/deploy/kserve"
	"github.com/fairing-dev/fairing/pkg/deploy/kube"
	"github.com/fairing-dev/fairing/pkg/deploy/pod"
	"github.com/fairing-dev/fairing/pkg/deploy/serving"
	"github.com/fairing-dev/fairing/pkg/deploy/training"
	"github.com/fairing-dev/fairing/pkg/deploy/workload"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestEvaluate(t *testing.T) {
	cond := func(typ string, status string, reason string) map[string]any {
		return map[string]any{"type": typ, "status": status, "reason": reason}
	}
	u := func(status map[string]any) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"status": status}}
	}
	one := int32(1)
	tests := []struct {
		name string
		d    workload.Driver
		obj  runtime.Object
		want workload.Phase
	}{
		{"job-new", job.Driver{}, &batchv1.Job{}, workload.Pending},
		{"job-active", job.Driver{}, &batchv1.Job{Status: batchv1.JobStatus{Active: 1}}, workload.Running},
		{"job-complete", job.Driver{}, &batchv1.Job{Status: batchv1.JobStatus{Conditions: []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}}}, workload.Succeeded},
		{"job-failed", job.Driver{}, &batchv1.Job{Status: batchv1.JobStatus{Conditions: []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "DeadlineExceeded"}}}}, workload.Failed},
		{"tfjob-running", training.TFJob(""), u(map[string]any{"conditions": []any{cond("Created", "True", ""), cond("Running", "True", "")}}), workload.Running},
		{"tfjob-succeeded", training.TFJob(""), u(map[string]any{"conditions": []any{cond("Running", "False", ""), cond("Succeeded", "True", "")}}), workload.Succeeded},
		{"pytorch-failed", training.PyTorchJob(""), u(map[string]any{"conditions": []any{cond("Failed", "True", "JobFailed")}}), workload.Failed},
		{"isvc-not-ready", kserve.New(""), u(map[string]any{"conditions": []any{cond("Ready", "False", "")}}), workload.Running},
		{"isvc-ready", kserve.New(""), u(map[string]any{"url": "http://x", "conditions": []any{cond("Ready", "True", "")}}), workload.Ready},
		{"isvc-load-failed", kserve.New(""), u(map[string]any{"modelStatus": map[string]any{"transitionStatus": "BlockedByFailedLoad"}}), workload.Failed},
		{"deploy-progressing", serving.Driver{}, &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: &one}, Status: appsv1.DeploymentStatus{Replicas: 1, UpdatedReplicas: 1}}, workload.Running},
		{"deploy-available", serving.Driver{}, &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: &one}, Status: appsv1.DeploymentStatus{Replicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1}}, workload.Ready},
		{"deploy-deadline", serving.Driver{}, &appsv1.Deployment{Status: appsv1.DeploymentStatus{Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded"}}}}, workload.Failed},
	}
	for _, tc := range tests {
		if got := tc.d.Evaluate(tc.obj).Phase; got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestTrainingMainPod(t *testing.T) {
	s := &workload.Spec{ID: "x", Pod: pod.Options{Image: "img"}}
	for _, tc := range []struct {
		d    *training.Driver
		o    workload.TrainingOptions
		want string
	}{
		{training.TFJob(""), workload.TrainingOptions{Chief: 1, Workers: 2}, "chief"},
		{training.TFJob(""), workload.TrainingOptions{Workers: 2, PS: 1}, "worker"},
		{training.PyTorchJob(""), workload.TrainingOptions{Workers: 2}, "master"},
	} {
		s.Training = tc.o
		objs, err := tc.d.Build(s)
		if err != nil {
			t.Fatal(err)
		}
		u := objs[0].(*unstructured.Unstructured)
		u.SetName("j")
		sel := tc.d.Pods(u)
		want := "training.kubeflow.org/job-name=j,training.kubeflow.org/replica-index=0,training.kubeflow.org/replica-type=" + tc.want
		if sel.Main.String() != want {
			t.Errorf("%s %+v: main pods %s, want %s", tc.d.Kind(), tc.o, sel.Main, want)
		}
	}
}

func TestServiceURL(t *testing.T) {
	svc := func(typ corev1.ServiceType, ingress ...corev1.LoadBalancerIngress) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "m", Namespace: "ns", Annotations: map[string]string{"fairing.dev/url-path": "predict"}},
			Spec:   corev1.ServiceSpec{Type: typ, Ports: []corev1.ServicePort{{Port: 80}}},
			Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: ingress}}}
	}
	for _, tc := range []struct {
		s    *corev1.Service
		want string
	}{
		{svc(corev1.ServiceTypeClusterIP), "http://m.ns.svc.cluster.local:80/predict"},
		{svc(corev1.ServiceTypeLoadBalancer), ""},
		{svc(corev1.ServiceTypeLoadBalancer, corev1.LoadBalancerIngress{IP: "1.2.3.4"}), "http://1.2.3.4:80/predict"},
		{svc(corev1.ServiceTypeLoadBalancer, corev1.LoadBalancerIngress{Hostname: "lb.example.com"}), "http://lb.example.com:80/predict"},
	} {
		if got := serving.ServiceURL(tc.s); got != tc.want {
			t.Errorf("%s %v: %q, want %q", tc.s.Spec.Type, tc.s.Status.LoadBalancer.Ingress, got, tc.want)
		}
	}
}

// Run with the fake clientset (fast tier; the real cluster tests are in test/submit): the Job is
// created, its pod's log is streamed with the pod prefix, the result is read from the Job's
// conditions and the pod's exit code, and the cleanup policy is applied.
func TestRunFake(t *testing.T) {
	for _, tc := range []struct {
		name     string
		exitCode int32
		cleanup  workload.Cleanup
		deleted  bool
	}{
		{"success-default-cleanup", 0, "", true},
		{"failure-kept", 3, "", false},
		{"failure-always", 3, workload.CleanupAlways, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset()
			cs.PrependReactor("create", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
				j := a.(k8stesting.CreateAction).GetObject().(*batchv1.Job)
				j.Name, j.UID = j.GenerateName+"abcde", types.UID("uid-1")
				return false, nil, nil
			})
			c := &kube.Clients{Typed: cs, Discovery: cs.Discovery(), Namespace: "ns"}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			go playJobController(ctx, cs, tc.exitCode)
			var out, progress bytes.Buffer
			spec := &workload.Spec{ID: "id1", Pod: pod.Options{Image: "img"}}
			res, err := Run(ctx, c, job.Driver{}, spec, RunOptions{Cleanup: tc.cleanup, SkipSecretCheck: true,
				Follow: follow.Options{Out: &out, Progress: &progress, FailFast: true, Drain: 2 * time.Second}})
			if err != nil {
				t.Fatal(err)
			}
			if res.Name != "fairing-job-abcde" || res.ExitCode != int(tc.exitCode) || res.Deleted != tc.deleted {
				t.Errorf("result %+v\n%s", res, progress.String())
			}
			if !strings.Contains(out.String(), "[fairing-job-abcde-pod] fake logs") {
				t.Errorf("logs %q", out.String())
			}
			_, err = cs.BatchV1().Jobs("ns").Get(ctx, res.Name, metav1.GetOptions{})
			if gone := err != nil; gone != tc.deleted {
				t.Errorf("job deleted %v, want %v", gone, tc.deleted)
			}
			if s := Summary(res); (tc.exitCode != 0) != strings.Contains(s, "failed") {
				t.Errorf("summary %q", s)
			}
		})
	}
}

// playJobController waits for the Job, runs its "pod" to the given exit code, then marks the Job.
func playJobController(ctx context.Context, cs *fake.Clientset, code int32) {
	var j *batchv1.Job
	for ctx.Err() == nil {
		if l, _ := cs.BatchV1().Jobs("ns").List(ctx, metav1.ListOptions{}); l != nil && len(l.Items) == 1 {
			j = &l.Items[0]
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if j == nil {
		return
	}
	phase := corev1.PodSucceeded
	if code != 0 {
		phase = corev1.PodFailed
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: j.Name + "-pod", Namespace: "ns", Labels: map[string]string{batchv1.ControllerUidLabel: string(j.UID)}},
		Spec:       corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: job.Container}}},
		Status: corev1.PodStatus{Phase: phase, ContainerStatuses: []corev1.ContainerStatus{{Name: job.Container,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: "Error"}}}}},
	}
	cs.CoreV1().Pods("ns").Create(ctx, p, metav1.CreateOptions{})
	time.Sleep(100 * time.Millisecond)
	c := batchv1.JobCondition{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}
	if code != 0 {
		c = batchv1.JobCondition{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded"}
	}
	j.Status.Conditions = append(j.Status.Conditions, c)
	cs.BatchV1().Jobs("ns").UpdateStatus(ctx, j, metav1.UpdateOptions{})
}

// checkSecrets names what is missing: the secret, or the whole namespace (a missing namespace
// must not read as a missing secret). Who may not read secrets or namespaces is not stopped.
func TestCheckSecrets(t *testing.T) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "team-a"}}
	wl := &batchv1.Job{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{
		Name: "main", Image: "img",
		Env: []corev1.EnvVar{{Name: "TOKEN", ValueFrom: &corev1.EnvVarSource{
			SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "api"}, Key: "token"}}}},
	}}}}}}
	forbid := func(res string) func(k8stesting.Action) (bool, runtime.Object, error) {
		return func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(corev1.Resource(res), "", errors.New("RBAC: access denied"))
		}
	}
	tests := []struct {
		name    string
		objs    []runtime.Object
		forbid  string // resource the user may not get
		want    string // "" = no error
		notWant string
	}{
		{name: "all-there", objs: []runtime.Object{ns, secret}},
		{name: "secret-missing", objs: []runtime.Object{ns}, want: `secret "api" does not exist in namespace "team-a"`},
		{name: "namespace-missing", want: `namespace "team-a" does not exist: create it (kubectl create namespace team-a) or pick another with --namespace`,
			notWant: `secret "api" does not exist`},
		{name: "secrets-forbidden", forbid: "secrets"},
		{name: "namespaces-forbidden", forbid: "namespaces", want: `secret "api" does not exist in namespace "team-a"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset(tc.objs...)
			if tc.forbid != "" {
				cs.PrependReactor("get", tc.forbid, forbid(tc.forbid))
			}
			err := checkSecrets(context.Background(), &kube.Clients{Typed: cs, Namespace: "team-a"}, "team-a", []runtime.Object{wl})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("error %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			case tc.notWant != "" && strings.Contains(err.Error(), tc.notWant):
				t.Errorf("error %q: must not say %q", err, tc.notWant)
			}
		})
	}
}
