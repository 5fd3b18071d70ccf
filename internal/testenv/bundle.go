package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// Bundle is an image unpacked once into a runtime bundle, so that a test can run several
// processes from it without paying for the unpacking each time (umoci takes about 9 s for the
// 155 MB python base). The runs share the root filesystem: what one run writes, the next one
// sees, and the test can read it on the host under Rootfs. Runs are sequential.
type Bundle struct {
	dir  string // the bundle: config.json and rootfs
	ref  string // what was unpacked, for messages
	spec []byte // config.json as umoci wrote it, restored before each run
}

// UnpackImage copies ref from a registry and unpacks it, as RunImage does, and returns the bundle
// for Bundle.Run. It is removed when the test ends. Needs root, skopeo, umoci and runc.
func UnpackImage(t testing.TB, ref string) *Bundle {
	t.Helper()
	NeedTools(t, "skopeo", "umoci", "runc")
	dir := t.TempDir()
	layout := filepath.Join(dir, "oci")
	command(t, "skopeo", "copy", "--quiet", "--insecure-policy", "--src-tls-verify=false",
		"docker://"+ref, "oci:"+layout+":run")
	b := &Bundle{dir: filepath.Join(dir, "bundle"), ref: ref}
	command(t, "umoci", "unpack", "--image", layout+":run", b.dir)
	spec, err := os.ReadFile(filepath.Join(b.dir, "config.json"))
	if err != nil {
		t.Fatalf("unpack %s: %v", ref, err)
	}
	b.spec = spec
	return b
}

// Rootfs returns the host path of the container's root filesystem.
func (b *Bundle) Rootfs() string { return filepath.Join(b.dir, "rootfs") }

// Run runs a container from the bundle as RunImage would run the image: the image's
// Entrypoint + Cmd unless WithArgs, its environment plus WithEnv, and so on. It returns the
// process's standard output and exit code.
func (b *Bundle) Run(t testing.TB, opts ...RunOption) (stdout string, exitCode int) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(b.dir, "config.json"), b.spec, 0o644); err != nil {
		t.Fatalf("reset the runtime bundle of %s: %v", b.ref, err)
	}
	return runBundle(t, b.dir, b.ref, opts)
}
