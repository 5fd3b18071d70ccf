// Package deploy launches a built image as a Kubernetes workload (Job, TFJob, PyTorchJob,
// Deployment+Service, KServe InferenceService), follows it to its result, and cleans up; it also
// finds, lists, describes and deletes what fairing launched. cmd/fairing-submit is a thin CLI
// over it.
//
// Per-kind defaults of --cleanup: job on-success (a failed Job and its pods stay for inspection);
// tfjob, pytorchjob, serving, kserve never.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/fairing-dev/fairing/pkg/deploy/follow"
	"github.com/fairing-dev/fairing/pkg/deploy/job"
	"github.com/fairing-dev/fairing/pkg/deploy/kserve"
	"github.com/fairing-dev/fairing/pkg/deploy/kube"
	"github.com/fairing-dev/fairing/pkg/deploy/pod"
	"github.com/fairing-dev/fairing/pkg/deploy/serving"
	"github.com/fairing-dev/fairing/pkg/deploy/training"
	"github.com/fairing-dev/fairing/pkg/deploy/workload"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
)

// Kinds are the Kubernetes deployers, in the order list/find try them.
var Kinds = []string{job.Kind, "tfjob", "pytorchjob", serving.Kind, kserve.Kind}

// Versions pins the API versions of the custom resources (the operators' versions drift).
type Versions struct {
	Training string // kubeflow.org; default v1
	KServe   string // serving.kserve.io; default v1beta1
}

// Driver returns the deployer for kind.
func Driver(kind string, v Versions) (workload.Driver, error) {
	switch strings.ToLower(kind) {
	case job.Kind:
		return job.Driver{}, nil
	case "tfjob":
		return training.TFJob(v.Training), nil
	case "pytorchjob":
		return training.PyTorchJob(v.Training), nil
	case serving.Kind:
		return serving.Driver{}, nil
	case kserve.Kind, "inferenceservice", "kfserving":
		return kserve.New(v.KServe), nil
	}
	return nil, fmt.Errorf("unknown deployer %q: want one of %s (or vertex)", kind, strings.Join(Kinds, ", "))
}

// Drivers returns the deployers for kinds (all when empty).
func Drivers(kinds []string, v Versions) ([]workload.Driver, error) {
	if len(kinds) == 0 {
		kinds = Kinds
	}
	var out []workload.Driver
	for _, k := range kinds {
		d, err := Driver(k, v)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// RunOptions control what happens after the objects are created.
type RunOptions struct {
	Follow follow.Options
	// Detach returns right after creating the workload (no follow, no cleanup).
	Detach bool
	// Cleanup policy; "" means the kind's default.
	Cleanup workload.Cleanup
	// SkipSecretCheck skips checking that referenced secrets exist.
	SkipSecretCheck bool
}

// ParseCleanup validates a --cleanup value ("" stays "").
func ParseCleanup(s string) (workload.Cleanup, error) {
	switch c := workload.Cleanup(strings.ToLower(s)); c {
	case "", workload.CleanupNever, workload.CleanupOnSuccess, workload.CleanupAlways:
		return c, nil
	}
	return "", fmt.Errorf("--cleanup %q: want never, on-success or always", s)
}

// Result of a run, as printed by -o json.
type Result struct {
	follow.Result
	// Deleted says the workload was removed by the cleanup policy.
	Deleted bool `json:"deleted"`
}

// Run creates the workload described by spec and, unless detached, follows it to its result and
// applies the cleanup policy. The returned result carries the exit code; err is for failures to
// launch or follow (no result).
func Run(ctx context.Context, c *kube.Clients, d workload.Driver, spec *workload.Spec, o RunOptions) (*Result, error) {
	if spec.Namespace == "" {
		spec.Namespace = c.Namespace
	}
	ns := spec.Namespace
	objs, err := d.Build(spec)
	if err != nil {
		return nil, err
	}
	if err := d.Preflight(ctx, c); err != nil {
		return nil, err
	}
	if !o.SkipSecretCheck {
		if err := checkSecrets(ctx, c, ns, objs); err != nil {
			return nil, err
		}
	}
	if err := follow.CheckAccess(ctx, c, d, ns, !o.Detach, o.Follow.Logs); err != nil {
		return nil, err
	}
	created, err := d.Create(ctx, c, ns, objs)
	if err != nil {
		return nil, err
	}
	m, _ := meta.Accessor(created)
	res := &Result{Result: follow.Result{Kind: d.Kind(), Name: m.GetName(), Namespace: ns, Phase: workload.Pending}}
	progress := o.Follow.Progress
	if progress == nil {
		progress = io.Discard
	}
	fmt.Fprintf(progress, "%s/%s created in namespace %s\n", d.Kind(), m.GetName(), ns)
	if o.Detach {
		return res, nil
	}
	fr, err := follow.Follow(ctx, c, d, created, o.Follow)
	if err != nil {
		return nil, err
	}
	res.Result = *fr
	policy := o.Cleanup
	if policy == "" {
		policy = d.DefaultCleanup()
	}
	interrupted := fr.Reason == "Interrupted"
	if !interrupted && fr.Phase != workload.Deleted && (policy == workload.CleanupAlways || policy == workload.CleanupOnSuccess && fr.ExitCode == 0) {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := d.Delete(dctx, c, ns, res.Name); err != nil && !apierrors.IsNotFound(err) {
			fmt.Fprintf(progress, "%s/%s: cleanup failed: %v\n", d.Kind(), res.Name, err)
		} else {
			res.Deleted = true
			fmt.Fprintf(progress, "%s/%s deleted (--cleanup %s)\n", d.Kind(), res.Name, policy)
		}
	}
	return res, nil
}

// Summary is the one-line report of a result.
func Summary(r *Result) string {
	what := r.Kind + "/" + r.Name
	switch r.Phase {
	case workload.Succeeded:
		return fmt.Sprintf("%s succeeded in %s", what, r.Duration.Round(100*time.Millisecond))
	case workload.Ready:
		s := fmt.Sprintf("%s is ready", what)
		if r.URL != "" {
			s += " at " + r.URL
		}
		return s
	case workload.Pending, workload.Running:
		return fmt.Sprintf("%s launched in namespace %s", what, r.Namespace)
	}
	s := fmt.Sprintf("%s failed", what)
	if r.Reason != "" {
		s += " (" + r.Reason + ")"
	}
	switch {
	case r.Problem != nil && r.Reason != "Timeout":
		s += ": " + strings.TrimPrefix(r.Problem.String(), r.Reason+": ")
	case r.Message != "":
		s += ": " + strings.Join(strings.Fields(r.Message), " ")
	}
	s += fmt.Sprintf("; exit code %d", r.ExitCode)
	if !r.Deleted && r.Reason != "Deleted" {
		s += fmt.Sprintf("; kept for inspection (fairing-submit logs %s; fairing-submit delete %s)", r.Name, r.Name)
	}
	return s
}

// checkSecrets reports a missing secret before the pod would sit in ContainerCreating. A user who
// may not read secrets is not stopped: the check is skipped.
func checkSecrets(ctx context.Context, c *kube.Clients, ns string, objs []runtime.Object) error {
	var names []string
	for _, t := range templates(objs) {
		names = append(names, pod.SecretRefs(t)...)
	}
	sort.Strings(names)
	for i, n := range names {
		if i > 0 && names[i-1] == n {
			continue
		}
		_, err := c.Typed.CoreV1().Secrets(ns).Get(ctx, n, metav1.GetOptions{})
		switch {
		case err == nil, apierrors.IsForbidden(err):
		case apierrors.IsNotFound(err):
			if err := kube.MissingNamespace(ctx, c, ns); err != nil {
				return err
			}
			return fmt.Errorf("secret %q does not exist in namespace %q, but the pod needs it: create it (kubectl -n %s create secret generic %s ...) or drop the option that references it", n, ns, ns, n)
		default:
			return kube.Explain(err, "get", corev1.Resource("secrets"), ns)
		}
	}
	return nil
}

// templates finds the pod templates in the objects (typed or unstructured).
func templates(objs []runtime.Object) []*corev1.PodTemplateSpec {
	var out []*corev1.PodTemplateSpec
	for _, o := range objs {
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
		if err != nil {
			continue
		}
		findTemplates(u, &out)
	}
	return out
}

func findTemplates(m map[string]any, out *[]*corev1.PodTemplateSpec) {
	for k, v := range m {
		switch vv := v.(type) {
		case map[string]any:
			if k == "template" || k == "predictor" {
				var t corev1.PodTemplateSpec
				src := vv
				if k == "predictor" {
					src = map[string]any{"spec": vv}
				}
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(src, &t); err == nil && len(t.Spec.Containers)+len(t.Spec.Volumes) > 0 {
					*out = append(*out, &t)
					continue
				}
			}
			findTemplates(vv, out)
		}
	}
}

// Item is one workload fairing launched, as list and status show it.
type Item struct {
	Kind      string         `json:"kind"`
	Name      string         `json:"name"`
	Namespace string         `json:"namespace"`
	ID        string         `json:"id,omitempty"`
	Phase     workload.Phase `json:"state"`
	Reason    string         `json:"reason,omitempty"`
	Message   string         `json:"message,omitempty"`
	URL       string         `json:"url,omitempty"`
	Created   time.Time      `json:"created"`
	Pods      []PodInfo      `json:"pods,omitempty"`
	driver    workload.Driver
	obj       runtime.Object
}

// PodInfo is a pod of a workload in status.
type PodInfo struct {
	Name     string            `json:"name"`
	Phase    corev1.PodPhase   `json:"phase"`
	Problems []follow.Problem  `json:"problems,omitempty"`
	Labels   map[string]string `json:"-"`
}

func item(d workload.Driver, obj runtime.Object) Item {
	m, _ := meta.Accessor(obj)
	st := d.Evaluate(obj)
	return Item{Kind: d.Kind(), Name: m.GetName(), Namespace: m.GetNamespace(), ID: m.GetLabels()[pod.LabelID],
		Phase: st.Phase, Reason: st.Reason, Message: st.Message, URL: st.URL, Created: m.GetCreationTimestamp().Time, driver: d, obj: obj}
}

// List lists the workloads fairing launched in ns ("" with allNamespaces) of the given drivers,
// skipping kinds whose CRD is not installed.
func List(ctx context.Context, c *kube.Clients, ns string, drivers []workload.Driver, selector string) ([]Item, error) {
	sel := workload.Selector()
	if selector != "" {
		extra, err := labels.Parse(selector)
		if err != nil {
			return nil, fmt.Errorf("--selector %q: %w", selector, err)
		}
		reqs, _ := extra.Requirements()
		sel = sel.Add(reqs...)
	}
	var out []Item
	for _, d := range drivers {
		if err := d.Preflight(ctx, c); err != nil {
			var missing *kube.MissingAPIError
			if errors.As(err, &missing) {
				continue
			}
			return nil, err
		}
		objs, err := d.List(ctx, c, ns, sel)
		if err != nil {
			return nil, err
		}
		for _, o := range objs {
			out = append(out, item(d, o))
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// Find finds the workload named name among the drivers' kinds. Only objects fairing launched
// (with the fairing-deployer label) are considered.
func Find(ctx context.Context, c *kube.Clients, ns, name string, drivers []workload.Driver) (*Item, error) {
	var found []Item
	var missingAPIs []string
	for _, d := range drivers {
		if err := d.Preflight(ctx, c); err != nil {
			var missing *kube.MissingAPIError
			if errors.As(err, &missing) {
				missingAPIs = append(missingAPIs, d.Kind())
				continue
			}
			return nil, err
		}
		obj, err := d.Get(ctx, c, ns, name)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		m, _ := meta.Accessor(obj)
		if _, ok := m.GetLabels()[pod.LabelDeployer]; !ok {
			continue
		}
		found = append(found, item(d, obj))
	}
	switch len(found) {
	case 0:
		kinds := make([]string, 0, len(drivers))
		for _, d := range drivers {
			kinds = append(kinds, d.Kind())
		}
		return nil, fmt.Errorf("no workload named %q launched by fairing in namespace %q (looked for %s): see fairing-submit list", name, ns, strings.Join(kinds, ", "))
	case 1:
		return &found[0], nil
	}
	kinds := []string{}
	for _, f := range found {
		kinds = append(kinds, f.Kind)
	}
	return nil, fmt.Errorf("%q names several workloads (%s): pick one with --deployer", name, strings.Join(kinds, ", "))
}

// Status describes one workload and its pods.
func Status(ctx context.Context, c *kube.Clients, ns, name string, drivers []workload.Driver) (*Item, error) {
	it, err := Find(ctx, c, ns, name, drivers)
	if err != nil {
		return nil, err
	}
	sel := it.driver.Pods(it.obj)
	pods, err := c.Typed.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.All.String()})
	if err != nil {
		return nil, kube.Explain(err, "list", corev1.Resource("pods"), ns)
	}
	sort.Slice(pods.Items, func(i, j int) bool { return pods.Items[i].Name < pods.Items[j].Name })
	for i := range pods.Items {
		p := &pods.Items[i]
		it.Pods = append(it.Pods, PodInfo{Name: p.Name, Phase: p.Status.Phase, Problems: follow.Inspect(p), Labels: p.Labels})
	}
	if it.Phase == workload.Ready && it.URL == "" {
		if r, ok := it.driver.(workload.URLResolver); ok {
			uctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			it.URL, _ = r.URL(uctx, c, it.obj)
			cancel()
		}
	}
	return it, nil
}

// Delete deletes the named workloads, or all fairing workloads matching selector.
func Delete(ctx context.Context, c *kube.Clients, ns string, names []string, selector string, drivers []workload.Driver, progress io.Writer) ([]Item, error) {
	var items []Item
	if selector != "" {
		l, err := List(ctx, c, ns, drivers, selector)
		if err != nil {
			return nil, err
		}
		items = l
	}
	for _, n := range names {
		it, err := Find(ctx, c, ns, n, drivers)
		if err != nil {
			return nil, err
		}
		items = append(items, *it)
	}
	for _, it := range items {
		if err := it.driver.Delete(ctx, c, it.Namespace, it.Name); err != nil && !apierrors.IsNotFound(err) {
			return nil, err
		}
		if progress != nil {
			fmt.Fprintf(progress, "%s/%s deleted\n", it.Kind, it.Name)
		}
	}
	return items, nil
}

// Logs prints the logs of a workload's pods (main pods by default), prefixed by pod; with
// followLogs it follows them until the workload ends.
func Logs(ctx context.Context, c *kube.Clients, ns, name string, drivers []workload.Driver, mode follow.LogMode, followLogs bool, out io.Writer) error {
	it, err := Find(ctx, c, ns, name, drivers)
	if err != nil {
		return err
	}
	if followLogs {
		_, err := follow.Follow(ctx, c, it.driver, it.obj, follow.Options{Logs: mode, Out: out})
		return err
	}
	return follow.PrintLogs(ctx, c, it.driver.Pods(it.obj), ns, mode, out)
}
