package build

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// OCI annotations set on every image built.
const (
	AnnotationBaseName   = "org.opencontainers.image.base.name"
	AnnotationBaseDigest = "org.opencontainers.image.base.digest"
	AnnotationCreated    = "org.opencontainers.image.created"
)

// RuntimeEnv marks images built by fairing: user code that calls the Fairing SDK turns its
// build-and-deploy calls into no-ops when it sees it.
const RuntimeEnv = "FAIRING_RUNTIME=1"

// Config is what the built image runs and how. nil slices keep the base's value.
type Config struct {
	WorkingDir string
	Entrypoint []string
	Cmd        []string
	// Env entries are KEY=VALUE; $VAR and ${VAR} expand against the base's environment.
	Env []string
	// PathEnv entries are KEY=VALUE for search paths (PYTHONPATH): VALUE goes in front of the
	// base's value, joined with ':', or alone when the base has none.
	PathEnv     []string
	Labels      map[string]string
	Annotations map[string]string
	User        string
	// Created is the image's creation time. Zero means the base's (or the epoch for scratch),
	// so the same inputs give the same digest.
	Created time.Time
}

// Options describe one build.
type Options struct {
	Base *Base
	// Platforms selects from a multi-platform base; empty means every platform it has. For a
	// scratch base the first one (default linux/amd64) sets the config's platform.
	Platforms []v1.Platform
	// Layers are appended in order.
	Layers []Layer
	Config Config
}

// Layer is a layer to append and its line in the image history. The layer is passed to the
// pusher as is, so a remote layer stays mountable across repositories.
type Layer struct {
	Layer   v1.Layer
	Comment string
	// Annotations are added to the layer's descriptor in OCI manifests (Docker schema 2
	// defines none).
	Annotations map[string]string
}

// Result is exactly one of an image or an index.
type Result struct {
	Image     v1.Image
	Index     v1.ImageIndex
	Platforms []v1.Platform
}

// Images are the images r holds: its image, or its index's, in the index's order.
func (r *Result) Images() ([]v1.Image, error) {
	if r.Index == nil {
		return []v1.Image{r.Image}, nil
	}
	im, err := r.Index.IndexManifest()
	if err != nil {
		return nil, err
	}
	out := make([]v1.Image, 0, len(im.Manifests))
	for _, d := range im.Manifests {
		img, err := r.Index.Image(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("platform image %s: %w", d.Digest, err)
		}
		out = append(out, img)
	}
	return out, nil
}

// Taggable is what a registry push needs.
func (r *Result) Taggable() remote.Taggable {
	if r.Index != nil {
		return r.Index
	}
	return r.Image
}

// Digest of the manifest or index.
func (r *Result) Digest() (v1.Hash, error) {
	if r.Index != nil {
		return r.Index.Digest()
	}
	return r.Image.Digest()
}

// Build appends the layers to every selected platform of the base and applies the config.
// The same layers (built once) serve every platform.
func Build(o Options) (*Result, error) {
	if o.Base.Index == nil {
		p, err := platformOf(o.Base)
		if err != nil {
			return nil, err
		}
		if len(o.Platforms) > 0 && !o.Base.Scratch && !matchesAny(p, o.Platforms) {
			return nil, fmt.Errorf("base %s is %s only: it cannot give %s (drop --platform or pick a multi-platform base)", o.Base.Name, p, platformList(o.Platforms))
		}
		if o.Base.Scratch {
			p = &v1.Platform{OS: "linux", Architecture: "amd64"}
			if len(o.Platforms) > 0 {
				p = &o.Platforms[0]
			}
		}
		img, err := buildImage(o, o.Base.Image, o.Base.Digest, p)
		if err != nil {
			return nil, err
		}
		return &Result{Image: img, Platforms: []v1.Platform{*p}}, nil
	}

	im, err := o.Base.Index.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("read base index %s: %w", o.Base.Name, err)
	}
	var adds []mutate.IndexAddendum
	var plats []v1.Platform
	var available []string
	for _, d := range im.Manifests {
		if !chosen(d, nil) {
			continue
		}
		available = append(available, d.Platform.String())
		if !chosen(d, o.Platforms) {
			continue
		}
		base, err := o.Base.child(d)
		if err != nil {
			return nil, fmt.Errorf("read base %s for %s: %w", o.Base.Name, d.Platform, err)
		}
		img, err := buildImage(o, base, d.Digest, d.Platform)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.Platform, err)
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: d.Platform}})
		plats = append(plats, *d.Platform)
	}
	if len(adds) == 0 {
		return nil, fmt.Errorf("base %s has no platform %s (it has %s)", o.Base.Name, platformList(o.Platforms), strings.Join(available, ", "))
	}
	// One platform asked for explicitly: a plain image, as ko does.
	if len(o.Platforms) == 1 && len(adds) == 1 {
		return &Result{Image: adds[0].Add.(v1.Image), Platforms: plats}, nil
	}
	mt, err := o.Base.Index.MediaType()
	if err != nil {
		return nil, err
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, mt), adds...)
	if mt == types.OCIImageIndex {
		idx = mutate.Annotations(idx, annotations(o, o.Base.Digest, o.Config.Created)).(v1.ImageIndex)
	}
	return &Result{Index: idx, Platforms: plats}, nil
}

func buildImage(o Options, base v1.Image, baseDigest v1.Hash, p *v1.Platform) (v1.Image, error) {
	mt, err := base.MediaType()
	if err != nil {
		return nil, fmt.Errorf("read base manifest: %w", err)
	}
	oci := mt == types.OCIManifestSchema1
	if !oci && mt != types.DockerManifestSchema2 {
		return nil, fmt.Errorf("base %s has manifest type %s: only OCI and Docker schema 2 images can be extended", o.Base.Name, mt)
	}
	cf, err := base.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read base config: %w", err)
	}
	created := o.Config.Created
	if created.IsZero() {
		created = cf.Created.Time
	}
	if created.IsZero() {
		created = time.Unix(0, 0)
	}
	created = created.UTC()

	adds := make([]mutate.Addendum, 0, len(o.Layers))
	for _, l := range o.Layers {
		have, err := l.Layer.MediaType()
		if err != nil {
			return nil, err
		}
		lmt, err := layerMediaType(have, oci)
		if err != nil {
			return nil, fmt.Errorf("base %s: %w", o.Base.Name, err)
		}
		add := mutate.Addendum{
			Layer:     l.Layer,
			MediaType: lmt,
			History:   v1.History{Created: v1.Time{Time: created}, CreatedBy: l.Comment},
		}
		if oci && len(l.Annotations) > 0 {
			desc, err := partial.Descriptor(l.Layer)
			if err != nil {
				return nil, err
			}
			add.Annotations = map[string]string{}
			for k, v := range desc.Annotations {
				add.Annotations[k] = v
			}
			for k, v := range l.Annotations {
				add.Annotations[k] = v
			}
		}
		adds = append(adds, add)
	}
	img, err := mutate.Append(base, adds...)
	if err != nil {
		return nil, err
	}
	cf, err = img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: created}
	if o.Base.Scratch {
		cf.OS, cf.Architecture, cf.Variant, cf.OSVersion = p.OS, p.Architecture, p.Variant, p.OSVersion
		cf.RootFS.Type = "layers"
	}
	applyConfig(&cf.Config, o.Config)
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, err
	}
	if oci {
		img = mutate.Annotations(img, annotations(o, baseDigest, created)).(v1.Image)
	}
	return img, nil
}

// layerMediaType is the type a layer gets in a manifest of the base's kind: the same bytes are
// an OCI or a Docker layer, except that Docker schema 2 has no zstd type.
func layerMediaType(have types.MediaType, oci bool) (types.MediaType, error) {
	switch have {
	case types.OCILayer, types.DockerLayer:
		if oci {
			return types.OCILayer, nil
		}
		return types.DockerLayer, nil
	case types.OCIUncompressedLayer, types.DockerUncompressedLayer:
		if oci {
			return types.OCIUncompressedLayer, nil
		}
		return types.DockerUncompressedLayer, nil
	case types.OCILayerZStd:
		if oci {
			return have, nil
		}
		return "", fmt.Errorf("Docker schema 2 images have no zstd layer type: use --compression gzip or an OCI base")
	}
	return "", fmt.Errorf("cannot append a layer of media type %s", have)
}

func applyConfig(c *v1.Config, o Config) {
	c.Env = mergeEnv(c.Env, append([]string{RuntimeEnv}, o.Env...))
	c.Env = prependPaths(c.Env, o.PathEnv)
	if o.WorkingDir != "" {
		c.WorkingDir = o.WorkingDir
	}
	if o.Entrypoint != nil {
		c.Entrypoint = o.Entrypoint
		// As in a Dockerfile, a new ENTRYPOINT drops the base's CMD.
		c.Cmd = nil
	}
	if o.Cmd != nil {
		c.Cmd = o.Cmd
	}
	if o.User != "" {
		c.User = o.User
	}
	if len(o.Labels) > 0 {
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		for k, v := range o.Labels {
			c.Labels[k] = v
		}
	}
}

// mergeEnv sets each KEY=VALUE of add on env, replacing a key in place and appending new ones,
// with $VAR expanded against the environment built so far.
func mergeEnv(env, add []string) []string { return setEnv(env, add, true) }

func setEnv(env, add []string, expand bool) []string {
	out := append([]string(nil), env...)
	lookup := func(k string) string {
		for i := len(out) - 1; i >= 0; i-- {
			if kk, v, _ := strings.Cut(out[i], "="); kk == k {
				return v
			}
		}
		return ""
	}
	for _, kv := range add {
		k, v, _ := strings.Cut(kv, "=")
		if expand {
			v = os.Expand(v, lookup)
		}
		replaced := false
		for i := range out {
			if kk, _, _ := strings.Cut(out[i], "="); kk == k {
				out[i] = k + "=" + v
				replaced = true
			}
		}
		if !replaced {
			out = append(out, k+"="+v)
		}
	}
	return out
}

func prependPaths(env, add []string) []string {
	var set []string
	for _, kv := range add {
		k, v, _ := strings.Cut(kv, "=")
		old := ""
		for _, e := range env {
			if kk, vv, _ := strings.Cut(e, "="); kk == k {
				old = vv
			}
		}
		if old != "" && old != v && !strings.HasPrefix(old, v+":") {
			v += ":" + old
		} else if old != "" {
			v = old
		}
		set = append(set, k+"="+v)
	}
	return setEnv(env, set, false)
}

func annotations(o Options, baseDigest v1.Hash, created time.Time) map[string]string {
	a := map[string]string{}
	if !o.Base.Scratch {
		a[AnnotationBaseName] = o.Base.Name
		a[AnnotationBaseDigest] = baseDigest.String()
	}
	if created.IsZero() {
		created = time.Unix(0, 0)
	}
	a[AnnotationCreated] = created.UTC().Format(time.RFC3339)
	for k, v := range o.Config.Annotations {
		a[k] = v
	}
	return a
}

func platformOf(b *Base) (*v1.Platform, error) {
	cf, err := b.Image.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read base config %s: %w", b.Name, err)
	}
	return cf.Platform(), nil
}

func matchesAny(p *v1.Platform, want []v1.Platform) bool {
	for _, w := range want {
		if p.OS == w.OS && p.Architecture == w.Architecture && (w.Variant == "" || p.Variant == w.Variant) {
			return true
		}
	}
	return false
}

func platformList(ps []v1.Platform) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
}

// ParsePlatforms parses a comma-separated list such as "linux/amd64,linux/arm64/v8".
func ParsePlatforms(specs []string) ([]v1.Platform, error) {
	var out []v1.Platform
	for _, spec := range specs {
		for _, s := range strings.Split(spec, ",") {
			s = strings.TrimSpace(s)
			if s == "" || s == "all" {
				continue
			}
			p, err := v1.ParsePlatform(s)
			if err != nil || !validPlatform(p, s) {
				return nil, fmt.Errorf("invalid platform %q: expected OS/ARCH[/VARIANT], e.g. linux/amd64 or linux/arm64/v8", s)
			}
			out = append(out, *p)
		}
	}
	return out, nil
}

// platformPart is what each part of a platform may hold: the characters containerd's platform
// specifiers allow. v1.ParsePlatform splits on '/' and ':' and accepts anything in between.
var platformPart = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// validPlatform reports whether p, parsed from s, has an OS and an architecture, a variant only
// if s names one, and nothing but platformPart characters in them.
func validPlatform(p *v1.Platform, s string) bool {
	switch slashes := strings.Count(s, "/"); {
	case slashes < 1 || slashes > 2:
		return false
	case slashes == 2 && p.Variant == "":
		return false
	}
	for _, part := range []string{p.OS, p.Architecture} {
		if !platformPart.MatchString(part) {
			return false
		}
	}
	for _, part := range []string{p.Variant, p.OSVersion} {
		if part != "" && !platformPart.MatchString(part) {
			return false
		}
	}
	return !strings.HasSuffix(s, ":")
}
