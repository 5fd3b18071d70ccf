package reliability_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fairing-dev/fairing/internal/testenv"
)

// killPoint is when a build is interrupted.
type killPoint int

const (
	atRandomTime  killPoint = iota // uniformly within an undisturbed build's duration
	midCompress                    // a layer blob is being written to the cache's tmp/
	midUpload                      // the registry is receiving the body of a big blob
	atManifestPut                  // the manifest is on its way: every blob is there
	killPoints
)

func (k killPoint) String() string {
	return [...]string{"at a random time", "mid compression", "mid upload", "at the manifest PUT"}[k]
}

// killRuns is how many interrupted builds TestKilledMidBuild runs (FAIRING_RELIABILITY_KILLS
// overrides the default of 32).
func killRuns(t *testing.T) int {
	if s := os.Getenv("FAIRING_RELIABILITY_KILLS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("FAIRING_RELIABILITY_KILLS=%q", s)
		}
		return n
	}
	return 32
}

// TestKilledMidBuild kills fairing-builder (SIGKILL, and SIGINT as Ctrl-C does) at chosen and
// at random points of builds over a context large enough to be caught mid-compression and
// mid-upload, many times, on one cache dir. After every kill: the cache holds no half-written
// entry, the destination tag is absent or complete, a SIGINT-ed build exited promptly with code
// 130 and a clean message, and the next run succeeds with the digest of an undisturbed build,
// uploading only what the registry still lacks.
func TestKilledMidBuild(t *testing.T) {
	reg := testenv.Registry(t)
	p := testenv.NewProxy(t, reg)
	base := p.Addr() + strings.TrimPrefix(testenv.BusyboxBase(t), reg)
	// 3 × 12 MiB files in layers of their own and 300 sources: about 40 MiB to hash, tar,
	// compress (to about 14 MiB) and upload.
	ctxDir := project(t, 7, 300, 3, 12<<20)
	common := []string{"--context", ctxDir, "--base", base, "--cmd", "/app/run.sh"}

	// The undisturbed build, cold, with its push: the digest every run must give, and how long
	// a build takes here (random kill times are drawn within it).
	want := mustBuild(t, append(common, "--cache-dir", t.TempDir(), "--destination", p.Addr()+"/"+testenv.Repo(t)+":ref")...)
	t.Logf("undisturbed cold build: %s in %v", want.Meta.Digest, want.Elapsed)

	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("seed %d", seed)
	cache := t.TempDir()
	n := killRuns(t)
	type tally struct{ runs, finished, caught int }
	tallies := map[string]*tally{}
	var sigintExits []time.Duration
	for i := 0; i < n; i++ {
		sig := []syscall.Signal{syscall.SIGKILL, syscall.SIGINT}[i%2]
		point := killPoint((i / 2) % int(killPoints))
		dropSomeOfCache(t, cache, rng, point == midCompress)
		dest := p.Addr() + "/" + testenv.Repo(t) + ":v" + strconv.Itoa(i)
		args := append(common, "--cache-dir", cache, "--destination", dest)
		label := fmt.Sprintf("run %d: %v %s", i, sig, point)

		p.Reset()
		killed := interrupt(t, p, cache, sig, point, want.Elapsed, rng, args)
		k := fmt.Sprintf("%v %s", sig, point)
		if tallies[k] == nil {
			tallies[k] = &tally{}
		}
		tallies[k].runs++
		switch {
		case killed.res.Code == 0:
			tallies[k].finished++ // the build ended before the signal
		default:
			tallies[k].caught++
		}
		if !killed.sent && killed.res.Code != 0 {
			t.Fatalf("%s: not signalled, yet failed:\n%s", label, killed.res)
		}
		if killed.sent {
			switch sig {
			case syscall.SIGKILL:
				if c := killed.res.Code; c != 128+int(syscall.SIGKILL) && c != 0 {
					t.Errorf("%s: exit %d", label, c)
				}
			case syscall.SIGINT:
				checkInterrupted(t, label, killed)
				if killed.res.Code == 130 && killed.res.Signal == 0 {
					sigintExits = append(sigintExits, killed.exitAfter)
				}
			}
		}
		accepted := p.Uploaded()
		checkCache(t, cache)
		if present, d := tagState(t, direct(p, reg, dest)); present && d != want.Meta.Digest {
			t.Errorf("%s: the tag points at %s, want absent or %s", label, d, want.Meta.Digest)
		}

		// The next run finishes the job.
		p.Reset()
		next := run(t, runOpts{}, args...)
		if next.Code != 0 || next.Meta.Digest != want.Meta.Digest {
			t.Fatalf("%s: the run after it: want %s\n%s", label, want.Meta.Digest, next)
		}
		if twice := intersect(p.Uploaded(), accepted); len(twice) > 0 {
			t.Errorf("%s: the next run uploaded again %v, which the registry had accepted", label, twice)
		}
		if present, d := tagState(t, direct(p, reg, dest)); !present || d != want.Meta.Digest {
			t.Errorf("%s: after the next run the tag is present=%v at %s", label, present, d)
		}
		st := checkCache(t, cache)
		t.Logf("%s: exit %d after %v (signal sent: %v); the next run pushed %d blobs; cache: %d records, %d blobs, %d tmp files",
			label, killed.res.Code, killed.res.Elapsed.Round(time.Millisecond), killed.sent, len(next.Meta.Pushed), st.Records, st.Blobs, st.Tmp)
		if t.Failed() {
			break
		}
	}
	var lines []string
	for k, v := range tallies {
		lines = append(lines, fmt.Sprintf("%s: %d runs, %d interrupted, %d finished first", k, v.runs, v.caught, v.finished))
	}
	t.Logf("kills:\n%s\nSIGINT → exit: %v", strings.Join(lines, "\n"), sigintExits)
}

// checkInterrupted checks a SIGINT-ed build: exit 130 with one clean line, promptly; or exit 0
// if it had finished anyway.
func checkInterrupted(t *testing.T, label string, k killed) {
	t.Helper()
	r := k.res
	if r.Code == 0 {
		return
	}
	if r.Signal == syscall.SIGINT {
		// Go's default action, before main installs the handler: a signal in the first
		// milliseconds ends the process as it ends any program, having done nothing yet.
		if k.exitAfter > 5*time.Second || r.Stderr != "" || r.Meta != nil {
			t.Errorf("%s: died of SIGINT %v after it, having written %q and metadata %s", label, k.exitAfter, r.Stderr, r.MetaRaw)
		}
		t.Logf("%s: SIGINT arrived during start-up, before the handler: the default action ended the process", label)
		return
	}
	if r.Code != 130 {
		t.Errorf("%s: exit %d, want 130\n%s", label, r.Code, r)
		return
	}
	// Bounded: generous for a loaded 2-core machine; a build that ignores the signal runs on for
	// the rest of its compression and upload.
	if k.exitAfter > 20*time.Second {
		t.Errorf("%s: exited %v after SIGINT", label, k.exitAfter)
	}
	if line := strings.TrimSpace(r.Stderr); line != "fairing-builder: interrupted" {
		t.Errorf("%s: stderr %q, want exactly \"fairing-builder: interrupted\"", label, r.Stderr)
	}
	if r.Stdout != "" || r.Meta != nil {
		t.Errorf("%s: an interrupted build printed %q and wrote metadata %s", label, r.Stdout, r.MetaRaw)
	}
}

// killed is an interrupted run.
type killed struct {
	res       result
	sent      bool          // the signal was sent while the process ran
	exitAfter time.Duration // from the signal to the exit
}

// interrupt starts a build with args and sends sig at point.
func interrupt(t *testing.T, p *testenv.Proxy, cache string, sig syscall.Signal, point killPoint, full time.Duration, rng *rand.Rand, args []string) killed {
	t.Helper()
	cmd, meta, stdout, stderr := command(t, runOpts{}, args...)
	var (
		mu     sync.Mutex
		sentAt time.Time
		done   bool
	)
	signal := func() {
		mu.Lock()
		defer mu.Unlock()
		if done || !sentAt.IsZero() {
			return
		}
		if err := cmd.Process.Signal(sig); err == nil {
			sentAt = time.Now()
		}
	}
	// The proxy's points: inside the hook, while the request is in flight.
	switch point {
	case midUpload:
		p.SetHook(func(w http.ResponseWriter, r *http.Request, req testenv.Request) bool {
			if req.Kind == testenv.UploadPatch {
				buf := make([]byte, cut)
				n, _ := io.ReadFull(r.Body, buf)
				if n == cut {
					signal()
				}
				r.Body = struct {
					io.Reader
					io.Closer
				}{io.MultiReader(bytes.NewReader(buf[:n]), r.Body), r.Body}
			}
			return false
		})
	case atManifestPut:
		p.SetHook(func(w http.ResponseWriter, r *http.Request, req testenv.Request) bool {
			if req.Kind == testenv.ManifestPut {
				signal()
			}
			return false
		})
	default:
		p.SetHook(nil)
	}
	defer p.SetHook(nil)

	old := tmpFiles(cache)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		switch point {
		case atRandomTime:
			select {
			case <-time.After(time.Duration(rng.Int64N(int64(full + full/10)))):
				signal()
			case <-exited:
			}
		case midCompress:
			tick := time.NewTicker(2 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-tick.C:
					if growing(cache, old, 256<<10) {
						signal()
						return
					}
				case <-exited:
					return
				}
			}
		}
	}()
	res := finish(t, cmd, meta, stdout, stderr, start)
	mu.Lock()
	done = true
	k := killed{res: res, sent: !sentAt.IsZero()}
	if k.sent {
		k.exitAfter = time.Since(sentAt)
	}
	mu.Unlock()
	close(exited)
	return k
}

// tmpFiles lists the cache's tmp/ (files an earlier SIGKILL left there).
func tmpFiles(cache string) map[string]bool {
	m := map[string]bool{}
	ents, _ := os.ReadDir(filepath.Join(cache, "tmp"))
	for _, e := range ents {
		m[e.Name()] = true
	}
	return m
}

// growing reports a new file in the cache's tmp/ that has reached size bytes: a blob being
// compressed into the cache.
func growing(cache string, old map[string]bool, size int64) bool {
	ents, _ := os.ReadDir(filepath.Join(cache, "tmp"))
	for _, e := range ents {
		if old[e.Name()] {
			continue
		}
		if fi, err := e.Info(); err == nil && fi.Size() >= size {
			return true
		}
	}
	return false
}

// dropSomeOfCache forgets a random half of the cached layers (record and blob), or all of them,
// and, now and then, the stat cache, so every interrupted build has layers to hash, write and
// upload.
func dropSomeOfCache(t *testing.T, cache string, rng *rand.Rand, all bool) {
	t.Helper()
	recs, _ := filepath.Glob(filepath.Join(cache, "layers", "*.json"))
	for _, rec := range recs {
		if !all && rng.IntN(2) == 0 {
			continue
		}
		var r cacheRecord
		if b, err := os.ReadFile(rec); err == nil && json.Unmarshal(b, &r) == nil {
			os.Remove(filepath.Join(cache, "blobs", "sha256", strings.TrimPrefix(r.Digest, "sha256:")))
		}
		os.Remove(rec)
	}
	if rng.IntN(3) == 0 {
		os.RemoveAll(filepath.Join(cache, "stat"))
	}
}
