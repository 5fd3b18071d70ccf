package publish

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

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

// sessions is a registry in front of ggcr's that keeps the upload conversation: which
// sessions were opened, what was written into each, and how each ended.
type sessions struct {
	h             http.Handler
	refuseOneShot bool // answer a PUT that carries the whole blob with 400

	mu      sync.Mutex
	opened  []string          // session paths, from POST's Location
	patched map[string]bool   // sessions that got a PATCH
	closed  map[string]string // session path → "put DIGEST" or "delete"
	oneShot map[string]string // digest → session path, for PUTs that carried the blob
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) { w.status = code; w.ResponseWriter.WriteHeader(code) }

func (s *sessions) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	oneShot := r.Method == http.MethodPut && strings.Contains(p, "/blobs/uploads/") && r.ContentLength > 0
	if oneShot && s.refuseOneShot {
		http.Error(w, `{"errors":[{"code":"BLOB_UPLOAD_INVALID","message":"send it in a PATCH"}]}`, http.StatusBadRequest)
		return
	}
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	s.h.ServeHTTP(sw, r)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case r.Method == http.MethodPost && sw.status == http.StatusAccepted:
		s.opened = append(s.opened, strings.SplitN(w.Header().Get("Location"), "?", 2)[0])
	case r.Method == http.MethodPatch:
		s.patched[p] = true
	case r.Method == http.MethodPut && strings.Contains(p, "/blobs/uploads/") && sw.status == http.StatusCreated:
		d := r.URL.Query().Get("digest")
		s.closed[p] = "put " + d
		if oneShot && !s.patched[p] {
			s.oneShot[d] = p
		}
	case r.Method == http.MethodDelete && strings.Contains(p, "/blobs/uploads/"):
		s.closed[p] = "delete"
	}
}

func (s *sessions) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opened, s.patched, s.closed, s.oneShot = nil, map[string]bool{}, map[string]string{}, map[string]string{}
}

// dangling lists the sessions opened and never closed.
func (s *sessions) dangling() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, o := range s.opened {
		if s.closed[o] == "" {
			out = append(out, o)
		}
	}
	return out
}

func randomLayer(t *testing.T) v1.Layer {
	t.Helper()
	l, err := random.Layer(2048, "application/vnd.oci.image.layer.v1.tar+gzip")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// A rebuild that sends a new layer opens an upload session for the config while the layer
// goes, and writes the config into it with one request; a registry that refuses that gets the
// config the usual way; an aborted push leaves no session open.
func TestConfigIntoSpareSession(t *testing.T) {
	ctx := context.Background()
	img := func(ls ...v1.Layer) v1.Image {
		i, err := mutate.AppendLayers(empty.Image, ls...)
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	for _, tc := range []struct {
		name          string
		refuseOneShot bool
		abort         bool
		layersThere   bool // a build pod: the layers were pushed with the context
	}{
		{name: "config in one request"},
		{name: "layers in the registry already", layersThere: true},
		{name: "registry refuses a blob in one request", refuseOneShot: true},
		{name: "aborted push", abort: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := &sessions{h: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
			reg.reset()
			s := httptest.NewServer(reg)
			defer s.Close()
			rc := registryclient.Config{Jobs: 4}
			dest, err := ParseDestination(strings.TrimPrefix(s.URL, "http://")+"/team/app:1", rc)
			if err != nil {
				t.Fatal(err)
			}
			base := []v1.Layer{randomLayer(t), randomLayer(t)}
			if _, err := Publish(ctx, &build.Result{Image: img(base...)}, []Destination{dest}, Options{Registry: rc}); err != nil {
				t.Fatal(err)
			}
			reg.reset()
			reg.refuseOneShot = tc.refuseOneShot

			p, err := NewPublisher(ctx, []Destination{dest}, Options{Registry: rc})
			if err != nil {
				t.Fatal(err)
			}
			added := randomLayer(t)
			if tc.layersThere {
				if err := remote.WriteLayer(dest.Ref.Context(), added); err != nil {
					t.Fatal(err)
				}
				reg.reset()
				p.ExpectNewImage()
			} else {
				p.Upload(added) // as the builder does with a layer it wrote
			}
			next := img(append(base, added)...)
			if tc.abort {
				p.Abort()
				if d := reg.dangling(); len(d) != 0 {
					t.Fatalf("sessions left open after an abort: %v", d)
				}
				if len(reg.opened) < 2 {
					t.Errorf("opened %v: want the layer's and a spare", reg.opened)
				}
				return
			}
			rep, err := p.Publish(ctx, &build.Result{Image: next})
			if err != nil {
				t.Fatal(err)
			}
			config := mustConfigDigest(t, next)
			_, inOne := reg.oneShot[config]
			if inOne == tc.refuseOneShot {
				t.Errorf("config written in one request: %v (sessions %v, closed %v)", inOne, reg.opened, reg.closed)
			}
			if d := reg.dangling(); len(d) != 0 {
				t.Errorf("sessions left open: %v", d)
			}
			want := []string{config}
			if !tc.layersThere {
				want = append(want, mustDigest(t, added))
			}
			slices.Sort(want)
			if !slices.Equal(rep.Pushed, want) {
				t.Errorf("pushed %v, want %v (the config and any new layer)", rep.Pushed, want)
			}
			if slices.Contains(rep.Skipped, config) {
				t.Errorf("the config is reported both sent and found: %v", rep.Skipped)
			}
			got, err := remote.Image(dest.Ref)
			if err != nil {
				t.Fatal(err)
			}
			if d, want := mustDigestOf(t, got), mustDigestOf(t, next); d != want {
				t.Errorf("tag holds %s, want %s", d, want)
			}
			if err := validate.Image(got); err != nil {
				t.Error(err)
			}
		})
	}
}

// With a config per platform announced (ExpectConfigs), every platform's config goes into a
// session of its own opened while the layer was sent; sessions opened and not needed (more
// announced than came) are deleted.
func TestConfigsOfEveryPlatformIntoSpareSessions(t *testing.T) {
	ctx := context.Background()
	index := func(l v1.Layer, archs ...string) v1.ImageIndex {
		idx := mutate.IndexMediaType(empty.Index, "application/vnd.oci.image.index.v1+json")
		for _, a := range archs {
			img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{OS: "linux", Architecture: a, RootFS: v1.RootFS{Type: "layers"}})
			if err != nil {
				t.Fatal(err)
			}
			if img, err = mutate.AppendLayers(img, l); err != nil {
				t.Fatal(err)
			}
			idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: a}}})
		}
		return idx
	}
	archs := []string{"amd64", "arm64", "s390x"}
	for _, announced := range []int{3, 5} {
		reg := &sessions{h: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
		reg.reset()
		s := httptest.NewServer(reg)
		rc := registryclient.Config{Jobs: 4}
		dest, err := ParseDestination(strings.TrimPrefix(s.URL, "http://")+"/team/app:1", rc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Publish(ctx, &build.Result{Index: index(randomLayer(t), archs...)}, []Destination{dest}, Options{Registry: rc}); err != nil {
			t.Fatal(err)
		}
		reg.reset()
		p, err := NewPublisher(ctx, []Destination{dest}, Options{Registry: rc})
		if err != nil {
			t.Fatal(err)
		}
		edited := randomLayer(t)
		p.Upload(edited)
		p.ExpectConfigs(announced) // the base is read after the first layer went: more sessions now
		next := index(edited, archs...)
		if _, err := p.Publish(ctx, &build.Result{Index: next}); err != nil {
			t.Fatal(err)
		}
		im, _ := next.IndexManifest()
		for _, d := range im.Manifests {
			img, _ := next.Image(d.Digest)
			if _, ok := reg.oneShot[mustConfigDigest(t, img)]; !ok {
				t.Errorf("announced %d: the %s config was not written in one request (closed %v)", announced, d.Platform.Architecture, reg.closed)
			}
		}
		if d := reg.dangling(); len(d) != 0 {
			t.Errorf("announced %d: sessions left open: %v", announced, d)
		}
		got, err := remote.Index(dest.Ref)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Index(got); err != nil {
			t.Errorf("announced %d: %v", announced, err)
		}
		s.Close()
	}
}
