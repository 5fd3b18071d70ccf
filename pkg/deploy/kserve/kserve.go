// Package kserve deploys a KServe InferenceService (serving.kserve.io/v1beta1) whose predictor runs
// the built image (or a model server for --model-format with --storage-uri), waits for Ready and
// reports its URL.
package kserve

import (
	"context"
	"fmt"
	"maps"

	"github.com/fairing-dev/fairing/pkg/deploy/kube"
	"github.com/fairing-dev/fairing/pkg/deploy/workload"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"
)

// Kind is the deployer name.
const Kind = "kserve"

// Container is KServe's name for the predictor's main container.
const Container = "kserve-container"

// Group of KServe's API.
const Group = "serving.kserve.io"

// LabelISVC is the label KServe puts on an InferenceService's pods.
const LabelISVC = "serving.kserve.io/inferenceservice"

// InstallHint says how to get the CRD.
const InstallHint = "install KServe (https://kserve.github.io/website/latest/admin/serverless/serverless/ or the raw-deployment mode)"

// Driver is the KServe deployer. Default cleanup: never.
type Driver struct{ version string }

// New returns the deployer for API version (default v1beta1).
func New(version string) *Driver {
	if version == "" {
		version = "v1beta1"
	}
	return &Driver{version: version}
}

var _ workload.Driver = (*Driver)(nil)

func (d *Driver) Kind() string { return Kind }
func (d *Driver) Resources() []schema.GroupResource {
	return []schema.GroupResource{d.GVR().GroupResource()}
}
func (d *Driver) DefaultCleanup() workload.Cleanup { return workload.CleanupNever }

// GVR of InferenceService.
func (d *Driver) GVR() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: Group, Version: d.version, Resource: "inferenceservices"}
}

// Build returns the InferenceService. Its predictor is the pod spec of the options with the built
// image as kserve-container; with --model-format and --storage-uri it is a model server instead,
// and the image is not used.
func (d *Driver) Build(s *workload.Spec) ([]runtime.Object, error) {
	o := s.KServe
	if (o.ModelFormat == "") != (o.StorageURI == "") {
		return nil, fmt.Errorf("kserve: --model-format and --storage-uri go together")
	}
	if p := o.CanaryTrafficPercent; p != nil && (*p < 0 || *p > 100) {
		return nil, fmt.Errorf("--canary-traffic-percent %d: want 0-100", *p)
	}
	ps := s.Pod
	port := o.Port
	if port == 0 {
		port = 8080
	}
	if o.ModelFormat == "" {
		ps.Ports = append(ps.Ports, corev1.ContainerPort{ContainerPort: port, Protocol: corev1.ProtocolTCP})
	} else if ps.Image == "" {
		ps.Image = "unused" // model servers pick their own image; the field is dropped below
	}
	sp := *s
	sp.Pod = ps
	t, err := workload.PodTemplate(&sp, Kind, Container, "")
	if err != nil {
		return nil, err
	}
	spec, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&t.Spec)
	if err != nil {
		return nil, fmt.Errorf("encode predictor: %w", err)
	}
	workload.Clean(spec)
	predictor := spec
	if o.ModelFormat != "" {
		ctrs, _ := spec["containers"].([]any)
		model, _ := ctrs[0].(map[string]any)
		delete(model, "image")
		delete(model, "name")
		model["modelFormat"] = map[string]any{"name": o.ModelFormat}
		model["storageUri"] = o.StorageURI
		delete(predictor, "containers")
		predictor["model"] = model
	}
	if p := o.CanaryTrafficPercent; p != nil {
		predictor["canaryTrafficPercent"] = *p
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": Group + "/" + d.version,
		"kind":       "InferenceService",
		"metadata":   map[string]any{},
		"spec":       map[string]any{"predictor": predictor},
	}}
	u.SetNamespace(s.Namespace)
	// KServe copies the InferenceService's labels and annotations to the predictor's pods
	u.SetLabels(workload.ObjectLabels(s, Kind))
	if len(t.Annotations) > 0 {
		u.SetAnnotations(maps.Clone(t.Annotations))
	}
	if s.Name != "" {
		u.SetName(s.Name)
	} else {
		u.SetGenerateName("fairing-kserve-")
	}
	return []runtime.Object{u}, nil
}

func (d *Driver) Preflight(ctx context.Context, c *kube.Clients) error {
	return kube.CheckServed(c.Discovery, d.GVR(), "InferenceService", InstallHint)
}

func (d *Driver) Create(ctx context.Context, c *kube.Clients, ns string, objs []runtime.Object) (runtime.Object, error) {
	u, ok := objs[0].(*unstructured.Unstructured)
	if !ok {
		return nil, fmt.Errorf("kserve deployer: unexpected object %T", objs[0])
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

// Evaluate: Ready when the Ready condition is True (URL from status.url); Failed when the model
// could not be loaded (modelStatus.transitionStatus BlockedByFailedLoad or InvalidSpec).
func (d *Driver) Evaluate(obj runtime.Object) workload.State {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return workload.State{Phase: workload.Pending}
	}
	url, _, _ := unstructured.NestedString(u.Object, "status", "url")
	if ts, _, _ := unstructured.NestedString(u.Object, "status", "modelStatus", "transitionStatus"); ts == "BlockedByFailedLoad" || ts == "InvalidSpec" {
		reason, _, _ := unstructured.NestedString(u.Object, "status", "modelStatus", "lastFailureInfo", "reason")
		msg, _, _ := unstructured.NestedString(u.Object, "status", "modelStatus", "lastFailureInfo", "message")
		if reason == "" {
			reason = ts
		}
		return workload.State{Phase: workload.Failed, Reason: reason, Message: msg}
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] != "Ready" {
			continue
		}
		reason, _ := m["reason"].(string)
		msg, _ := m["message"].(string)
		if m["status"] == "True" {
			return workload.State{Phase: workload.Ready, Reason: "Ready", Message: msg, URL: url}
		}
		return workload.State{Phase: workload.Running, Reason: reason, Message: msg}
	}
	return workload.State{Phase: workload.Pending}
}

func (d *Driver) Pods(obj runtime.Object) workload.Pods {
	u, _ := obj.(*unstructured.Unstructured)
	if u == nil || u.GetName() == "" {
		return workload.Pods{All: labels.Nothing(), Main: labels.Nothing(), Container: Container}
	}
	sel := labels.SelectorFromSet(labels.Set{LabelISVC: u.GetName()})
	return workload.Pods{All: sel, Main: sel, Container: Container}
}
