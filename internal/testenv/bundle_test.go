package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBundleRunsSeveralProcesses(t *testing.T) {
	b := UnpackImage(t, BusyboxBase(t))
	out, code := b.Run(t, WithArgs("sh", "-c", "echo first > /tmp/mark; exit 4"))
	if out != "" || code != 4 {
		t.Errorf("first run: stdout %q, exit %d; want nothing, 4", out, code)
	}
	// the next run sees what the first wrote, and the image's own Cmd (/bin/sh) is back
	out, code = b.Run(t, WithEnv("X=y"), WithStdin(strings.NewReader("cat /tmp/mark; echo $X\n")))
	if out != "first\ny\n" || code != 0 {
		t.Errorf("second run: stdout %q, exit %d; want %q, 0", out, code, "first\ny\n")
	}
	if got, err := os.ReadFile(filepath.Join(b.Rootfs(), "tmp/mark")); err != nil || string(got) != "first\n" {
		t.Errorf("Rootfs()/tmp/mark = %q, %v", got, err)
	}
}
