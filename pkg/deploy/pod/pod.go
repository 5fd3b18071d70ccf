// Package pod turns declarative pod options (the original Fairing's "pod spec mutators") into a
// pod template: env, secrets, resources, volumes, scheduling, credentials presets, and a user's
// pod template merged underneath.
package pod

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Labels fairing puts on every object it creates and on their pod templates.
const (
	LabelDeployer = "fairing-deployer"
	LabelID       = "fairing-id"
	// IstioInject is the annotation that turns the Istio sidecar on or off for a pod.
	IstioInject = "sidecar.istio.io/inject"
)

// Options describe the workload's pod. The zero value is a valid (empty) set of options.
type Options struct {
	Image      string
	Command    []string // replaces the image's ENTRYPOINT when set
	Args       []string // replaces the image's CMD when set
	WorkingDir string
	Env        []corev1.EnvVar
	EnvFrom    []corev1.EnvFromSource
	Resources  Resources
	Volumes    []Volume
	// Ports the main container listens on (serving).
	Ports            []corev1.ContainerPort
	NodeSelector     map[string]string
	Tolerations      []corev1.Toleration
	ServiceAccount   string
	ImagePullSecrets []string
	Annotations      map[string]string // on the pod template
	Labels           map[string]string // on the objects and the pod template
	Credentials      []Credential
	// Template is merged underneath what the options generate: the options win, other fields
	// (sidecars, affinity, security context, ...) are kept. Its first container is the base of the
	// workload's container unless one already has the workload container's name.
	Template *corev1.PodTemplateSpec
	// IstioSidecar sets the sidecar.istio.io/inject annotation; nil leaves it alone.
	IstioSidecar *bool
}

// Resources are requests and limits as Kubernetes quantities.
type Resources struct {
	CPURequest, CPULimit       string
	MemoryRequest, MemoryLimit string
	GPU                        int64
	// GPUVendor is nvidia (default), amd, or a full resource name such as gpu.intel.com/i915.
	GPUVendor string
}

// Container describes the workload's container as one deployer wants it.
type Container struct {
	Name          string
	RestartPolicy corev1.RestartPolicy // "" leaves the template's (or the API default)
	Labels        map[string]string    // fairing's own labels (deployer, id), added to Options.Labels
}

// Build builds the pod template of the workload.
func (o *Options) Build(c Container) (corev1.PodTemplateSpec, error) {
	if o.Image == "" {
		return corev1.PodTemplateSpec{}, fmt.Errorf("no image: pass --image or --image-from-file")
	}
	ctr := corev1.Container{
		Name:       c.Name,
		Image:      o.Image,
		Command:    slices.Clone(o.Command),
		Args:       slices.Clone(o.Args),
		WorkingDir: o.WorkingDir,
		Env:        slices.Clone(o.Env),
		EnvFrom:    slices.Clone(o.EnvFrom),
		Ports:      slices.Clone(o.Ports),
	}
	res, err := o.Resources.requirements()
	if err != nil {
		return corev1.PodTemplateSpec{}, err
	}
	ctr.Resources = res
	t := corev1.PodTemplateSpec{}
	t.Labels = map[string]string{}
	maps.Copy(t.Labels, o.Labels)
	maps.Copy(t.Labels, c.Labels)
	if len(o.Annotations) > 0 || o.IstioSidecar != nil {
		t.Annotations = maps.Clone(o.Annotations)
		if t.Annotations == nil {
			t.Annotations = map[string]string{}
		}
		if o.IstioSidecar != nil {
			t.Annotations[IstioInject] = fmt.Sprint(*o.IstioSidecar)
		}
	}
	spec := &t.Spec
	spec.RestartPolicy = c.RestartPolicy
	spec.NodeSelector = maps.Clone(o.NodeSelector)
	spec.Tolerations = slices.Clone(o.Tolerations)
	spec.ServiceAccountName = o.ServiceAccount
	for _, s := range o.ImagePullSecrets {
		spec.ImagePullSecrets = append(spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
	}
	for _, v := range o.Volumes {
		vol, mount := v.source()
		spec.Volumes = append(spec.Volumes, vol)
		ctr.VolumeMounts = append(ctr.VolumeMounts, mount)
	}
	for _, cr := range o.Credentials {
		if err := cr.apply(spec, &ctr); err != nil {
			return corev1.PodTemplateSpec{}, err
		}
	}
	spec.Containers = []corev1.Container{ctr}
	if o.Template != nil {
		return mergeUnder(*o.Template, t, c.Name)
	}
	return t, nil
}

// mergeUnder applies ours over base with Kubernetes' strategic merge (lists of containers, env,
// volumes, mounts, ports merge by name), so the template keeps what the options do not set.
func mergeUnder(base, ours corev1.PodTemplateSpec, container string) (corev1.PodTemplateSpec, error) {
	base = *base.DeepCopy()
	if len(base.Spec.Containers) > 0 && !slices.ContainsFunc(base.Spec.Containers, func(c corev1.Container) bool { return c.Name == container }) {
		base.Spec.Containers[0].Name = container
	}
	orig, err := json.Marshal(base)
	if err != nil {
		return corev1.PodTemplateSpec{}, fmt.Errorf("encode pod template: %w", err)
	}
	patch, err := json.Marshal(ours)
	if err != nil {
		return corev1.PodTemplateSpec{}, fmt.Errorf("encode pod options: %w", err)
	}
	merged, err := strategicpatch.StrategicMergePatch(orig, patch, corev1.PodTemplateSpec{})
	if err != nil {
		return corev1.PodTemplateSpec{}, fmt.Errorf("merge pod options over --pod-template: %w", err)
	}
	var out corev1.PodTemplateSpec
	if err := json.Unmarshal(merged, &out); err != nil {
		return corev1.PodTemplateSpec{}, fmt.Errorf("decode merged pod template: %w", err)
	}
	return out, nil
}

func (r Resources) requirements() (corev1.ResourceRequirements, error) {
	var out corev1.ResourceRequirements
	set := func(list *corev1.ResourceList, name corev1.ResourceName, v, flag string) error {
		if v == "" {
			return nil
		}
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return fmt.Errorf("--%s %q is not a Kubernetes quantity (examples: 500m, 2, 1Gi, 512Mi): %w", flag, v, err)
		}
		if q.Sign() < 0 {
			return fmt.Errorf("--%s %q: must not be negative", flag, v)
		}
		if *list == nil {
			*list = corev1.ResourceList{}
		}
		(*list)[name] = q
		return nil
	}
	for _, s := range []struct {
		list       *corev1.ResourceList
		name       corev1.ResourceName
		value, flg string
	}{
		{&out.Requests, corev1.ResourceCPU, r.CPURequest, "cpu"},
		{&out.Limits, corev1.ResourceCPU, r.CPULimit, "cpu"},
		{&out.Requests, corev1.ResourceMemory, r.MemoryRequest, "memory"},
		{&out.Limits, corev1.ResourceMemory, r.MemoryLimit, "memory"},
	} {
		if err := set(s.list, s.name, s.value, s.flg); err != nil {
			return out, err
		}
	}
	for _, p := range []struct{ res corev1.ResourceName }{{corev1.ResourceCPU}, {corev1.ResourceMemory}} {
		req, okr := out.Requests[p.res]
		lim, okl := out.Limits[p.res]
		if okr && okl && req.Cmp(lim) > 0 {
			return out, fmt.Errorf("%s request %s is larger than its limit %s", p.res, req.String(), lim.String())
		}
	}
	if r.GPU < 0 {
		return out, fmt.Errorf("--gpu %d: must not be negative", r.GPU)
	}
	if r.GPU > 0 {
		name, err := GPUResource(r.GPUVendor)
		if err != nil {
			return out, err
		}
		if out.Limits == nil {
			out.Limits = corev1.ResourceList{}
		}
		// extended resources are set as limits; the API server copies them to requests
		out.Limits[name] = *resource.NewQuantity(r.GPU, resource.DecimalSI)
	}
	return out, nil
}

// GPUResource maps a vendor name to its extended resource name.
func GPUResource(vendor string) (corev1.ResourceName, error) {
	switch v := strings.ToLower(vendor); {
	case v == "" || v == "nvidia":
		return "nvidia.com/gpu", nil
	case v == "amd":
		return "amd.com/gpu", nil
	case strings.Contains(v, "/"):
		// as given: the name part of an extended resource is case-sensitive
		if errs := validation.IsQualifiedName(vendor); len(errs) > 0 {
			return "", fmt.Errorf("--gpu-vendor %q is not a valid resource name: %s", vendor, strings.Join(errs, "; "))
		}
		return corev1.ResourceName(vendor), nil
	}
	return "", fmt.Errorf("--gpu-vendor %q: want nvidia, amd, or a resource name such as gpu.intel.com/i915", vendor)
}

// StripGPU removes GPU limits and requests from every container (TFJob parameter servers).
func StripGPU(t *corev1.PodTemplateSpec) {
	for i := range t.Spec.Containers {
		r := &t.Spec.Containers[i].Resources
		for _, l := range []corev1.ResourceList{r.Limits, r.Requests} {
			for name := range l {
				if strings.HasSuffix(string(name), "/gpu") || strings.HasPrefix(string(name), "gpu.") {
					delete(l, name)
				}
			}
		}
	}
}

// SecretRefs lists the secrets the template needs to start (non-optional references), so a
// missing one can be reported before the pod sits in ContainerCreating.
func SecretRefs(t *corev1.PodTemplateSpec) []string {
	seen := map[string]bool{}
	var out []string
	add := func(name string, optional *bool) {
		if name == "" || (optional != nil && *optional) || seen[name] {
			return
		}
		seen[name] = true
		out = append(out, name)
	}
	for _, v := range t.Spec.Volumes {
		if v.Secret != nil {
			add(v.Secret.SecretName, v.Secret.Optional)
		}
	}
	for _, c := range append(slices.Clone(t.Spec.InitContainers), t.Spec.Containers...) {
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				add(e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Optional)
			}
		}
		for _, e := range c.EnvFrom {
			if e.SecretRef != nil {
				add(e.SecretRef.Name, e.SecretRef.Optional)
			}
		}
	}
	slices.Sort(out)
	return out
}
