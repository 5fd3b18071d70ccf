package reliability_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/fairing-dev/fairing/internal/testenv"
	"github.com/fairing-dev/fairing/pkg/build"
	"github.com/fairing-dev/fairing/pkg/publish"
	"github.com/fairing-dev/fairing/pkg/registryclient"
)

// TestConcurrentBuildsShareCacheAndRepo runs 4 builds at once that share one cache dir and one
// destination repository (different tags), in rounds: cold cache, then warm with some files
// changed. Their contexts share most layers (the same big files and sources) and differ in one
// file, so the processes race to write the same cache entries and upload the same blobs. Every
// build must succeed with the image a build alone gives, and the cache must stay sound.
func TestConcurrentBuildsShareCacheAndRepo(t *testing.T) {
	reg := testenv.Registry(t)
	base := testenv.BusyboxBase(t)
	repo := reg + "/" + testenv.Repo(t)
	cache := t.TempDir()
	const builds = 4

	// The shared part, copied into every context.
	shared := map[string][]byte{
		"run.sh":           []byte("#!/bin/sh\necho \"I am $(cat /app/id.txt)\"\n"),
		"requirements.txt": []byte("numpy\n"),
		"models/a.bin":     codeText(11, 10<<20),
		"models/b.bin":     codeText(12, 9<<20),
	}
	for i := 0; i < 120; i++ {
		shared[fmt.Sprintf("src/m%03d.py", i)] = codeText(uint64(100+i), 3000)
	}
	ctxs := make([]string, builds)
	for i := range ctxs {
		ctxs[i] = t.TempDir()
		writeFiles(t, ctxs[i], shared)
	}

	for round := 0; round < 2; round++ {
		// Each context's own file; in round 1 one shared source changes too.
		for i, dir := range ctxs {
			files := map[string][]byte{"id.txt": []byte(fmt.Sprintf("build %d of round %d", i, round))}
			if round == 1 {
				files["src/m007.py"] = []byte("edited = True\n")
			}
			writeFiles(t, dir, files)
		}
		// What each build gives alone, from a fresh cache.
		want := make([]string, builds)
		for i, dir := range ctxs {
			want[i] = mustBuild(t, "--context", dir, "--base", base, "--cmd", "/app/run.sh", "--cache-dir", t.TempDir(), "--no-push").Meta.Digest
		}

		results := make([]result, builds)
		var wg sync.WaitGroup
		for i, dir := range ctxs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = run(t, runOpts{}, "--context", dir, "--base", base, "--cmd", "/app/run.sh", "--cache-dir", cache,
					"--destination", fmt.Sprintf("%s:r%d-b%d", repo, round, i))
			}()
		}
		wg.Wait()

		for i, r := range results {
			if r.Code != 0 {
				t.Fatalf("round %d, build %d:\n%s", round, i, r)
			}
			if r.Meta.Digest != want[i] {
				t.Errorf("round %d, build %d: %s, built alone: %s", round, i, r.Meta.Digest, want[i])
			}
			tag := fmt.Sprintf("%s:r%d-b%d", repo, round, i)
			if present, d := tagState(t, tag); !present || d != want[i] {
				t.Errorf("%s: present=%v at %s, want %s", tag, present, d, want[i])
			}
			files := layerFiles(t, image(t, tag), len(r.Meta.Layers))
			if got, wantID := string(files["app/id.txt"]), fmt.Sprintf("build %d of round %d", i, round); got != wantID {
				t.Errorf("%s holds id.txt %q, want %q", tag, got, wantID)
			}
			cached := 0
			for _, l := range r.Meta.Layers {
				if l.Cached {
					cached++
				}
			}
			t.Logf("round %d, build %d: %v, %d of %d layers from the cache, pushed %d blobs, %d already there",
				round, i, r.Elapsed, cached, len(r.Meta.Layers), len(r.Meta.Pushed), len(r.Meta.Skipped))
		}
		st := checkCache(t, cache)
		if st.Tmp != 0 {
			t.Errorf("round %d: %d files left in the cache's tmp/ by builds that all succeeded", round, st.Tmp)
		}
	}

	// And the image runs.
	out, code := testenv.RunImage(t, repo+":r1-b2")
	if code != 0 || strings.TrimSpace(out) != "I am build 2 of round 1" {
		t.Errorf("run: exit %d, %q", code, out)
	}
	// the contexts are untouched by the builds
	if b, _ := os.ReadFile(filepath.Join(ctxs[0], "id.txt")); string(b) != "build 0 of round 1" {
		t.Errorf("context changed: %q", b)
	}
}

// TestConcurrentPushesOfOneImage publishes one new image to several tags of one repository at
// once, from separate publishers, round after round. Every publisher uploads the same blobs,
// and Debian's registry (distribution 2.8, filesystem storage) rewrites a blob's link file in
// place each time one of those uploads ends: a manifest PUT that reads the file at that moment
// is refused (DIGEST_INVALID, MANIFEST_BLOB_UNKNOWN) although the blob is there. Each push must
// still succeed and tag the whole image.
func TestConcurrentPushesOfOneImage(t *testing.T) {
	repo := testenv.Registry(t) + "/" + testenv.Repo(t)
	ctx := context.Background()
	const pushers, rounds = 8, 15
	rc := registryclient.Config{Jobs: 4}
	for round := range rounds {
		var layers []v1.Layer
		for range 3 {
			l, err := random.Layer(256<<10, types.OCILayer)
			if err != nil {
				t.Fatal(err)
			}
			layers = append(layers, l)
		}
		img, err := mutate.AppendLayers(empty.Image, layers...)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := img.Digest()
		errs := make([]error, pushers)
		var wg sync.WaitGroup
		for i := range pushers {
			wg.Go(func() {
				d, err := publish.ParseDestination(fmt.Sprintf("%s:r%d-p%d", repo, round, i), rc)
				if err == nil {
					_, err = publish.Publish(ctx, &build.Result{Image: img}, []publish.Destination{d}, publish.Options{Registry: rc})
				}
				errs[i] = err
			})
		}
		wg.Wait()
		for i, err := range errs {
			tag := fmt.Sprintf("%s:r%d-p%d", repo, round, i)
			if err != nil {
				t.Fatalf("round %d, %s: %v", round, tag, err)
			}
			if present, d := tagState(t, tag); !present || d != want.String() {
				t.Errorf("%s: present=%v at %s, want %s", tag, present, d, want)
			}
		}
	}
}
