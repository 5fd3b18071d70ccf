package buildkit

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

var tagPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// DestinationKind says where an image goes.
type DestinationKind int

const (
	// Registry pushes to an image reference.
	Registry DestinationKind = iota
	// OCILayout writes an OCI image layout directory ("oci:DIR" or "oci:DIR:TAG").
	OCILayout
	// Tarball writes a docker-load tarball ("tar:FILE").
	Tarball
)

// Destination is one place the built image is exported to.
type Destination struct {
	Kind DestinationKind
	// Ref is the image reference of a Registry destination.
	Ref name.Reference
	// Path is the directory of an OCILayout or the file of a Tarball destination.
	Path string
	// Tag names the image inside an OCI layout (its org.opencontainers.image.ref.name); default "latest".
	Tag string
}

func (d Destination) String() string {
	switch d.Kind {
	case OCILayout:
		return "oci:" + d.Path + ":" + d.Tag
	case Tarball:
		return "tar:" + d.Path
	default:
		return d.Ref.String()
	}
}

// ParseDestination parses the CLI's --destination forms: an image reference (pushed),
// "oci:DIR[:TAG]" (an OCI layout directory) or "tar:FILE" (a docker-load tarball).
func ParseDestination(s string, opts ...name.Option) (Destination, error) {
	switch {
	case strings.HasPrefix(s, "oci:"):
		rest := strings.TrimPrefix(s, "oci:")
		dir, tag := rest, "latest"
		// the tag is what follows the last colon, unless that colon belongs to a path
		if i := strings.LastIndex(rest, ":"); i >= 0 && !strings.Contains(rest[i+1:], "/") {
			dir, tag = rest[:i], rest[i+1:]
		}
		if dir == "" || tag == "" {
			return Destination{}, fmt.Errorf("destination %q: want oci:DIR or oci:DIR:TAG", s)
		}
		if !tagPattern.MatchString(tag) {
			return Destination{}, fmt.Errorf("destination %q: tag %q is not a valid tag", s, tag)
		}
		return Destination{Kind: OCILayout, Path: filepath.Clean(dir), Tag: tag}, nil
	case strings.HasPrefix(s, "tar:"):
		file := strings.TrimPrefix(s, "tar:")
		if file == "" {
			return Destination{}, fmt.Errorf("destination %q: want tar:FILE", s)
		}
		return Destination{Kind: Tarball, Path: filepath.Clean(file)}, nil
	}
	ref, err := name.ParseReference(s, opts...)
	if err != nil {
		return Destination{}, fmt.Errorf("destination %q: %w (want an image reference, oci:DIR[:TAG] or tar:FILE)", s, err)
	}
	if _, ok := ref.(name.Digest); ok {
		return Destination{}, fmt.Errorf("destination %q: cannot push to a digest; give a tag", s)
	}
	return Destination{Kind: Registry, Ref: ref}, nil
}

// ParseDestinations parses each of ss with ParseDestination.
func ParseDestinations(ss []string, opts ...name.Option) ([]Destination, error) {
	out := make([]Destination, 0, len(ss))
	for _, s := range ss {
		d, err := ParseDestination(s, opts...)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}
