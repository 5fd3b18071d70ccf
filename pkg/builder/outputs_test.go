package builder

import (
	"os"
	"path/filepath"
	"testing"
)

// An output file that cannot be written (a full disk, a directory in the way) fails the build
// and leaves no temporary behind.
func TestWriteOutputsLeavesNoTemporary(t *testing.T) {
	dir := t.TempDir()
	inTheWay := filepath.Join(dir, "digest")
	if err := os.MkdirAll(filepath.Join(inTheWay, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := writeOutputs(Options{DigestFile: inTheWay}, &Report{Digest: "sha256:0"})
	if err == nil {
		t.Fatal("writing the digest over a non-empty directory succeeded")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("after a failed write %s holds %v, want only the directory that was in the way", dir, names)
	}
}
