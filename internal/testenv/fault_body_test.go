package testenv

import (
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestDropMidBody(t *testing.T) {
	registries(t, func(t *testing.T, registry string, _ bool) {
		p := NewProxy(t, registry)
		// one 256 KiB layer and a config of a few hundred bytes: only the layer's upload is cut
		p.SetHook(DropMidBody(OfKind(UploadPatch), 1, 64<<10))
		img, err := random.Image(256<<10, 1)
		if err != nil {
			t.Fatal(err)
		}
		push(t, p.Addr()+"/"+Repo(t)+":1", img) // ggcr retries the upload

		var dropped []Request
		for _, r := range p.Requests() {
			if r.Faulted {
				dropped = append(dropped, r)
			}
		}
		if len(dropped) != 1 || dropped[0].Kind != UploadPatch || dropped[0].Status != 0 || dropped[0].BodyBytes <= 64<<10 {
			t.Errorf("dropped %v, want one unanswered PATCH after more than 64 KiB (%s)", dropped, p.Summary())
		}
		if got, want := sorted(p.Uploaded()), digests(t, img, true); !slices.Equal(got, want) {
			t.Errorf("uploaded %v, want %v (the small config forwarded whole, the layer retried)", got, want)
		}
	})
}

func TestLoseResponse(t *testing.T) {
	registries(t, func(t *testing.T, registry string, _ bool) {
		p := NewProxy(t, registry)
		p.SetHook(p.LoseResponse(OfKind(ManifestPut), 1))
		img, err := random.Image(512, 1)
		if err != nil {
			t.Fatal(err)
		}
		ref := Repo(t) + ":1"
		push(t, p.Addr()+"/"+ref, img) // ggcr retries the PUT it heard nothing about

		puts := 0
		for _, r := range p.Requests() {
			if r.Kind == ManifestPut {
				puts++
				if puts == 1 && (!r.Faulted || r.Status != 0) {
					t.Errorf("first manifest PUT %s, want it faulted without an answer", r)
				}
			}
		}
		if puts != 2 {
			t.Errorf("%d manifest PUTs, want the lost one and its retry (%s)", puts, p.Summary())
		}
		// the registry did store the first PUT: the tag is there, straight from the registry
		r, err := name.ParseReference(registry + "/" + ref)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := img.Digest()
		if d, err := remote.Head(r); err != nil || d.Digest != want {
			t.Errorf("tag after a lost answer: %v, %v; want %s", d, err, want)
		}
	})
}
