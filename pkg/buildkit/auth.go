package buildkit

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/docker/cli/cli/config/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/auth/authprovider"
)

// AuthProvider is the session attachable through which buildkitd asks this process for
// registry credentials; it answers from kc, so the BuildKit path uses exactly the credentials
// the append path uses (Docker config, credential helpers, cloud and Kubernetes keychains).
func AuthProvider(kc authn.Keychain) session.Attachable {
	return authprovider.NewDockerAuthProvider(authprovider.DockerAuthProviderConfig{
		AuthConfigProvider: KeychainAuthConfig(kc),
	})
}

// KeychainAuthConfig adapts a go-containerregistry keychain to BuildKit's AuthConfigProvider.
// Answers are cached per registry and repository until BuildKit's expiry check says otherwise,
// so a credential helper is not run for every blob.
func KeychainAuthConfig(kc authn.Keychain) authprovider.AuthConfigProvider {
	type cached struct {
		created time.Time
		ac      types.AuthConfig
	}
	var mu sync.Mutex
	cache := map[string]cached{}
	return func(ctx context.Context, host string, scopes []string, expired authprovider.ExpireCachedAuthCheck) (types.AuthConfig, error) {
		res, key, err := authResource(host, scopes)
		if err != nil {
			return types.AuthConfig{}, err
		}
		mu.Lock()
		defer mu.Unlock()
		if c, ok := cache[key]; ok && (expired == nil || !expired(c.created, host)) {
			return c.ac, nil
		}
		a, err := authn.Resolve(ctx, kc, res)
		if err != nil {
			return types.AuthConfig{}, fmt.Errorf("credentials for %s: %w", res, err)
		}
		cfg, err := authn.Authorization(ctx, a)
		if err != nil {
			return types.AuthConfig{}, fmt.Errorf("credentials for %s: %w", res, err)
		}
		ac, err := dockerAuthConfig(host, cfg)
		if err != nil {
			return types.AuthConfig{}, fmt.Errorf("credentials for %s: %w", res, err)
		}
		cache[key] = cached{created: time.Now(), ac: ac}
		return ac, nil
	}
}

// authResource names what BuildKit asks about: the repository of the first scope
// ("repository:team/app:pull,push") when there is one, else the registry.
func authResource(host string, scopes []string) (authn.Resource, string, error) {
	if host == authprovider.DockerHubRegistryHost {
		host = name.DefaultRegistry
	}
	reg, err := name.NewRegistry(host)
	if err != nil {
		return nil, "", fmt.Errorf("registry host %q: %w", host, err)
	}
	for _, s := range scopes {
		s = strings.TrimPrefix(s, "repository:")
		if i := strings.LastIndex(s, ":"); i > 0 {
			s = s[:i]
		}
		if repo, err := name.NewRepository(host + "/" + s); err == nil {
			return repo, repo.String(), nil
		}
	}
	return reg, reg.String(), nil
}

func dockerAuthConfig(host string, c *authn.AuthConfig) (types.AuthConfig, error) {
	ac := types.AuthConfig{
		Username:      c.Username,
		Password:      c.Password,
		IdentityToken: c.IdentityToken,
		RegistryToken: c.RegistryToken,
		ServerAddress: host,
	}
	// BuildKit reads Username/Password only; a keychain may give just the encoded pair
	if ac.Username == "" && ac.Password == "" && c.Auth != "" {
		raw, err := base64.StdEncoding.DecodeString(c.Auth)
		if err != nil {
			return types.AuthConfig{}, fmt.Errorf("decode auth field: %w", err)
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return types.AuthConfig{}, fmt.Errorf("decoded auth field has no user:password form")
		}
		ac.Username, ac.Password = user, pass
	}
	return ac, nil
}
