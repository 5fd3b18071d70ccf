// Package reliability_test proves that fairing-builder survives faults, bad input and
// concurrency and leaks nothing: it runs the real binary against real registries (Debian's
// docker-registry, plain, behind a fault-injecting proxy, with htpasswd auth, with TLS), kills it,
// fills its disk, changes files under it, and checks what it leaves behind: tags, images, the
// cache, every byte it printed or wrote. docs/reliability.md tabulates what is tried here.
package reliability_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/klauspost/compress/zstd"

	"github.com/fairing-dev/fairing/internal/testenv"
)

// bin is the fairing-builder binary under test, built once by TestMain (not in -short mode:
// every test here is end to end).
var bin string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "fairing-reliability-")
	if err != nil {
		panic(err)
	}
	// readable by the unprivileged uid the permission tests run it as
	if err := os.Chmod(dir, 0o755); err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "fairing-builder")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/fairing-builder").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build fairing-builder: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	submitBin.Remove()
	os.Exit(code)
}

// needBinary skips in -short mode, where TestMain builds nothing.
func needBinary(t *testing.T) {
	t.Helper()
	if testing.Short() || bin == "" {
		t.Skip("end-to-end: skipped in -short mode")
	}
}

// report is the part of --metadata-file the tests read.
type report struct {
	Digest string   `json:"digest"`
	Refs   []string `json:"refs"`
	Layers []struct {
		Name   string `json:"name"`
		Digest string `json:"digest"`
		Size   int64  `json:"size"`
		Cached bool   `json:"cached"`
		Origin string `json:"origin"`
	} `json:"layers"`
	Pushed  []string `json:"pushed"`
	Mounted []string `json:"mounted"`
	Skipped []string `json:"skipped"`
}

// result is one finished run of the binary.
type result struct {
	Args           []string
	Stdout, Stderr string
	Code           int
	Signal         syscall.Signal // the signal that ended the process, if one did (Code is 128+it)
	Elapsed        time.Duration
	MaxRSS         int64   // peak resident set, bytes
	Meta           *report // the --metadata-file, when the run wrote one
	MetaRaw        []byte
}

func (r result) String() string {
	return fmt.Sprintf("fairing-builder %s: exit %d after %v\nstdout: %s\nstderr: %s", strings.Join(r.Args, " "), r.Code, r.Elapsed.Round(time.Millisecond), r.Stdout, r.Stderr)
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// runOpts change how the binary is started.
type runOpts struct {
	env []string // added to the test's environment
	uid uint32   // run as this uid/gid when non-zero (the tests run as root)
}

// command prepares `fairing-builder build --builder append --metadata-file F args...`.
func command(t *testing.T, o runOpts, args ...string) (*exec.Cmd, string, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	needBinary(t)
	metaDir := t.TempDir()
	if o.uid != 0 {
		// t.TempDir's parent is private to root: the other user writes in a dir of its own
		var err error
		if metaDir, err = os.MkdirTemp("", "fairing-reliability-meta-"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(metaDir) })
		if err := os.Chown(metaDir, int(o.uid), int(o.uid)); err != nil {
			t.Fatal(err)
		}
	}
	meta := filepath.Join(metaDir, "meta.json")
	// The append builder is what these tests are about: with --builder auto a requirements.txt
	// that lists packages would send the build to BuildKit.
	cmd := exec.Command(bin, append([]string{"build", "--builder", "append", "--metadata-file", meta}, args...)...)
	cmd.Env = append(os.Environ(), o.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if o.uid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: o.uid, Gid: o.uid}}
	}
	return cmd, meta, &stdout, &stderr
}

// finish waits for cmd and collects its result.
func finish(t *testing.T, cmd *exec.Cmd, meta string, stdout, stderr *bytes.Buffer, start time.Time) result {
	t.Helper()
	err := cmd.Wait()
	r := result{Args: cmd.Args[4:], Stdout: stdout.String(), Stderr: stderr.String(), Elapsed: time.Since(start)}
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		r.Code = exitErr.ExitCode()
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			r.Signal = ws.Signal()
			r.Code = 128 + int(ws.Signal())
		}
	case err != nil:
		t.Fatalf("run fairing-builder: %v", err)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.MaxRSS = ru.Maxrss * 1024 // Linux reports KiB
	}
	if b, err := os.ReadFile(meta); err == nil {
		r.MetaRaw = b
		r.Meta = &report{}
		if err := json.Unmarshal(b, r.Meta); err != nil {
			t.Fatalf("metadata file of a run: %v\n%s", err, b)
		}
	}
	return r
}

// run runs fairing-builder build with args to the end.
func run(t *testing.T, o runOpts, args ...string) result {
	t.Helper()
	cmd, meta, stdout, stderr := command(t, o, args...)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return finish(t, cmd, meta, stdout, stderr, start)
}

// mustBuild runs a build that must succeed.
func mustBuild(t *testing.T, args ...string) result {
	t.Helper()
	r := run(t, runOpts{}, args...)
	if r.Code != 0 || r.Meta == nil {
		t.Fatalf("build failed:\n%s", r)
	}
	return r
}

// mustFail runs a build that must fail with exit code 1 and a one-line message on stderr that
// contains every want; it returns that line.
func mustFail(t *testing.T, o runOpts, want []string, args ...string) string {
	t.Helper()
	r := run(t, o, args...)
	line := lastLine(r.Stderr)
	if r.Code != 1 {
		t.Fatalf("want exit 1 and a message containing %q:\n%s", want, r)
	}
	if !strings.HasPrefix(line, "fairing-builder: ") {
		t.Errorf("the message is not one line starting with the program's name:\n%s", r)
	}
	for _, w := range want {
		if !strings.Contains(line, w) {
			t.Errorf("message %q lacks %q", line, w)
		}
	}
	if r.Stdout != "" {
		t.Errorf("a failed build printed on stdout (scripts read it): %q", r.Stdout)
	}
	return line
}

// --- contexts ---

var words = strings.Fields(`def return import from class self if else elif for while in not and or
	None True False numpy torch model data train loss optimizer batch epoch tensor config args
	print len range dict list str int float path os json yield lambda with as try except`)

// codeText is n bytes of code-like text from seed: it compresses like real source code
// (about 3:1), unlike random bytes (1:1) or repeated bytes (1000:1).
func codeText(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var b bytes.Buffer
	b.Grow(n + 64)
	for b.Len() < n {
		indent := rng.IntN(4) * 4
		b.WriteString(strings.Repeat(" ", indent))
		for i, k := 0, 3+rng.IntN(8); i < k; i++ {
			b.WriteString(words[rng.IntN(len(words))])
			if rng.IntN(5) == 0 {
				fmt.Fprintf(&b, "_%d", rng.IntN(1000))
			}
			b.WriteByte(" (),.:="[rng.IntN(7)])
		}
		b.WriteByte('\n')
	}
	return b.Bytes()[:n]
}

// writeFiles writes files (path → content) under dir, then dates everything an hour back, so the
// stat cache trusts it (files modified within the last seconds are re-read on purpose).
func writeFiles(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(p, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(full, content, mode); err != nil {
			t.Fatal(err)
		}
	}
	age(t, dir)
}

func age(t *testing.T, dir string) {
	t.Helper()
	old := time.Now().Add(-time.Hour)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink != 0 {
			return err // a symlink's own time is not stored (clamped to the epoch)
		}
		return os.Chtimes(p, old, old)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// project is a context: a run.sh entrypoint, requirements.txt, sources source files of about
// 2 KiB, and large files of largeSize bytes each (each gets a layer of its own at >= 8 MiB).
func project(t *testing.T, seed uint64, sources, large, largeSize int) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string][]byte{
		"run.sh":           []byte("#!/bin/sh\necho \"project ok: $(ls /app/src | wc -l) sources\"\n"),
		"requirements.txt": []byte("numpy==2.1\ntorch==2.5\n"),
	}
	for i := 0; i < sources; i++ {
		files[fmt.Sprintf("src/pkg%d/mod%03d.py", i%7, i)] = codeText(seed+uint64(i), 1024+int(seed+uint64(i))%2048)
	}
	for i := 0; i < large; i++ {
		files[fmt.Sprintf("models/weights%d.bin", i)] = codeText(seed+1000+uint64(i), largeSize)
	}
	writeFiles(t, dir, files)
	return dir
}

// --- registries, images, tags ---

// direct returns ref with the proxy's address replaced by the registry's, to look at what the
// registry holds without going through (and being counted by) the proxy.
func direct(p *testenv.Proxy, registry, ref string) string {
	return strings.Replace(ref, p.Addr(), registry, 1)
}

// tagState looks up ref (a tag) in the registry: absent, or present and pointing at an image
// that go-containerregistry's validate.Image finds complete and consistent (every blob there,
// digests, sizes and diffIDs right). It never tolerates a tag on an incomplete image.
func tagState(t *testing.T, ref string, opts ...remote.Option) (present bool, digest string) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(r, opts...)
	var te *transport.Error
	if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
		return false, ""
	}
	if err != nil {
		t.Fatalf("look up %s: %v", ref, err)
	}
	img, err := desc.Image()
	if err != nil {
		t.Fatalf("%s: %v", ref, err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("tag %s points at an incomplete or inconsistent image: %v", ref, err)
	}
	return true, desc.Digest.String()
}

// image reads ref from its registry.
func image(t *testing.T, ref string, opts ...remote.Option) v1.Image {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r, opts...)
	if err != nil {
		t.Fatalf("read %s: %v", ref, err)
	}
	return img
}

// layerFiles reads the regular files of an image's last n layers (what fairing added), as
// path → content; files larger than 64 MiB are read as their sha256.
func layerFiles(t *testing.T, img v1.Image, n int) map[string][]byte {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, l := range layers[max(0, len(layers)-n):] {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Typeflag != tar.TypeReg {
				continue
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			out[h.Name] = b
		}
		rc.Close()
	}
	return out
}

// --- the layer cache ---

var (
	hex64     = regexp.MustCompile(`^[0-9a-f]{64}$`)
	recordRe  = regexp.MustCompile(`^layers/[0-9a-f]{64}\.json$`)
	blobRe    = regexp.MustCompile(`^blobs/sha256/[0-9a-f]{64}$`)
	configRe  = regexp.MustCompile(`^meta/[0-9a-f]{64}$`)
	statRe    = regexp.MustCompile(`^stat/[0-9a-f]{32}\.gob$`)
	cacheDirs = []string{".", "layers", "blobs", "blobs/sha256", "meta", "stat", "tmp"}
)

// cacheRecord is the on-disk record of pkg/layer's cache (layers/<key>.json).
type cacheRecord struct {
	Digest      string `json:"digest"`
	DiffID      string `json:"diffID"`
	Size        int64  `json:"size"`
	Compression string `json:"compression"`
}

// cacheStats says what checkCache found.
type cacheStats struct{ Records, Blobs, Tmp int }

// checkCache fails the test unless the layer cache in dir is sound: every record parses and
// its blob is there with the recorded size, digest and (decompressed) diffID; every blob's and
// image config's and manifest's content matches its name; nothing but records, blobs, meta and stat files
// lies outside tmp/
// (where interrupted writes may leave temporary files, swept later).
func checkCache(t *testing.T, dir string) cacheStats {
	t.Helper()
	var st cacheStats
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			if !slices.Contains(cacheDirs, rel) {
				t.Errorf("cache: unexpected directory %s", rel)
			}
		case strings.HasPrefix(rel, "tmp/"):
			st.Tmp++
		case recordRe.MatchString(rel):
			st.Records++
			checkRecord(t, dir, rel)
		case blobRe.MatchString(rel):
			st.Blobs++
			if got := fileSHA256(t, p); got != filepath.Base(p) {
				t.Errorf("cache: blob %s holds content %s", rel, got)
			}
		case configRe.MatchString(rel):
			if got := fileSHA256(t, p); got != filepath.Base(p) {
				t.Errorf("cache: image config or manifest %s holds content %s", rel, got)
			}
		case statRe.MatchString(rel):
		default:
			t.Errorf("cache: stray file %s (a half-written entry left outside tmp/)", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk cache %s: %v", dir, err)
	}
	return st
}

func checkRecord(t *testing.T, dir, rel string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, rel))
	if err != nil {
		t.Fatal(err)
	}
	var r cacheRecord
	if err := json.Unmarshal(b, &r); err != nil {
		t.Errorf("cache: record %s does not parse (torn write?): %v\n%s", rel, err, b)
		return
	}
	hexd, ok := strings.CutPrefix(r.Digest, "sha256:")
	if !ok || !hex64.MatchString(hexd) {
		t.Errorf("cache: record %s has digest %q", rel, r.Digest)
		return
	}
	blob := filepath.Join(dir, "blobs", "sha256", hexd)
	f, err := os.Open(blob)
	if err != nil {
		t.Errorf("cache: record %s points at a missing blob: %v", rel, err)
		return
	}
	defer f.Close()
	fi, _ := f.Stat()
	if fi.Size() != r.Size {
		t.Errorf("cache: record %s says %d bytes, blob has %d", rel, r.Size, fi.Size())
	}
	var zr io.Reader = f
	switch r.Compression {
	case "gzip", "estargz":
		gz, err := gzip.NewReader(f)
		if err != nil {
			t.Errorf("cache: blob of %s: %v", rel, err)
			return
		}
		zr = gz
	case "zstd":
		zd, err := zstd.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		defer zd.Close()
		zr = zd
	}
	h := sha256.New()
	if _, err := io.Copy(h, zr); err != nil {
		t.Errorf("cache: blob of %s does not decompress: %v", rel, err)
		return
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != r.DiffID {
		t.Errorf("cache: record %s has diffID %s, its blob decompresses to %s", rel, r.DiffID, got)
	}
}

func fileSHA256(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// sorted returns a sorted copy.
func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// intersect returns the elements of a that are in b.
func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
