package layer

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// endless makes a sparse file of 1 TiB: reading it to the end would take many minutes.
func endless(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "endless")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, 1<<40); err != nil {
		t.Skipf("no sparse file of 1 TiB here: %v", err)
	}
	return p
}

// cancelDuring runs f with a context canceled once f has had time to start reading, and fails
// the test if f has not returned a cancellation 30 s later (it would read on for as long as the
// file lasts: for a huge file, minutes after Ctrl-C).
func cancelDuring(t *testing.T, f func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- f(ctx) }()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("still reading 30 s after the cancellation")
	}
}

func TestHashingStopsWhenCanceled(t *testing.T) {
	e := Entry{Path: "app/huge.bin", Type: TypeFile, Mode: 0o644, Size: 1 << 40, src: fileOrigin(endless(t))}
	cancelDuring(t, func(ctx context.Context) error {
		_, err := HashEntries(ctx, []Entry{e}, nil, 1)
		return err
	})
}

func TestTarWriterStopsWhenCanceled(t *testing.T) {
	e := Entry{Path: "app/huge.bin", Type: TypeFile, Mode: 0o644, Size: 1 << 40, src: fileOrigin(endless(t))}
	cancelDuring(t, func(ctx context.Context) error {
		return writeTar(ctx, io.Discard, []Entry{e}, TarOptions{})
	})
}
