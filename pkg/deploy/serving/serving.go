// Package serving deploys a model server as an apps/v1 Deployment plus a v1 Service of the same
// name, waits until it is available and reports its URL (cluster DNS, or the load balancer's IP or
// hostname).
package serving

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/fairing-dev/fairing/pkg/deploy/kube"
	"github.com/fairing-dev/fairing/pkg/deploy/workload"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

// Kind is the deployer name.
const Kind = "serving"

// Container is the server's container name (as in the original Fairing).
const Container = "model"

var (
	grDeploy  = schema.GroupResource{Group: "apps", Resource: "deployments"}
	grService = schema.GroupResource{Resource: "services"}
)

// Driver is the serving deployer. Default cleanup: never (a server is meant to stay up).
type Driver struct{}

var (
	_ workload.Driver      = Driver{}
	_ workload.URLResolver = Driver{}
)

func (Driver) Kind() string                      { return Kind }
func (Driver) Resources() []schema.GroupResource { return []schema.GroupResource{grDeploy, grService} }
func (Driver) DefaultCleanup() workload.Cleanup  { return workload.CleanupNever }

func defaults(o workload.ServingOptions) workload.ServingOptions {
	if o.Port == 0 {
		o.Port = 8080
	}
	if o.TargetPort == 0 {
		o.TargetPort = o.Port
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.ServiceType == "" {
		o.ServiceType = string(corev1.ServiceTypeClusterIP)
	}
	if o.ClusterDomain == "" {
		o.ClusterDomain = "cluster.local"
	}
	return o
}

// Build returns the Deployment and its Service. The Service gets the Deployment's name when it is
// created (generateName on the Deployment).
func (Driver) Build(s *workload.Spec) ([]runtime.Object, error) {
	if s.ID == "" {
		return nil, errors.New("serving: a fairing id is needed to select the server's pods")
	}
	o := defaults(s.Serving)
	var st corev1.ServiceType
	switch strings.ToLower(o.ServiceType) {
	case "clusterip":
		st = corev1.ServiceTypeClusterIP
	case "nodeport":
		st = corev1.ServiceTypeNodePort
	case "loadbalancer":
		st = corev1.ServiceTypeLoadBalancer
	default:
		return nil, fmt.Errorf("--service-type %q: want ClusterIP, NodePort or LoadBalancer", o.ServiceType)
	}
	for _, p := range []int32{o.Port, o.TargetPort} {
		if p < 1 || p > 65535 {
			return nil, fmt.Errorf("port %d out of range 1-65535", p)
		}
	}
	if o.Replicas < 0 {
		return nil, fmt.Errorf("--replicas %d must not be negative", o.Replicas)
	}
	ps := s.Pod
	ps.Ports = append(ps.Ports, corev1.ContainerPort{Name: "http", ContainerPort: o.TargetPort, Protocol: corev1.ProtocolTCP})
	sp := *s
	sp.Pod = ps
	t, err := workload.PodTemplate(&sp, Kind, Container, "")
	if err != nil {
		return nil, err
	}
	sel := workload.FairingLabels(Kind, s.ID)
	objLabels := workload.ObjectLabels(s, Kind)
	meta := metav1.ObjectMeta{Namespace: s.Namespace, Labels: objLabels, Name: s.Name}
	if s.Name == "" {
		meta.GenerateName = "fairing-serving-"
	}
	replicas := o.Replicas
	minReady := int32(3)
	if o.MinReadySeconds != nil {
		minReady = *o.MinReadySeconds
	}
	d := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: meta,
		Spec: appsv1.DeploymentSpec{
			Replicas:        &replicas,
			MinReadySeconds: minReady,
			Selector:        &metav1.LabelSelector{MatchLabels: sel},
			Template:        t,
		},
	}
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: *meta.DeepCopy(),
		Spec: corev1.ServiceSpec{
			Type:     st,
			Selector: sel,
			Ports: []corev1.ServicePort{{
				Name: "http", Port: o.Port, TargetPort: intstr.FromInt32(o.TargetPort), Protocol: corev1.ProtocolTCP,
			}},
		},
	}
	// the URL options travel with the Service, so status and URL need nothing but the cluster
	if svc.Annotations == nil {
		svc.Annotations = map[string]string{}
	}
	svc.Annotations[annoDomain] = o.ClusterDomain
	if o.URLPath != "" {
		svc.Annotations[annoPath] = o.URLPath
	}
	return []runtime.Object{d, svc}, nil
}

const (
	annoDomain = "fairing.dev/cluster-domain"
	annoPath   = "fairing.dev/url-path"
)

func (Driver) Preflight(context.Context, *kube.Clients) error { return nil }

// Create creates the Deployment, then the Service with the Deployment's name, owned by it (so the
// garbage collector removes it with the Deployment).
func (Driver) Create(ctx context.Context, c *kube.Clients, ns string, objs []runtime.Object) (runtime.Object, error) {
	if len(objs) != 2 {
		return nil, fmt.Errorf("serving deployer: want a Deployment and a Service, got %d objects", len(objs))
	}
	d, ok1 := objs[0].(*appsv1.Deployment)
	svc, ok2 := objs[1].(*corev1.Service)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("serving deployer: unexpected objects %T, %T", objs[0], objs[1])
	}
	out, err := c.Typed.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{})
	if err != nil {
		return nil, kube.Explain(err, "create", grDeploy, ns)
	}
	svc = svc.DeepCopy()
	svc.Name, svc.GenerateName = out.Name, ""
	t := true
	svc.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: out.Name, UID: out.UID, BlockOwnerDeletion: &t}}
	if _, err := c.Typed.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		// do not leave a Deployment without its Service behind
		bg := metav1.DeletePropagationBackground
		_ = c.Typed.AppsV1().Deployments(ns).Delete(context.WithoutCancel(ctx), out.Name, metav1.DeleteOptions{PropagationPolicy: &bg})
		return nil, kube.Explain(err, "create", grService, ns)
	}
	return out, nil
}

func (Driver) ListWatch(c *kube.Clients, ns, name string) (cache.ListerWatcher, runtime.Object) {
	return kube.NameListWatch[*appsv1.DeploymentList](c.Typed.AppsV1().Deployments(ns), name), &appsv1.Deployment{}
}

func (Driver) Get(ctx context.Context, c *kube.Clients, ns, name string) (runtime.Object, error) {
	d, err := c.Typed.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, kube.Explain(err, "get", grDeploy, ns)
	}
	return d, nil
}

func (Driver) List(ctx context.Context, c *kube.Clients, ns string, sel labels.Selector) ([]runtime.Object, error) {
	l, err := c.Typed.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, kube.Explain(err, "list", grDeploy, ns)
	}
	out := make([]runtime.Object, 0, len(l.Items))
	for i := range l.Items {
		out = append(out, &l.Items[i])
	}
	return out, nil
}

// Delete removes the Service and the Deployment (its pods go with it).
func (Driver) Delete(ctx context.Context, c *kube.Clients, ns, name string) error {
	bg := metav1.DeletePropagationBackground
	err := c.Typed.CoreV1().Services(ns).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return kube.Explain(err, "delete", grService, ns)
	}
	return kube.Explain(c.Typed.AppsV1().Deployments(ns).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &bg}), "delete", grDeploy, ns)
}

// Evaluate: Ready when the current generation's replicas are all updated and available; Failed
// when the rollout exceeded its progress deadline.
func (Driver) Evaluate(obj runtime.Object) workload.State {
	d, ok := obj.(*appsv1.Deployment)
	if !ok {
		return workload.State{Phase: workload.Pending}
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded" {
			return workload.State{Phase: workload.Failed, Reason: c.Reason, Message: c.Message}
		}
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	st := d.Status
	if d.Generation <= st.ObservedGeneration && st.UpdatedReplicas >= want && st.AvailableReplicas >= want && st.Replicas == st.UpdatedReplicas {
		return workload.State{Phase: workload.Ready, Reason: "Available",
			Message: fmt.Sprintf("%d/%d replicas available", st.AvailableReplicas, want)}
	}
	if st.Replicas > 0 {
		return workload.State{Phase: workload.Running, Message: fmt.Sprintf("%d/%d replicas available", st.AvailableReplicas, want)}
	}
	return workload.State{Phase: workload.Pending}
}

func (Driver) Pods(obj runtime.Object) workload.Pods {
	d, _ := obj.(*appsv1.Deployment)
	sel := labels.Nothing()
	if d != nil && d.Spec.Selector != nil && len(d.Spec.Selector.MatchLabels) > 0 {
		sel = labels.SelectorFromSet(d.Spec.Selector.MatchLabels)
	}
	return workload.Pods{All: sel, Main: sel, Container: Container}
}

// URL of the server: for a LoadBalancer Service it waits for the load balancer's IP or hostname,
// otherwise it is the Service's cluster DNS name.
func (Driver) URL(ctx context.Context, c *kube.Clients, obj runtime.Object) (string, error) {
	d, ok := obj.(*appsv1.Deployment)
	if !ok {
		return "", fmt.Errorf("serving: unexpected object %T", obj)
	}
	svcs := c.Typed.CoreV1().Services(d.Namespace)
	svc, err := svcs.Get(ctx, d.Name, metav1.GetOptions{})
	if err != nil {
		return "", kube.Explain(err, "get", grService, d.Namespace)
	}
	if svc.Spec.Type == corev1.ServiceTypeLoadBalancer && ServiceURL(svc) == "" {
		lw := c.ListWatcher(kube.NameListWatch[*corev1.ServiceList](svcs, svc.Name))
		ev, err := watchtools.UntilWithSync(ctx, lw, &corev1.Service{}, nil, func(e watch.Event) (bool, error) {
			if e.Type == watch.Deleted {
				return false, fmt.Errorf("service %s was deleted while waiting for its load balancer", svc.Name)
			}
			s, ok := e.Object.(*corev1.Service)
			return ok && ServiceURL(s) != "", nil
		})
		if err != nil {
			return "", fmt.Errorf("wait for the load balancer of service %s (does the cluster have a load balancer controller?): %w", svc.Name, err)
		}
		svc = ev.Object.(*corev1.Service)
	}
	return ServiceURL(svc), nil
}

// ServiceURL is the http URL of a Service's first port: its load balancer's IP or hostname for
// type LoadBalancer ("" until one is assigned), else its cluster DNS name.
func ServiceURL(svc *corev1.Service) string {
	if len(svc.Spec.Ports) == 0 {
		return ""
	}
	port := strconv.Itoa(int(svc.Spec.Ports[0].Port))
	path := svc.Annotations[annoPath]
	if path != "" && !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	host := ""
	if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if in.IP != "" {
				host = in.IP
			} else if in.Hostname != "" {
				host = in.Hostname
			}
			if host != "" {
				break
			}
		}
		if host == "" {
			return ""
		}
	} else {
		domain := svc.Annotations[annoDomain]
		if domain == "" {
			domain = "cluster.local"
		}
		host = svc.Name + "." + svc.Namespace + ".svc." + domain
	}
	return "http://" + net.JoinHostPort(host, port) + path
}
