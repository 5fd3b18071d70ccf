// Package workload defines what every deployer (Job, TFJob, PyTorchJob, serving, KServe) knows:
// how to build its objects, create them, watch them, judge their state, find their pods, list and
// delete them. The follower and the CLI work through this interface only.
package workload

import (
	"context"
	"time"

	"github.com/fairing-dev/fairing/pkg/deploy/kube"
	"github.com/fairing-dev/fairing/pkg/deploy/pod"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"
)

// Spec is everything a deployer needs to build its objects. Kind-specific options are ignored by
// the other kinds.
type Spec struct {
	// Name of the main object; empty means generateName: fairing-<kind>-.
	Name      string
	Namespace string
	// ID is the fairing-id label value that ties the objects and pods of one submission together.
	ID  string
	Pod pod.Options
	// Timeout bounds the run: activeDeadlineSeconds for Jobs and training jobs.
	Timeout time.Duration
	// TTL after the workload finished before Kubernetes deletes it (Jobs, training jobs). Nil: none.
	TTL *time.Duration

	Job      JobOptions
	Training TrainingOptions
	Serving  ServingOptions
	KServe   KServeOptions
}

// JobOptions for the batch/v1 Job deployer.
type JobOptions struct {
	Runs int32 // parallelism = completions; 0 means 1
}

// TrainingOptions for TFJob and PyTorchJob.
type TrainingOptions struct {
	APIVersion     string // kubeflow.org version; default v1
	Chief          int32  // TFJob
	Workers        int32  // TFJob and PyTorchJob
	PS             int32  // TFJob parameter servers (GPU limits stripped)
	Masters        int32  // PyTorchJob; default 1
	CleanPodPolicy string // Running (default), All, None
}

// ServingOptions for the Deployment + Service deployer.
type ServingOptions struct {
	Port          int32  // Service port; default 8080
	TargetPort    int32  // container port; default Port
	Replicas      int32  // default 1
	ServiceType   string // ClusterIP (default), NodePort, LoadBalancer
	ClusterDomain string // default cluster.local
	URLPath       string // appended to the printed URL
	// MinReadySeconds a new pod must be ready before it counts as available, so that a server
	// that crashes right after starting is not reported ready. Nil: 3.
	MinReadySeconds *int32
}

// KServeOptions for the KServe InferenceService deployer.
type KServeOptions struct {
	APIVersion           string // serving.kserve.io version; default v1beta1
	ModelFormat          string // with StorageURI: a model server instead of the built image
	StorageURI           string
	CanaryTrafficPercent *int64
	Port                 int32 // container port of a custom predictor; default 8080
}

// Phase of a workload as fairing reports it.
type Phase string

const (
	Pending   Phase = "Pending"
	Running   Phase = "Running"
	Succeeded Phase = "Succeeded"
	Failed    Phase = "Failed"
	Ready     Phase = "Ready" // servers: available and serving
	Deleted   Phase = "Deleted"
)

// Terminal says whether following can stop at this phase.
func (p Phase) Terminal() bool {
	return p == Succeeded || p == Failed || p == Ready || p == Deleted
}

// State is the judged state of a workload from its main object alone.
type State struct {
	Phase   Phase
	Reason  string // machine-readable, e.g. BackoffLimitExceeded, DeadlineExceeded
	Message string
	URL     string // servers, when known from the object
}

// Cleanup says when fairing-submit deletes the workload after following it.
type Cleanup string

const (
	CleanupNever     Cleanup = "never"
	CleanupOnSuccess Cleanup = "on-success"
	CleanupAlways    Cleanup = "always"
)

// Pods selects the pods of a workload.
type Pods struct {
	// All pods of the workload: watched for problems (image pulls, crashes, scheduling).
	All labels.Selector
	// Main pods, whose logs are streamed by default (all Job pods, the chief or master, ...).
	Main labels.Selector
	// Container is the workload's container name in those pods.
	Container string
}

// Driver is one kind of workload.
type Driver interface {
	// Kind is the deployer name: job, tfjob, pytorchjob, serving, kserve.
	Kind() string
	// Resources are the API resources the deployer creates, the main object's first.
	Resources() []schema.GroupResource
	// Build returns the objects to create, main object first. It needs no cluster.
	Build(s *Spec) ([]runtime.Object, error)
	// Preflight checks that the cluster serves the kind (a CRD may be missing).
	Preflight(ctx context.Context, c *kube.Clients) error
	// Create creates objs in namespace ns and returns the main object as created.
	Create(ctx context.Context, c *kube.Clients, ns string, objs []runtime.Object) (runtime.Object, error)
	// ListWatch watches the main object named name; the second value is its Go type.
	ListWatch(c *kube.Clients, ns, name string) (cache.ListerWatcher, runtime.Object)
	// Get fetches the main object.
	Get(ctx context.Context, c *kube.Clients, ns, name string) (runtime.Object, error)
	// List lists the main objects fairing launched that match selector.
	List(ctx context.Context, c *kube.Clients, ns string, selector labels.Selector) ([]runtime.Object, error)
	// Delete deletes the workload and its companion objects (pods go with it).
	Delete(ctx context.Context, c *kube.Clients, ns, name string) error
	// Evaluate judges the state from the main object.
	Evaluate(obj runtime.Object) State
	// Pods selects the workload's pods, given its main object.
	Pods(obj runtime.Object) Pods
	// DefaultCleanup is the kind's documented cleanup policy.
	DefaultCleanup() Cleanup
}

// URLResolver is implemented by servers whose URL needs more than the main object (a Service's
// load balancer address). It may wait, until ctx ends.
type URLResolver interface {
	URL(ctx context.Context, c *kube.Clients, obj runtime.Object) (string, error)
}

// PodTemplate returns the pod template the deployer runs, built from s.Pod with the given
// container name and fairing's labels.
func PodTemplate(s *Spec, kind, container string, restart corev1.RestartPolicy) (corev1.PodTemplateSpec, error) {
	return s.Pod.Build(pod.Container{Name: container, RestartPolicy: restart, Labels: FairingLabels(kind, s.ID)})
}

// FairingLabels are the labels on every object and pod fairing creates.
func FairingLabels(kind, id string) map[string]string {
	l := map[string]string{pod.LabelDeployer: kind}
	if id != "" {
		l[pod.LabelID] = id
	}
	return l
}

// ObjectLabels merges the user's labels under fairing's.
func ObjectLabels(s *Spec, kind string) map[string]string {
	l := map[string]string{}
	for k, v := range s.Pod.Labels {
		l[k] = v
	}
	for k, v := range FairingLabels(kind, s.ID) {
		l[k] = v
	}
	return l
}

// Seconds converts a duration to a *int64 of whole seconds (rounded up), nil for zero.
func Seconds(d time.Duration) *int64 {
	if d <= 0 {
		return nil
	}
	s := int64((d + time.Second - 1) / time.Second)
	return &s
}

// Selector of all objects fairing launched (any deployer).
func Selector() labels.Selector {
	s, _ := labels.Parse(pod.LabelDeployer)
	return s
}

// Clean drops the empty fields that converting a typed object leaves (creationTimestamp: null,
// resources: {}, status: {}), so the objects print and compare cleanly. Empty maps that mean
// something (emptyDir: {}) are kept.
func Clean(m map[string]any) {
	for k, v := range m {
		switch vv := v.(type) {
		case nil:
			delete(m, k)
		case map[string]any:
			Clean(vv)
			if len(vv) == 0 && droppable[k] {
				delete(m, k)
			}
		case []any:
			for _, e := range vv {
				if em, ok := e.(map[string]any); ok {
					Clean(em)
				}
			}
		}
	}
}

var droppable = map[string]bool{"resources": true, "status": true, "metadata": true, "strategy": true, "securityContext": true, "loadBalancer": true}
