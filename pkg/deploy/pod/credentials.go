package pod

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Credential is a named credentials preset (--credentials gcp|aws|docker[=SECRET]). The secret
// names default to the original Fairing's, so clusters set up for it keep working. Presets only
// reference existing secrets: fairing never copies local credentials into the cluster.
type Credential struct {
	Kind   string // gcp, aws, docker
	Secret string
}

// Default secret names of the presets (the original Fairing's conventions).
var defaultSecrets = map[string]string{"gcp": "user-gcp-sa", "aws": "aws-secret", "docker": "docker-secret"}

// ParseCredential parses KIND or KIND=SECRET.
func ParseCredential(f string) (Credential, error) {
	kind, secret, _ := strings.Cut(f, "=")
	kind = strings.ToLower(kind)
	def, ok := defaultSecrets[kind]
	if !ok {
		return Credential{}, fmt.Errorf("--credentials %q: want gcp, aws or docker, optionally =SECRET-NAME", f)
	}
	if secret == "" {
		secret = def
	}
	if err := dnsSubdomain("--credentials", secret); err != nil {
		return Credential{}, err
	}
	return Credential{Kind: kind, Secret: secret}, nil
}

// GCPKeyDir is where the gcp preset mounts the service-account key secret.
const GCPKeyDir = "/etc/secrets"

func (c Credential) apply(spec *corev1.PodSpec, ctr *corev1.Container) error {
	switch c.Kind {
	case "gcp":
		// secret with key <secret>.json, as `kubectl create secret generic user-gcp-sa --from-file=user-gcp-sa.json=KEY.json`
		vol := corev1.Volume{Name: "fairing-gcp-" + c.Secret, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: c.Secret}}}
		if len(vol.Name) > 63 {
			vol.Name = vol.Name[:63]
		}
		spec.Volumes = append(spec.Volumes, vol)
		ctr.VolumeMounts = append(ctr.VolumeMounts, corev1.VolumeMount{Name: vol.Name, MountPath: GCPKeyDir, ReadOnly: true})
		ctr.Env = append(ctr.Env, corev1.EnvVar{Name: "GOOGLE_APPLICATION_CREDENTIALS", Value: GCPKeyDir + "/" + c.Secret + ".json"})
	case "aws":
		for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
			ctr.Env = append(ctr.Env, corev1.EnvVar{Name: k, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: c.Secret}, Key: k}}})
		}
	case "docker":
		spec.ImagePullSecrets = append(spec.ImagePullSecrets, corev1.LocalObjectReference{Name: c.Secret})
	default:
		return fmt.Errorf("unknown credentials preset %q", c.Kind)
	}
	return nil
}
