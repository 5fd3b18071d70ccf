package pod

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// ParseEnv parses NAME=VALUE flags into env vars, in order.
func ParseEnv(flags []string) ([]corev1.EnvVar, error) {
	var out []corev1.EnvVar
	for _, f := range flags {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--env %q: want NAME=VALUE", f)
		}
		if errs := validation.IsEnvVarName(k); len(errs) > 0 {
			return nil, fmt.Errorf("--env %q: invalid name: %s", f, strings.Join(errs, "; "))
		}
		out = append(out, corev1.EnvVar{Name: k, Value: v})
	}
	return out, nil
}

// ParseEnvFromSecret parses --env-from-secret flags: SECRET (every key becomes a variable) or
// VAR=SECRET:KEY (one variable from one key).
func ParseEnvFromSecret(flags []string) ([]corev1.EnvVar, []corev1.EnvFromSource, error) {
	var env []corev1.EnvVar
	var from []corev1.EnvFromSource
	for _, f := range flags {
		if v, ref, ok := strings.Cut(f, "="); ok {
			secret, key, ok := strings.Cut(ref, ":")
			if !ok || v == "" || secret == "" || key == "" {
				return nil, nil, fmt.Errorf("--env-from-secret %q: want SECRET or VAR=SECRET:KEY", f)
			}
			if errs := validation.IsEnvVarName(v); len(errs) > 0 {
				return nil, nil, fmt.Errorf("--env-from-secret %q: invalid variable name: %s", f, strings.Join(errs, "; "))
			}
			if err := dnsSubdomain("--env-from-secret", secret); err != nil {
				return nil, nil, err
			}
			env = append(env, corev1.EnvVar{Name: v, ValueFrom: &corev1.EnvVarSource{
				SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: key}}})
			continue
		}
		if err := dnsSubdomain("--env-from-secret", f); err != nil {
			return nil, nil, err
		}
		from = append(from, corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: f}}})
	}
	return env, from, nil
}

// ParseRequestLimit parses a --cpu or --memory value: Q sets request and limit to Q, REQ:LIM sets
// both, REQ: sets only the request, :LIM only the limit.
func ParseRequestLimit(v string) (req, lim string) {
	if r, l, ok := strings.Cut(v, ":"); ok {
		return r, l
	}
	return v, v
}

// Volume is one --volume: a PVC, secret, configMap or emptyDir mounted into the main container.
type Volume struct {
	Type      string // pvc, secret, configmap, emptydir
	Name      string // claim, secret or configMap name; for emptydir the volume's own name
	MountPath string
	SubPath   string
	ReadOnly  bool
}

// ParseVolume parses TYPE:NAME:/path[:subPath] with TYPE pvc, secret, configmap or emptydir.
func ParseVolume(f string) (Volume, error) {
	parts := strings.Split(f, ":")
	if len(parts) < 3 || len(parts) > 4 {
		return Volume{}, fmt.Errorf("--volume %q: want TYPE:NAME:/mount/path[:subPath] with TYPE pvc, secret, configmap or emptydir", f)
	}
	v := Volume{Type: strings.ToLower(parts[0]), Name: parts[1], MountPath: parts[2]}
	if len(parts) == 4 {
		v.SubPath = parts[3]
	}
	switch v.Type {
	case "pvc", "persistentvolumeclaim":
		v.Type = "pvc"
	case "secret":
		v.ReadOnly = true
	case "configmap", "config_map", "cm":
		v.Type, v.ReadOnly = "configmap", true
	case "emptydir":
	default:
		return Volume{}, fmt.Errorf("--volume %q: unknown type %q: want pvc, secret, configmap or emptydir", f, parts[0])
	}
	if err := dnsSubdomain("--volume", v.Name); err != nil {
		return Volume{}, err
	}
	if !path.IsAbs(v.MountPath) {
		return Volume{}, fmt.Errorf("--volume %q: mount path %q must be absolute", f, v.MountPath)
	}
	if strings.HasPrefix(v.SubPath, "/") || strings.Contains("/"+v.SubPath+"/", "/../") {
		return Volume{}, fmt.Errorf("--volume %q: subPath %q must be relative and stay inside the volume", f, v.SubPath)
	}
	return v, nil
}

func (v Volume) volumeName() string {
	n := "fairing-" + v.Type + "-" + v.Name
	if len(n) <= validation.DNS1123LabelMaxLength && len(validation.IsDNS1123Label(n)) == 0 {
		return n
	}
	sum := sha256.Sum256([]byte(v.Type + ":" + v.Name))
	short := strings.Trim(strings.ReplaceAll(n, ".", "-"), "-")
	if len(short) > 50 {
		short = strings.TrimRight(short[:50], "-")
	}
	return short + "-" + hex.EncodeToString(sum[:])[:8]
}

func (v Volume) source() (corev1.Volume, corev1.VolumeMount) {
	vol := corev1.Volume{Name: v.volumeName()}
	switch v.Type {
	case "pvc":
		vol.PersistentVolumeClaim = &corev1.PersistentVolumeClaimVolumeSource{ClaimName: v.Name, ReadOnly: v.ReadOnly}
	case "secret":
		vol.Secret = &corev1.SecretVolumeSource{SecretName: v.Name}
	case "configmap":
		vol.ConfigMap = &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: v.Name}}
	case "emptydir":
		vol.EmptyDir = &corev1.EmptyDirVolumeSource{}
	}
	return vol, corev1.VolumeMount{Name: vol.Name, MountPath: v.MountPath, SubPath: v.SubPath, ReadOnly: v.ReadOnly}
}

// ParseKeyValues parses KEY=VALUE flags (labels, annotations, node selectors). Label-like keys
// and values are validated when labels is true.
func ParseKeyValues(flag string, flags []string, labels bool) (map[string]string, error) {
	if len(flags) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, f := range flags {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--%s %q: want KEY=VALUE", flag, f)
		}
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return nil, fmt.Errorf("--%s %q: invalid key: %s", flag, f, strings.Join(errs, "; "))
		}
		if labels {
			if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
				return nil, fmt.Errorf("--%s %q: invalid value: %s", flag, f, strings.Join(errs, "; "))
			}
		}
		out[k] = v
	}
	return out, nil
}

// ParseToleration parses kubectl's taint syntax as a toleration: KEY=VALUE:EFFECT (Equal),
// KEY:EFFECT or KEY (Exists), with an optional :SECONDS for NoExecute, and "*" for everything.
func ParseToleration(f string) (corev1.Toleration, error) {
	if f == "*" {
		return corev1.Toleration{Operator: corev1.TolerationOpExists}, nil
	}
	parts := strings.Split(f, ":")
	if len(parts) > 3 || parts[0] == "" {
		return corev1.Toleration{}, fmt.Errorf("--toleration %q: want KEY[=VALUE][:EFFECT[:SECONDS]] or *", f)
	}
	t := corev1.Toleration{Operator: corev1.TolerationOpExists}
	key, value, hasValue := strings.Cut(parts[0], "=")
	t.Key = key
	if hasValue {
		t.Operator, t.Value = corev1.TolerationOpEqual, value
	}
	if errs := validation.IsQualifiedName(t.Key); len(errs) > 0 {
		return corev1.Toleration{}, fmt.Errorf("--toleration %q: invalid key: %s", f, strings.Join(errs, "; "))
	}
	if len(parts) >= 2 && parts[1] != "" {
		switch e := corev1.TaintEffect(parts[1]); e {
		case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
			t.Effect = e
		default:
			return corev1.Toleration{}, fmt.Errorf("--toleration %q: effect %q: want NoSchedule, PreferNoSchedule or NoExecute", f, parts[1])
		}
	}
	if len(parts) == 3 {
		s, err := strconv.ParseInt(parts[2], 10, 64)
		if err != nil || s < 0 || t.Effect != corev1.TaintEffectNoExecute {
			return corev1.Toleration{}, fmt.Errorf("--toleration %q: SECONDS must be a non-negative integer and needs effect NoExecute", f)
		}
		t.TolerationSeconds = &s
	}
	return t, nil
}

// LoadTemplate reads --pod-template: a YAML or JSON Pod, PodTemplate, PodTemplateSpec or bare
// PodSpec.
func LoadTemplate(file string) (*corev1.PodTemplateSpec, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read --pod-template: %w", err)
	}
	var top any
	if err := yaml.Unmarshal(b, &top); err != nil {
		return nil, fmt.Errorf("parse --pod-template %s: %w", file, err)
	}
	switch top.(type) {
	case nil: // an empty file is a mistake (the wrong file), not a template that changes nothing
		return nil, fmt.Errorf("--pod-template %s is empty: want a Pod, PodTemplate, or a pod template spec", file)
	case map[string]any:
	default:
		return nil, fmt.Errorf("--pod-template %s is not a YAML mapping: want a Pod, PodTemplate, or a pod template spec", file)
	}
	var probe struct {
		Kind string          `json:"kind"`
		Spec *map[string]any `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("parse --pod-template %s: %w", file, err)
	}
	strict := func(v any) error {
		if err := yaml.UnmarshalStrict(b, v); err != nil {
			return fmt.Errorf("parse --pod-template %s as %T: %w", file, v, err)
		}
		return nil
	}
	switch {
	case probe.Kind == "Pod":
		var p corev1.Pod
		if err := strict(&p); err != nil {
			return nil, err
		}
		meta := metav1.ObjectMeta{Labels: p.Labels, Annotations: p.Annotations}
		return &corev1.PodTemplateSpec{ObjectMeta: meta, Spec: p.Spec}, nil
	case probe.Kind == "PodTemplate":
		var p corev1.PodTemplate
		if err := strict(&p); err != nil {
			return nil, err
		}
		return &p.Template, nil
	case probe.Kind != "":
		return nil, fmt.Errorf("--pod-template %s: kind %q: want a Pod, PodTemplate, or a pod template spec without kind", file, probe.Kind)
	case probe.Spec != nil:
		var t corev1.PodTemplateSpec
		if err := strict(&t); err != nil {
			return nil, err
		}
		return &t, nil
	}
	var s corev1.PodSpec
	if err := strict(&s); err != nil {
		return nil, err
	}
	return &corev1.PodTemplateSpec{Spec: s}, nil
}

func dnsSubdomain(flag, name string) error {
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return fmt.Errorf("%s: %q is not a valid object name: %s", flag, name, strings.Join(errs, "; "))
	}
	return nil
}
