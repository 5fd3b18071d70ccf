package registryclient

import (
	"context"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/logs"

	"github.com/fairing-dev/fairing/pkg/kubeauth"
)

// DefaultKeychain is Docker's config and credential helpers ($DOCKER_CONFIG, podman's
// auth.json), and inside a Kubernetes pod also the image pull secrets of the pod's service
// account. Pull secrets that cannot be read (no RBAC to read them) are left out with a warning
// (shown with --verbose): the Docker config may still hold what is needed.
func DefaultKeychain(ctx context.Context) authn.Keychain {
	o, ok := kubeauth.InCluster()
	if !ok {
		return authn.DefaultKeychain
	}
	kc, err := kubeauth.Keychain(ctx, o)
	if err != nil {
		logs.Warn.Printf("registry credentials from the cluster: %v", err)
	}
	if kc == nil {
		return authn.DefaultKeychain
	}
	return authn.NewMultiKeychain(authn.DefaultKeychain, kc)
}
