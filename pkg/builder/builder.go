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
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/fairing-dev/fairing/pkg/blobcache"
	"github.com/fairing-dev/fairing/pkg/build"
	"github.com/fairing-dev/fairing/pkg/contextimage"
	"github.com/fairing-dev/fairing/pkg/layer"
	"github.com/fairing-dev/fairing/pkg/progress"
	"github.com/fairing-dev/fairing/pkg/publish"
	"github.com/fairing-dev/fairing/pkg/registryclient"
)

// Options describe one build.
type Options struct {
	// Sources are the local files to build from; or ContextRef names a context artifact
	// (oci://REPO@sha256:..., see pkg/contextimage) whose layers are appended as they are.
	Sources      []layer.Source
	ContextRef   string
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
	// CacheFrom are images whose layers a build reuses by key when neither the local cache nor
	// the destination's tag has them, e.g. the branch's latest image for a CI runner pushing a
	// new tag per commit: a layer found there is mounted into the destination's repository (or
	// copied from another registry), not compressed again.
	CacheFrom []string

	// Dependencies are image paths of dependency manifests (requirements.txt, ...) the image
	// holds: reported, and recorded in a pushed context for builders that install them.
	Dependencies []string

	DigestFile              string
	ImageNameWithDigestFile string
	MetadataFile            string

	// Progress is where upload bars go (a terminal); nil for none.
	Progress io.Writer
	// Logf receives human-readable progress lines; nil for none.
	Logf func(format string, args ...any)
	// Warnf receives what a user should hear of even when nothing failed (a --cache-from
	// image that could not be used); nil for none.
	Warnf func(format string, args ...any)
}

// Report is what a build did; it is also the --metadata-file content.
type Report struct {
	// Builder is the path that built the image: append or buildkit.
	Builder string `json:"builder"`
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
	Layers       []LayerReport `json:"layers"`
	Dependencies []string      `json:"dependencies,omitempty"`
	Entries      int           `json:"entries"`
	FilesHashed  int           `json:"filesHashed"`
	// Streamed: the context was walked in path order rather than held in a table (big
	// contexts), which bounds the builder's memory; Walks counts the walks (see
	// layer.Result.Walks).
	Streamed      bool     `json:"streamed,omitempty"`
	Walks         int      `json:"walks,omitempty"`
	Pushed        []string `json:"pushed"`
	Mounted       []string `json:"mounted"`
	Skipped       []string `json:"skipped"`
	Manifests     []string `json:"manifests"`
	BytesUploaded int64    `json:"bytesUploaded"`
	Timings       Timings  `json:"timings"`
	// BuildKit holds the BuildKit path's steps and metadata.
	BuildKit *BuildKitReport `json:"buildkit,omitempty"`

	// BuildKit-compatible keys, so tools that read `buildctl --metadata-file` read ours.
	ContainerImageDigest string `json:"containerimage.digest"`
	ImageName            string `json:"image.name,omitempty"`
}

// LayerReport describes one layer fairing added.
type LayerReport struct {
	Name      string `json:"name"`
	Digest    string `json:"digest"`
	DiffID    string `json:"diffID"`
	Size      int64  `json:"size"`
	MediaType string `json:"mediaType"`
	Entries   int    `json:"entries"`
	Cached    bool   `json:"cached"`
	// Origin is where the layer came from: "built" now, the local "cache", or the "registry"
	// (found by key in the destination's previous image or a --cache-from image: a fresh
	// machine compresses nothing).
	Origin      string            `json:"origin"`
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

func (o *Options) warnf(format string, args ...any) {
	if o.Warnf != nil {
		o.Warnf(format, args...)
	}
}

// Run builds and publishes. Nothing is tagged unless everything it points to was written.
func Run(ctx context.Context, o Options) (*Report, error) {
	start := time.Now()
	if len(o.Sources) == 0 && o.ContextRef == "" {
		return nil, fmt.Errorf("nothing to build: no context or inputs given")
	}
	plats, err := build.ParsePlatforms(o.Platforms)
	if err != nil {
		return nil, err
	}
	if o.Registry.Keychain == nil {
		// Resolved once for the base, the destination's tags and the publisher: in a pod it
		// reads the service account's pull secrets from the API server.
		o.Registry.Keychain = registryclient.DefaultKeychain(ctx)
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
	cacheFrom, err := o.cacheFromRefs()
	if err != nil {
		return nil, err
	}
	var publishTo []publish.Destination
	for _, d := range dests {
		if !(o.NoPush && d.Kind == publish.Registry) {
			publishTo = append(publishTo, d)
		}
	}
	// What the destination tag holds now is read once (starting below, with the previous
	// image), for the layer lookup by key and for the publisher.
	var tags *publish.Tags
	if firstRegistry(dests) != nil || len(cacheFrom) > 0 {
		ropts, err := o.Registry.RemoteOptions(ctx)
		if err != nil {
			return nil, err
		}
		tags = publish.NewTags(ropts)
	}
	// Image configs and manifests, content-addressed: the base's and the previous image's
	// configs, and the previous index's platform manifests, are read from the registry once,
	// not on every build.
	meta := metaCache(o.CacheDir)
	progressCh, progressWait := progress.Uploads(o.Progress, "pushing")
	pub, err := publish.NewPublisher(ctx, publishTo, publish.Options{Registry: o.Registry, Progress: progressCh, Tags: tags, Blobs: meta})
	if err != nil {
		close(progressCh)
		return nil, err
	}
	published := false
	defer func() {
		if !published {
			pub.Abort()
			progressWait()
		}
	}()
	// A layer written now is new to the registry too: its upload starts while the next layers
	// are still being compressed.
	o.Layer.OnWritten = func(l *layer.Layer) { pub.Upload(l) }
	if pub.Pushes() {
		// Content the destination has never seen goes up while it is compressed.
		o.Layer.OnStream = pub.Upload
	}
	if o.ContextRef != "" {
		// A build pod runs because the context changed, and its layers are in the registry
		// already: the image config is what it will upload, into sessions opened now.
		pub.ExpectNewImage()
	}
	// A layer the cache lacks may be in the destination's previous image: found by its key,
	// it is reused rather than written.
	if prev := previousImage(ctx, dests, cacheFrom, tags, meta, o.warnf); prev != nil {
		o.Layer.Remote = prev
		defer prev.start(ctx)()
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
		if err == nil && !b.Scratch && !strings.HasPrefix(o.Base, "oci:") {
			// The tag is asked about every time; its config only the first time.
			b.Image, b.Index = meta.Image(b.Image), meta.Index(b.Index)
		}
		if err == nil {
			// One config per platform, each into an upload session opened in advance.
			pub.ExpectConfigs(b.Platforms(plats))
			err = b.Prefetch(plats) // now, in parallel with the layers
		}
		baseCh <- baseResult{b, err, time.Since(t)}
	}()

	var ls *layerSet
	if o.ContextRef != "" {
		ls, err = fetchLayers(ctx, &o)
	} else {
		ls, err = makeLayers(ctx, o)
	}
	br := <-baseCh
	if err == nil {
		err = br.err
	}
	if err != nil {
		return nil, err
	}

	layers := ls.layers
	res, err := build.Build(build.Options{Base: br.b, Platforms: plats, Layers: layers, Config: o.Config})
	if err != nil {
		return nil, err
	}
	digest, err := res.Digest()
	if err != nil {
		return nil, err
	}

	rep := &Report{Builder: Append, Digest: digest.String(), Entries: ls.entries, FilesHashed: ls.hashed, Streamed: ls.streamed, Walks: ls.walks, Layers: ls.reports, Dependencies: o.Dependencies}
	rep.Base.Name = br.b.Name
	if !br.b.Scratch {
		rep.Base.Digest = br.b.Digest.String()
	}
	if err := fillImageReport(rep, res); err != nil {
		return nil, err
	}

	t := time.Now()
	for _, d := range dests {
		rep.Refs = append(rep.Refs, d.WithDigest(digest.String()))
	}
	prep, err := pub.Publish(ctx, res)
	published = true
	progressWait()
	if err != nil {
		return nil, err
	}
	// The next build finds its previous image's config (and manifests) here instead of
	// asking for them.
	keepMeta(meta, res)
	rep.Pushed, rep.Mounted, rep.Skipped, rep.Manifests = prep.Pushed, prep.Mounted, prep.Skipped, prep.Manifests
	rep.BytesUploaded = prep.BytesUploaded
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
		WalkMs: ls.walk.Milliseconds(), HashMs: ls.hash.Milliseconds(), LayersMs: ls.write.Milliseconds(),
		BaseMs: br.d.Milliseconds(), PublishMs: time.Since(t).Milliseconds(), TotalMs: time.Since(start).Milliseconds(),
	}
	if err := writeOutputs(o, rep); err != nil {
		return nil, err
	}
	return rep, nil
}

func fillImageReport(rep *Report, res *build.Result) error {
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
	for i := range rep.Layers {
		rep.Layers[i].MediaType = layerTypes[rep.Layers[i].Digest]
	}
	return nil
}

// layerSet is the layers a build appends, with what the report says of them.
type layerSet struct {
	layers            []build.Layer
	reports           []LayerReport
	entries, hashed   int
	streamed          bool
	walks             int
	walk, hash, write time.Duration
}

// makeLayers builds (or finds in the cache) the layers of local sources.
func makeLayers(ctx context.Context, o Options) (*layerSet, error) {
	res, err := layer.Make(ctx, o.Sources, o.CacheDir, o.Layer, o.Plan)
	if err != nil {
		return nil, err
	}
	ls := &layerSet{entries: res.Entries, hashed: res.Hashed, streamed: res.Streamed, walks: res.Walks, walk: res.Walk, hash: res.Hash, write: res.Write}
	for _, l := range res.Layers {
		o.logf("layer %s", l)
		d, _ := l.Digest()
		diff, _ := l.DiffID()
		size, _ := l.Size()
		desc, _ := l.Descriptor()
		bl := build.Layer{Layer: l, Comment: l.HistoryComment(), Annotations: map[string]string{layer.AnnotationKey: l.Key()}}
		origin := "built"
		switch {
		case l.Remote() != nil:
			bl.Layer, origin = l.Remote(), "registry"
		case l.CacheHit():
			origin = "cache"
		}
		ls.layers = append(ls.layers, bl)
		ls.reports = append(ls.reports, LayerReport{
			Name: l.Name(), Digest: d.String(), DiffID: diff.String(), Size: size,
			Entries: l.Entries(), Cached: l.CacheHit(), Origin: origin, Key: l.Key(), Annotations: desc.Annotations,
		})
	}
	return ls, nil
}

// fetchLayers reads a context artifact's layers (descriptors only: a registry that already
// holds or can mount the blobs never sends them) and takes its recorded command, environment
// and working directory as defaults.
func fetchLayers(ctx context.Context, o *Options) (*layerSet, error) {
	t := time.Now()
	c, err := contextimage.Fetch(ctx, o.ContextRef, o.Registry)
	if err != nil {
		return nil, err
	}
	o.useMeta(c.Meta)
	m, err := c.Image.Manifest()
	if err != nil {
		return nil, err
	}
	cf, err := c.Image.ConfigFile()
	if err != nil {
		return nil, err
	}
	ls := &layerSet{walk: time.Since(t)}
	for i, l := range c.Layers {
		bl := build.Layer{Layer: l, Comment: c.Comments[i]}
		if k := c.Annotations[i][layer.AnnotationKey]; k != "" {
			bl.Annotations = map[string]string{layer.AnnotationKey: k}
		}
		ls.layers = append(ls.layers, bl)
		r := LayerReport{Name: c.Comments[i], Digest: m.Layers[i].Digest.String(), Size: m.Layers[i].Size, Cached: true, Annotations: m.Layers[i].Annotations}
		if i < len(cf.RootFS.DiffIDs) {
			r.DiffID = cf.RootFS.DiffIDs[i].String()
		}
		ls.reports = append(ls.reports, r)
	}
	return ls, nil
}

// useMeta takes a context artifact's recorded command, environment and working directory as
// defaults (the user's options win), and its dependency files.
func (o *Options) useMeta(meta contextimage.Meta) {
	if o.Config.Cmd == nil && o.Config.Entrypoint == nil && len(meta.Command) > 0 {
		o.Config.Cmd = meta.Command
	}
	if o.Config.WorkingDir == "" {
		o.Config.WorkingDir = meta.Workdir
	}
	o.Config.Env = append(append([]string{}, meta.Env...), o.Config.Env...)
	o.Config.PathEnv = append(append([]string{}, meta.PathEnv...), o.Config.PathEnv...)
	if len(o.Dependencies) == 0 {
		o.Dependencies = meta.Dependencies
	}
}

// writeOutputs writes the files scripts read; each is written whole or not at all.
func writeOutputs(o Options, rep *Report) error {
	write := func(file string, data []byte) error {
		if file == "" {
			return nil
		}
		tmp := file + ".tmp"
		err := os.WriteFile(tmp, data, 0o644)
		if err == nil {
			err = os.Rename(tmp, file)
		}
		if err != nil {
			os.Remove(tmp)
			return fmt.Errorf("write %s: %w", file, err)
		}
		return nil
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

// previous finds layers by key in the image a registry destination holds now (its previous
// build), then in the --cache-from images. It reads their manifests and configs only when first
// asked, so builds whose layers all hit the local cache never ask.
type previous struct {
	meta *blobcache.Cache
	// refs: the destination's tag first (its layers need no copy), then from refs[cacheFrom]
	// on the cache-from images
	refs      []name.Reference
	cacheFrom int
	tags      *publish.Tags
	ctx       context.Context
	warnf     func(format string, args ...any)
	once      sync.Once
	loaded    atomic.Bool
	layers    map[string]v1.Layer
}

// keepMeta stores the configs of what was built, and the platforms' manifests of an index.
func keepMeta(meta *blobcache.Cache, res *build.Result) {
	imgs, err := res.Images()
	if err != nil {
		return
	}
	for _, img := range imgs {
		if raw, err := img.RawConfigFile(); err == nil {
			meta.Put(raw)
		}
		if res.Index != nil {
			if raw, err := img.RawManifest(); err == nil {
				meta.Put(raw)
			}
		}
	}
}

// metaCache keeps image configs and manifests read from registries, by digest, in the cache dir.
func metaCache(cacheDir string) *blobcache.Cache {
	return blobcache.Open(filepath.Join(cacheDir, "meta"), filepath.Join(cacheDir, "tmp")) // the layer cache sweeps tmp/
}

// cacheFromRefs parses o.CacheFrom.
func (o *Options) cacheFromRefs() ([]name.Reference, error) {
	var refs []name.Reference
	for _, s := range o.CacheFrom {
		r, err := o.Registry.ParseReference(s)
		if err != nil {
			return nil, fmt.Errorf("--cache-from: %w", err)
		}
		refs = append(refs, r)
	}
	return refs, nil
}

// start reads the images (the tags' manifests, then the configs) while the context is walked,
// not when the first changed layer asks. The returned stop cancels what is still being read
// and waits for it, so that a build that needed none of it asks nothing after it returns.
func (p *previous) start(ctx context.Context) (stop func()) {
	pctx, cancel := context.WithCancel(ctx)
	p.ctx = pctx
	go p.Empty()
	return func() {
		cancel()
		p.Empty()
	}
}

func previousImage(ctx context.Context, dests []publish.Destination, cacheFrom []name.Reference, tags *publish.Tags, meta *blobcache.Cache, warnf func(string, ...any)) *previous {
	var refs []name.Reference
	if ref := firstRegistry(dests); ref != nil {
		refs = append(refs, ref)
	}
	own := len(refs)
	for _, r := range cacheFrom {
		if !slices.ContainsFunc(refs, func(o name.Reference) bool { return o.String() == r.String() }) {
			refs = append(refs, r)
		}
	}
	if len(refs) == 0 {
		return nil
	}
	return &previous{refs: refs, cacheFrom: own, tags: tags, ctx: ctx, meta: meta, warnf: warnf}
}

// firstRegistry is the first registry destination's reference, nil if there is none.
func firstRegistry(dests []publish.Destination) name.Reference {
	for _, d := range dests {
		if d.Kind == publish.Registry {
			return d.Ref
		}
	}
	return nil
}

var _ layer.Remote = (*previous)(nil)

// Layer is the previous image's layer with this key, nil if it has none.
func (p *previous) Layer(key string) v1.Layer {
	p.once.Do(p.load)
	return p.layers[key]
}

// Empty reports whether the previous image has no layer with a key (or there is none).
func (p *previous) Empty() bool {
	p.once.Do(p.load)
	return len(p.layers) == 0
}

// Loaded reports whether the previous image has been read (asking no longer waits), so that
// the layer builder writes what it must ask about meanwhile.
func (p *previous) Loaded() bool { return p.loaded.Load() }

// load reads the previous image and the cache-from images side by side; a layer key found in
// several is taken from the first (the destination's own). Any failure (no such tag yet, an
// unreachable registry) just means nothing is known from that image: the layers are built.
func (p *previous) load() {
	defer p.loaded.Store(true)
	found := make([]map[string]v1.Layer, len(p.refs))
	var wg sync.WaitGroup
	for i, ref := range p.refs {
		wg.Go(func() {
			var err error
			// A cache-from image was named by the user: say why it gave nothing (the
			// destination's tag is missing on every first build, which is not news; a read
			// canceled because the build needed nothing from it is not either).
			if found[i], err = p.read(ref); err != nil && i >= p.cacheFrom && p.ctx.Err() == nil {
				p.warnf("--cache-from %s: not used: %v", ref, registryclient.Explain(err))
			}
		})
	}
	wg.Wait()
	p.layers = map[string]v1.Layer{}
	for _, m := range found {
		for k, l := range m {
			if _, ok := p.layers[k]; !ok {
				p.layers[k] = l
			}
		}
	}
}

// read returns the layers of the image ref names, by key.
func (p *previous) read(ref name.Reference) (map[string]v1.Layer, error) {
	desc, err := p.tags.Get(p.ctx, ref)
	if err != nil {
		return nil, err
	}
	var img v1.Image
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, err
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, err
		}
		if len(im.Manifests) == 0 {
			return nil, fmt.Errorf("an empty index")
		}
		// Every platform carries the same code layers: one child is enough.
		if img, err = idx.Image(im.Manifests[0].Digest); err != nil {
			return nil, err
		}
	} else if img, err = desc.Image(); err != nil {
		return nil, err
	}
	img = p.meta.Image(img) // most often this builder's own config, kept when it was built
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	if len(cf.RootFS.DiffIDs) != len(m.Layers) || len(layers) != len(m.Layers) {
		return nil, fmt.Errorf("its config lists %d layers, its manifest %d", len(cf.RootFS.DiffIDs), len(m.Layers))
	}
	found := map[string]v1.Layer{}
	for i, d := range m.Layers {
		if k := d.Annotations[layer.AnnotationKey]; k != "" {
			// mountable from ref's repository into the destination's (the same registry), or
			// read from it and uploaded (another one)
			found[k] = &remote.MountableLayer{Layer: &knownLayer{Layer: layers[i], desc: d, diffID: cf.RootFS.DiffIDs[i]}, Reference: ref}
		}
	}
	if len(found) == 0 && len(m.Layers) > 0 {
		return nil, fmt.Errorf("none of its layers was built by fairing (no %s annotation)", layer.AnnotationKey)
	}
	return found, nil
}

// PushContext turns local sources into layers exactly as a build would (same cache, same
// digests) and pushes them to repo as a context artifact, uploading only the blobs repo lacks.
// It returns oci://REPO@sha256:..., which `fairing-builder build --context` accepts. With
// o.NoPush nothing is sent: the reference is what a push would give.
func PushContext(ctx context.Context, o Options, repo string, meta contextimage.Meta) (string, *Report, error) {
	start := time.Now()
	if o.CacheDir == "" {
		var err error
		if o.CacheDir, err = DefaultCacheDir(); err != nil {
			return "", nil, err
		}
	}
	r, err := o.Registry.ParseReference(repo)
	if err != nil {
		return "", nil, err
	}
	cacheFrom, err := o.cacheFromRefs()
	if err != nil {
		return "", nil, err
	}
	if len(cacheFrom) > 0 {
		// A fresh machine's context is made of the layers a built image already holds: they
		// are mounted into the context's repository, not compressed again.
		ropts, err := o.Registry.RemoteOptions(ctx)
		if err != nil {
			return "", nil, err
		}
		prev := previousImage(ctx, nil, cacheFrom, publish.NewTags(ropts), metaCache(o.CacheDir), o.warnf)
		o.Layer.Remote = prev
		defer prev.start(ctx)()
	}
	ls, err := makeLayers(ctx, o)
	if err != nil {
		return "", nil, err
	}
	layers := make([]v1.Layer, len(ls.layers))
	comments := make([]string, len(ls.layers))
	anns := make([]map[string]string, len(ls.layers))
	for i, l := range ls.layers {
		layers[i], comments[i], anns[i] = l.Layer, l.Comment, l.Annotations
	}
	img, err := contextimage.New(layers, comments, anns, meta)
	if err != nil {
		return "", nil, err
	}
	d, err := img.Digest()
	if err != nil {
		return "", nil, err
	}
	ref := r.Context().Digest(d.String())
	if o.NoPush {
		// the reference a push would give (dry runs), nothing sent
		rep := &Report{Digest: d.String(), Reference: ref.String(), Refs: []string{ref.String()}, Entries: ls.entries, FilesHashed: ls.hashed, Layers: ls.reports}
		rep.Timings = Timings{WalkMs: ls.walk.Milliseconds(), HashMs: ls.hash.Milliseconds(), LayersMs: ls.write.Milliseconds(), TotalMs: time.Since(start).Milliseconds()}
		return contextimage.Scheme + ref.String(), rep, nil
	}
	dest := publish.Destination{Kind: publish.Registry, Raw: ref.String(), Ref: ref}
	ch, wait := progress.Uploads(o.Progress, "sending context")
	prep, err := publish.Publish(ctx, &build.Result{Image: img}, []publish.Destination{dest}, publish.Options{Registry: o.Registry, Progress: ch})
	wait()
	if err != nil {
		return "", nil, err
	}
	rep := &Report{Digest: d.String(), Reference: ref.String(), Refs: []string{ref.String()}, Entries: ls.entries, FilesHashed: ls.hashed, Layers: ls.reports,
		Pushed: prep.Pushed, Mounted: prep.Mounted, Skipped: prep.Skipped, Manifests: prep.Manifests, BytesUploaded: prep.BytesUploaded}
	rep.Timings = Timings{WalkMs: ls.walk.Milliseconds(), HashMs: ls.hash.Milliseconds(), LayersMs: ls.write.Milliseconds(), TotalMs: time.Since(start).Milliseconds()}
	return contextimage.Scheme + ref.String(), rep, nil
}
