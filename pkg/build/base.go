// Package build assembles images: a base (read as manifest and config only) plus layers plus
// configuration gives a v1.Image, or a v1.ImageIndex when the base has several platforms.
package build

import (
	"context"
	"fmt"
	"strings"

	"github.com/fairing-dev/fairing/pkg/registryclient"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// AnnotationRefName names an image inside an OCI layout.
const AnnotationRefName = "org.opencontainers.image.ref.name"

// Base is a resolved base image: exactly one of Image and Index is set.
type Base struct {
	// Name is the base as the user gave it, for the base.name annotation.
	Name   string
	Image  v1.Image
	Index  v1.ImageIndex
	Digest v1.Hash
	// Scratch marks the empty base.
	Scratch bool
}

// ResolveBase reads a base: "scratch", "oci:DIR[:TAG]" (an OCI image layout) or a registry
// reference. Only manifests (and later configs) are fetched, never layers.
func ResolveBase(ctx context.Context, spec string, parse func(string) (name.Reference, error), opts ...remote.Option) (*Base, error) {
	switch {
	case spec == "" || spec == "scratch":
		img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
		d, err := img.Digest()
		if err != nil {
			return nil, err
		}
		return &Base{Name: "scratch", Image: img, Digest: d, Scratch: true}, nil
	case strings.HasPrefix(spec, "oci:"):
		return layoutBase(spec)
	}
	ref, err := parse(spec)
	if err != nil {
		return nil, fmt.Errorf("base %q: %w", spec, err)
	}
	desc, err := remote.Get(ref, append(opts, remote.WithContext(ctx))...)
	if err != nil {
		return nil, fmt.Errorf("read base %s: %w", spec, registryclient.Explain(err))
	}
	b := &Base{Name: spec, Digest: desc.Digest}
	if desc.MediaType.IsIndex() {
		b.Index, err = desc.ImageIndex()
	} else {
		b.Image, err = desc.Image()
	}
	if err != nil {
		return nil, fmt.Errorf("read base %s: %w", spec, err)
	}
	return b, nil
}

// layoutBase reads oci:DIR[:TAG]; without a tag the layout must hold exactly one manifest.
func layoutBase(spec string) (*Base, error) {
	dir, tag := splitLayoutSpec(strings.TrimPrefix(spec, "oci:"))
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("base %s: not an OCI image layout: %w", spec, err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("base %s: %w", spec, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("base %s: %w", spec, err)
	}
	var found []v1.Descriptor
	for _, d := range im.Manifests {
		if tag == "" || d.Annotations[AnnotationRefName] == tag {
			found = append(found, d)
		}
	}
	switch {
	case len(found) == 0 && tag != "":
		return nil, fmt.Errorf("base %s: no image tagged %q in the layout", spec, tag)
	case len(found) != 1:
		return nil, fmt.Errorf("base %s: the layout holds %d images: name one as oci:%s:TAG", spec, len(found), dir)
	}
	d := found[0]
	b := &Base{Name: spec, Digest: d.Digest}
	if d.MediaType.IsIndex() {
		b.Index, err = idx.ImageIndex(d.Digest)
	} else {
		b.Image, err = idx.Image(d.Digest)
	}
	if err != nil {
		return nil, fmt.Errorf("base %s: %w", spec, err)
	}
	return b, nil
}

// splitLayoutSpec splits "DIR[:TAG]"; a colon that is part of the directory path (followed by
// a slash) is not a tag separator.
func splitLayoutSpec(s string) (dir, tag string) {
	i := strings.LastIndex(s, ":")
	if i < 0 || strings.Contains(s[i+1:], "/") {
		return s, ""
	}
	return s[:i], s[i+1:]
}
