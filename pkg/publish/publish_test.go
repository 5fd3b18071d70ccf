package publish

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/fairing-dev/fairing/pkg/build"
	"github.com/fairing-dev/fairing/pkg/registryclient"
)

// blobHeads counts HEAD requests per blob digest.
type blobHeads struct {
	mu sync.Mutex
	n  map[string]int
}

func (b *blobHeads) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		if req.Method == http.MethodHead && strings.Contains(req.URL.Path, "/blobs/") {
			b.mu.Lock()
			b.n[req.URL.Path[strings.LastIndex(req.URL.Path, "/")+1:]]++
			b.mu.Unlock()
		}
		return rt.RoundTrip(req)
	})
}

func TestPublishOverPreviousImage(t *testing.T) {
	s := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer s.Close()
	host := strings.TrimPrefix(s.URL, "http://")
	ctx := context.Background()

	var layers []v1.Layer
	for range 4 {
		l, err := random.Layer(1024, "application/vnd.oci.image.layer.v1.tar+gzip")
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	img := func(ls ...v1.Layer) v1.Image {
		i, err := mutate.AppendLayers(empty.Image, ls...)
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	publish := func(i v1.Image, dests ...string) (*Report, *blobHeads) {
		t.Helper()
		heads := &blobHeads{n: map[string]int{}}
		rc := registryclient.Config{Jobs: 4, Wrap: heads.wrap}
		var ds []Destination
		for _, d := range dests {
			dd, err := ParseDestination(d, rc)
			if err != nil {
				t.Fatal(err)
			}
			ds = append(ds, dd)
		}
		rep, err := Publish(ctx, &build.Result{Image: i}, ds, Options{Registry: rc})
		if err != nil {
			t.Fatal(err)
		}
		return rep, heads
	}
	digestOf := func(l v1.Layer) string {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d.String()
	}
	tag := host + "/team/app:1"

	// first push: nothing there, every blob asked about and sent
	first := img(layers[:3]...)
	rep, _ := publish(first, tag)
	if len(rep.Pushed) != 4 { // 3 layers + config
		t.Fatalf("first push sent %d blobs, want 4: %+v", len(rep.Pushed), rep)
	}

	// a rebuild with one layer changed: the layers the tag's image lists are not asked about,
	// nor is the new config (new content: sent at once)
	second := img(layers[0], layers[1], layers[3])
	rep, heads := publish(second, tag, host+"/team/app:latest")
	for _, l := range layers[:2] {
		if n := heads.n[digestOf(l)]; n != 0 {
			t.Errorf("layer %s of the previous image asked about %d times", digestOf(l), n)
		}
	}
	if n := heads.n[mustConfigDigest(t, second)]; n != 0 {
		t.Errorf("the new config was asked about %d times before it was sent", n)
	}
	if got := strings.Join(rep.Pushed, ","); !strings.Contains(got, digestOf(layers[3])) || len(rep.Pushed) != 2 {
		t.Errorf("pushed %v, want the new layer and the new config", rep.Pushed)
	}
	for _, l := range layers[:2] {
		if !strings.Contains(strings.Join(rep.Skipped, ","), digestOf(l)) {
			t.Errorf("skipped %v lacks %s", rep.Skipped, digestOf(l))
		}
	}
	// both tags, the one that had an image and the new one, hold the complete new image
	want, _ := second.Digest()
	for _, ref := range []string{tag, host + "/team/app:latest"} {
		r, _ := registryclient.Config{}.ParseReference(ref)
		got, err := remote.Image(r)
		if err != nil {
			t.Fatal(err)
		}
		if d, _ := got.Digest(); d != want {
			t.Errorf("%s: digest %s, want %s", ref, d, want)
		}
		if err := validate.Image(got); err != nil {
			t.Errorf("%s: %v", ref, err)
		}
	}

	// unchanged: nothing sent, no blob asked about
	rep, heads = publish(second, tag)
	if len(rep.Pushed) != 0 || len(rep.Manifests) != 0 {
		t.Errorf("unchanged rebuild pushed %v and manifests %v", rep.Pushed, rep.Manifests)
	}
	for d, n := range heads.n {
		t.Errorf("unchanged rebuild asked about blob %s %d times", d, n)
	}

	// a new manifest (an annotation) around the previous image's config: the config is not
	// sent again nor asked about
	third := mutate.Annotations(second, map[string]string{"org.opencontainers.image.revision": "2"}).(v1.Image)
	if d1, d2 := mustDigestOf(t, third), mustDigestOf(t, second); d1 == d2 {
		t.Fatal("the annotation did not change the manifest")
	}
	rep, heads = publish(third, tag)
	if len(rep.Manifests) != 1 {
		t.Errorf("manifests written: %v, want the new one", rep.Manifests)
	}
	if n := heads.n[mustConfigDigest(t, third)]; n != 0 || strings.Contains(strings.Join(rep.Pushed, ","), mustConfigDigest(t, third)) {
		t.Errorf("config: %d HEADs, pushed %v", n, rep.Pushed)
	}
}

func mustConfigDigest(t *testing.T, i v1.Image) string {
	t.Helper()
	d, err := i.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// Tags asks the registry once per tag however many callers want it, and the publisher uses
// what it read.
func TestTagsReadOnce(t *testing.T) {
	var gets sync.Map
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/") {
			n, _ := gets.LoadOrStore(r.URL.Path, new(atomic.Int32))
			n.(*atomic.Int32).Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	defer s.Close()
	ctx := context.Background()
	rc := registryclient.Config{}
	ref, err := rc.ParseReference(strings.TrimPrefix(s.URL, "http://") + "/team/app:1")
	if err != nil {
		t.Fatal(err)
	}
	l, _ := random.Layer(512, "application/vnd.oci.image.layer.v1.tar+gzip")
	img, _ := mutate.AppendLayers(empty.Image, l)
	d := Destination{Kind: Registry, Raw: ref.String(), Ref: ref}
	if _, err := Publish(ctx, &build.Result{Image: img}, []Destination{d}, Options{Registry: rc}); err != nil {
		t.Fatal(err)
	}
	gets.Clear()

	opts, err := rc.RemoteOptions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tags := NewTags(opts)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if _, err := tags.Get(ctx, ref); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	rep, err := Publish(ctx, &build.Result{Image: img}, []Destination{d}, Options{Registry: rc, Tags: tags})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Manifests) != 0 || len(rep.Pushed) != 0 {
		t.Errorf("republishing the same image wrote %v, pushed %v", rep.Manifests, rep.Pushed)
	}
	n, _ := gets.Load("/v2/team/app/manifests/1")
	if n == nil || n.(*atomic.Int32).Load() != 1 {
		t.Errorf("tag manifest read %v times, want once", n)
	}
}

// refusing is a registry in front of ggcr's that refuses manifest PUTs the way the distribution
// registry does when it cannot read what a manifest refers to.
type refusing struct {
	h http.Handler
	// refuse answers a manifest PUT with the given codes when it returns any.
	refuse func() []string
	// hidden is a blob the registry lost: HEAD says 404 until it is uploaded again.
	mu     sync.Mutex
	hidden string
	puts   int
}

func (f *refusing) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	hidden := f.hidden
	f.mu.Unlock()
	switch {
	case r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/"):
		f.mu.Lock()
		f.puts++
		f.mu.Unlock()
		codes := f.refuse()
		if hidden != "" {
			codes = append(codes, "MANIFEST_BLOB_UNKNOWN")
		}
		if len(codes) > 0 {
			var errs []string
			for _, c := range codes {
				errs = append(errs, fmt.Sprintf(`{"code":%q,"message":"refused"}`, c))
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"errors":[%s]}`, strings.Join(errs, ","))
			return
		}
	case hidden != "" && r.Method == http.MethodHead && strings.HasSuffix(r.URL.Path, "/blobs/"+hidden):
		w.WriteHeader(http.StatusNotFound)
		return
	case hidden != "" && r.Method == http.MethodPut && r.URL.Query().Get("digest") == hidden:
		f.mu.Lock()
		f.hidden = ""
		f.mu.Unlock()
	}
	f.h.ServeHTTP(w, r)
}

// A manifest the registry refuses for its references is written again after every blob is
// looked up afresh (and one gone is sent again); other refusals, and one that lasts, fail the
// push without a tag.
func TestManifestRefusedForItsReferences(t *testing.T) {
	ctx := context.Background()
	layer := func() v1.Layer {
		l, err := random.Layer(1024, "application/vnd.oci.image.layer.v1.tar+gzip")
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	for _, tc := range []struct {
		name string
		// refusals lists what each manifest PUT is answered with, in turn (then accepted)
		refusals [][]string
		// lose: the registry loses a layer of the image the tag held
		lose     bool
		wantErr  string
		wantPuts int
	}{
		{name: "link file read while rewritten", refusals: [][]string{{"DIGEST_INVALID", "MANIFEST_BLOB_UNKNOWN"}}, wantPuts: 2},
		{name: "twice, then accepted", refusals: [][]string{{"MANIFEST_BLOB_UNKNOWN"}, {"DIGEST_INVALID"}}, wantPuts: 3},
		{name: "a layer of the previous image gone: sent again", lose: true, wantPuts: 2},
		{name: "refused every time", refusals: [][]string{{"MANIFEST_BLOB_UNKNOWN"}, {"MANIFEST_BLOB_UNKNOWN"}, {"MANIFEST_BLOB_UNKNOWN"}, {"MANIFEST_BLOB_UNKNOWN"}}, wantErr: "MANIFEST_BLOB_UNKNOWN", wantPuts: 1 + manifestRetries},
		{name: "invalid manifest: not written again", refusals: [][]string{{"MANIFEST_INVALID"}}, wantErr: "MANIFEST_INVALID", wantPuts: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &refusing{h: registry.New(registry.Logger(log.New(io.Discard, "", 0))), refuse: func() []string { return nil }}
			s := httptest.NewServer(f)
			defer s.Close()
			host := strings.TrimPrefix(s.URL, "http://")
			rc := registryclient.Config{Jobs: 4}
			dest, err := ParseDestination(host+"/team/app:1", rc)
			if err != nil {
				t.Fatal(err)
			}
			lost := layer()
			if tc.lose {
				prev, _ := mutate.AppendLayers(empty.Image, lost)
				if _, err := Publish(ctx, &build.Result{Image: prev}, []Destination{dest}, Options{Registry: rc}); err != nil {
					t.Fatal(err)
				}
				f.hidden = mustDigest(t, lost)
				f.puts = 0
			}
			img, _ := mutate.AppendLayers(empty.Image, lost, layer())
			var n int
			f.refuse = func() []string {
				defer func() { n++ }()
				if n < len(tc.refusals) {
					return tc.refusals[n]
				}
				return nil
			}
			p, err := NewPublisher(ctx, []Destination{dest}, Options{Registry: rc})
			if err != nil {
				t.Fatal(err)
			}
			p.backoff = time.Millisecond
			rep, err := p.Publish(ctx, &build.Result{Image: img})
			if f.puts != tc.wantPuts {
				t.Errorf("manifest PUTs: %d, want %d", f.puts, tc.wantPuts)
			}
			got, gerr := remote.Image(dest.Ref)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tc.wantErr)
				}
				if gerr == nil {
					t.Error("the tag was written although the push failed")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if gerr != nil {
				t.Fatal(gerr)
			}
			if err := validate.Image(got); err != nil {
				t.Error(err)
			}
			if d, _ := got.Digest(); d.String() != rep.Digest {
				t.Errorf("tag holds %s, want %s", d, rep.Digest)
			}
			if tc.lose && !strings.Contains(strings.Join(rep.Pushed, ","), mustDigest(t, lost)) {
				t.Errorf("the lost layer was not sent again: pushed %v", rep.Pushed)
			}
		})
	}
}

func mustDigest(t *testing.T, l v1.Layer) string {
	t.Helper()
	d, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// named is a layer of ours: it says what it holds.
type named struct {
	v1.Layer
	name string
}

func (n named) Name() string { return n.name }

// An upload that fails names the layer by what it holds, whether or not its digest is known by
// then (a streamed layer's is once the stream ended), and a base layer by its digest.
func TestUploadErrorNamesTheLayer(t *testing.T) {
	base, err := random.Layer(512, "application/vnd.oci.image.layer.v1.tar+gzip")
	if err != nil {
		t.Fatal(err)
	}
	ours, err := random.Layer(512, "application/vnd.oci.image.layer.v1.tar+gzip")
	if err != nil {
		t.Fatal(err)
	}
	// Only these two blobs are refused (at the upload's final PUT), so the image config's
	// upload does not fail first.
	refused := map[string]bool{mustDigest(t, base): true, mustDigest(t, ours): true}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && refused[r.URL.Query().Get("digest")] {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `{"errors":[{"code":"DENIED","message":"no uploads here"}]}`)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer s.Close()
	host := strings.TrimPrefix(s.URL, "http://")
	for _, tc := range []struct {
		name string
		l    v1.Layer
		want string
	}{
		{"ours, digest known", named{ours, "code: /app/src"}, `layer "code: /app/src": `},
		{"base layer", base, "blob " + mustDigest(t, base) + ": "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := registryclient.Config{Jobs: 2}
			dest, err := ParseDestination(host+"/team/app:1", rc)
			if err != nil {
				t.Fatal(err)
			}
			p, err := NewPublisher(context.Background(), []Destination{dest}, Options{Registry: rc})
			if err != nil {
				t.Fatal(err)
			}
			p.Upload(tc.l)
			img, _ := mutate.AppendLayers(empty.Image, tc.l)
			_, err = p.Publish(context.Background(), &build.Result{Image: img})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "DENIED") {
				t.Fatalf("err = %v, want one starting %q and naming DENIED", err, tc.want)
			}
		})
	}
}

func mustDigestOf(t *testing.T, i v1.Image) v1.Hash {
	t.Helper()
	d, err := i.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// A multi-platform rebuild over the index its tag holds: the previous platforms' manifests are
// read (a GET each) instead of a HEAD per blob and manifest, only the new blobs are sent, only
// the platforms that changed get a manifest, and the tag names a complete index.
func TestPublishIndexOverPreviousIndex(t *testing.T) {
	var mu sync.Mutex
	reqs := map[string]int{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		kind := r.Method + " " + map[bool]string{true: "manifest", false: "blob"}[strings.Contains(r.URL.Path, "/manifests/")]
		if r.URL.Path != "/v2/" {
			reqs[kind]++
			if r.Method == http.MethodHead {
				reqs[r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]]++
			}
		}
		mu.Unlock()
		reg.ServeHTTP(w, r)
	}))
	defer s.Close()
	host := strings.TrimPrefix(s.URL, "http://")
	taken := func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		r := reqs
		reqs = map[string]int{}
		return r
	}
	plat := func(a string) v1.Image {
		img, err := random.Image(256, 2)
		if err != nil {
			t.Fatal(err)
		}
		cf, _ := img.ConfigFile()
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = "linux", a
		img, _ = mutate.ConfigFile(img, cf)
		return mutate.MediaType(img, "application/vnd.oci.image.manifest.v1+json")
	}
	code, err := random.Layer(512, "application/vnd.oci.image.layer.v1.tar+gzip")
	if err != nil {
		t.Fatal(err)
	}
	edited, err := random.Layer(512, "application/vnd.oci.image.layer.v1.tar+gzip")
	if err != nil {
		t.Fatal(err)
	}
	amd, arm := plat("amd64"), plat("arm64")
	index := func(l v1.Layer) v1.ImageIndex {
		idx := mutate.IndexMediaType(empty.Index, "application/vnd.oci.image.index.v1+json")
		for _, b := range []v1.Image{amd, arm} {
			img, err := mutate.AppendLayers(b, l)
			if err != nil {
				t.Fatal(err)
			}
			cf, _ := img.ConfigFile()
			idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: cf.Architecture}}})
		}
		return idx
	}
	rc := registryclient.Config{Jobs: 4}
	dest, err := ParseDestination(host+"/team/app:1", rc)
	if err != nil {
		t.Fatal(err)
	}
	push := func(idx v1.ImageIndex) map[string]int {
		t.Helper()
		taken()
		_, err := Publish(context.Background(), &build.Result{Index: idx}, []Destination{dest}, Options{Registry: rc})
		if err != nil {
			t.Fatal(err)
		}
		r := taken()
		got, err := remote.Index(dest.Ref)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Index(got); err != nil {
			t.Fatalf("the tag names an incomplete index: %v", err)
		}
		if d1, d2 := mustIndexDigest(t, got), mustIndexDigest(t, idx); d1 != d2 {
			t.Fatalf("the tag names %s, want %s", d1, d2)
		}
		return r
	}
	push(index(code))

	// Only the edited layer (whose digest is known here, unlike a streamed one) is asked about.
	r := push(index(edited))
	if r["HEAD blob"] != 1 || r[mustDigest(t, edited)] != 1 || r["HEAD manifest"] != 0 {
		t.Errorf("the rebuild asked %d blobs (want only the new layer) and %d manifests with HEAD: %v", r["HEAD blob"], r["HEAD manifest"], r)
	}
	// 2 platform manifests + the index
	if r["PUT manifest"] != 3 {
		t.Errorf("%d manifests written, want 3: %v", r["PUT manifest"], r)
	}

	if r := push(index(edited)); r["PUT manifest"] != 0 || r["PUT blob"] != 0 || r["HEAD blob"] != 0 || r["HEAD manifest"] != 0 {
		t.Errorf("an unchanged rebuild wrote or asked: %v", r)
	}
}

func mustIndexDigest(t *testing.T, idx v1.ImageIndex) v1.Hash {
	t.Helper()
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}
