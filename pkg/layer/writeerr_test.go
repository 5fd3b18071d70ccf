package layer

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// failAfter accepts n bytes, then fails every write with err (a full disk under the blob).
type failAfter struct {
	n   int
	err error
}

func (w *failAfter) Write(p []byte) (int, error) {
	if len(p) <= w.n {
		w.n -= len(p)
		return len(p), nil
	}
	k := w.n
	w.n = 0
	return k, w.err
}

// A layer that cannot be written (the cache's disk is full) must not be reported as a file
// that cannot be read: the user would go looking at the wrong disk.
func TestWriteErrorsAreNotBlamedOnTheSource(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{"big.bin": strings.Repeat("x", 256<<10)})
	entries := collectHashed(t, root)
	err := writeTar(context.Background(), &failAfter{n: 8 << 10, err: syscall.ENOSPC}, entries, TarOptions{})
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("err = %v, want ENOSPC in the chain", err)
	}
	if src := filepath.Join(root, "big.bin"); strings.Contains(err.Error(), "read "+src) {
		t.Errorf("err = %q: blames reading %s for a failed write", err, src)
	}
	if !strings.Contains(err.Error(), "/app/big.bin") {
		t.Errorf("err = %q: should name the entry being written", err)
	}
}
