// Package builder runs a build from start to finish on the append path: sources → layers
// (incremental, cached) → image on the base (manifest and config only) → destinations, plus
// the files scripts read afterwards (digest file, name@digest file, metadata JSON).
package builder

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/fairing-dev/fairing/pkg/build"
	"github.com/fairing-dev/fairing/pkg/layer"
	"github.com/fairing-dev/fairing/pkg/progress"
	"github.com/fairing-dev/fairing/pkg/publish"
	"github.com/fairing-dev/fairing/pkg/registryclient"
)

// Options describe one build.
type Options struct {
	Sources      []layer.Source
	Base         string
	Destinations []string
	// NoPush computes everything and writes local destinations, but sends nothing to
	// registries.
	NoPush    bool
	Platforms []string
	Config    build.Config
	Layer     layer.Options
	Plan      layer.PlanOptions
	CacheDir  string
	Registry  registryclient.Config

	DigestFile              string
	ImageNameWithDigestFile string
	MetadataFile            string

	// Progress is where upload bars go (a terminal); nil for none.
	Progress io.Writer
	// Logf receives human-readable progress lines; nil for none.
	Logf func(format string, args ...any)
}

// Report is what a build did; it is also the --metadata-file content.
type Report struct {
	// Reference is name@digest of the first destination (or the digest alone).
	Reference string   `json:"reference"`
	Digest    string   `json:"digest"`
	MediaType string   `json:"mediaType"`
	Refs      []string `json:"refs"`
	Platforms []string `json:"platforms"`
	Base      struct {
		Name   string `json:"name"`
		Digest string `json:"digest,omitempty"`
	} `json:"base"`
	Layers        []LayerReport `json:"layers"`
	Entries       int           `json:"entries"`
	FilesHashed   int           `json:"filesHashed"`
	Pushed        []string      `json:"pushed"`
	Mounted       []string      `json:"mounted"`
	Skipped       []string      `json:"skipped"`
	Manifests     []string      `json:"manifests"`
	BytesUploaded int64         `json:"bytesUploaded"`
	Timings       Timings       `json:"timings"`

	// BuildKit-compatible keys, so tools that read `buildctl --metadata-file` read ours.
	ContainerImageDigest string `json:"containerimage.digest"`
	ImageName            string `json:"image.name,omitempty"`
}

// LayerReport describes one layer fairing added.
type LayerReport struct {
	Name        string            `json:"name"`
	Digest      string            `json:"digest"`
	DiffID      string            `json:"diffID"`
	Size        int64             `json:"size"`
	MediaType   string            `json:"mediaType"`
	Entries     int               `json:"entries"`
	Cached      bool              `json:"cached"`
	Key         string            `json:"key"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Timings of the phases, in milliseconds.
type Timings struct {
	WalkMs    int64 `json:"walk"`
	HashMs    int64 `json:"hash"`
	LayersMs  int64 `json:"layers"`
	BaseMs    int64 `json:"base"`
	PublishMs int64 `json:"publish"`
	TotalMs   int64 `json:"total"`
}

func (o *Options) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

// Run builds and publishes. Nothing is tagged unless everything it points to was written.
func Run(ctx context.Context, o Options) (*Report, error) {
	start := time.Now()
	if len(o.Sources) == 0 {
		return nil, fmt.Errorf("nothing to build: no context or inputs given")
	}
	plats, err := build.ParsePlatforms(o.Platforms)
	if err != nil {
		return nil, err
	}
	var dests []publish.Destination
	for _, s := range o.Destinations {
		d, err := publish.ParseDestination(s, o.Registry)
		if err != nil {
			return nil, err
		}
		dests = append(dests, d)
	}
	if o.CacheDir == "" {
		if o.CacheDir, err = DefaultCacheDir(); err != nil {
			return nil, err
		}
	}

	// The base's manifest and config come over the network while the layers are built.
	type baseResult struct {
		b   *build.Base
		err error
		d   time.Duration
	}
	baseCh := make(chan baseResult, 1)
	go func() {
		t := time.Now()
		ropts, err := o.Registry.RemoteOptions(ctx)
		if err != nil {
			baseCh <- baseResult{err: err}
			return
		}
		b, err := build.ResolveBase(ctx, o.Base, o.Registry.ParseReference, ropts...)
		if err == nil && b.Image != nil {
			_, err = b.Image.ConfigFile() // fetch now, in parallel with the layers
		}
		baseCh <- baseResult{b, err, time.Since(t)}
	}()

	lres, err := layer.Make(ctx, o.Sources, o.CacheDir, o.Layer, o.Plan)
	if err != nil {
		<-baseCh
		return nil, err
	}
	for _, l := range lres.Layers {
		o.logf("layer %s", l)
	}
	br := <-baseCh
	if br.err != nil {
		return nil, br.err
	}

	res, err := build.Build(build.Options{Base: br.b, Platforms: plats, Layers: lres.Layers, Config: o.Config})
	if err != nil {
		return nil, err
	}
	digest, err := res.Digest()
	if err != nil {
		return nil, err
	}

	rep := &Report{Digest: digest.String(), Entries: lres.Entries, FilesHashed: lres.Hashed}
	rep.Base.Name = br.b.Name
	if !br.b.Scratch {
		rep.Base.Digest = br.b.Digest.String()
	}
	if err := fillImageReport(rep, res, lres.Layers); err != nil {
		return nil, err
	}

	t := time.Now()
	var publishTo []publish.Destination
	for _, d := range dests {
		rep.Refs = append(rep.Refs, d.WithDigest(digest.String()))
		if !(o.NoPush && d.Kind == publish.Registry) {
			publishTo = append(publishTo, d)
		}
	}
	if len(publishTo) > 0 {
		ch, wait := progress.Uploads(o.Progress, "pushing")
		prep, err := publish.Publish(ctx, res, publishTo, publish.Options{Registry: o.Registry, Progress: ch})
		wait()
		if err != nil {
			return nil, err
		}
		rep.Pushed, rep.Mounted, rep.Skipped, rep.Manifests = prep.Pushed, prep.Mounted, prep.Skipped, prep.Manifests
		rep.BytesUploaded = prep.BytesUploaded
	}
	if len(rep.Refs) > 0 {
		rep.Reference = rep.Refs[0]
	} else {
		rep.Reference = digest.String()
	}
	rep.ContainerImageDigest = rep.Digest
	for _, d := range dests {
		if d.Kind == publish.Registry {
			rep.ImageName = d.Ref.String()
			break
		}
	}
	rep.Timings = Timings{
		WalkMs: lres.Walk.Milliseconds(), HashMs: lres.Hash.Milliseconds(), LayersMs: lres.Write.Milliseconds(),
		BaseMs: br.d.Milliseconds(), PublishMs: time.Since(t).Milliseconds(), TotalMs: time.Since(start).Milliseconds(),
	}
	if err := writeOutputs(o, rep); err != nil {
		return nil, err
	}
	return rep, nil
}

func fillImageReport(rep *Report, res *build.Result, layers []*layer.Layer) error {
	var mt interface {
		MediaType() (types.MediaType, error)
	} = res.Image
	if res.Index != nil {
		mt = res.Index
	}
	m, err := mt.MediaType()
	if err != nil {
		return err
	}
	rep.MediaType = string(m)
	for _, p := range res.Platforms {
		rep.Platforms = append(rep.Platforms, p.String())
	}
	// Layer media types as they appear in the (first) manifest.
	img := res.Image
	if img == nil {
		im, err := res.Index.IndexManifest()
		if err != nil {
			return err
		}
		if img, err = res.Index.Image(im.Manifests[0].Digest); err != nil {
			return err
		}
	}
	man, err := img.Manifest()
	if err != nil {
		return err
	}
	layerTypes := map[string]string{}
	for _, d := range man.Layers {
		layerTypes[d.Digest.String()] = string(d.MediaType)
	}
	for _, l := range layers {
		d, _ := l.Digest()
		diff, _ := l.DiffID()
		size, _ := l.Size()
		desc, _ := l.Descriptor()
		rep.Layers = append(rep.Layers, LayerReport{
			Name: l.Name(), Digest: d.String(), DiffID: diff.String(), Size: size, MediaType: layerTypes[d.String()],
			Entries: l.Entries(), Cached: l.CacheHit(), Key: l.Key(), Annotations: desc.Annotations,
		})
	}
	return nil
}

// writeOutputs writes the files scripts read; each is written whole or not at all.
func writeOutputs(o Options, rep *Report) error {
	write := func(file string, data []byte) error {
		if file == "" {
			return nil
		}
		tmp := file + ".tmp"
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", file, err)
		}
		return os.Rename(tmp, file)
	}
	if err := write(o.DigestFile, []byte(rep.Digest)); err != nil {
		return err
	}
	if o.ImageNameWithDigestFile != "" {
		ref := ""
		for _, r := range rep.Refs {
			if !strings.HasPrefix(r, "oci:") && !strings.HasPrefix(r, "tar:") {
				ref = r
				break
			}
		}
		if ref == "" {
			return fmt.Errorf("--image-name-with-digest-file needs a registry --destination")
		}
		if err := write(o.ImageNameWithDigestFile, []byte(ref)); err != nil {
			return err
		}
	}
	if o.MetadataFile != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := write(o.MetadataFile, append(b, '\n')); err != nil {
			return err
		}
	}
	return nil
}

// DefaultCacheDir is $XDG_CACHE_HOME/fairing (~/.cache/fairing).
func DefaultCacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory: set --cache-dir: %w", err)
	}
	return d + "/fairing", nil
}
