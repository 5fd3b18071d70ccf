package reliability_test

import (
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fairing-dev/fairing/internal/testenv"
)

// faultCase is one registry fault: a proxy hook, and what the build must do under it.
type faultCase struct {
	name string
	// hook makes the fault.
	hook func(f faultEnv) testenv.Hook
	args []string // more flags (--timeout)
	// ok: the build must get through (retries); else it must fail with a message holding want.
	ok   bool
	want []string
}

// faultEnv is what a fault hook may use.
type faultEnv struct {
	p *testenv.Proxy
	// large is the digest of the context's big layer, the one blob whose upload takes long
	// enough to be cut in the middle.
	large string
	// release ends stalls once the build has given up: the registry's handler would not
	// notice a client gone while the request body is unread.
	release <-chan struct{}
	stalls  *atomic.Int64
}

// stall holds the requests m matches until the client goes away or the test releases them,
// and then answers 503.
func (f faultEnv) stall(m testenv.Match) testenv.Hook {
	return func(w http.ResponseWriter, r *http.Request, req testenv.Request) bool {
		if !m(req) {
			return false
		}
		f.stalls.Add(1)
		select {
		case <-f.release:
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		return true
	}
}

// cut is how many bytes of the big layer are sent before a connection is cut; every other blob
// of the test context is smaller.
const cut = 512 << 10

func blobPutOf(digest string) testenv.Match {
	return func(r testenv.Request) bool { return r.Kind == testenv.UploadPut && r.Digest == digest }
}

// TestRegistryFaults injects faults between fairing-builder and a real registry. After each,
// the build either got through or failed with a clear one-line message, within bounds; in
// both cases the destination tag is absent or names a complete image (validate.Image); a rerun
// without the fault succeeds with the digest of an undisturbed build and uploads only the
// blobs the registry still lacks.
func TestRegistryFaults(t *testing.T) {
	reg := testenv.Registry(t)
	base := testenv.BusyboxBase(t)
	// 40 small sources in a few layers, a dependency layer, and one 12 MiB file (about 4 MiB
	// compressed) in a layer of its own: its upload is long enough to be cut in the middle.
	ctxDir := project(t, 1, 40, 1, 12<<20)

	cases := []faultCase{
		{name: "connection cut mid blob upload, once", ok: true,
			hook: func(f faultEnv) testenv.Hook {
				return testenv.DropMidBody(testenv.OfKind(testenv.UploadPatch), 1, cut)
			}},
		{name: "connection cut mid blob upload, every time", want: []string{"push:", "retries ran out"},
			hook: func(f faultEnv) testenv.Hook {
				return testenv.DropMidBody(testenv.OfKind(testenv.UploadPatch), 0, cut)
			}},
		{name: "connection cut mid manifest PUT, once", ok: true,
			hook: func(f faultEnv) testenv.Hook {
				return testenv.DropConnection(testenv.OfKind(testenv.ManifestPut), 1, 100)
			}},
		{name: "connection cut mid manifest PUT, every time", want: []string{"push:", "retries ran out"},
			hook: func(f faultEnv) testenv.Hook {
				return testenv.DropConnection(testenv.OfKind(testenv.ManifestPut), 0, 100)
			}},
		{name: "connection cut on blob HEAD, twice", ok: true,
			hook: func(f faultEnv) testenv.Hook {
				return testenv.DropConnection(testenv.OfKind(testenv.BlobHead), 2, 0)
			}},
		{name: "connection cut on blob HEAD, every time", want: []string{"push:", "retries ran out"},
			hook: func(f faultEnv) testenv.Hook {
				return testenv.DropConnection(testenv.OfKind(testenv.BlobHead), 0, 0)
			}},
		{name: "answer lost after the registry committed a blob", ok: true,
			hook: func(f faultEnv) testenv.Hook {
				return f.p.LoseResponse(blobPutOf(f.large), 1)
			}},
		{name: "answer lost after the registry stored the manifest", ok: true,
			hook: func(f faultEnv) testenv.Hook {
				return f.p.LoseResponse(testenv.OfKind(testenv.ManifestPut), 1)
			}},
		{name: "500 on blob PUTs, twice", ok: true,
			hook: func(f faultEnv) testenv.Hook {
				return testenv.FailWith(testenv.OfKind(testenv.UploadPut), 2, http.StatusInternalServerError, 0)
			}},
		{name: "502 on the big blob's PUT, every time", want: []string{"push:", "the registry failed (502) and retries ran out"},
			hook: func(f faultEnv) testenv.Hook {
				return testenv.FailWith(blobPutOf(f.large), 0, http.StatusBadGateway, 0)
			}},
		{name: "503 with Retry-After on manifest PUT, twice", ok: true,
			hook: func(f faultEnv) testenv.Hook {
				return testenv.FailWith(testenv.OfKind(testenv.ManifestPut), 2, http.StatusServiceUnavailable, time.Second)
			}},
		{name: "503 on manifest PUT, every time", want: []string{"push:", "the registry failed (503) and retries ran out"},
			hook: func(f faultEnv) testenv.Hook {
				return testenv.FailWith(testenv.OfKind(testenv.ManifestPut), 0, http.StatusServiceUnavailable, 0)
			}},
		{name: "429 with Retry-After on blob HEAD, 3 times", ok: true,
			hook: func(f faultEnv) testenv.Hook {
				return testenv.FailWith(testenv.OfKind(testenv.BlobHead), 3, http.StatusTooManyRequests, time.Second)
			}},
		{name: "429 with Retry-After on blob uploads, every time", want: []string{"push:", "rate limiting (429)"},
			hook: func(f faultEnv) testenv.Hook {
				return testenv.FailWith(testenv.OfKind(testenv.UploadStart), 0, http.StatusTooManyRequests, time.Second)
			}},
		{name: "registry stalls on uploads, --timeout 20s", want: []string{"gave up after --timeout 20s"}, args: []string{"--timeout", "20s"},
			hook: func(f faultEnv) testenv.Hook {
				return f.stall(testenv.OfKind(testenv.UploadPatch))
			}},
		{name: "registry stalls on the base manifest, --timeout 10s", want: []string{"gave up after --timeout 10s", "read base"}, args: []string{"--timeout", "10s"},
			hook: func(f faultEnv) testenv.Hook {
				return f.stall(testenv.OfKind(testenv.ManifestGet))
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testFault(t, reg, base, ctxDir, tc)
		})
	}
}

func testFault(t *testing.T, reg, base, ctxDir string, tc faultCase) {
	p := testenv.NewProxy(t, reg)
	base = p.Addr() + strings.TrimPrefix(base, reg)
	dest := p.Addr() + "/" + testenv.Repo(t) + ":v1"
	args := []string{"--context", ctxDir, "--base", base, "--cache-dir", t.TempDir(), "--cmd", "/app/run.sh"}

	// What an undisturbed build gives (the base's name, with the proxy's address, is part of
	// the image): its digest, and the digest of the big layer.
	want := mustBuild(t, append(args, "--no-push")...)
	large := want.Meta.Layers[0]
	for _, l := range want.Meta.Layers {
		if l.Size > large.Size {
			large = l
		}
	}
	if large.Size < 2*cut {
		t.Fatalf("the big layer is %d bytes: too small to cut its upload at %d", large.Size, cut)
	}

	p.Reset()
	release := make(chan struct{})
	var stalls atomic.Int64
	p.SetHook(tc.hook(faultEnv{p: p, large: large.Digest, release: release, stalls: &stalls}))
	got := run(t, runOpts{}, append(args, append(tc.args, "--destination", dest)...)...)
	p.SetHook(nil)
	close(release)
	first := p.Requests()
	faulted := 0
	for _, r := range first {
		if r.Faulted {
			faulted++
		}
	}
	t.Logf("%s: exit %d in %v, %d requests (%d faulted, %d stalled): %s\nstderr: %s", tc.name, got.Code, got.Elapsed.Round(time.Millisecond),
		len(first), faulted, stalls.Load(), p.Summary(), strings.TrimSpace(got.Stderr))
	if faulted == 0 && stalls.Load() == 0 {
		t.Fatalf("no fault was injected: the test proves nothing\n%s", p.Summary())
	}
	// Bounded: retries give up after a few backoffs (1 s, 3 s), stalls at --timeout.
	if got.Elapsed > 3*time.Minute {
		t.Errorf("the build took %v under the fault", got.Elapsed)
	}

	present, d := tagState(t, direct(p, reg, dest))
	if tc.ok {
		if got.Code != 0 {
			t.Fatalf("the build should have got through the fault by retrying:\n%s", got)
		}
		if got.Meta.Digest != want.Meta.Digest || lastLine(got.Stdout) != strings.TrimSuffix(dest, ":v1")+"@"+want.Meta.Digest {
			t.Errorf("built %s (stdout %q), want %s", got.Meta.Digest, got.Stdout, want.Meta.Digest)
		}
		if !present || d != want.Meta.Digest {
			t.Errorf("after a successful build the tag is present=%v at %s, want %s", present, d, want.Meta.Digest)
		}
	} else {
		line := lastLine(got.Stderr)
		if got.Code != 1 || !strings.HasPrefix(line, "fairing-builder: ") {
			t.Fatalf("want exit 1 with a one-line message:\n%s", got)
		}
		for _, w := range tc.want {
			if !strings.Contains(line, w) {
				t.Errorf("message %q lacks %q", line, w)
			}
		}
		if got.Stdout != "" || got.Meta != nil {
			t.Errorf("a failed build printed %q and wrote metadata %s", got.Stdout, got.MetaRaw)
		}
		if present && d != want.Meta.Digest {
			t.Errorf("after a failed build the tag points at %s, want absent or %s", d, want.Meta.Digest)
		}
	}

	// A rerun without the fault: the same image; only what is still missing is uploaded.
	var accepted []string
	for _, r := range first {
		if (r.Kind == testenv.UploadPut || r.Kind == testenv.UploadStart) && r.Status == http.StatusCreated && r.Digest != "" {
			accepted = append(accepted, r.Digest)
		}
	}
	p.Reset()
	again := run(t, runOpts{}, append(args, "--destination", dest)...)
	if again.Code != 0 || again.Meta.Digest != want.Meta.Digest {
		t.Fatalf("rerun after the fault: want %s\n%s", want.Meta.Digest, again)
	}
	if twice := intersect(p.Uploaded(), accepted); len(twice) > 0 {
		t.Errorf("the rerun uploaded again blobs the registry had accepted: %v", twice)
	}
	if !slices.Equal(sorted(again.Meta.Pushed), sorted(p.Uploaded())) {
		t.Errorf("the report says pushed %v, the registry accepted %v", again.Meta.Pushed, p.Uploaded())
	}
	if tc.ok && len(p.Uploaded()) != 0 {
		t.Errorf("after a successful build, the rerun uploaded %v", p.Uploaded())
	}
	if present, d := tagState(t, direct(p, reg, dest)); !present || d != want.Meta.Digest {
		t.Errorf("after the rerun the tag is present=%v at %s, want %s", present, d, want.Meta.Digest)
	}
}
