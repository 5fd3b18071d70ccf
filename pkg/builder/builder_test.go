package builder

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/fairing-dev/fairing/pkg/build"
	"github.com/fairing-dev/fairing/pkg/contextimage"
	"github.com/fairing-dev/fairing/pkg/layer"
)

// The fast tier: an in-memory registry. The same flows run against Debian's docker-registry
// in test/builder.

func memRegistry(t *testing.T) string {
	t.Helper()
	s := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

func pushBase(t *testing.T, ref string, mt types.MediaType, plats ...v1.Platform) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(p v1.Platform) v1.Image {
		img, err := random.Image(512, 2)
		if err != nil {
			t.Fatal(err)
		}
		img = mutate.MediaType(img, mt)
		cf, _ := img.ConfigFile()
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
		cf.Config.Env = []string{"PATH=/usr/bin:/bin", "LANG=C"}
		cf.Config.Cmd = []string{"/bin/sh"}
		cf.Created = v1.Time{Time: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)}
		img, err = mutate.ConfigFile(img, cf)
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	if len(plats) == 1 {
		if err := remote.Write(r, mk(plats[0])); err != nil {
			t.Fatal(err)
		}
		return
	}
	idxMT := types.OCIImageIndex
	if mt == types.DockerManifestSchema2 {
		idxMT = types.DockerManifestList
	}
	idx := mutate.IndexMediaType(empty.Index, idxMT)
	for _, p := range plats {
		p := p
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: mk(p), Descriptor: v1.Descriptor{Platform: &p}})
	}
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
}

var amd64 = v1.Platform{OS: "linux", Architecture: "amd64"}
var arm64 = v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}

func project(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"train.py":         "print('hi')\n",
		"requirements.txt": "numpy\n",
		"lib/util.py":      "X = 1\n",
	}
	for p, c := range files {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-time.Hour)
	filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error { return os.Chtimes(p, old, old) })
	return dir
}

func opts(t *testing.T, ctxDir, base string, dests ...string) Options {
	return Options{
		Sources:      []layer.Source{{Dest: "/app", Path: ctxDir}},
		Base:         base,
		Destinations: dests,
		Config:       build.Config{WorkingDir: "/app", Cmd: []string{"python3", "/app/train.py"}, Env: []string{"PATH=/app/bin:$PATH"}},
		CacheDir:     t.TempDir(),
	}
}

func TestRunOCIBase(t *testing.T) {
	reg := memRegistry(t)
	pushBase(t, reg+"/base/img:1", types.OCIManifestSchema1, amd64)
	ctxDir := project(t)
	o := opts(t, ctxDir, reg+"/base/img:1", reg+"/me/app:1", reg+"/me/other:2")
	o.MetadataFile = filepath.Join(t.TempDir(), "meta.json")
	o.DigestFile = filepath.Join(t.TempDir(), "digest")
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Refs) != 2 || !strings.HasPrefix(rep.Refs[0], reg+"/me/app@sha256:") || !strings.HasPrefix(rep.Refs[1], reg+"/me/other@sha256:") {
		t.Errorf("refs = %v", rep.Refs)
	}
	if b, _ := os.ReadFile(o.DigestFile); string(b) != rep.Digest {
		t.Errorf("digest file = %q, want %q", b, rep.Digest)
	}
	if b, _ := os.ReadFile(o.MetadataFile); !strings.Contains(string(b), `"containerimage.digest": "`+rep.Digest) {
		t.Errorf("metadata file lacks the digest: %s", b)
	}

	ref, _ := name.ParseReference(rep.Refs[0])
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("pushed image invalid: %v", err)
	}
	m, _ := img.Manifest()
	if m.MediaType != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s", m.MediaType)
	}
	if len(m.Layers) != 4 { // 2 base + dependencies + source
		t.Errorf("%d layers, want 4", len(m.Layers))
	}
	for _, l := range m.Layers[2:] {
		if l.MediaType != types.OCILayer {
			t.Errorf("layer media type %s, want %s", l.MediaType, types.OCILayer)
		}
	}
	if m.Annotations[build.AnnotationBaseName] != reg+"/base/img:1" || !strings.HasPrefix(m.Annotations[build.AnnotationBaseDigest], "sha256:") || m.Annotations[build.AnnotationCreated] != "2024-01-02T03:04:05Z" {
		t.Errorf("annotations = %v", m.Annotations)
	}
	cf, _ := img.ConfigFile()
	if got := strings.Join(cf.Config.Env, " "); got != "PATH=/app/bin:/usr/bin:/bin LANG=C FAIRING_RUNTIME=1" {
		t.Errorf("env = %s", got)
	}
	if cf.Config.WorkingDir != "/app" || strings.Join(cf.Config.Cmd, " ") != "python3 /app/train.py" || cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("config = %+v", cf.Config)
	}
	if len(cf.History) != 4 || !strings.Contains(cf.History[2].CreatedBy, "dependencies") || len(cf.RootFS.DiffIDs) != 4 {
		t.Errorf("history = %+v, diff_ids = %d", cf.History, len(cf.RootFS.DiffIDs))
	}
	files := imageFiles(t, img)
	if files["app/train.py"] != "print('hi')\n" || files["app/lib/util.py"] != "X = 1\n" || files["app/requirements.txt"] != "numpy\n" {
		t.Errorf("files = %v", keys(files))
	}

	// Unchanged: the same digest, nothing uploaded.
	o.Destinations = o.Destinations[:1]
	again, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if again.Digest != rep.Digest || len(again.Pushed) != 0 || len(again.Manifests) != 0 {
		t.Errorf("unchanged rebuild: digest %s (was %s), pushed %v, manifests %v", again.Digest, rep.Digest, again.Pushed, again.Manifests)
	}

	// A fresh machine: nothing cached, but the registry has the previous image. Its layers are
	// recognised by key after hashing alone: nothing is written, nothing uploaded.
	o.CacheDir = t.TempDir()
	fresh, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if fresh.Digest != rep.Digest || len(fresh.Pushed) != 0 {
		t.Errorf("fresh cache: digest %s (want %s), pushed %v", fresh.Digest, rep.Digest, fresh.Pushed)
	}
	for _, l := range fresh.Layers {
		if l.Origin != "registry" {
			t.Errorf("fresh cache: layer %s came from %s, want the registry", l.Name, l.Origin)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(o.CacheDir, "blobs", "sha256")); len(ents) != 0 {
		t.Errorf("fresh cache: %d blobs written", len(ents))
	}
	// An edit on the fresh machine writes only the edited layer.
	os.WriteFile(filepath.Join(ctxDir, "lib/util.py"), []byte("X = 2\n"), 0o644)
	o.CacheDir = t.TempDir()
	edited, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	built := 0
	for _, l := range edited.Layers {
		if l.Origin == "built" {
			built++
		}
	}
	if built != 1 || len(edited.Pushed) != 2 {
		t.Errorf("edit on a fresh machine built %d layers and pushed %v, want 1 layer (+ config)", built, edited.Pushed)
	}
	m2, _ := remote.Image(ref)
	mm, _ := m2.Manifest()
	if mm.Layers[2].Annotations["dev.fairing.layer.key"] == "" {
		t.Errorf("layer key annotation missing: %v", mm.Layers[2].Annotations)
	}
}

func TestRunDockerBaseAndZstd(t *testing.T) {
	reg := memRegistry(t)
	pushBase(t, reg+"/base/docker:1", types.DockerManifestSchema2, amd64)
	o := opts(t, project(t), reg+"/base/docker:1", reg+"/me/app:1")
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(rep.Refs[0])
	img, _ := remote.Image(ref)
	m, _ := img.Manifest()
	if m.MediaType != types.DockerManifestSchema2 || m.Layers[3].MediaType != types.DockerLayer || len(m.Annotations) != 0 {
		t.Errorf("docker base: manifest %s, layer %s, annotations %v", m.MediaType, m.Layers[3].MediaType, m.Annotations)
	}
	if err := validate.Image(img); err != nil {
		t.Fatal(err)
	}
	o.Layer.Compression = layer.Zstd
	if _, err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "no zstd layer type") {
		t.Errorf("zstd onto a Docker base: err = %v", err)
	}
}

func TestRunMultiPlatform(t *testing.T) {
	reg := memRegistry(t)
	pushBase(t, reg+"/base/multi:1", types.OCIManifestSchema1, amd64, arm64)
	o := opts(t, project(t), reg+"/base/multi:1", reg+"/me/multi:1")
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.MediaType != string(types.OCIImageIndex) || len(rep.Platforms) != 2 {
		t.Fatalf("media type %s, platforms %v", rep.MediaType, rep.Platforms)
	}
	ref, _ := name.ParseReference(rep.Refs[0])
	idx, err := remote.Index(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	var tops []string
	for _, d := range im.Manifests {
		img, _ := idx.Image(d.Digest)
		m, _ := img.Manifest()
		cf, _ := img.ConfigFile()
		if cf.Architecture != d.Platform.Architecture {
			t.Errorf("config arch %s under platform %s", cf.Architecture, d.Platform)
		}
		tops = append(tops, m.Layers[len(m.Layers)-1].Digest.String())
	}
	if len(tops) != 2 || tops[0] != tops[1] {
		t.Errorf("the code layer differs between platforms: %v", tops)
	}

	o.Platforms = []string{"linux/arm64"}
	one, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if one.MediaType != string(types.OCIManifestSchema1) || one.Platforms[0] != "linux/arm64/v8" {
		t.Errorf("one platform: %s %v", one.MediaType, one.Platforms)
	}
	o.Platforms = []string{"linux/s390x"}
	if _, err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "has no platform linux/s390x") {
		t.Errorf("missing platform: err = %v", err)
	}
	o.Platforms = []string{"linux"}
	if _, err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "invalid platform") {
		t.Errorf("bad platform: err = %v", err)
	}
}

func TestRunLocalDestinations(t *testing.T) {
	dir := t.TempDir()
	o := opts(t, project(t), "scratch", "oci:"+filepath.Join(dir, "layout")+":v1", "tar:"+filepath.Join(dir, "img.tar"))
	o.Platforms = []string{"linux/arm64"}
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	p, err := layout.FromPath(filepath.Join(dir, "layout"))
	if err != nil {
		t.Fatal(err)
	}
	idx, _ := p.ImageIndex()
	im, _ := idx.IndexManifest()
	if len(im.Manifests) != 1 || im.Manifests[0].Annotations[build.AnnotationRefName] != "v1" || im.Manifests[0].Digest.String() != rep.Digest {
		t.Fatalf("layout index = %+v", im.Manifests)
	}
	img, _ := idx.Image(im.Manifests[0].Digest)
	if err := validate.Image(img); err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	if cf.Architecture != "arm64" || cf.OS != "linux" {
		t.Errorf("scratch platform = %s/%s", cf.OS, cf.Architecture)
	}
	timg, err := tarball.ImageFromPath(filepath.Join(dir, "img.tar"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// docker-load tarballs keep the config and layers, not the manifest.
	want, _ := img.ConfigName()
	if got, _ := timg.ConfigName(); got != want {
		t.Errorf("tarball config %s, want %s", got, want)
	}
	if files := imageFiles(t, timg); files["app/train.py"] != "print('hi')\n" {
		t.Errorf("tarball files = %v", keys(files))
	}
	// Building again into the same layout replaces the tag instead of adding a second entry.
	if _, err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	idx, _ = p.ImageIndex()
	if im, _ := idx.IndexManifest(); len(im.Manifests) != 1 {
		t.Errorf("layout holds %d manifests after a rebuild", len(im.Manifests))
	}
	// The layout works as a base.
	o2 := opts(t, project(t), "oci:"+filepath.Join(dir, "layout")+":v1", "oci:"+filepath.Join(dir, "layout2")+":v1")
	if _, err := Run(context.Background(), o2); err != nil {
		t.Fatal(err)
	}
}

func TestRunErrors(t *testing.T) {
	reg := memRegistry(t)
	ctxDir := project(t)
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"bad base reference", opts(t, ctxDir, "Not A Ref!", reg+"/me/x:1"), "invalid image reference"},
		{"missing base", opts(t, ctxDir, reg+"/nope/base:1", reg+"/me/x:1"), "not found (404)"},
		{"bad destination", opts(t, ctxDir, "scratch", "UPPER/case:1"), "invalid image reference"},
		{"bad layout destination", opts(t, ctxDir, "scratch", "oci:/tmp/only-dir"), "oci:DIR:TAG"},
		{"unreachable registry", opts(t, ctxDir, "127.0.0.1:1/base:1", reg+"/me/x:1"), "cannot reach the registry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Run(context.Background(), tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func imageFiles(t *testing.T, img v1.Image) map[string]string {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	out := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b, _ := io.ReadAll(tr)
			out[h.Name] = string(b)
		}
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestContextArtifact(t *testing.T) {
	reg := memRegistry(t)
	pushBase(t, reg+"/base/img:1", types.OCIManifestSchema1, amd64)
	ctxDir := project(t)
	o := opts(t, ctxDir, reg+"/base/img:1", reg+"/me/app:local")
	local, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}

	ref, sent, err := PushContext(context.Background(), o, reg+"/me/app", contextimage.Meta{Workdir: "/app"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ref, "oci://"+reg+"/me/app@sha256:") {
		t.Fatalf("context ref = %s", ref)
	}
	// The image's layers were pushed by the local build: the context needs only its config
	// and manifest.
	if len(sent.Pushed) != 1 {
		t.Errorf("context push uploaded %v, want only its config", sent.Pushed)
	}

	// A build from the artifact (as a build pod does) gives the very same image.
	remoteOpts := o
	remoteOpts.Sources = nil
	remoteOpts.ContextRef = ref
	remoteOpts.CacheDir = t.TempDir() // a fresh pod: nothing local
	remoteOpts.Destinations = []string{reg + "/me/app:cluster"}
	cluster, err := Run(context.Background(), remoteOpts)
	if err != nil {
		t.Fatal(err)
	}
	if cluster.Digest != local.Digest {
		t.Errorf("build from the context artifact gave %s, local build %s", cluster.Digest, local.Digest)
	}
	if len(cluster.Pushed) != 0 {
		t.Errorf("build from the context artifact uploaded %v", cluster.Pushed)
	}

	// Unchanged context: nothing uploaded at all; an edit: one layer + config.
	_, again, err := PushContext(context.Background(), o, reg+"/me/app", contextimage.Meta{Workdir: "/app"})
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Pushed)+len(again.Manifests) != 0 {
		t.Errorf("unchanged context pushed %v and %v", again.Pushed, again.Manifests)
	}
	os.WriteFile(filepath.Join(ctxDir, "train.py"), []byte("print('edited')\n"), 0o644)
	_, edited, err := PushContext(context.Background(), o, reg+"/me/app", contextimage.Meta{Workdir: "/app"})
	if err != nil {
		t.Fatal(err)
	}
	if len(edited.Pushed) != 2 {
		t.Errorf("edited context pushed %v, want one layer and the config", edited.Pushed)
	}

	// A fresh machine (a CI runner) sends the same context with nothing compressed when
	// --cache-from names an image with its layers.
	fresh := o
	fresh.CacheDir = t.TempDir()
	fresh.Destinations = []string{reg + "/me/app:edited"}
	if _, err := Run(context.Background(), fresh); err != nil {
		t.Fatal(err)
	}
	fresh.CacheDir = t.TempDir()
	fresh.CacheFrom = []string{reg + "/me/app:edited"}
	ciRef, ci, err := PushContext(context.Background(), fresh, reg+"/ci/app", contextimage.Meta{Workdir: "/app"})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ci.Layers {
		if l.Origin != "registry" {
			t.Errorf("context from a fresh cache with --cache-from: layer %s came from %s", l.Name, l.Origin)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(fresh.CacheDir, "blobs", "sha256")); len(ents) != 0 {
		t.Errorf("context from a fresh cache with --cache-from: %d blobs written", len(ents))
	}
	_, warm, err := PushContext(context.Background(), o, reg+"/ci/app", contextimage.Meta{Workdir: "/app"})
	if err != nil {
		t.Fatal(err)
	}
	if "oci://"+warm.Reference != ciRef {
		t.Errorf("context with --cache-from is %s, from a warm cache %s", ciRef, warm.Reference)
	}

	if _, err := Run(context.Background(), Options{ContextRef: "oci://" + reg + "/me/app:latest", Base: "scratch", Destinations: []string{reg + "/x:1"}}); err == nil || !strings.Contains(err.Error(), "by digest") {
		t.Errorf("tag instead of digest: err = %v", err)
	}
	img := strings.TrimPrefix(local.Refs[0], "")
	if _, err := Run(context.Background(), Options{ContextRef: "oci://" + img, Base: "scratch", Destinations: []string{reg + "/x:1"}}); err == nil || !strings.Contains(err.Error(), "not a fairing build context") {
		t.Errorf("an image instead of a context: err = %v", err)
	}
}

// A rebuild after an edit streams the new layer while it is compressed: the registry sees no
// existence check for it, only its upload, and the image it ends up with is whole.
func TestEditedLayerStreamed(t *testing.T) {
	var mu sync.Mutex
	var heads []string
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/blobs/") {
			mu.Lock()
			heads = append(heads, r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:])
			mu.Unlock()
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	reg := strings.TrimPrefix(s.URL, "http://")
	pushBase(t, reg+"/base/img:1", types.OCIManifestSchema1, amd64)
	ctxDir := project(t)
	o := opts(t, ctxDir, reg+"/base/img:1", reg+"/me/app:1")
	if _, err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(ctxDir, "train.py"), []byte("print('edited')\n"), 0o644)
	mu.Lock()
	heads = nil
	mu.Unlock()
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	var built []string
	for _, l := range rep.Layers {
		if !l.Cached {
			built = append(built, l.Digest)
		}
	}
	if len(built) != 1 {
		t.Fatalf("edit rebuilt %d layers, want 1: %+v", len(built), rep.Layers)
	}
	if !slices.Contains(rep.Pushed, built[0]) {
		t.Errorf("rebuilt layer %s not among the pushed blobs %v", built[0], rep.Pushed)
	}
	mu.Lock()
	if slices.Contains(heads, built[0]) {
		t.Errorf("the registry was asked for the new layer %s before it was sent (HEADs: %v)", built[0], heads)
	}
	mu.Unlock()
	ref, _ := name.ParseReference(rep.Refs[0])
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("image pushed with a streamed layer is invalid: %v", err)
	}
}

// requestLog records the requests a registry answers ("GET /v2/r/blobs/sha256:...").
type requestLog struct {
	mu   sync.Mutex
	reqs []string
}

func (l *requestLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.reqs
	l.reqs = nil
	return r
}

// A rebuild asks the registry only what can change: the manifests the base's tag and the
// destination's tag name (and, under a multi-platform tag, its platforms' manifests). The
// configs behind them are content-addressed and kept in the cache; nothing is asked about
// with a HEAD: new content is sent at once, the rest is known from the previous image.
func TestRebuildRoundTrips(t *testing.T) {
	for _, plats := range [][]v1.Platform{{amd64}, {amd64, arm64}} {
		t.Run(fmt.Sprint(len(plats), " platforms"), func(t *testing.T) {
			rl := &requestLog{}
			reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
			s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/v2/" {
					rl.mu.Lock()
					rl.reqs = append(rl.reqs, r.Method+" "+r.URL.Path)
					rl.mu.Unlock()
				}
				reg.ServeHTTP(w, r)
			}))
			defer s.Close()
			host := strings.TrimPrefix(s.URL, "http://")
			pushBase(t, host+"/base/py:1", types.OCIManifestSchema1, plats...)
			ctxDir := project(t)
			o := opts(t, ctxDir, host+"/base/py:1", host+"/team/app:1")
			for _, p := range plats {
				o.Platforms = append(o.Platforms, p.OS+"/"+p.Architecture)
			}
			if _, err := Run(context.Background(), o); err != nil {
				t.Fatal(err)
			}
			rl.take()

			check := func(what string, wantMore func(string) bool) {
				t.Helper()
				ours := 0
				all := rl.take()
				defer func() {
					if t.Failed() {
						t.Logf("all requests: %q", all)
					}
				}()
				for _, r := range all {
					switch {
					case r == "GET /v2/base/py/manifests/1", r == "GET /v2/team/app/manifests/1":
					case len(plats) > 1 && strings.HasPrefix(r, "GET /v2/base/py/manifests/sha256:"):
						// the base's platforms' manifests
					case len(plats) > 1 && strings.HasPrefix(r, "GET /v2/team/app/manifests/sha256:") && ours < 2:
						// one platform of the previous image, for its layers' keys (and the same
						// read by the build before, canceled when it needed none of it, may reach
						// the registry only now); the others' manifests were kept when pushed
						ours++
					case wantMore != nil && wantMore(r):
					default:
						t.Errorf("%s: %s", what, r)
					}
				}
			}
			if _, err := Run(context.Background(), o); err != nil {
				t.Fatal(err)
			}
			check("unchanged rebuild asked", nil)

			os.WriteFile(filepath.Join(ctxDir, "lib/util.py"), []byte("X = 2\n"), 0o644)
			if _, err := Run(context.Background(), o); err != nil {
				t.Fatal(err)
			}
			check("edited rebuild asked", func(r string) bool {
				// the new layer and config are sent, and the new manifests written
				return strings.HasPrefix(r, "POST /v2/team/app/blobs/uploads") || strings.HasPrefix(r, "PATCH /v2/team/app/blobs/uploads") ||
					strings.HasPrefix(r, "PUT /v2/team/app/blobs/uploads") || strings.HasPrefix(r, "PUT /v2/team/app/manifests/")
			})
		})
	}
}

// A fresh machine building a new tag (a CI runner, one tag per commit) finds its layers by key
// in the --cache-from image: nothing is compressed or uploaded, and the image is the one a cold
// build gives. A cache-from image that is missing,
// or that fairing did not build, is only reported.
func TestRunCacheFrom(t *testing.T) {
	reg := memRegistry(t)
	pushBase(t, reg+"/base/img:1", types.OCIManifestSchema1, amd64)
	ctxDir := project(t)
	first, err := Run(context.Background(), opts(t, ctxDir, reg+"/base/img:1", reg+"/team/app:main"))
	if err != nil {
		t.Fatal(err)
	}

	var logs []string
	o := opts(t, ctxDir, reg+"/base/img:1", reg+"/team/app-ci:commit2")
	o.CacheFrom = []string{reg + "/nothing/here:latest", reg + "/base/img:1", reg + "/team/app:main"}
	o.Warnf = func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) }
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Digest != first.Digest {
		t.Errorf("digest %s, want the cold build's %s", rep.Digest, first.Digest)
	}
	for _, l := range rep.Layers {
		if l.Origin != "registry" {
			t.Errorf("layer %s came from %s, want the cache-from image", l.Name, l.Origin)
		}
		// this registry keeps blobs for all repositories: found there (test/builder checks
		// the mount on distribution, which keeps them per repository)
		if slices.Contains(rep.Pushed, l.Digest) || !slices.Contains(append(rep.Mounted, rep.Skipped...), l.Digest) {
			t.Errorf("layer %s (%s) was uploaded again: mounted %v, skipped %v, pushed %v", l.Name, l.Digest, rep.Mounted, rep.Skipped, rep.Pushed)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(o.CacheDir, "blobs", "sha256")); len(ents) != 0 {
		t.Errorf("%d blobs written", len(ents))
	}
	ref, _ := name.ParseReference(rep.Refs[0])
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Errorf("image built from cache-from layers is invalid: %v", err)
	}
	joined := strings.Join(logs, "\n")
	for _, want := range []string{"--cache-from " + reg + "/nothing/here:latest: not used", "--cache-from " + reg + "/base/img:1: not used: none of its layers was built by fairing"} {
		if !strings.Contains(joined, want) {
			t.Errorf("log lacks %q:\n%s", want, joined)
		}
	}
	if strings.Contains(joined, "team/app-ci") {
		t.Errorf("the destination's missing tag was reported:\n%s", joined)
	}

	// From another registry the layers are copied, not compressed: read from there, uploaded.
	reg2 := memRegistry(t)
	pushBase(t, reg2+"/base/img:1", types.OCIManifestSchema1, amd64)
	o2 := opts(t, ctxDir, reg2+"/base/img:1", reg2+"/team/app:commit2")
	o2.CacheFrom = []string{reg + "/team/app:main"}
	rep2, err := Run(context.Background(), o2)
	if err != nil {
		t.Fatal(err)
	}
	// (the image digest differs: the base's name, in an annotation, is another registry's)
	for i, l := range rep2.Layers {
		if l.Digest != first.Layers[i].Digest {
			t.Errorf("from another registry: layer %s is %s, want %s", l.Name, l.Digest, first.Layers[i].Digest)
		}
		if l.Origin != "registry" || !slices.Contains(rep2.Pushed, l.Digest) {
			t.Errorf("from another registry: layer %s came from %s, pushed %v", l.Name, l.Origin, rep2.Pushed)
		}
	}
	ref2, _ := name.ParseReference(rep2.Refs[0])
	img2, err := remote.Image(ref2)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img2); err != nil {
		t.Errorf("image with layers copied from another registry is invalid: %v", err)
	}

	// Into an OCI layout (no registry destination): the layers are read from the cache-from
	// image; a missing one is reported there too.
	logs = nil
	dir := t.TempDir()
	o3 := opts(t, ctxDir, reg+"/base/img:1", "oci:"+dir+":v1")
	o3.CacheFrom = []string{reg + "/nothing/here:latest", reg + "/team/app:main"}
	o3.Warnf = o.Warnf
	rep3, err := Run(context.Background(), o3)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range rep3.Layers {
		if l.Origin != "registry" {
			t.Errorf("into a layout: layer %s came from %s", l.Name, l.Origin)
		}
	}
	if rep3.Digest != first.Digest {
		t.Errorf("into a layout: digest %s, want %s", rep3.Digest, first.Digest)
	}
	lp, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	h, err := v1.NewHash(rep3.Digest)
	if err != nil {
		t.Fatal(err)
	}
	li, err := lp.Image(h)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(li); err != nil {
		t.Errorf("layout image with cache-from layers is invalid: %v", err)
	}
	if !strings.Contains(strings.Join(logs, "\n"), "--cache-from "+reg+"/nothing/here:latest: not used") {
		t.Errorf("into a layout: the missing cache-from image was not reported: %v", logs)
	}

	o.CacheFrom = []string{"Team/App:latest"}
	if _, err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "--cache-from") {
		t.Errorf("a bad --cache-from reference: err = %v", err)
	}
}

// A cache-from image still being read when a build turns out to need nothing from it (every
// layer in the local cache) is let go quietly: the canceled read is not a warning.
func TestRunCacheFromNotNeeded(t *testing.T) {
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/slow/") {
			<-r.Context().Done() // answers only when the build gives up on it
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	reg := strings.TrimPrefix(s.URL, "http://")
	pushBase(t, reg+"/base/img:1", types.OCIManifestSchema1, amd64)
	ctxDir := project(t)
	o := opts(t, ctxDir, reg+"/base/img:1", "oci:"+t.TempDir()+":v1")
	if _, err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	var logs []string
	o.Warnf = func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) }
	o.CacheFrom = []string{reg + "/slow/app:main"}
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range rep.Layers {
		if !l.Cached {
			t.Errorf("layer %s not from the local cache", l.Name)
		}
	}
	if len(logs) != 0 {
		t.Errorf("warned of a read the build did not need: %v", logs)
	}
}
