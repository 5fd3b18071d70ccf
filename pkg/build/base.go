// Package build assembles images: a base (read as manifest and config only) plus layers plus
// configuration gives a v1.Image, or a v1.ImageIndex when the base has several platforms.
package build

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/fairing-dev/fairing/pkg/registryclient"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
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

	mu       sync.Mutex
	children map[v1.Hash]v1.Image // a multi-platform base's images read by Prefetch
}

// Prefetch reads, concurrently, what Build will read of the base for plats (all platforms when
// empty): the config of a single image; a multi-platform base's manifest and config for each
// chosen platform, which Build would otherwise read one after another once the layers are
// done, two round trips per platform on the way to the push.
func (b *Base) Prefetch(plats []v1.Platform) error {
	if b.Image != nil {
		_, err := b.Image.ConfigFile()
		return err
	}
	if b.Index == nil {
		return nil
	}
	im, err := b.Index.IndexManifest()
	if err != nil {
		return fmt.Errorf("read base index %s: %w", b.Name, err)
	}
	var g errgroup.Group
	g.SetLimit(8)
	for _, d := range im.Manifests {
		if !chosen(d, plats) {
			continue
		}
		g.Go(func() error {
			img, err := b.child(d)
			if err == nil {
				_, err = img.ConfigFile()
			}
			if err != nil {
				return fmt.Errorf("read base %s for %s: %w", b.Name, d.Platform, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// chosen reports whether Build builds onto the index entry d for plats.
func chosen(d v1.Descriptor, plats []v1.Platform) bool {
	if d.Platform == nil || d.Platform.OS == "unknown" || !d.MediaType.IsImage() {
		return false // attestations and nested indexes describe the base, not us
	}
	return len(plats) == 0 || matchesAny(d.Platform, plats)
}

// Platforms is how many images Build makes on b for plats: one per chosen platform of a
// multi-platform base, one otherwise (0 when the base's index cannot be read).
func (b *Base) Platforms(plats []v1.Platform) int {
	if b.Index == nil {
		return 1
	}
	im, err := b.Index.IndexManifest()
	if err != nil {
		return 0
	}
	n := 0
	for _, d := range im.Manifests {
		if chosen(d, plats) {
			n++
		}
	}
	return n
}

// child is the index's image for d, read once.
func (b *Base) child(d v1.Descriptor) (v1.Image, error) {
	b.mu.Lock()
	img, ok := b.children[d.Digest]
	b.mu.Unlock()
	if ok {
		return img, nil
	}
	img, err := b.Index.Image(d.Digest)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.children == nil {
		b.children = map[v1.Hash]v1.Image{}
	}
	if prev, ok := b.children[d.Digest]; ok {
		return prev, nil
	}
	b.children[d.Digest] = img
	return img, nil
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
