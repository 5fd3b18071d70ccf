package incluster

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fairing-dev/fairing/pkg/deploy/pod"
	"github.com/fairing-dev/fairing/pkg/deploy/workload"
)

// Names and paths inside the build pod.
const (
	// Deployer is the fairing-deployer label value of build Jobs (fairing-submit list shows them).
	Deployer = "build"
	// BuildContainer runs fairing-builder (an init container: the submit step starts only after a
	// successful build).
	BuildContainer = "build"
	// SubmitContainer runs fairing-submit with the user's deployer options.
	SubmitContainer = "submit"
	// Workspace is the emptyDir the two steps share.
	Workspace = "/workspace"
	// ImageFile is where the build step writes NAME@sha256:... for the submit step.
	ImageFile = Workspace + "/image"
	// DockerConfigDir holds the registry Secret as config.json ($DOCKER_CONFIG of the build step).
	DockerConfigDir = "/fairing/docker"
	// ContextDir is where a context volume is mounted.
	ContextDir = "/fairing/context"
	// TerminationLog is where the steps leave their result for the user's command.
	TerminationLog = "/dev/termination-log"
)

// Volume is a volume that already holds the context's files (instead of a pushed context).
type Volume struct {
	// Kind is pvc or hostpath.
	Kind string
	// Name is the claim name (pvc) or the node's absolute path (hostpath).
	Name string
	// SubPath inside the volume (pvc).
	SubPath string
}

// ParseVolume reads pvc:CLAIM[:SUBPATH] or hostpath:/ABS/PATH.
func ParseVolume(s string) (*Volume, error) {
	kind, rest, ok := strings.Cut(s, ":")
	switch strings.ToLower(kind) {
	case "pvc":
		name, sub, _ := strings.Cut(rest, ":")
		if !ok || name == "" {
			return nil, fmt.Errorf("--build-context-volume %q: want pvc:CLAIM[:SUBPATH]", s)
		}
		if strings.HasPrefix(sub, "/") || strings.Contains("/"+sub+"/", "/../") {
			return nil, fmt.Errorf("--build-context-volume %q: the sub-path must be relative, inside the claim", s)
		}
		return &Volume{Kind: "pvc", Name: name, SubPath: sub}, nil
	case "hostpath":
		if !strings.HasPrefix(rest, "/") {
			return nil, fmt.Errorf("--build-context-volume %q: want hostpath:/ABSOLUTE/PATH on the node", s)
		}
		return &Volume{Kind: "hostpath", Name: rest}, nil
	}
	return nil, fmt.Errorf("--build-context-volume %q: want pvc:CLAIM[:SUBPATH] or hostpath:/PATH", s)
}

// Spec describes the build Job.
type Spec struct {
	Namespace string
	// ID is the fairing-id label shared by the build Job and the workload it submits.
	ID string
	// Context is the pushed context (oci://REPO@sha256:...); or ContextVolume holds the files.
	Context       string
	ContextVolume *Volume
	// BuilderImage runs `fairing-builder build`; SubmitImage runs `fairing-submit run`.
	BuilderImage, SubmitImage string
	// BuildArgs follow `build --context ...` (base, destinations, platforms, image config, and
	// the preprocessing flags of a context volume).
	BuildArgs []string
	// SubmitArgs follow `run --image-from-file ...`: the user's deployer options.
	SubmitArgs []string
	// BuildEnv is extra environment of the build step (SOURCE_DATE_EPOCH).
	BuildEnv []corev1.EnvVar
	// ServiceAccount of the build pod (deploy/rbac/fairing-build.yaml).
	ServiceAccount string
	// RegistrySecret is a kubernetes.io/dockerconfigjson Secret: the build step's Docker config,
	// and the pod's image pull secret.
	RegistrySecret string
	// HostNetwork runs the pod on the node's network (a registry on the node's loopback).
	HostNetwork bool
	// APIServer is https://HOST:PORT where the pod reaches the API server, when the cluster's
	// kubernetes Service does not serve it (a host-network pod on a test node).
	APIServer string
	// TTL after the Job finished before Kubernetes deletes it; zero: none.
	TTL time.Duration
	// BuildTimeout bounds the build step (fairing-builder --timeout); zero: none.
	BuildTimeout time.Duration
	// Labels are added to the Job and its pod.
	Labels map[string]string
	// BuildKit runs the build step as root in a privileged container (BuilderImage must be the
	// BuildKit-capable one): fairing-builder starts buildkitd as a child, whose OCI worker mounts
	// and runs the install steps. Its state lives in the pod's emptyDir (overlayfs cannot stack on
	// the container's own root).
	BuildKit bool
}

// BuildkitdRoot is buildkitd's state directory in a BuildKit build pod.
const BuildkitdRoot = Workspace + "/buildkitd"

// Job returns the build Job: the build step as an init container (a failed build fails the
// pod before anything is submitted), the submit step as its container, sharing an emptyDir.
func Job(s Spec) (*batchv1.Job, error) {
	if s.BuilderImage == "" || s.SubmitImage == "" {
		return nil, fmt.Errorf("no builder or submit image: pass --builder-image and --submit-image (the images `make images` pushes)")
	}
	if (s.Context == "") == (s.ContextVolume == nil) {
		return nil, fmt.Errorf("the build needs exactly one context: a pushed context or a context volume")
	}
	labels := map[string]string{}
	for k, v := range s.Labels {
		labels[k] = v
	}
	for k, v := range workload.FairingLabels(Deployer, s.ID) {
		labels[k] = v
	}
	noEscalation := false
	nonRoot := true
	hardened := &corev1.SecurityContext{
		AllowPrivilegeEscalation: &noEscalation,
		RunAsNonRoot:             &nonRoot,
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
	apiEnv, err := apiServerEnv(s.APIServer)
	if err != nil {
		return nil, err
	}

	ctxArg := s.Context
	mounts := []corev1.VolumeMount{{Name: "workspace", MountPath: Workspace}}
	vols := []corev1.Volume{{Name: "workspace", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	if v := s.ContextVolume; v != nil {
		ctxArg = ContextDir
		src := corev1.VolumeSource{}
		switch v.Kind {
		case "pvc":
			src.PersistentVolumeClaim = &corev1.PersistentVolumeClaimVolumeSource{ClaimName: v.Name, ReadOnly: true}
		case "hostpath":
			t := corev1.HostPathDirectory
			src.HostPath = &corev1.HostPathVolumeSource{Path: v.Name, Type: &t}
		default:
			return nil, fmt.Errorf("context volume kind %q: want pvc or hostpath", v.Kind)
		}
		vols = append(vols, corev1.Volume{Name: "context", VolumeSource: src})
		mounts = append(mounts, corev1.VolumeMount{Name: "context", MountPath: ContextDir, SubPath: v.SubPath, ReadOnly: true})
	}
	env := []corev1.EnvVar{
		// the Kubernetes keychain reads the pod's service account and its image pull secrets
		{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		{Name: "POD_SERVICE_ACCOUNT", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.serviceAccountName"}}},
	}
	var pullSecrets []corev1.LocalObjectReference
	if s.RegistrySecret != "" {
		// mounted, never copied into the spec: the credentials stay in the Secret
		vols = append(vols, corev1.Volume{Name: "docker-config", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: s.RegistrySecret, Items: []corev1.KeyToPath{{Key: corev1.DockerConfigJsonKey, Path: "config.json"}}}}})
		mounts = append(mounts, corev1.VolumeMount{Name: "docker-config", MountPath: DockerConfigDir, ReadOnly: true})
		env = append(env, corev1.EnvVar{Name: "DOCKER_CONFIG", Value: DockerConfigDir})
		pullSecrets = []corev1.LocalObjectReference{{Name: s.RegistrySecret}}
	}
	env = append(append(env, apiEnv...), s.BuildEnv...)

	buildArgs := []string{"build", "--context", ctxArg}
	buildArgs = append(buildArgs, s.BuildArgs...)
	// the cache lives with the pod; the image's home may not be writable
	buildArgs = append(buildArgs, "--image-name-with-digest-file", ImageFile, "--cache-dir", Workspace+"/cache")
	if s.BuildTimeout > 0 {
		buildArgs = append(buildArgs, "--timeout", s.BuildTimeout.String())
	}
	buildSecurity := hardened
	if s.BuildKit {
		buildArgs = append(buildArgs, "--buildkitd-root", BuildkitdRoot, "--progress", "plain")
		privileged, root := true, int64(0)
		buildSecurity = &corev1.SecurityContext{Privileged: &privileged, RunAsUser: &root}
	}
	submitArgs := []string{"run", "--image-from-file", ImageFile, "--result-file", TerminationLog, "--namespace", s.Namespace, "--id", s.ID}
	submitArgs = append(submitArgs, s.SubmitArgs...)

	sidecar := "false" // a sidecar would keep the build pod running after both steps ended
	t := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{pod.IstioInject: sidecar}},
		Spec: corev1.PodSpec{
			RestartPolicy:      corev1.RestartPolicyNever,
			ServiceAccountName: s.ServiceAccount,
			HostNetwork:        s.HostNetwork,
			EnableServiceLinks: new(bool),
			ImagePullSecrets:   pullSecrets,
			Volumes:            vols,
			InitContainers: []corev1.Container{{
				Name:                     BuildContainer,
				Image:                    s.BuilderImage,
				Args:                     buildArgs,
				Env:                      env,
				VolumeMounts:             mounts,
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
				SecurityContext:          buildSecurity,
			}},
			Containers: []corev1.Container{{
				Name:                     SubmitContainer,
				Image:                    s.SubmitImage,
				Args:                     submitArgs,
				Env:                      apiEnv,
				VolumeMounts:             []corev1.VolumeMount{{Name: "workspace", MountPath: Workspace, ReadOnly: true}},
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
				SecurityContext:          hardened,
			}},
		},
	}
	if s.HostNetwork {
		t.Spec.DNSPolicy = corev1.DNSClusterFirstWithHostNet
	}
	backoff := int32(0)
	j := &batchv1.Job{
		TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: "fairing-build-", Namespace: s.Namespace, Labels: labels},
		Spec:       batchv1.JobSpec{BackoffLimit: &backoff, Template: t},
	}
	if s.TTL > 0 {
		ttl := int32(s.TTL.Seconds())
		j.Spec.TTLSecondsAfterFinished = &ttl
	}
	return j, nil
}

// apiServerEnv points client-go's in-cluster configuration at u (https://HOST:PORT).
func apiServerEnv(u string) ([]corev1.EnvVar, error) {
	if u == "" {
		return nil, nil
	}
	p, err := url.Parse(u)
	if err != nil || p.Scheme != "https" || p.Host == "" || (p.Path != "" && p.Path != "/") {
		return nil, fmt.Errorf("--build-api-server %q: want https://HOST:PORT", u)
	}
	host, port, err := net.SplitHostPort(p.Host)
	if err != nil {
		host, port = p.Hostname(), "443"
	}
	return []corev1.EnvVar{{Name: "KUBERNETES_SERVICE_HOST", Value: host}, {Name: "KUBERNETES_SERVICE_PORT", Value: port}}, nil
}
