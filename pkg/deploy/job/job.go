// Package job deploys a workload as a batch/v1 Job (fairing-submit --deployer job).
package job

import (
	"context"
	"fmt"

	"github.com/fairing-dev/fairing/pkg/deploy/kube"
	"github.com/fairing-dev/fairing/pkg/deploy/workload"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"
)

// Kind is the deployer name.
const Kind = "job"

// Container is the name of the workload's container, as in the original Fairing.
const Container = "fairing-job"

var gr = schema.GroupResource{Group: "batch", Resource: "jobs"}

// Driver is the Job deployer. Default cleanup: on-success (a failed Job and its pods stay, so
// its logs can be read again; set --ttl to have Kubernetes remove it later).
type Driver struct{}

var _ workload.Driver = Driver{}

func (Driver) Kind() string                      { return Kind }
func (Driver) Resources() []schema.GroupResource { return []schema.GroupResource{gr} }
func (Driver) DefaultCleanup() workload.Cleanup  { return workload.CleanupOnSuccess }

// Build returns the Job.
func (Driver) Build(s *workload.Spec) ([]runtime.Object, error) {
	t, err := workload.PodTemplate(s, Kind, Container, corev1.RestartPolicyNever)
	if err != nil {
		return nil, err
	}
	runs := s.Job.Runs
	if runs <= 0 {
		runs = 1
	}
	backoff := int32(0)
	j := &batchv1.Job{
		TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Labels: workload.ObjectLabels(s, Kind)},
		Spec: batchv1.JobSpec{
			Parallelism:             &runs,
			Completions:             &runs,
			BackoffLimit:            &backoff,
			ActiveDeadlineSeconds:   workload.Seconds(s.Timeout),
			TTLSecondsAfterFinished: ttl(s),
			Template:                t,
		},
	}
	if s.Name != "" {
		j.Name = s.Name
	} else {
		j.GenerateName = "fairing-job-"
	}
	return []runtime.Object{j}, nil
}

func ttl(s *workload.Spec) *int32 {
	if s.TTL == nil {
		return nil
	}
	v := int32(s.TTL.Seconds())
	return &v
}

func (Driver) Preflight(context.Context, *kube.Clients) error { return nil }

func (Driver) Create(ctx context.Context, c *kube.Clients, ns string, objs []runtime.Object) (runtime.Object, error) {
	j, ok := objs[0].(*batchv1.Job)
	if !ok {
		return nil, fmt.Errorf("job deployer: unexpected object %T", objs[0])
	}
	out, err := c.Typed.BatchV1().Jobs(ns).Create(ctx, j, metav1.CreateOptions{})
	if err != nil {
		return nil, kube.Explain(err, "create", gr, ns)
	}
	return out, nil
}

func (Driver) ListWatch(c *kube.Clients, ns, name string) (cache.ListerWatcher, runtime.Object) {
	return kube.NameListWatch[*batchv1.JobList](c.Typed.BatchV1().Jobs(ns), name), &batchv1.Job{}
}

func (Driver) Get(ctx context.Context, c *kube.Clients, ns, name string) (runtime.Object, error) {
	j, err := c.Typed.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, kube.Explain(err, "get", gr, ns)
	}
	return j, nil
}

func (Driver) List(ctx context.Context, c *kube.Clients, ns string, sel labels.Selector) ([]runtime.Object, error) {
	l, err := c.Typed.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, kube.Explain(err, "list", gr, ns)
	}
	out := make([]runtime.Object, 0, len(l.Items))
	for i := range l.Items {
		out = append(out, &l.Items[i])
	}
	return out, nil
}

func (Driver) Delete(ctx context.Context, c *kube.Clients, ns, name string) error {
	bg := metav1.DeletePropagationBackground
	err := c.Typed.BatchV1().Jobs(ns).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &bg})
	return kube.Explain(err, "delete", gr, ns)
}

// Evaluate reads the Job's conditions (Complete, Failed and their *Target forerunners).
func (Driver) Evaluate(obj runtime.Object) workload.State {
	j, ok := obj.(*batchv1.Job)
	if !ok {
		return workload.State{Phase: workload.Pending}
	}
	for _, c := range j.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete, batchv1.JobSuccessCriteriaMet:
			return workload.State{Phase: workload.Succeeded, Reason: c.Reason, Message: c.Message}
		case batchv1.JobFailed, batchv1.JobFailureTarget:
			return workload.State{Phase: workload.Failed, Reason: c.Reason, Message: c.Message}
		}
	}
	if j.Status.Active > 0 || j.Status.Succeeded > 0 {
		return workload.State{Phase: workload.Running}
	}
	return workload.State{Phase: workload.Pending}
}

// Pods of a Job are found through the controller-uid label the Job controller sets, which no
// other Job can share.
func (Driver) Pods(obj runtime.Object) workload.Pods {
	j, _ := obj.(*batchv1.Job)
	sel := labels.Nothing()
	if j != nil && j.UID != "" {
		sel = labels.SelectorFromSet(labels.Set{batchv1.ControllerUidLabel: string(j.UID)})
	}
	return workload.Pods{All: sel, Main: sel, Container: Container}
}
