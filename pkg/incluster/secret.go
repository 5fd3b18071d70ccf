package incluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fairing-dev/fairing/pkg/deploy/workload"
)

// dockerAuth is one entry of a Docker config's "auths".
type dockerAuth struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	Auth          string `json:"auth,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
	RegistryToken string `json:"registrytoken,omitempty"`
}

// RegistrySecret makes a kubernetes.io/dockerconfigjson Secret holding the credentials kc
// (the user's Docker config and credential helpers) has for each registry, and nothing else.
// Registries kc knows nothing about are left out; none at all is an error.
func RegistrySecret(ctx context.Context, kc authn.Keychain, registries []string, namespace, id string) (*corev1.Secret, error) {
	auths := map[string]dockerAuth{}
	var none []string
	for _, r := range dedup(registries) {
		reg, err := name.NewRegistry(r)
		if err != nil {
			return nil, fmt.Errorf("registry %q: %w", r, err)
		}
		a, err := kc.Resolve(reg)
		if err != nil {
			return nil, fmt.Errorf("read local credentials for %s: %w", r, err)
		}
		cfg, err := authn.Authorization(ctx, a)
		if err != nil {
			return nil, fmt.Errorf("read local credentials for %s: %w", r, err)
		}
		if *cfg == (authn.AuthConfig{}) {
			none = append(none, r)
			continue
		}
		e := dockerAuth{Username: cfg.Username, Password: cfg.Password, Auth: cfg.Auth, IdentityToken: cfg.IdentityToken, RegistryToken: cfg.RegistryToken}
		if e.Auth == "" && e.Username != "" {
			e.Auth = base64.StdEncoding.EncodeToString([]byte(e.Username + ":" + e.Password))
		}
		key := reg.RegistryStr()
		if key == name.DefaultRegistry {
			key = authn.DefaultAuthKey // Docker Hub's key in Docker's config
		}
		auths[key] = e
	}
	if len(auths) == 0 {
		return nil, fmt.Errorf("--create-registry-secret: no local credentials for %s (log in with docker login, or drop the flag to use the cluster's credentials)", strings.Join(none, ", "))
	}
	b, err := json.Marshal(map[string]any{"auths": auths})
	if err != nil {
		return nil, err
	}
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: "fairing-registry-", Namespace: namespace, Labels: workload.FairingLabels(Deployer, id)},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: b},
	}, nil
}

func dedup(s []string) []string {
	m := map[string]bool{}
	var out []string
	for _, v := range s {
		if v != "" && !m[v] {
			m[v] = true
			out = append(out, v)
		}
	}
	sort.Strings(out)
	return out
}
