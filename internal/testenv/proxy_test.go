package testenv

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestClassify(t *testing.T) {
	const d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		method, url string
		want        Request
	}{
		{"GET", "/v2/", Request{Kind: Ping}},
		{"GET", "/v2/_catalog?n=10", Request{Kind: Catalog}},
		{"HEAD", "/v2/a/b/blobs/" + d, Request{Kind: BlobHead, Repo: "a/b", Digest: d}},
		{"GET", "/v2/a/blobs/" + d, Request{Kind: BlobGet, Repo: "a", Digest: d}},
		{"DELETE", "/v2/a/blobs/" + d, Request{Kind: BlobDelete, Repo: "a", Digest: d}},
		{"POST", "/v2/a/b/blobs/uploads/?mount=" + d + "&from=base/x", Request{Kind: BlobMount, Repo: "a/b", Digest: d, From: "base/x"}},
		{"POST", "/v2/a/blobs/uploads/", Request{Kind: UploadStart, Repo: "a"}},
		{"POST", "/v2/a/blobs/uploads?digest=" + d, Request{Kind: UploadStart, Repo: "a", Digest: d}},
		{"PATCH", "/v2/a/blobs/uploads/3f2a-11?_state=x", Request{Kind: UploadPatch, Repo: "a"}},
		{"PUT", "/v2/a/blobs/uploads/3f2a-11?_state=x&digest=" + d, Request{Kind: UploadPut, Repo: "a", Digest: d}},
		{"GET", "/v2/a/blobs/uploads/3f2a-11", Request{Kind: UploadStatus, Repo: "a"}},
		{"DELETE", "/v2/a/blobs/uploads/3f2a-11", Request{Kind: UploadCancel, Repo: "a"}},
		{"HEAD", "/v2/a/b/c/manifests/latest", Request{Kind: ManifestHead, Repo: "a/b/c", Ref: "latest"}},
		{"GET", "/v2/a/manifests/" + d, Request{Kind: ManifestGet, Repo: "a", Ref: d, Digest: d}},
		{"PUT", "/v2/a/manifests/v1.2", Request{Kind: ManifestPut, Repo: "a", Ref: "v1.2"}},
		{"DELETE", "/v2/a/manifests/" + d, Request{Kind: ManifestDelete, Repo: "a", Ref: d, Digest: d}},
		{"GET", "/v2/a/b/tags/list?n=100", Request{Kind: TagList, Repo: "a/b"}},
		{"GET", "/v2/a/referrers/" + d, Request{Kind: Referrers, Repo: "a", Digest: d}},
		// a repository may be named like an API path element
		{"HEAD", "/v2/blobs/manifests/blobs/" + d, Request{Kind: BlobHead, Repo: "blobs/manifests", Digest: d}},
		{"GET", "/v2/manifests/manifests/latest", Request{Kind: ManifestGet, Repo: "manifests", Ref: "latest"}},
		{"GET", "/healthz", Request{Kind: Other}},
		{"POST", "/v2/a/manifests/latest", Request{Kind: Other, Repo: "a", Ref: "latest"}},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.url, func(t *testing.T) {
			u, err := url.Parse(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			got := Classify(tt.method, u)
			tt.want.Method, tt.want.URL = tt.method, u.RequestURI()
			if got != tt.want {
				t.Errorf("Classify(%s %s)\n got %+v\nwant %+v", tt.method, tt.url, got, tt.want)
			}
		})
	}
}

// registries runs f against the in-memory registry (always) and the real one (real tier).
func registries(t *testing.T, f func(t *testing.T, registry string, real bool)) {
	t.Run("memory", func(t *testing.T) { f(t, MemRegistry(t), false) })
	t.Run("real", func(t *testing.T) { f(t, Registry(t), true) })
}

// fastRetry keeps retried requests quick in tests.
var fastRetry = remote.WithRetryBackoff(remote.Backoff{Duration: 10 * time.Millisecond, Factor: 1, Steps: 3})

func push(t *testing.T, ref string, img v1.Image, opts ...remote.Option) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, append([]remote.Option{fastRetry}, opts...)...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

func digests(t *testing.T, img v1.Image, configToo bool) []string {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d.String())
	}
	if configToo {
		d, err := img.ConfigName()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d.String())
	}
	slices.Sort(out)
	return out
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

func TestProxyCountsPushes(t *testing.T) {
	registries(t, func(t *testing.T, registry string, real bool) {
		p := NewProxy(t, registry)
		repo := p.Addr() + "/" + Repo(t)
		ref := repo + ":1"
		img, err := random.Image(2048, 2)
		if err != nil {
			t.Fatal(err)
		}

		push(t, ref, img)
		if got, want := sorted(p.Uploaded()), digests(t, img, true); !slices.Equal(got, want) {
			p.Log(t)
			t.Errorf("first push uploaded %v, want the 2 layers and the config %v", got, want)
		}
		if n := p.Count(ManifestPut); n != 1 {
			t.Errorf("first push: %d manifest PUTs, want 1 (%s)", n, p.Summary())
		}
		for _, r := range p.Requests() {
			if r.Kind == UploadPatch && r.BodyBytes == 0 {
				t.Errorf("an upload PATCH carried no bytes: %s", r)
			}
		}

		p.Reset()
		push(t, ref, img)
		if up := p.Uploaded(); len(up) != 0 || p.Count(UploadStart, UploadPatch, UploadPut) != 0 {
			p.Log(t)
			t.Errorf("unchanged push uploaded %v (%s), want nothing", up, p.Summary())
		}

		// one new layer: exactly that layer, the new config and the manifest go up
		p.Reset()
		extra, err := random.Layer(1024, "application/vnd.oci.image.layer.v1.tar+gzip")
		if err != nil {
			t.Fatal(err)
		}
		img2, err := mutate.AppendLayers(img, extra)
		if err != nil {
			t.Fatal(err)
		}
		push(t, repo+":2", img2)
		old := digests(t, img, false)
		want := slices.DeleteFunc(digests(t, img2, true), func(d string) bool { return slices.Contains(old, d) })
		if got := sorted(p.Uploaded()); !slices.Equal(got, want) {
			p.Log(t)
			t.Errorf("push with one new layer uploaded %v, want the new layer and config %v", got, want)
		}
	})
}

func TestProxyCountsMounts(t *testing.T) {
	registries(t, func(t *testing.T, registry string, real bool) {
		p := NewProxy(t, registry)
		img, err := random.Image(2048, 2)
		if err != nil {
			t.Fatal(err)
		}
		base := p.Addr() + "/" + Repo(t) + "/base:1"
		push(t, base, img)

		// pushing an image read from repository A to repository B mounts A's layers
		baseRef, err := name.ParseReference(base)
		if err != nil {
			t.Fatal(err)
		}
		remoteImg, err := remote.Image(baseRef)
		if err != nil {
			t.Fatal(err)
		}
		p.Reset()
		push(t, p.Addr()+"/"+Repo(t)+"/app:1", remoteImg)
		layers := digests(t, img, false)
		if !real {
			// ggcr's in-memory registry keeps blobs per registry, not per repository: the HEADs
			// find them, so nothing is mounted or uploaded
			if p.Count(BlobMount, UploadStart, UploadPatch, UploadPut) != 0 || p.Count(BlobHead) != len(layers)+1 {
				t.Errorf("in-memory registry: %s, want only blob HEADs for the layers and config", p.Summary())
			}
			return
		}
		// docker-registry keeps blobs per repository: layers and config are mounted, not uploaded
		for _, r := range p.Requests() {
			if r.Kind == BlobMount && !strings.HasSuffix(r.From, "/base") {
				t.Errorf("mount from %q, want the base repository", r.From)
			}
		}
		if got, want := sorted(p.Mounted()), digests(t, img, true); !slices.Equal(got, want) {
			p.Log(t)
			t.Errorf("mounted %v, want the layers and config %v", got, want)
		}
		if up := p.Uploaded(); len(up) != 0 {
			t.Errorf("uploaded %v, want everything mounted", up)
		}
	})
}

func TestFailWithRetried(t *testing.T) {
	p := NewProxy(t, MemRegistry(t))
	p.SetHook(FailWith(OfKind(ManifestPut), 1, http.StatusServiceUnavailable, 0))
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	push(t, p.Addr()+"/"+Repo(t)+":1", img) // ggcr retries a 503

	var puts []Request
	for _, r := range p.Requests() {
		if r.Kind == ManifestPut {
			puts = append(puts, r)
		}
	}
	if len(puts) != 2 || !puts[0].Faulted || puts[0].Status != 503 || puts[1].Faulted || puts[1].Status != 201 {
		t.Errorf("manifest PUTs = %v, want a faulted 503, then a forwarded 201", puts)
	}
}

func TestFailWithPermanent(t *testing.T) {
	p := NewProxy(t, MemRegistry(t))
	p.SetHook(FailWith(OfKind(ManifestPut), 0, http.StatusBadRequest, 0))
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(p.Addr() + "/" + Repo(t) + ":1")
	if err != nil {
		t.Fatal(err)
	}
	err = remote.Write(ref, img, fastRetry)
	if err == nil || !strings.Contains(err.Error(), "fault injected") {
		t.Fatalf("push with every manifest PUT failing: err = %v, want the injected error", err)
	}
	p.SetHook(nil)
	if _, err := remote.Head(ref); err == nil {
		t.Errorf("the manifest reached the registry despite the fault")
	}
}

func TestFailWithRetryAfter(t *testing.T) {
	p := NewProxy(t, MemRegistry(t))
	p.SetHook(Hooks(
		FailWith(OfKind(TagList), 0, http.StatusNotFound, 0), // not reached: only pings are sent
		FailWith(OfKind(Ping), 1, http.StatusTooManyRequests, 2*time.Second),
	))
	for i, want := range []int{http.StatusTooManyRequests, http.StatusOK} {
		resp, err := http.Get("http://" + p.Addr() + "/v2/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("ping %d: status %d, want %d", i, resp.StatusCode, want)
		}
		if ra := resp.Header.Get("Retry-After"); (want == 429) != (ra == "2") {
			t.Errorf("ping %d: Retry-After %q", i, ra)
		}
	}
	if got := p.Requests(); len(got) != 2 || !got[0].Faulted || got[1].Faulted {
		t.Errorf("requests = %v, want a faulted ping then a forwarded one", got)
	}
}

func TestDropConnection(t *testing.T) {
	registries(t, func(t *testing.T, registry string, _ bool) { testDropConnection(t, registry) })
}

func testDropConnection(t *testing.T, registry string) {
	p := NewProxy(t, registry)
	p.SetHook(DropConnection(OfKind(UploadPatch), 1, 100))
	img, err := random.Image(64<<10, 1)
	if err != nil {
		t.Fatal(err)
	}
	push(t, p.Addr()+"/"+Repo(t)+":1", img) // ggcr retries the upload

	dropped := 0
	for _, r := range p.Requests() {
		if r.Faulted {
			dropped++
			if r.Kind != UploadPatch || r.Status != 0 || r.BodyBytes < 100 {
				t.Errorf("dropped request %s read %d bytes, want an unanswered PATCH after >= 100 bytes", r, r.BodyBytes)
			}
		}
	}
	if dropped != 1 {
		t.Errorf("%d dropped requests, want 1 (%s)", dropped, p.Summary())
	}
	if got, want := sorted(p.Uploaded()), digests(t, img, true); !slices.Equal(got, want) {
		t.Errorf("after the retry, uploaded %v, want %v", got, want)
	}
}

func TestStall(t *testing.T) {
	p := NewProxy(t, MemRegistry(t))
	p.SetHook(Stall(OfKind(Ping), 1, time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.Addr()+"/v2/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("stalled ping answered %d, want the client to time out", resp.StatusCode)
	}
	// the stall applies once: the next ping goes through
	resp, err := http.Get("http://" + p.Addr() + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("second ping: %d, want 200", resp.StatusCode)
	}
}
