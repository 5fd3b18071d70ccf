// Package publish writes a built image or index to its destinations: registries (all in one
// pass, blobs deduplicated, only missing ones uploaded), OCI image layouts and docker-load
// tarballs.
package publish

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/fairing-dev/fairing/pkg/registryclient"
)

// Kind of destination.
type Kind int

const (
	Registry Kind = iota
	Layout
	Tarball
)

// Destination is one --destination.
type Destination struct {
	Kind Kind
	// Raw is the flag value as given.
	Raw string
	// Ref is the registry reference (Registry).
	Ref name.Reference
	// Path is the layout directory (Layout) or the tar file (Tarball).
	Path string
	// Tag names the image inside a layout.
	Tag string
}

func (d Destination) String() string { return d.Raw }

// ParseDestination accepts a registry reference, "oci:DIR:TAG" (an OCI image layout, created
// if missing) or "tar:FILE" (a docker-load tarball).
func ParseDestination(s string, rc registryclient.Config) (Destination, error) {
	switch {
	case strings.HasPrefix(s, "oci:"):
		rest := strings.TrimPrefix(s, "oci:")
		i := strings.LastIndex(rest, ":")
		if i <= 0 || i == len(rest)-1 || strings.Contains(rest[i+1:], "/") {
			return Destination{}, fmt.Errorf("destination %q: an OCI layout destination is oci:DIR:TAG", s)
		}
		return Destination{Kind: Layout, Raw: s, Path: rest[:i], Tag: rest[i+1:]}, nil
	case strings.HasPrefix(s, "tar:"):
		p := strings.TrimPrefix(s, "tar:")
		if p == "" {
			return Destination{}, fmt.Errorf("destination %q: a tarball destination is tar:FILE", s)
		}
		return Destination{Kind: Tarball, Raw: s, Path: p}, nil
	}
	ref, err := rc.ParseReference(s)
	if err != nil {
		return Destination{}, fmt.Errorf("destination: %w", err)
	}
	if _, ok := ref.(name.Digest); ok {
		return Destination{}, fmt.Errorf("destination %q names a digest, which is only known once the image is built: give a tag (REPO:TAG) or a repository", s)
	}
	return Destination{Kind: Registry, Raw: s, Ref: ref}, nil
}

// WithDigest names what the destination holds after publishing: repo@digest for a registry,
// oci:DIR@digest or tar:FILE@digest locally.
func (d Destination) WithDigest(digest string) string {
	switch d.Kind {
	case Layout:
		return "oci:" + d.Path + "@" + digest
	case Tarball:
		return "tar:" + d.Path + "@" + digest
	}
	return d.Ref.Context().Digest(digest).String()
}
