// Command buildkit benchmarks the BuildKit path (pkg/buildkit, generated Dockerfile) against
// plain `buildctl build` with a hand-written equivalent Dockerfile, on the same buildkitd and
// registry, in the same run: cold (empty buildkitd cache), unchanged, one source file changed.
//
// It needs a running buildkitd, buildctl, a registry and a base with python3 and pip; run.sh
// starts them with the test setup scripts. See README.md for what is measured and how to read it.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/buildkit/client"
	"github.com/moby/patternmatcher"

	"github.com/fairing-dev/fairing/pkg/buildkit"
	"github.com/fairing-dev/fairing/pkg/layer"
	"github.com/fairing-dev/fairing/pkg/publish"
	"github.com/fairing-dev/fairing/pkg/registryclient"
)

type config struct {
	addr, buildctl, registry, base, work, jsonOut string
	nonce                                         string // in repository names: every invocation pushes to empty repositories
	only, scenarios                               string
	files, runs                                   int
}

// sample is one timed build.
type sample struct {
	Tool       string  `json:"tool"`
	Scenario   string  `json:"scenario"`
	Run        int     `json:"run"`
	Seconds    float64 `json:"seconds"`
	DepsCached bool    `json:"deps_cached"` // the pip install step came from the cache
	Uploads    int     `json:"uploads"`     // blob uploads the registry received
	Digest     string  `json:"digest,omitempty"`
}

func main() {
	var c config
	flag.StringVar(&c.addr, "addr", os.Getenv("FAIRING_TEST_BUILDKIT_ADDR"), "buildkitd address")
	flag.StringVar(&c.buildctl, "buildctl", os.Getenv("FAIRING_TEST_BUILDCTL"), "buildctl binary (same version as buildkitd)")
	flag.StringVar(&c.registry, "registry", os.Getenv("FAIRING_TEST_REGISTRY"), "registry HOST:PORT")
	flag.StringVar(&c.base, "base", os.Getenv("FAIRING_TEST_PYTHON_BASE"), "base image with python3 and pip")
	work := filepath.Join(os.TempDir(), "fairing-bench-buildkit")
	if w := os.Getenv("FAIRING_TEST_WORK"); w != "" {
		work = filepath.Join(w, "bench-buildkit")
	}
	flag.StringVar(&c.work, "work", work, "scratch directory (its project/ and dockerfile/ are recreated)")
	flag.StringVar(&c.jsonOut, "json", "", "also write every sample as JSON to this file")
	flag.IntVar(&c.files, "files", 2000, "source files in the synthetic project")
	flag.IntVar(&c.runs, "runs", 3, "repetitions of every scenario (the median is reported)")
	flag.StringVar(&c.only, "tools", "fairing,buildctl,buildctl-repro", "tools to run, comma-separated")
	flag.StringVar(&c.scenarios, "scenarios", "cold,unchanged,one-file-changed", "scenarios to run, in this order, comma-separated")
	flag.Parse()
	for n, v := range map[string]string{"-addr": c.addr, "-buildctl": c.buildctl, "-registry": c.registry, "-base": c.base} {
		if v == "" {
			log.Fatalf("%s is required (or its FAIRING_TEST_* variable; run.sh sets them)", n)
		}
	}
	c.nonce = strconv.FormatInt(time.Now().Unix(), 36)
	if err := bench(context.Background(), c); err != nil {
		log.Fatal(err)
	}
}

func bench(ctx context.Context, c config) error {
	proj := filepath.Join(c.work, "project")
	dfDir := filepath.Join(c.work, "dockerfile")
	for _, d := range []string{proj, dfDir} {
		if err := os.RemoveAll(d); err != nil {
			return err
		}
	}
	size, err := genProject(proj, c.files)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dfDir, 0o755); err != nil {
		return err
	}
	// what a user would write by hand for the same image: requirements first, then the code
	handWritten := "FROM " + c.base + "\nWORKDIR /app\nENV FAIRING_RUNTIME=1\n" +
		"COPY requirements.txt /app/requirements.txt\nCOPY pkgs/ /app/pkgs/\n" +
		"RUN PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --no-cache-dir -r requirements.txt\n" +
		"COPY . /app/\nCMD [\"python3\", \"/app/main.py\"]\n"
	if err := os.WriteFile(filepath.Join(dfDir, "Dockerfile"), []byte(handWritten), 0o644); err != nil {
		return err
	}
	proxy, err := newCountingProxy(c.registry)
	if err != nil {
		return err
	}
	defer proxy.Close()
	log.Printf("project: %d source files, %.1f MB; base %s; %d runs", c.files, float64(size)/1e6, c.base, c.runs)
	// what a buildctl process pays before building: start, connect, one call
	var starts []float64
	for i := 0; i < 5; i++ {
		start := time.Now()
		if out, err := exec.CommandContext(ctx, c.buildctl, "--addr", c.addr, "debug", "workers").CombinedOutput(); err != nil {
			return fmt.Errorf("buildctl debug workers: %v: %s", err, out)
		}
		starts = append(starts, time.Since(start).Seconds())
	}
	log.Printf("buildctl process start + connect + one call: %.3fs (median of 5); fairing is measured in-process (connect included)", median(starts))

	conn, err := client.New(ctx, c.addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	prune := func() error {
		// an empty buildkitd cache: nothing of either tool's earlier builds
		ch := make(chan client.UsageInfo)
		go func() {
			for range ch {
			}
		}()
		return conn.Prune(ctx, ch, client.PruneAll)
	}

	tools := []struct {
		name string
		run  func(run int, scenario string) (sample, error)
	}{
		{"fairing", func(run int, scenario string) (sample, error) {
			return runOurs(ctx, c, proxy, proj, run, scenario)
		}},
		{"buildctl", func(run int, scenario string) (sample, error) {
			return runBuildctl(ctx, c, proxy, proj, dfDir, run, scenario, false)
		}},
		{"buildctl-repro", func(run int, scenario string) (sample, error) {
			return runBuildctl(ctx, c, proxy, proj, dfDir, run, scenario, true)
		}},
	}
	var selected []struct {
		name string
		run  func(run int, scenario string) (sample, error)
	}
	for _, t := range tools {
		if strings.Contains(","+c.only+",", ","+t.name+",") {
			selected = append(selected, t)
		}
	}
	tools = selected
	original, err := os.ReadFile(filepath.Join(proj, changedFile))
	if err != nil {
		return err
	}
	var samples []sample
	for run := 1; run <= c.runs; run++ {
		// rotate the order so no tool always goes first
		order := append(tools[run%len(tools):], tools[:run%len(tools)]...)
		for _, t := range order {
			// each tool's sequence starts from an empty buildkitd cache and the original project
			if err := prune(); err != nil {
				return fmt.Errorf("prune: %w", err)
			}
			if err := os.WriteFile(filepath.Join(proj, changedFile), original, 0o644); err != nil {
				return err
			}
			for _, scenario := range strings.Split(c.scenarios, ",") {
				if scenario == "one-file-changed" {
					if err := touchOneFile(proj, run); err != nil {
						return err
					}
				}
				s, err := t.run(run, scenario)
				if err != nil {
					return fmt.Errorf("%s %s run %d: %w", t.name, scenario, run, err)
				}
				log.Printf("%-15s %-17s run %d: %6.2fs deps cached=%-5v uploads=%d", s.Tool, s.Scenario, run, s.Seconds, s.DepsCached, s.Uploads)
				samples = append(samples, s)
			}
		}
	}
	report(os.Stdout, samples)
	if c.jsonOut != "" {
		b, _ := json.MarshalIndent(samples, "", "  ")
		return os.WriteFile(c.jsonOut, b, 0o644)
	}
	return nil
}

func runOurs(ctx context.Context, c config, proxy *countingProxy, proj string, run int, scenario string) (sample, error) {
	pm, err := patternmatcher.New([]string{"pkgs"})
	if err != nil {
		return sample{}, err
	}
	d, err := publish.ParseDestination(fmt.Sprintf("%s/bench/fairing-%s-%d:latest", proxy.host, c.nonce, run), registryclient.Config{})
	if err != nil {
		return sample{}, err
	}
	proxy.reset()
	start := time.Now()
	res, err := buildkit.Build(ctx, buildkit.Options{
		ConnectOptions: buildkit.ConnectOptions{Addr: c.addr},
		Spec: &buildkit.Spec{
			Base: c.base,
			Sources: []layer.Source{
				{Dest: "/app", Path: proj, Ignore: pm},
				{Dest: "/app/pkgs", Path: filepath.Join(proj, "pkgs"), Class: layer.ClassDeps},
			},
			Cmd: []string{"python3", "/app/main.py"},
		},
		Destinations: []publish.Destination{d},
		Progress:     buildkit.ProgressQuiet,
	})
	el := time.Since(start)
	if err != nil {
		return sample{}, err
	}
	s := sample{Tool: "fairing", Scenario: scenario, Run: run, Seconds: el.Seconds(), Uploads: proxy.count(), Digest: res.Digest.String()}
	for _, st := range res.Steps {
		if strings.Contains(st.Name, "pip install") {
			s.DepsCached = st.Cached
		}
	}
	return s, nil
}

func runBuildctl(ctx context.Context, c config, proxy *countingProxy, proj, dfDir string, run int, scenario string, repro bool) (sample, error) {
	tool := "buildctl"
	out := fmt.Sprintf("type=image,name=%s/bench/buildctl-%s-%d:latest,push=true", proxy.host, c.nonce, run)
	args := []string{"--addr", c.addr, "build", "--progress", "rawjson", "--frontend", "dockerfile.v0",
		"--local", "context=" + proj, "--local", "dockerfile=" + dfDir}
	if repro {
		// BuildKit's own way to reproducible layers: SOURCE_DATE_EPOCH + rewrite-timestamp
		tool = "buildctl-repro"
		out = fmt.Sprintf("type=image,name=%s/bench/buildctl-repro-%s-%d:latest,push=true,oci-mediatypes=true,rewrite-timestamp=true", proxy.host, c.nonce, run)
		args = append(args, "--opt", "build-arg:SOURCE_DATE_EPOCH=0")
	}
	args = append(args, "--output", out)
	proxy.reset()
	cmd := exec.CommandContext(ctx, c.buildctl, args...)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=") // buildctl forwards it when set
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	el := time.Since(start)
	if err != nil {
		return sample{}, fmt.Errorf("%v: %s", err, tail(stderr.String(), 20))
	}
	s := sample{Tool: tool, Scenario: scenario, Run: run, Seconds: el.Seconds(), Uploads: proxy.count()}
	// rawjson: one SolveStatus per line
	sc := bufio.NewScanner(&stderr)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var st client.SolveStatus
		if json.Unmarshal(sc.Bytes(), &st) != nil {
			continue
		}
		for _, v := range st.Vertexes {
			if strings.Contains(v.Name, "pip install") && v.Cached {
				s.DepsCached = true
			}
		}
	}
	return s, nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// genProject writes a deterministic Python project: n code files in packages, a
// requirements.txt naming a local package (installed offline), and the package.
func genProject(dir string, n int) (int64, error) {
	r := rand.New(rand.NewSource(1))
	var total int64
	write := func(p, content string) error {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		total += int64(len(content))
		return os.WriteFile(full, []byte(content), 0o644)
	}
	words := []string{"model", "data", "loss", "batch", "epoch", "tensor", "weight", "grad", "layer", "optim", "score", "value"}
	code := func(lines int) string {
		var b strings.Builder
		for i := 0; i < lines; i++ {
			a, c := words[r.Intn(len(words))], words[r.Intn(len(words))]
			fmt.Fprintf(&b, "def %s_%s_%d(x, y=%d):\n    return x * %d + y  # %s\n\n", a, c, i, r.Intn(1000), r.Intn(100), strings.Repeat(c, 1+r.Intn(4)))
		}
		return b.String()
	}
	if err := write("requirements.txt", "--no-index\n./pkgs/benchlib\n"); err != nil {
		return 0, err
	}
	if err := write("pkgs/benchlib/setup.py", "from setuptools import setup, find_packages\nsetup(name='benchlib', version='1.0', packages=find_packages())\n"); err != nil {
		return 0, err
	}
	for i := 0; i < 40; i++ {
		if err := write(fmt.Sprintf("pkgs/benchlib/benchlib/mod%02d.py", i), code(60)); err != nil {
			return 0, err
		}
	}
	if err := write("pkgs/benchlib/benchlib/__init__.py", "VERSION = '1.0'\n"); err != nil {
		return 0, err
	}
	if err := write("main.py", "import benchlib\nprint('benchlib', benchlib.VERSION)\n"); err != nil {
		return 0, err
	}
	for i := 0; i < n; i++ {
		if err := write(fmt.Sprintf("src/pkg%02d/mod%04d.py", i%40, i), code(20+r.Intn(60))); err != nil {
			return 0, err
		}
	}
	return total, nil
}

// changedFile is the source file the one-file-changed scenario edits.
const changedFile = "src/pkg07/mod0007.py"

func touchOneFile(dir string, run int) error {
	f, err := os.OpenFile(filepath.Join(dir, changedFile), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "# change %d\n", run)
	return err
}

// countingProxy forwards to the registry and counts blob uploads.
type countingProxy struct {
	host string
	srv  *http.Server
	mu   sync.Mutex
	n    int
}

func newCountingProxy(registry string) (*countingProxy, error) {
	target, err := url.Parse("http://" + registry)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &countingProxy{host: ln.Addr().String()}
	rp := httputil.NewSingleHostReverseProxy(target)
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.Contains(r.URL.Path, "/blobs/uploads/") {
			p.mu.Lock()
			p.n++
			p.mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	})}
	go p.srv.Serve(ln)
	return p, nil
}

func (p *countingProxy) reset()       { p.mu.Lock(); p.n = 0; p.mu.Unlock() }
func (p *countingProxy) count() int   { p.mu.Lock(); defer p.mu.Unlock(); return p.n }
func (p *countingProxy) Close() error { return p.srv.Close() }

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func report(w io.Writer, samples []sample) {
	type key struct{ tool, scenario string }
	times := map[key][]float64{}
	cached := map[key]int{}
	uploads := map[key][]float64{}
	for _, s := range samples {
		k := key{s.Tool, s.Scenario}
		times[k] = append(times[k], s.Seconds)
		uploads[k] = append(uploads[k], float64(s.Uploads))
		if s.DepsCached {
			cached[k]++
		}
	}
	fmt.Fprintln(w, "| scenario | fairing (s) | buildctl (s) | ratio | buildctl + same repro options (s) | ratio | pip step cached (fairing / buildctl / repro) | blob uploads (fairing / buildctl / repro) |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	for _, sc := range []string{"cold", "unchanged", "one-file-changed"} {
		f, b, r := median(times[key{"fairing", sc}]), median(times[key{"buildctl", sc}]), median(times[key{"buildctl-repro", sc}])
		n := len(times[key{"fairing", sc}])
		fmt.Fprintf(w, "| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %d/%d / %d/%d / %d/%d | %.0f / %.0f / %.0f |\n", sc, f, b, f/b, r, f/r,
			cached[key{"fairing", sc}], n, cached[key{"buildctl", sc}], n, cached[key{"buildctl-repro", sc}], n,
			median(uploads[key{"fairing", sc}]), median(uploads[key{"buildctl", sc}]), median(uploads[key{"buildctl-repro", sc}]))
	}
}
