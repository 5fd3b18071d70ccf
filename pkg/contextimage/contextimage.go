// Package contextimage carries a build context through the registry itself: the context's
// layers (made by pkg/layer, so content-addressed and incremental) are pushed as an OCI
// artifact, and a build pod appends those very layers to its base without downloading them.
// No object store is needed, an unchanged context uploads nothing, and an edited one uploads
// only the layer that changed.
package contextimage

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/fairing-dev/fairing/pkg/registryclient"
)

const (
	// ArtifactType identifies a fairing build context.
	ArtifactType = "application/vnd.fairing.context.v1"
	// ConfigMediaType is the artifact's config: an image config (rootfs.diff_ids and history
	// are what let the layers be appended without being read) plus the context's metadata.
	ConfigMediaType types.MediaType = "application/vnd.fairing.context.config.v1+json"
	// Scheme prefixes a context given as a registry reference: oci://REPO@sha256:...
	Scheme = "oci://"
)

// Meta is what the context artifact records besides its layers.
type Meta struct {
	// Workdir is where the context lands in the image.
	Workdir string `json:"workdir,omitempty"`
	// Dependencies are image paths of dependency files (requirements.txt, ...), for an
	// in-cluster BuildKit build to install.
	Dependencies []string `json:"dependencies,omitempty"`
	// Command is what the preprocessor chose the image to run.
	Command []string `json:"command,omitempty"`
	// Env is what the preprocessor chose to set (KEY=VALUE).
	Env []string `json:"env,omitempty"`
	// PathEnv are search paths to put in front of the base's (PYTHONPATH=...).
	PathEnv []string `json:"pathEnv,omitempty"`
}

type config struct {
	v1.ConfigFile
	Fairing Meta `json:"fairing"`
}

// New makes the context artifact from layers, their history lines and their descriptor
// annotations (the layer keys). The same layers give the same digest.
func New(layers []v1.Layer, comments []string, annotations []map[string]string, meta Meta) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, ConfigMediaType)
	// mutate keeps a non-image config as it is, so the rootfs and history are written here.
	cf := v1.ConfigFile{RootFS: v1.RootFS{Type: "layers"}}
	adds := make([]mutate.Addendum, 0, len(layers))
	for i, l := range layers {
		diff, err := l.DiffID()
		if err != nil {
			return nil, err
		}
		cf.RootFS.DiffIDs = append(cf.RootFS.DiffIDs, diff)
		cf.History = append(cf.History, v1.History{Created: v1.Time{Time: time.Unix(0, 0).UTC()}, CreatedBy: comments[i]})
		adds = append(adds, mutate.Addendum{Layer: l, Annotations: annotations[i]})
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(config{ConfigFile: cf, Fairing: meta})
	if err != nil {
		return nil, err
	}
	return &artifact{Image: img, config: raw}, nil
}

// artifact overrides the config with our own bytes and adds artifactType to the manifest
// (ggcr's v1.Manifest has no field for it).
type artifact struct {
	v1.Image
	config []byte
}

func (a *artifact) RawConfigFile() ([]byte, error) { return a.config, nil }

func (a *artifact) ConfigName() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(a.config))
	return h, err
}

func (a *artifact) Manifest() (*v1.Manifest, error) {
	m, err := a.Image.Manifest()
	if err != nil {
		return nil, err
	}
	m = m.DeepCopy()
	h, err := a.ConfigName()
	if err != nil {
		return nil, err
	}
	m.Config = v1.Descriptor{MediaType: ConfigMediaType, Digest: h, Size: int64(len(a.config))}
	return m, nil
}

func (a *artifact) RawManifest() ([]byte, error) {
	m, err := a.Manifest()
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return nil, err
	}
	fields["artifactType"], _ = json.Marshal(ArtifactType)
	return json.Marshal(fields)
}

func (a *artifact) Digest() (v1.Hash, error) {
	b, err := a.RawManifest()
	if err != nil {
		return v1.Hash{}, err
	}
	h, _, err := v1.SHA256(bytes.NewReader(b))
	return h, err
}

func (a *artifact) Size() (int64, error) {
	b, err := a.RawManifest()
	return int64(len(b)), err
}

// IsReference reports whether a --context value names a context artifact.
func IsReference(s string) bool { return strings.HasPrefix(s, Scheme) }

// Context is a context artifact read back from a registry: its layers are remote (mounted, not
// downloaded, when the destination is on the same registry), their diffIDs come from the config.
type Context struct {
	Ref    name.Digest
	Layers []v1.Layer
	// Comments are the layers' history lines.
	Comments []string
	// Annotations are the layers' descriptor annotations in the artifact.
	Annotations []map[string]string
	Meta        Meta
	Image       v1.Image
}

// Fetch reads the artifact named by oci://REPO@sha256:... (manifest and config only).
func Fetch(ctx context.Context, s string, rc registryclient.Config) (*Context, error) {
	ref, err := rc.ParseReference(strings.TrimPrefix(s, Scheme))
	if err != nil {
		return nil, fmt.Errorf("context %s: %w", s, err)
	}
	dref, ok := ref.(name.Digest)
	if !ok {
		return nil, fmt.Errorf("context %s: name the artifact by digest (oci://REPO@sha256:...), so the build is exactly what was sent", s)
	}
	opts, err := rc.RemoteOptions(ctx)
	if err != nil {
		return nil, err
	}
	img, err := remote.Image(dref, opts...)
	if err != nil {
		return nil, fmt.Errorf("read build context %s: %w", s, registryclient.Explain(err))
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("read build context %s: %w", s, registryclient.Explain(err))
	}
	if m.Config.MediaType != ConfigMediaType {
		return nil, fmt.Errorf("context %s is not a fairing build context (config type %s)", s, m.Config.MediaType)
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read build context config: %w", registryclient.Explain(err))
	}
	var cfg config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("context %s: bad config: %w", s, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	comments := make([]string, len(layers))
	for i := range layers {
		comments[i] = "fairing-builder: COPY context layer"
		if i < len(cfg.History) {
			comments[i] = cfg.History[i].CreatedBy
		}
	}
	m, err = img.Manifest()
	if err != nil {
		return nil, err
	}
	anns := make([]map[string]string, len(layers))
	for i := range layers {
		if i < len(m.Layers) {
			anns[i] = m.Layers[i].Annotations
		}
	}
	return &Context{Ref: dref, Layers: layers, Comments: comments, Annotations: anns, Meta: cfg.Fairing, Image: img}, nil
}
