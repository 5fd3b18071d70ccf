package publish

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/stream"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"

	"github.com/fairing-dev/fairing/pkg/blobcache"
	"github.com/fairing-dev/fairing/pkg/build"
	"github.com/fairing-dev/fairing/pkg/registryclient"
)

// Options for Publish.
type Options struct {
	Registry registryclient.Config
	// Progress receives upload progress for registry destinations; Publish closes it.
	Progress chan v1.Update
	// Tags, if set, reads what the destination tags hold now (shared with whoever else asked
	// during the build); nil: the publisher reads them itself.
	Tags *Tags
	// Blobs, if set, holds manifests by digest: the platform manifests of an index at a
	// destination tag are read from it rather than from the registry when it has them (a
	// rebuild's previous index is most often this machine's own last push).
	Blobs *blobcache.Cache
}

// Report says what publishing did.
type Report struct {
	Digest string `json:"digest"`
	// Pushed, Mounted and Skipped are blob digests uploaded, mounted from another repository,
	// and found already present (answered by a HEAD, or listed by the manifest the tag held).
	Pushed        []string `json:"pushed"`
	Mounted       []string `json:"mounted"`
	Skipped       []string `json:"skipped"`
	Manifests     []string `json:"manifests"`
	BytesUploaded int64    `json:"bytesUploaded"`
}

// Publisher writes one build's result to its destinations. Blobs known early (layers written
// while others are still being compressed) can be sent with Upload while the build goes on;
// Publish then writes what is left and the manifests.
type Publisher struct {
	dests   []Destination
	repos   []name.Repository
	opts    []remote.Option
	pusher  *remote.Pusher
	backoff time.Duration // the first wait before a refused manifest is written again
	rec     *recorder
	ctx     context.Context
	uploads *errgroup.Group
	o       Options
	done    sync.Once
	rc      registryclient.Config // with the recorder in its transport
	// sessCtx is the build's context, which outlives the uploads' (p.ctx ends when Publish
	// or Abort has waited for them): a spare session still being opened then is opened, and
	// deleted, rather than created on the registry by a request whose answer we dropped.
	sessCtx context.Context

	spareMu    sync.Mutex
	spares     map[name.Repository][]*spareUpload
	clients    map[name.Repository]*pushClient
	wantSpares int // configs expected (ExpectConfigs); 0 means one
}

// finish closes the progress channel once every upload is over.
func (p *Publisher) finish() {
	p.done.Do(func() {
		if p.o.Progress != nil {
			close(p.o.Progress)
		}
	})
}

// Abort waits for the uploads already started and ends the publisher without writing any
// manifest: what was uploaded stays (a rerun will not send it again), nothing is tagged.
func (p *Publisher) Abort() {
	if p.uploads != nil {
		p.uploads.Wait()
	}
	p.dropSpares()
	p.finish()
}

// NewPublisher prepares publishing to dests.
func NewPublisher(ctx context.Context, dests []Destination, o Options) (*Publisher, error) {
	p := &Publisher{dests: dests, rec: &recorder{}, o: o, backoff: 100 * time.Millisecond}
	seen := map[string]bool{}
	for _, d := range dests {
		if d.Kind == Registry && !seen[d.Ref.Context().String()] {
			seen[d.Ref.Context().String()] = true
			p.repos = append(p.repos, d.Ref.Context())
		}
	}
	if len(p.repos) == 0 {
		return p, nil
	}
	rc := o.Registry
	inner := rc.Wrap
	rc.Wrap = func(rt httpRoundTripper) httpRoundTripper {
		if inner != nil {
			rt = inner(rt)
		}
		return p.rec.wrap(rt)
	}
	p.rc = rc
	opts, err := rc.RemoteOptions(ctx)
	if err != nil {
		return nil, err
	}
	popts := opts
	if o.Progress != nil {
		// The pusher reports every upload, early or final; the channel is closed by finish.
		popts = append(popts[:len(popts):len(popts)], remote.WithProgress(o.Progress))
	}
	if p.pusher, err = remote.NewPusher(popts...); err != nil {
		return nil, err
	}
	// The same pusher serves the early uploads and the final write, so a blob sent early is
	// known to be there without asking the registry again.
	p.opts = append(opts, remote.Reuse(p.pusher))
	if p.o.Tags == nil {
		p.o.Tags = NewTags(p.opts)
	}
	p.uploads, p.ctx = errgroup.WithContext(ctx)
	p.sessCtx = ctx
	p.uploads.SetLimit(max(1, rc.Jobs))
	// The pusher's session with each repository (ping, token) is opened now, while the layers
	// are still being built, rather than when the first of them is ready: on a busy machine
	// that is tens of milliseconds off every incremental build. Under ctx, not p.ctx: the
	// uploads' context ends when Publish has waited for them, and a session still being
	// opened then would fail for the manifest PUT that shares it.
	for _, repo := range p.repos {
		go p.pusher.Upload(ctx, repo, opener{})
	}
	return p, nil
}

// opener is a layer the pusher cannot send (it has no media type): uploading it opens the
// repository's session and sends nothing.
type opener struct{ v1.Layer }

var errOpener = errors.New("opens a session, holds no blob")

func (opener) MediaType() (types.MediaType, error) { return "", errOpener }

// Pushes reports whether any destination is a registry.
func (p *Publisher) Pushes() bool { return len(p.repos) > 0 }

// Upload starts sending a blob to every registry destination in the background. Errors come
// back from Publish. A blob still being written (Digest is stream.ErrNotComputed) is
// streamed as it grows, without asking the registry for it first.
func (p *Publisher) Upload(l v1.Layer) {
	p.ExpectNewImage() // new content: a new config will follow
	p.upload(l)
}

// ExpectNewImage opens, in the background, the upload sessions the new image's configs will be
// written into (see spareUpload). Upload does it; a build whose layers are all in the registry
// already (a build pod appending a pushed context) calls it when it starts.
func (p *Publisher) ExpectNewImage() {
	for _, repo := range p.repos {
		p.spare(repo)
	}
}

// upload is Upload without opening spare sessions.
func (p *Publisher) upload(l v1.Layer) {
	for _, repo := range p.repos {
		p.uploads.Go(func() error {
			if err := p.pusher.Upload(p.ctx, repo, l); err != nil {
				// A layer of ours is named by what it holds; whether its digest is known by
				// now depends on how far the stream got, so the name does not.
				what := "layer"
				if n, ok := l.(interface{ Name() string }); ok {
					what = fmt.Sprintf("layer %q", n.Name())
				} else if d, derr := l.Digest(); derr == nil {
					what = "blob " + d.String()
				}
				return fmt.Errorf("%s: %w", what, registryclient.Explain(err))
			}
			return nil
		})
	}
}

// uploadConfig sends the image config to the repositories whose tags will be written and that
// lack it. Against a previous image, a config other than its own is new content (it names
// this build's layers), so it is sent without asking for it first, as a layer still being
// written is: one round trip fewer on the way to the manifest, the last step of every build.
// Into a spare session (see spareUpload) that is one request.
// The same config as the previous image's is there already, and not sent.
func (p *Publisher) uploadConfig(cl v1.Layer, pr previous) {
	if pr.err != nil {
		p.upload(cl) // nothing known: asked about first
		return
	}
	d, err := cl.Digest()
	if err != nil {
		p.upload(cl)
		return
	}
	seen := map[name.Repository]bool{}
	for _, ref := range pr.tags {
		repo := ref.Context()
		if seen[repo] || pr.present[repo][d] {
			continue
		}
		seen[repo] = true
		var l v1.Layer = cl // a repository with no image known: it may be there; asked about
		var s *spareUpload
		if len(pr.present[repo]) > 0 {
			l = &freshBlob{Layer: cl}
			s = p.takeSpare(repo)
		}
		p.uploads.Go(func() error {
			if s != nil {
				// Into the session opened while the layers were written: one request. If it
				// fails the config goes the usual way, which explains any error.
				if data, err := readBlob(cl); err == nil && p.put(p.ctx, s, d, data) == nil {
					return nil
				}
			}
			if err := p.pusher.Upload(p.ctx, repo, l); err != nil {
				return fmt.Errorf("image config %s: %w", d, registryclient.Explain(err))
			}
			return nil
		})
	}
}

// readBlob reads a small blob (an image config) whole.
func readBlob(l v1.Layer) ([]byte, error) {
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// freshBlob is a blob the registry is not asked about before it is sent: until its content
// has been read to the end its digest is unknown to the pusher (stream.ErrNotComputed), which
// then uploads it at once, as it does a layer still being written.
type freshBlob struct {
	v1.Layer
	read atomic.Bool
}

func (f *freshBlob) Digest() (v1.Hash, error) {
	if !f.read.Load() {
		return v1.Hash{}, stream.ErrNotComputed
	}
	return f.Layer.Digest()
}

func (f *freshBlob) Compressed() (io.ReadCloser, error) {
	rc, err := f.Layer.Compressed()
	if err != nil {
		return nil, err
	}
	size, err := f.Layer.Size()
	if err != nil {
		size = -1
	}
	return &endReader{ReadCloser: rc, left: size, done: &f.read}, nil
}

// endReader sets done once its reader returned io.EOF or all of its known size (an HTTP
// client sending a body of known length need not read past it).
type endReader struct {
	io.ReadCloser
	left int64 // -1: unknown
	done *atomic.Bool
}

func (r *endReader) Read(b []byte) (int, error) {
	n, err := r.ReadCloser.Read(b)
	if r.left >= 0 {
		r.left -= int64(n)
	}
	if err == io.EOF || r.left == 0 {
		r.done.Store(true)
	}
	return n, err
}

// Publish writes res to every destination. Registry destinations go in one pass: blobs shared
// by several destinations are uploaded once, only blobs a registry lacks are uploaded, base
// layers on the same registry are mounted, and each tag is written only after everything it
// points to is in place, so a failure never leaves a tag on an incomplete image.
func (p *Publisher) Publish(ctx context.Context, res *build.Result) (*Report, error) {
	defer p.finish()
	// Sessions opened for configs that did not come are deleted after the manifests are
	// written, so that the DELETEs never delay them.
	defer p.dropSpares()
	digest, err := res.Digest()
	if err != nil {
		return nil, err
	}
	rep := &Report{Digest: digest.String()}
	todo := map[name.Reference]remote.Taggable{}
	var local []Destination
	for _, d := range p.dests {
		switch d.Kind {
		case Registry:
			todo[d.Ref] = res.Taggable()
		case Layout:
			local = append(local, d)
		case Tarball:
			if res.Index != nil {
				return nil, fmt.Errorf("destination %s: a docker-load tarball holds one platform; choose it with --platform", d)
			}
			local = append(local, d)
		}
	}
	// What the tags hold now (read while the layers were built: this rarely waits) decides
	// which configs to send, and how; they go while the early uploads finish.
	var pr previous
	if len(todo) > 0 {
		pr = p.previous(ctx, digest, todo)
		if imgs, err := res.Images(); err == nil {
			for _, img := range imgs {
				if cl, err := partial.ConfigLayer(img); err == nil {
					p.uploadConfig(cl, pr)
				}
			}
		}
	}
	if p.uploads != nil {
		if err := p.uploads.Wait(); err != nil {
			return nil, fmt.Errorf("push: %w", err)
		}
	}
	// Configs written into spare sessions are there: the pusher, which did not send them,
	// would ask.
	for repo, ds := range p.spareSent() {
		if known := pr.present[repo]; known != nil {
			for _, d := range ds {
				known[d] = true
			}
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	if len(todo) > 0 {
		g.Go(func() error {
			err := p.pushOver(gctx, res, pr)
			if errors.Is(err, errNoPrevious) {
				err = remote.MultiWrite(todo, append(p.opts, remote.WithContext(gctx))...)
			}
			for try := 1; try <= manifestRetries && refsRaced(err); try++ {
				// Written again in full: a blob not sent by this push is looked up (HEAD)
				// rather than taken from the previous image, and one truly gone is sent again.
				select {
				case <-time.After(time.Duration(try*try) * p.backoff):
				case <-gctx.Done():
					return gctx.Err()
				}
				err = remote.MultiWrite(todo, append(p.opts, remote.WithContext(gctx))...)
			}
			if err != nil {
				return fmt.Errorf("push: %w", registryclient.Explain(err))
			}
			return nil
		})
	}
	tagName := tarballTag(p.dests)
	for _, d := range local {
		g.Go(func() error {
			var err error
			if d.Kind == Layout {
				err = writeLayout(d, res)
			} else {
				err = writeTarball(d, res, tagName)
			}
			if err != nil {
				return fmt.Errorf("write %s: %w", d, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	p.rec.fill(rep)
	return rep, nil
}

// manifestRetries bounds how often a manifest the registry refused for its references is
// written again.
const manifestRetries = 3

// refsRaced reports whether err is a registry refusing a manifest PUT because it could not
// read a blob or manifest the manifest refers to. Besides a blob truly gone, that is the
// distribution registry (2.x filesystem storage) reading a repository's link file while a
// concurrent push of the same blob rewrites it in place: the file is empty for a moment and
// the PUT fails with DIGEST_INVALID and MANIFEST_BLOB_UNKNOWN although the blob is there.
// Builds that share layers and a repository (CI matrix jobs) hit it.
func refsRaced(err error) bool {
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.Request == nil || terr.Request.Method != http.MethodPut ||
		!strings.Contains(terr.Request.URL.Path, "/manifests/") {
		return false
	}
	for _, d := range terr.Errors {
		switch d.Code {
		case transport.ManifestBlobUnknownErrorCode, transport.DigestInvalidErrorCode, transport.ManifestUnknownErrorCode:
			return true
		}
	}
	return false
}

// previous is what the registry destinations hold now: the blobs each repository is known to
// have, and the tags still to write.
type previous struct {
	present map[name.Repository]map[v1.Hash]bool
	tags    []name.Reference
	err     error
}

// previous reads the manifest every destination tag holds now. A blob that manifest lists is
// in that repository (the registry checked it when the manifest was written), so the usual
// rebuild asks about and sends only the others: one manifest GET per tag instead of a HEAD
// per layer. err is errNoPrevious when a destination is a digest or holds an index, or when
// a tag cannot be read (the full write then reports why).
func (p *Publisher) previous(ctx context.Context, digest v1.Hash, todo map[name.Reference]remote.Taggable) previous {
	pr := previous{present: map[name.Repository]map[v1.Hash]bool{}}
	for ref := range todo {
		if _, ok := ref.(name.Tag); !ok {
			return previous{err: errNoPrevious}
		}
		desc, err := p.o.Tags.Get(ctx, ref)
		var terr *transport.Error
		switch {
		case errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound:
			pr.tags = append(pr.tags, ref) // a new tag: its blobs are asked about (or known from a sibling tag)
			if pr.present[ref.Context()] == nil {
				pr.present[ref.Context()] = map[v1.Hash]bool{}
			}
			continue
		case err != nil || !desc.MediaType.IsImage() && !desc.MediaType.IsIndex():
			return previous{err: errNoPrevious}
		}
		if desc.Digest == digest {
			continue // already tagged: nothing to send
		}
		known := pr.present[ref.Context()]
		if known == nil {
			known = map[v1.Hash]bool{}
			pr.present[ref.Context()] = known
		}
		if desc.MediaType.IsIndex() {
			if err := indexBlobs(ctx, desc, known, p.o.Blobs); err != nil {
				return previous{err: errNoPrevious}
			}
		} else {
			m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
			if err != nil {
				return previous{err: errNoPrevious}
			}
			addBlobs(known, m)
		}
		pr.tags = append(pr.tags, ref)
	}
	return pr
}

func addBlobs(known map[v1.Hash]bool, m *v1.Manifest) {
	known[m.Config.Digest] = true
	for _, l := range m.Layers {
		known[l.Digest] = true
	}
}

// indexBlobs adds to known the manifests of the index desc names and their blobs, its images'
// manifests read from blobs when it has them, otherwise side by side from the registry: a GET
// per platform instead of a HEAD per blob and manifest.
func indexBlobs(ctx context.Context, desc *remote.Descriptor, known map[v1.Hash]bool, blobs *blobcache.Cache) error {
	idx, err := desc.ImageIndex()
	if err != nil {
		return err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	var mu sync.Mutex
	g, _ := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, d := range im.Manifests {
		if !d.MediaType.IsImage() {
			continue
		}
		g.Go(func() error {
			raw, ok := blobs.Get(d.Digest)
			if !ok {
				img, err := idx.Image(d.Digest)
				if err != nil {
					return err
				}
				if raw, err = img.RawManifest(); err != nil {
					return err
				}
				blobs.Put(raw) // best effort
			}
			m, err := v1.ParseManifest(bytes.NewReader(raw))
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			known[d.Digest] = true
			addBlobs(known, m)
			return nil
		})
	}
	return g.Wait()
}

// errNoPrevious: a destination holds no image whose blobs can be trusted to be there.
var errNoPrevious = errors.New("no previous image at the destination")

// pushOver writes an image over the images its destination tags hold now (the usual rebuild),
// sending only the blobs they lack. The registry checks the new manifest's blobs again when it
// is written, so a blob gone since is an error, never a tag on an incomplete image.
func (p *Publisher) pushOver(ctx context.Context, res *build.Result, pr previous) error {
	if pr.err != nil {
		return pr.err
	}
	if len(pr.tags) == 0 {
		return nil
	}
	// A multi-platform image: the platforms' manifests the repository lacks are written (by
	// digest) before the index that lists them.
	var children []v1.Descriptor
	if res.Index != nil {
		im, err := res.Index.IndexManifest()
		if err != nil {
			return err
		}
		children = im.Manifests
	}
	imgs, err := res.Images()
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, p.o.Registry.Jobs))
	for repo, known := range pr.present {
		for i, img := range imgs {
			if children != nil && known[children[i].Digest] {
				continue // this platform's image is there already
			}
			if err := p.sendMissing(gctx, g, repo, known, img); err != nil {
				return err
			}
		}
	}
	if err := g.Wait(); err != nil {
		return err
	}
	// The platforms' manifests side by side, then the index that lists them.
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(max(1, p.o.Registry.Jobs))
	for repo, known := range pr.present {
		for i, d := range children {
			if known[d.Digest] {
				continue
			}
			g.Go(func() error {
				if err := p.pusher.Put(gctx, repo.Digest(d.Digest.String()), imgs[i]); err != nil {
					return fmt.Errorf("write manifest %s@%s: %w", repo, d.Digest, err)
				}
				return nil
			})
		}
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, ref := range pr.tags {
		if err := p.pusher.Put(ctx, ref, res.Taggable()); err != nil {
			return fmt.Errorf("write manifest %s: %w", ref, err)
		}
	}
	return nil
}

// sendMissing uploads (in g) the blobs of img that repo is not known to have. The blobs are
// listed from the manifest, and only the missing ones are looked up: a mutated image's
// Layers() serialises its config again for every layer (6 ms for 36).
func (p *Publisher) sendMissing(ctx context.Context, g *errgroup.Group, repo name.Repository, known map[v1.Hash]bool, img v1.Image) error {
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	digests := []v1.Hash{m.Config.Digest}
	for _, d := range m.Layers {
		digests = append(digests, d.Digest)
	}
	for _, d := range digests {
		if known[d] {
			p.rec.present(d.String())
			continue
		}
		var l v1.Layer
		if d == m.Config.Digest {
			l, err = partial.ConfigLayer(img)
		} else {
			l, err = img.LayerByDigest(d)
		}
		if err != nil {
			return err
		}
		// blobs uploaded early are not sent again: the pusher remembers them
		g.Go(func() error { return p.pusher.Upload(ctx, repo, l) })
	}
	return nil
}

// Publish writes res to dests in one go (NewPublisher, then Publish).
func Publish(ctx context.Context, res *build.Result, dests []Destination, o Options) (*Report, error) {
	p, err := NewPublisher(ctx, dests, o)
	if err != nil {
		return nil, err
	}
	return p.Publish(ctx, res)
}

func writeLayout(d Destination, res *build.Result) error {
	p, err := layout.FromPath(d.Path)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s exists but is not an OCI image layout: %w", d.Path, err)
		}
		if p, err = layout.Write(d.Path, empty.Index); err != nil {
			return err
		}
	}
	m := match.Annotation(build.AnnotationRefName, d.Tag)
	opt := layout.WithAnnotations(map[string]string{build.AnnotationRefName: d.Tag})
	if res.Index != nil {
		return p.ReplaceIndex(res.Index, m, opt)
	}
	return p.ReplaceImage(res.Image, m, opt)
}

// writeTarball writes through a temporary file: a reader never sees half a tarball.
func writeTarball(d Destination, res *build.Result, tag name.Tag) error {
	dir := filepath.Dir(d.Path)
	tmp, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(d.Path)+"-*")
	if err != nil {
		return err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	if err := tarball.MultiRefWriteToFile(tmp.Name(), map[name.Reference]v1.Image{tag: res.Image}); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), d.Path)
}

// tarballTag names the image inside a docker-load tarball: the first registry tag given, else
// fairing/image:latest.
func tarballTag(dests []Destination) name.Tag {
	for _, d := range dests {
		if t, ok := d.Ref.(name.Tag); ok && d.Kind == Registry {
			return t
		}
	}
	t, _ := name.NewTag("fairing/image:latest")
	return t
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
