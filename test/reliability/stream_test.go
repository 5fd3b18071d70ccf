package reliability_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fairing-dev/fairing/internal/testenv"
)

// TestStreamedUploadFaults: a rebuild streams the layer whose content the destination has never
// seen while it is compressed (no HEAD first). A connection cut in the middle of that stream is
// retried from the cached blob, and the image is the undisturbed build's; cut every time, the
// build fails with a clear message and the tag still names the previous, complete image; a
// rerun then uploads only what is missing.
func TestStreamedUploadFaults(t *testing.T) {
	needBinary(t)
	reg := testenv.Registry(t)
	base := testenv.BusyboxBase(t)
	for _, tc := range []struct {
		name  string
		times int // 0: every time
		ok    bool
	}{
		{"cut once", 1, true},
		{"cut every time", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctxDir := project(t, 7, 20, 1, 12<<20)
			p := testenv.NewProxy(t, reg)
			base := p.Addr() + strings.TrimPrefix(base, reg)
			dest := p.Addr() + "/" + testenv.Repo(t) + ":v1"
			common := []string{"--context", ctxDir, "--base", base, "--cmd", "/app/run.sh"}
			args := append(common[:len(common):len(common)], "--cache-dir", t.TempDir())
			first := mustBuild(t, append(args, "--destination", dest)...)

			// New weights: their layer is new content, streamed while compressed.
			weights := filepath.Join(ctxDir, "models/weights0.bin")
			if err := os.WriteFile(weights, codeText(99, 12<<20), 0o644); err != nil {
				t.Fatal(err)
			}
			// (in a cache of its own: in the build's cache the layer would be found, not streamed)
			want := mustBuild(t, append(common, "--no-push", "--cache-dir", t.TempDir())...)
			var large string
			var size int64
			for _, l := range want.Meta.Layers {
				if l.Size > size {
					large, size = l.Digest, l.Size
				}
			}
			if size < 2*cut {
				t.Fatalf("the weights' layer is %d bytes: too small to cut at %d", size, cut)
			}

			p.Reset()
			p.SetHook(testenv.DropMidBody(testenv.OfKind(testenv.UploadPatch), tc.times, cut))
			got := run(t, runOpts{}, append(args, "--destination", dest)...)
			p.SetHook(nil)
			reqs := p.Requests()
			faulted := 0
			for _, r := range reqs {
				if r.Faulted {
					faulted++
				}
				if r.Kind == testenv.BlobHead && r.Digest == large && faulted == 0 {
					t.Errorf("the new layer %s was asked about before its first upload: it should stream", large)
				}
			}
			if faulted == 0 {
				t.Fatalf("no upload was cut: the test proves nothing\n%s", p.Summary())
			}
			present, d := tagState(t, direct(p, reg, dest))
			if tc.ok {
				if got.Code != 0 || got.Meta.Digest != want.Meta.Digest {
					t.Fatalf("the build should have got through one cut stream with the undisturbed digest %s:\n%s", want.Meta.Digest, got)
				}
				if !present || d != want.Meta.Digest {
					t.Errorf("tag present=%v at %s, want %s", present, d, want.Meta.Digest)
				}
				if !slices.Contains(got.Meta.Pushed, large) {
					t.Errorf("the report's pushed blobs %v lack the new layer %s", got.Meta.Pushed, large)
				}
				return
			}
			line := lastLine(got.Stderr)
			t.Logf("exit %d in %v: %s", got.Code, got.Elapsed.Round(time.Millisecond), line)
			if got.Code != 1 || !strings.HasPrefix(line, "fairing-builder: ") || !strings.Contains(line, `push: layer "large: /app/models/weights0.bin": the registry closed the connection`) {
				t.Fatalf("want exit 1 with a one-line push error:\n%s", got)
			}
			if !present || d != first.Meta.Digest {
				t.Errorf("after the failed push the tag is present=%v at %s, want the previous image %s", present, d, first.Meta.Digest)
			}
			p.Reset()
			again := run(t, runOpts{}, append(args, "--destination", dest)...)
			if again.Code != 0 || again.Meta.Digest != want.Meta.Digest {
				t.Fatalf("rerun: want %s\n%s", want.Meta.Digest, again)
			}
			if up := p.Uploaded(); !slices.Contains(up, large) || len(up) > 2 {
				t.Errorf("the rerun uploaded %v, want the new layer %s and the config", up, large)
			}
		})
	}
}
