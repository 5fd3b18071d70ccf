// Package training deploys Kubeflow Training Operator jobs: TFJob (Chief/Worker/PS, container
// "tensorflow") and PyTorchJob (Master/Worker, container "pytorch"), through the dynamic client
// so that no operator module is needed.
package training

import (
	"context"
	"fmt"
	"strings"

	"github.com/fairing-dev/fairing/pkg/deploy/kube"
	"github.com/fairing-dev/fairing/pkg/deploy/pod"
	"github.com/fairing-dev/fairing/pkg/deploy/workload"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"
)

// Labels the Training Operator (v1) puts on the pods it creates.
const (
	LabelJobName      = "training.kubeflow.org/job-name"
	LabelReplicaType  = "training.kubeflow.org/replica-type"
	LabelReplicaIndex = "training.kubeflow.org/replica-index"
)

// Group of the Training Operator's v1 kinds.
const Group = "kubeflow.org"

// InstallHint says how to get the CRDs.
const InstallHint = "install the Kubeflow Training Operator (kubectl apply --server-side -k \"github.com/kubeflow/training-operator.git/manifests/overlays/standalone?ref=v1.9.2\")"

// Driver deploys one Training Operator kind. Default cleanup: never (the finished job keeps its
// status for dashboards; runPolicy.cleanPodPolicy removes still-running pods when it ends).
type Driver struct {
	kind       string // deployer name: tfjob, pytorchjob
	objKind    string // TFJob, PyTorchJob
	resource   string // tfjobs, pytorchjobs
	specsField string // tfReplicaSpecs, pytorchReplicaSpecs
	container  string // tensorflow, pytorch
	version    string // kubeflow.org version
}

// TFJob returns the TFJob deployer for API version (default v1).
func TFJob(version string) *Driver {
	return &Driver{kind: "tfjob", objKind: "TFJob", resource: "tfjobs", specsField: "tfReplicaSpecs", container: "tensorflow", version: orV1(version)}
}

// PyTorchJob returns the PyTorchJob deployer for API version (default v1).
func PyTorchJob(version string) *Driver {
	return &Driver{kind: "pytorchjob", objKind: "PyTorchJob", resource: "pytorchjobs", specsField: "pytorchReplicaSpecs", container: "pytorch", version: orV1(version)}
}

func orV1(v string) string {
	if v == "" {
		return "v1"
	}
	return v
}

var _ workload.Driver = (*Driver)(nil)

func (d *Driver) Kind() string { return d.kind }
func (d *Driver) Resources() []schema.GroupResource {
	return []schema.GroupResource{d.GVR().GroupResource()}
}
func (d *Driver) DefaultCleanup() workload.Cleanup { return workload.CleanupNever }

// GVR of the kind.
func (d *Driver) GVR() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: Group, Version: d.version, Resource: d.resource}
}

// replica is one replica type with its count.
type replica struct {
	typ   string
	count int32
}

func (d *Driver) replicas(o workload.TrainingOptions) ([]replica, error) {
	if o.Chief < 0 || o.Workers < 0 || o.PS < 0 || o.Masters < 0 {
		return nil, fmt.Errorf("%s: replica counts must not be negative", d.kind)
	}
	if d.kind == "tfjob" {
		if o.Masters > 0 {
			return nil, fmt.Errorf("tfjob has no masters: use --chief")
		}
		rs := []replica{}
		if o.Chief > 0 {
			rs = append(rs, replica{"Chief", o.Chief})
		}
		// Worker is always present, as in the original; with a chief, zero workers is allowed
		w := o.Workers
		if w == 0 && o.Chief == 0 {
			w = 1
		}
		rs = append(rs, replica{"Worker", w})
		if o.PS > 0 {
			rs = append(rs, replica{"PS", o.PS})
		}
		return rs, nil
	}
	if o.Chief > 0 || o.PS > 0 {
		return nil, fmt.Errorf("pytorchjob has no chief or parameter servers: use --masters and --workers")
	}
	m := o.Masters
	if m == 0 {
		m = 1
	}
	if m != 1 {
		return nil, fmt.Errorf("pytorchjob: --masters must be 1 (the Training Operator runs exactly one master)")
	}
	rs := []replica{{"Master", m}}
	if o.Workers > 0 {
		rs = append(rs, replica{"Worker", o.Workers})
	}
	return rs, nil
}

// Build returns the TFJob or PyTorchJob.
func (d *Driver) Build(s *workload.Spec) ([]runtime.Object, error) {
	rs, err := d.replicas(s.Training)
	if err != nil {
		return nil, err
	}
	t, err := workload.PodTemplate(s, d.kind, d.container, corev1.RestartPolicyNever)
	if err != nil {
		return nil, err
	}
	specs := map[string]any{}
	for _, r := range rs {
		tt := *t.DeepCopy()
		if r.typ == "PS" {
			pod.StripGPU(&tt)
		}
		tm, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&tt)
		if err != nil {
			return nil, fmt.Errorf("encode %s pod template: %w", r.typ, err)
		}
		workload.Clean(tm)
		specs[r.typ] = map[string]any{"replicas": int64(r.count), "restartPolicy": "Never", "template": tm}
	}
	cpp := s.Training.CleanPodPolicy
	switch strings.ToLower(cpp) {
	case "":
		cpp = "Running"
	case "running", "all", "none":
		cpp = strings.ToUpper(cpp[:1]) + strings.ToLower(cpp[1:])
	default:
		return nil, fmt.Errorf("--clean-pod-policy %q: want Running, All or None", s.Training.CleanPodPolicy)
	}
	runPolicy := map[string]any{"cleanPodPolicy": cpp, "backoffLimit": int64(0)}
	if d := workload.Seconds(s.Timeout); d != nil {
		runPolicy["activeDeadlineSeconds"] = *d
	}
	if s.TTL != nil {
		runPolicy["ttlSecondsAfterFinished"] = int64(s.TTL.Seconds())
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": Group + "/" + d.version,
		"kind":       d.objKind,
		"metadata":   map[string]any{},
		"spec":       map[string]any{"runPolicy": runPolicy, d.specsField: specs},
	}}
	u.SetNamespace(s.Namespace)
	u.SetLabels(workload.ObjectLabels(s, d.kind))
	if s.Name != "" {
		u.SetName(s.Name)
	} else {
		u.SetGenerateName("fairing-" + d.kind + "-")
	}
	return []runtime.Object{u}, nil
}

func (d *Driver) Preflight(ctx context.Context, c *kube.Clients) error {
	return kube.CheckServed(c.Discovery, d.GVR(), d.objKind, InstallHint)
}

func (d *Driver) Create(ctx context.Context, c *kube.Clients, ns string, objs []runtime.Object) (runtime.Object, error) {
	u, ok := objs[0].(*unstructured.Unstructured)
	if !ok {
		return nil, fmt.Errorf("%s deployer: unexpected object %T", d.kind, objs[0])
	}
	out, err := c.Dynamic.Resource(d.GVR()).Namespace(ns).Create(ctx, u, metav1.CreateOptions{})
	if err != nil {
		return nil, kube.Explain(err, "create", d.GVR().GroupResource(), ns)
	}
	return out, nil
}

func (d *Driver) ListWatch(c *kube.Clients, ns, name string) (cache.ListerWatcher, runtime.Object) {
	return kube.NameListWatch[*unstructured.UnstructuredList](c.Dynamic.Resource(d.GVR()).Namespace(ns), name), &unstructured.Unstructured{}
}

func (d *Driver) Get(ctx context.Context, c *kube.Clients, ns, name string) (runtime.Object, error) {
	u, err := c.Dynamic.Resource(d.GVR()).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, kube.Explain(err, "get", d.GVR().GroupResource(), ns)
	}
	return u, nil
}

func (d *Driver) List(ctx context.Context, c *kube.Clients, ns string, sel labels.Selector) ([]runtime.Object, error) {
	l, err := c.Dynamic.Resource(d.GVR()).Namespace(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, kube.Explain(err, "list", d.GVR().GroupResource(), ns)
	}
	out := make([]runtime.Object, 0, len(l.Items))
	for i := range l.Items {
		out = append(out, &l.Items[i])
	}
	return out, nil
}

func (d *Driver) Delete(ctx context.Context, c *kube.Clients, ns, name string) error {
	bg := metav1.DeletePropagationBackground
	err := c.Dynamic.Resource(d.GVR()).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &bg})
	return kube.Explain(err, "delete", d.GVR().GroupResource(), ns)
}

// Evaluate reads the Training Operator's job conditions: the last true one of Created, Running,
// Restarting, Succeeded, Failed.
func (d *Driver) Evaluate(obj runtime.Object) workload.State {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return workload.State{Phase: workload.Pending}
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	st := workload.State{Phase: workload.Pending}
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["status"] != "True" {
			continue
		}
		reason, _ := m["reason"].(string)
		msg, _ := m["message"].(string)
		switch m["type"] {
		case "Succeeded":
			return workload.State{Phase: workload.Succeeded, Reason: reason, Message: msg}
		case "Failed":
			return workload.State{Phase: workload.Failed, Reason: reason, Message: msg}
		case "Running", "Restarting":
			st = workload.State{Phase: workload.Running, Reason: reason, Message: msg}
		}
	}
	return st
}

// Pods: all pods of the job, and as main the chief (TFJob with a chief), else the master
// (PyTorchJob), else worker 0, found through the Training Operator's labels.
func (d *Driver) Pods(obj runtime.Object) workload.Pods {
	u, _ := obj.(*unstructured.Unstructured)
	if u == nil || u.GetName() == "" {
		return workload.Pods{All: labels.Nothing(), Main: labels.Nothing(), Container: d.container}
	}
	all := labels.Set{LabelJobName: u.GetName()}
	main := labels.Set{LabelJobName: u.GetName(), LabelReplicaIndex: "0", LabelReplicaType: d.MainReplica(u)}
	return workload.Pods{All: labels.SelectorFromSet(all), Main: labels.SelectorFromSet(main), Container: d.container}
}

// MainReplica is the replica type (lower case, as in the pod label) whose logs are followed.
func (d *Driver) MainReplica(u *unstructured.Unstructured) string {
	specs, _, _ := unstructured.NestedMap(u.Object, "spec", d.specsField)
	for _, t := range []string{"Chief", "Master"} {
		if _, ok := specs[t]; ok {
			return strings.ToLower(t)
		}
	}
	return "worker"
}
