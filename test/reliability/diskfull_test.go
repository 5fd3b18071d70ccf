package reliability_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fairing-dev/fairing/internal/testenv"
)

// tmpfs mounts a tmpfs of size (mount's syntax: "4m") at a new directory, unmounted when the
// test ends.
func tmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if testenv.Real() {
			t.Fatal("mounting a small tmpfs needs root")
		}
		t.Skip("mounting a small tmpfs needs root")
	}
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0755", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", dir, err, out)
		}
	})
	return dir
}

func remount(t *testing.T, dir, size string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,size="+size, dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s: %v\n%s", dir, err, out)
	}
}

// TestFullDisk gives the cache dir a 4 MiB tmpfs and a context whose layers need about 9 MiB:
// the build fails with a clear message naming the full place, leaves nothing half-written (the
// cache is sound, tmp/ empty, no tag), and once there is room a rerun gives the image an
// undisturbed build gives. A full temporary directory (TMPDIR) does not matter: builds write
// nothing there.
func TestFullDisk(t *testing.T) {
	reg := testenv.Registry(t)
	base := testenv.BusyboxBase(t)
	ctxDir := project(t, 3, 30, 2, 14<<20)
	dest := reg + "/" + testenv.Repo(t) + ":v1"
	args := []string{"--context", ctxDir, "--base", base, "--cmd", "/app/run.sh"}
	want := mustBuild(t, append(args, "--cache-dir", t.TempDir(), "--no-push")...)

	small := tmpfs(t, "4m")
	cache := filepath.Join(small, "cache")
	fullTmp := tmpfs(t, "64k")
	os.WriteFile(filepath.Join(fullTmp, "filler"), make([]byte, 128<<10), 0o644) // fills it (ENOSPC)
	if err := os.WriteFile(filepath.Join(fullTmp, "probe"), make([]byte, 4096), 0o644); err == nil {
		t.Fatal("the small tmpfs still takes data: it is not full")
	}
	os.Remove(filepath.Join(fullTmp, "probe"))
	env := runOpts{env: []string{"TMPDIR=" + fullTmp}}

	line := mustFail(t, env, []string{"no space left on device", cache}, append(args, "--cache-dir", cache, "--destination", dest)...)
	t.Logf("full cache dir: %s", line)
	st := checkCache(t, cache)
	if st.Tmp != 0 {
		t.Errorf("a failed build left %d files in the cache's tmp/", st.Tmp)
	}
	if present, _ := tagState(t, dest); present {
		t.Errorf("a build that failed for lack of space tagged %s", dest)
	}

	remount(t, small, "64m")
	r := run(t, env, append(args, "--cache-dir", cache, "--destination", dest)...)
	if r.Code != 0 || r.Meta.Digest != want.Meta.Digest {
		t.Fatalf("rerun with room: want %s\n%s", want.Meta.Digest, r)
	}
	if present, d := tagState(t, dest); !present || d != want.Meta.Digest {
		t.Errorf("%s: present=%v at %s", dest, present, d)
	}
	checkCache(t, cache)

	// A full disk under the metadata file: the build fails and says where.
	r = run(t, runOpts{}, append(args, "--cache-dir", t.TempDir(), "--no-push", "--digest-file", filepath.Join(fullTmp, "digest"))...)
	if r.Code != 1 || !strings.Contains(r.Stderr, "no space left on device") || !strings.Contains(r.Stderr, filepath.Join(fullTmp, "digest")) {
		t.Errorf("digest file on a full disk:\n%s", r)
	}
	if ents, _ := os.ReadDir(fullTmp); len(ents) > 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("a failed write left %v on the full disk", names)
	}
}
