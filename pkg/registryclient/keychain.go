package registryclient

import (
	"context"
	"os"

	"github.com/google/go-containerregistry/pkg/authn"
	kauth "github.com/google/go-containerregistry/pkg/authn/kubernetes"
)

// DefaultKeychain is Docker's config and credential helpers ($DOCKER_CONFIG, podman's
// auth.json), and inside a Kubernetes pod also the pod's service account and its image pull
// secrets. A cluster keychain that cannot be built (no RBAC to read secrets) is skipped: the
// Docker config may still hold what is needed.
func DefaultKeychain(ctx context.Context) authn.Keychain {
	if os.Getenv("KUBERNETES_SERVICE_HOST") == "" {
		return authn.DefaultKeychain
	}
	opts := kauth.Options{Namespace: os.Getenv("POD_NAMESPACE"), ServiceAccountName: os.Getenv("POD_SERVICE_ACCOUNT")}
	if opts.ServiceAccountName == "" {
		opts.ServiceAccountName = kauth.NoServiceAccount
	}
	kc, err := kauth.NewInCluster(ctx, opts)
	if err != nil {
		return authn.DefaultKeychain
	}
	return authn.NewMultiKeychain(authn.DefaultKeychain, kc)
}
