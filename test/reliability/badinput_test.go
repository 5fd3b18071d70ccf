package reliability_test

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fairing-dev/fairing/internal/testenv"
)

// badCase is a context (or flags) a build must refuse with a message holding want.
type badCase struct {
	name string
	// setup fills the context dir and returns the flags to add (the context itself by default).
	setup func(t *testing.T, dir string) []string
	want  []string
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// TestBadInputRefused: contexts and flags that cannot make a faithful image are refused with a
// one-line message that says what and where, before anything is pushed, and exit code 1.
func TestBadInputRefused(t *testing.T) {
	needBinary(t)
	hello := func(t *testing.T, dir string) {
		writeFiles(t, dir, map[string][]byte{"a.py": []byte("print(1)\n")})
	}
	withFiles := func(f func(t *testing.T, dir string)) func(t *testing.T, dir string) []string {
		return func(t *testing.T, dir string) []string { hello(t, dir); f(t, dir); return nil }
	}
	flags := func(args ...string) func(t *testing.T, dir string) []string {
		return func(t *testing.T, dir string) []string { hello(t, dir); return args }
	}
	cases := []badCase{
		{"symlink loop", withFiles(func(t *testing.T, dir string) {
			symlink(t, "b", filepath.Join(dir, "a"))
			symlink(t, "a", filepath.Join(dir, "b"))
		}), []string{"symlink", "is part of a loop", "fix or remove it, or exclude it in .dockerignore"}},
		{"symlink to itself", withFiles(func(t *testing.T, dir string) {
			symlink(t, "self", filepath.Join(dir, "self"))
		}), []string{"/self is part of a loop"}},
		{"absolute symlink out of the context", withFiles(func(t *testing.T, dir string) {
			symlink(t, "/etc/passwd", filepath.Join(dir, "passwd"))
		}), []string{"/passwd points outside the context (-> /etc/passwd)", "replace it with the file it points to"}},
		{"relative symlink out of the context", withFiles(func(t *testing.T, dir string) {
			os.Mkdir(filepath.Join(dir, "sub"), 0o755)
			symlink(t, "../../outside", filepath.Join(dir, "sub", "up"))
		}), []string{"/sub/up points outside the context (-> ../../outside)"}},
		{"symlink chain leaving the context", withFiles(func(t *testing.T, dir string) {
			symlink(t, "hop", filepath.Join(dir, "start"))
			symlink(t, filepath.Dir(dir), filepath.Join(dir, "hop"))
		}), []string{"points outside the context"}},
		{"name not UTF-8", withFiles(func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "bad\xff.py"), nil, 0o644)
		}), []string{`bad\xff.py" is not valid UTF-8 or contains a line break`, "rename it or exclude it in .dockerignore"}},
		{"name with a newline", withFiles(func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "two\nlines.py"), nil, 0o644)
		}), []string{`two\nlines.py" is not valid UTF-8 or contains a line break`}},
		{"name with a carriage return", withFiles(func(t *testing.T, dir string) {
			os.MkdirAll(filepath.Join(dir, "d\r"), 0o755)
		}), []string{`d\r" is not valid UTF-8 or contains a line break`}},
		{"named pipe", withFiles(func(t *testing.T, dir string) {
			if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
				t.Fatal(err)
			}
		}), []string{"/fifo is a named pipe, which an image layer cannot hold: exclude it in .dockerignore"}},
		{"socket", withFiles(func(t *testing.T, dir string) {
			l, err := net.Listen("unix", filepath.Join(dir, "sock"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
		}), []string{"/sock is a socket, which an image layer cannot hold"}},
		{"context is a file", func(t *testing.T, dir string) []string {
			hello(t, dir)
			return []string{"--context", filepath.Join(dir, "a.py")}
		}, []string{"a.py is a file, not a folder: give the folder that holds it with --context"}},
		{"context missing", flags("--context", "/nonexistent/fairing/context"), []string{"context /nonexistent/fairing/context does not exist"}},
		{"invalid .dockerignore pattern", withFiles(func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, ".dockerignore"), []byte("*.pyc\nsrc/[a-\n"), 0o644)
		}), []string{".dockerignore: invalid pattern \"src/[a-\""}},
		{"--dockerignore missing", flags("--dockerignore", "/nonexistent/.dockerignore"), []string{"--dockerignore", "/nonexistent/.dockerignore", "no such file"}},
		{"destination upper case", flags("--destination", "127.0.0.1:5000/Me/x:1"), []string{`invalid image reference "127.0.0.1:5000/Me/x:1"`}},
		{"destination with two tags", flags("--destination", "127.0.0.1:5000/me/x:a:b"), []string{"invalid image reference"}},
		{"destination with an empty path component", flags("--destination", "127.0.0.1:5000/a//b:1"), []string{"127.0.0.1:5000/a//b is not a valid repository name"}},
		{"destination starting with a dash", flags("--destination", "127.0.0.1:5000/-a/b:1"), []string{"is not a valid repository name"}},
		{"destination naming a digest", flags("--destination", "127.0.0.1:5000/me/x@sha256:"+strings.Repeat("0", 64)), []string{"names a digest, which is only known once the image is built"}},
		{"destination with a blank", flags("--destination", "me/x y:1"), []string{"invalid image reference"}},
		{"layout destination without a tag", flags("--destination", "oci:/tmp/layout"), []string{"an OCI layout destination is oci:DIR:TAG"}},
		{"tarball destination without a file", flags("--destination", "tar:"), []string{"a tarball destination is tar:FILE"}},
		{"invalid base", flags("--base", "Not A Ref", "--no-push"), []string{`base "Not A Ref": invalid image reference`}},
		{"platform without an architecture", flags("--platform", "linux", "--no-push"), []string{`invalid platform "linux": expected OS/ARCH[/VARIANT]`}},
		{"platform with an empty part", flags("--platform", "linux//v8", "--no-push"), []string{`invalid platform "linux//v8"`}},
		{"platform with a trailing slash", flags("--platform", "linux/amd64/", "--no-push"), []string{`invalid platform "linux/amd64/"`}},
		{"platform with a blank", flags("--platform", "linux/ amd64", "--no-push"), []string{`invalid platform "linux/ amd64"`}},
		{"platform with 4 parts", flags("--platform", "linux/arm64/v8/x", "--no-push"), []string{`invalid platform "linux/arm64/v8/x"`}},
		{"compression unknown", flags("--compression", "lz4", "--no-push"), []string{`unknown compression "lz4"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			args := append([]string{"--context", dir, "--cache-dir", t.TempDir()}, tc.setup(t, dir)...)
			if !hasFlag(args, "--destination") && !hasFlag(args, "--no-push") {
				args = append(args, "--no-push")
			}
			line := mustFail(t, runOpts{}, tc.want, args...)
			t.Logf("%s", line)
		})
	}
}

func hasFlag(args []string, f string) bool {
	for _, a := range args {
		if a == f {
			return true
		}
	}
	return false
}

// TestBadBaseAndPlatformsAgainstARegistry: bases and platforms that only a registry can refute.
func TestBadBaseAndPlatformsAgainstARegistry(t *testing.T) {
	reg := testenv.Registry(t)
	dir := t.TempDir()
	writeFiles(t, dir, map[string][]byte{"a.py": []byte("print(1)\n")})
	base := []string{"--context", dir, "--cache-dir", t.TempDir(), "--no-push"}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--base", reg + "/no/such:image"}, []string{"read base " + reg + "/no/such:image: not found (404): check the repository and tag"}},
		{[]string{"--base", "127.0.0.1:1/x:1"}, []string{"read base 127.0.0.1:1/x:1: cannot reach the registry: is it running and is the address right?"}},
		{[]string{"--base", testenv.BusyboxBase(t), "--platform", "linux/s390x"}, []string{"is linux/amd64 only: it cannot give linux/s390x"}},
		{[]string{"--base", testenv.MultiarchBase(t), "--platform", "linux/riscv64"}, []string{"has no platform linux/riscv64 (it has linux/amd64, linux/arm64/v8)"}},
	} {
		t.Logf("%s", mustFail(t, runOpts{}, tc.want, append(base, tc.args...)...))
	}
}

// nobody is the uid the permission tests run the builder as (the tests run as root, which
// reads everything).
const nobody = 65534

// TestUnreadableInput runs the builder as an unprivileged user on contexts it cannot fully
// read: each is refused with a message naming what cannot be read; what .dockerignore
// excludes is never touched, so excluding it makes the build work.
func TestUnreadableInput(t *testing.T) {
	needBinary(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to an unprivileged user")
	}
	// A tree nobody can walk down to.
	root := t.TempDir()
	for d := root; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	newContext := func(t *testing.T, name string) string {
		dir := filepath.Join(root, name)
		writeFiles(t, dir, map[string][]byte{"a.py": []byte("print(1)\n"), "secret/key.pem": []byte("key"), "private.txt": []byte("x")})
		return dir
	}
	cache := filepath.Join(root, "cache")
	os.Mkdir(cache, 0o755)
	os.Chown(cache, nobody, nobody)
	as := runOpts{uid: nobody}

	t.Run("unreadable file", func(t *testing.T) {
		dir := newContext(t, "file")
		os.Chmod(filepath.Join(dir, "private.txt"), 0)
		t.Log(mustFail(t, as, []string{"cannot read " + filepath.Join(dir, "private.txt") + ": permission denied", "exclude it in .dockerignore"},
			"--context", dir, "--cache-dir", cache, "--no-push"))
		// excluded: never opened
		writeFiles(t, dir, map[string][]byte{".dockerignore": []byte("private.txt\n")})
		if r := run(t, as, "--context", dir, "--cache-dir", cache, "--no-push"); r.Code != 0 {
			t.Errorf("with the unreadable file excluded:\n%s", r)
		}
	})
	t.Run("unreadable directory", func(t *testing.T) {
		dir := newContext(t, "dir")
		os.Chmod(filepath.Join(dir, "secret"), 0)
		t.Log(mustFail(t, as, []string{"cannot read directory " + filepath.Join(dir, "secret") + ": permission denied"},
			"--context", dir, "--cache-dir", cache, "--no-push"))
		writeFiles(t, dir, map[string][]byte{".dockerignore": []byte("secret\n")})
		if r := run(t, as, "--context", dir, "--cache-dir", cache, "--no-push"); r.Code != 0 {
			t.Errorf("with the unreadable directory excluded:\n%s", r)
		}
	})
	t.Run("unreadable context", func(t *testing.T) {
		dir := newContext(t, "ctx")
		os.Chmod(dir, 0o311) // enter, not list
		t.Log(mustFail(t, as, []string{"cannot read context " + dir + ": permission denied"}, "--context", dir, "--cache-dir", cache, "--no-push"))
		os.Chmod(dir, 0)
		t.Log(mustFail(t, as, []string{"cannot read context " + dir + ": permission denied"}, "--context", dir, "--cache-dir", cache, "--no-push"))
	})
	t.Run("unwritable cache dir", func(t *testing.T) {
		dir := newContext(t, "cachedir")
		t.Log(mustFail(t, as, []string{"create cache dir", filepath.Join(root, "root-owned"), "permission denied"},
			"--context", dir, "--cache-dir", filepath.Join(root, "root-owned", "cache"), "--no-push"))
	})
}

// TestLongNames: names longer than tar's classic limits (100 bytes for a name, 155 for a
// prefix, 100 for a link target) are stored with PAX headers, and the image runs and reads them.
func TestLongNames(t *testing.T) {
	reg := testenv.Registry(t)
	dir := t.TempDir()
	long := strings.Repeat("n", 200) + ".txt"                                                // one 204-byte name
	deep := strings.Repeat("deeper-directory-name/", 14) + "leaf-" + strings.Repeat("x", 90) // 400 bytes of path
	exactly := strings.Repeat("e", 100)                                                      // the old limit exactly
	writeFiles(t, dir, map[string][]byte{long: []byte("long name\n"), deep: []byte("deep path\n"), exactly: []byte("exactly 100\n")})
	symlink(t, deep, filepath.Join(dir, "link-with-a-long-target"))
	ref := reg + "/" + testenv.Repo(t) + ":v1"
	r := mustBuild(t, "--context", dir, "--base", testenv.BusyboxBase(t), "--cache-dir", t.TempDir(), "--destination", ref)

	img := image(t, ref)
	layers, _ := img.Layers()
	pax := 0
	for _, l := range layers[len(layers)-len(r.Meta.Layers):] {
		rc, _ := l.Uncompressed()
		tr := tar.NewReader(rc)
		for h, err := tr.Next(); err == nil; h, err = tr.Next() {
			if h.Format == tar.FormatPAX {
				pax++
			}
		}
		rc.Close()
	}
	if pax < 3 {
		t.Errorf("%d PAX headers, want at least the long name, the deep path and the long link target", pax)
	}
	out, code := testenv.RunImage(t, ref, testenv.WithArgs("/bin/sh", "-c",
		`cd /app && cat "`+long+`" "`+deep+`" "`+exactly+`" link-with-a-long-target && readlink link-with-a-long-target | wc -c`))
	if want := fmt.Sprintf("long name\ndeep path\nexactly 100\ndeep path\n%d\n", len(deep)+1); code != 0 || out != want {
		t.Errorf("in the image: exit %d, output %q, want %q", code, out, want)
	}
}

// TestHugeSparseFile builds a 2 GiB sparse file (holes read as zeros): it streams (the peak
// resident set stays small, whatever the file's size), the image holds it byte for byte, and a
// second build reads nothing. A Ctrl-C in the middle of hashing a 64 GiB file ends the build at
// once.
func TestHugeSparseFile(t *testing.T) {
	reg := testenv.Registry(t)
	dir := t.TempDir()
	huge := filepath.Join(dir, "data", "huge.bin")
	const size = 2<<30 + 4097 // past 2^31, and not a multiple of any block size
	os.MkdirAll(filepath.Dir(huge), 0o755)
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("BEGIN")
	f.WriteAt([]byte("END"), size-3)
	f.Close()
	writeFiles(t, dir, map[string][]byte{"run.sh": []byte("#!/bin/sh\nhead -c 5 /app/data/huge.bin; tail -c 3 /app/data/huge.bin\n")})
	wantSum := fileSHA256(t, huge)

	ref := reg + "/" + testenv.Repo(t) + ":v1"
	cache := t.TempDir()
	r := mustBuild(t, "--context", dir, "--base", testenv.BusyboxBase(t), "--cache-dir", cache, "--destination", ref, "--cmd", "/app/run.sh")
	t.Logf("2 GiB sparse file: built and pushed in %v, peak RSS %d MiB", r.Elapsed, r.MaxRSS>>20)
	if r.MaxRSS > 300<<20 {
		t.Errorf("peak RSS %d MiB for a 2 GiB file: it is not streamed", r.MaxRSS>>20)
	}

	// The registry's copy, streamed: the file is whole.
	img := image(t, ref)
	layers, _ := img.Layers()
	found := false
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for h, err := tr.Next(); err == nil; h, err = tr.Next() {
			if h.Name != "app/data/huge.bin" {
				continue
			}
			found = true
			hs := sha256.New()
			n, err := io.Copy(hs, tr)
			if err != nil || h.Size != size || n != size || hex.EncodeToString(hs.Sum(nil)) != wantSum {
				t.Errorf("in the image: header size %d, %d bytes read (%v), sha256 %x; want %d bytes, %s", h.Size, n, err, hs.Sum(nil), int64(size), wantSum)
			}
		}
		rc.Close()
	}
	if !found {
		t.Fatal("app/data/huge.bin is not in the image")
	}
	if out, code := testenv.RunImage(t, ref); code != 0 || out != "BEGINEND" {
		t.Errorf("run: exit %d, %q", code, out)
	}
	again := mustBuild(t, "--context", dir, "--base", testenv.BusyboxBase(t), "--cache-dir", cache, "--destination", ref, "--cmd", "/app/run.sh")
	if len(again.Meta.Pushed) != 0 || again.Meta.Digest != r.Meta.Digest {
		t.Errorf("unchanged rebuild: pushed %v, digest %s (was %s)", again.Meta.Pushed, again.Meta.Digest, r.Meta.Digest)
	}
	var meta struct {
		FilesHashed int `json:"filesHashed"`
	}
	json.Unmarshal(again.MetaRaw, &meta)
	if meta.FilesHashed != 0 {
		t.Errorf("unchanged rebuild read %d files again", meta.FilesHashed)
	}

	// Ctrl-C while hashing a 64 GiB file (a minute of reading).
	os.Truncate(huge, 64<<30)
	cmd, metaFile, stdout, stderr := command(t, runOpts{}, "--context", dir, "--cache-dir", t.TempDir(), "--no-push")
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	sent := time.Now()
	cmd.Process.Signal(os.Interrupt)
	res := finish(t, cmd, metaFile, stdout, stderr, start)
	after := time.Since(sent)
	t.Logf("Ctrl-C on a 64 GiB file: exit %d %v after the signal", res.Code, after)
	if res.Code != 130 || strings.TrimSpace(res.Stderr) != "fairing-builder: interrupted" {
		t.Errorf("want exit 130 and \"fairing-builder: interrupted\":\n%s", res)
	}
	if after > 20*time.Second {
		t.Errorf("exited %v after Ctrl-C", after)
	}
}

// TestEmptyContext: a context with no files (or whose .dockerignore excludes everything) is
// not an error: the image is the base plus an empty working directory (/app), as `COPY . /app`
// of an empty folder gives.
func TestEmptyContext(t *testing.T) {
	reg := testenv.Registry(t)
	for _, tc := range []struct {
		name  string
		files map[string][]byte
	}{
		{"empty folder", nil},
		{"everything ignored", map[string][]byte{".dockerignore": []byte("*\n"), "a.py": []byte("x")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tc.files)
			ref := reg + "/" + testenv.Repo(t) + ":v1"
			r := mustBuild(t, "--context", dir, "--base", testenv.BusyboxBase(t), "--cache-dir", t.TempDir(), "--destination", ref)
			if present, _ := tagState(t, ref); !present {
				t.Fatal("not pushed")
			}
			files := layerFiles(t, image(t, ref), len(r.Meta.Layers))
			if len(files) != 0 {
				t.Errorf("files in the added layers: %v", files)
			}
			out, code := testenv.RunImage(t, ref, testenv.WithArgs("/bin/sh", "-c", "pwd; ls -A /app | wc -l"))
			if code != 0 || out != "/app\n0\n" {
				t.Errorf("run: exit %d, %q", code, out)
			}
		})
	}
}
