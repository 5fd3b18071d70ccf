package buildkit_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/fairing-dev/fairing/internal/testenv"
	"github.com/fairing-dev/fairing/pkg/buildkit"
	"github.com/fairing-dev/fairing/pkg/layer"
)

// The exporter's compression options reach the pushed image, for every layer, whatever the
// layers buildkitd already holds from the other cases (same base, same WORKDIR step): zstd,
// eStargz (with the TOC digest annotation lazy pulling needs), gzip; and the images work.
func TestCompression(t *testing.T) {
	addr := testenv.Need(t, envBuildkitAddr)
	reg := testenv.Registry(t)
	base := testenv.BusyboxBase(t)
	conn := connect(t, addr)
	baseLayers := len(layerDigests(t, pull(t, base)))
	for _, tc := range []struct {
		c    buildkit.Compression
		want types.MediaType
		toc  bool
	}{
		{c: buildkit.Compression{Type: "zstd", Level: 3}, want: types.OCILayerZStd},
		{c: buildkit.Compression{Type: "estargz"}, want: types.OCILayer, toc: true},
		{c: buildkit.Compression{Type: "gzip", Level: 1}, want: types.OCILayer},
	} {
		t.Run(tc.c.Type, func(t *testing.T) {
			id := uniq(t)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			res, err := conn.Build(ctx, buildkit.Options{
				Spec: &buildkit.Spec{
					Base:    base,
					Sources: []layer.Source{{Dest: "/app/hello.sh", Data: []byte("#!/bin/sh\necho " + id + "\n"), Mode: 0o755}},
					Cmd:     []string{"/app/hello.sh"},
				},
				Compression:  tc.c,
				Destinations: dest(t, reg+"/"+testenv.Repo(t)+":1"),
				Progress:     buildkit.ProgressQuiet,
			})
			if err != nil {
				t.Fatal(err)
			}
			img := pull(t, res.References[0].String())
			m, err := img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Layers) != baseLayers+2 {
				t.Errorf("%d layers, want the base's %d + workdir + the file", len(m.Layers), baseLayers)
			}
			for i, l := range m.Layers {
				if l.MediaType != tc.want {
					t.Errorf("layer %d: media type %s, want %s", i, l.MediaType, tc.want)
				}
				if _, ok := l.Annotations["containerd.io/snapshot/stargz/toc.digest"]; ok != tc.toc {
					t.Errorf("layer %d: eStargz TOC annotation present=%v, want %v", i, ok, tc.toc)
				}
			}
			if got, ok := readFile(t, img, "/app/hello.sh"); !ok || got != "#!/bin/sh\necho "+id+"\n" {
				t.Errorf("/app/hello.sh = %q, %v", got, ok)
			}
			if tc.want == types.OCILayerZStd {
				return // umoci (Debian's 0.4.7), which RunImage uses, cannot unpack zstd layers
			}
			if out, code := testenv.RunImage(t, res.References[0].String()); code != 0 || out != id+"\n" {
				t.Errorf("the image printed %q (exit %d)", out, code)
			}
		})
	}
}
