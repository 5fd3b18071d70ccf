package layer

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// endless makes a named pipe that a goroutine fills with zeros until the test ends: a file
// that never ends, as a multi-terabyte sparse file nearly is.
func endless(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "endless")
	if err := syscall.Mkfifo(p, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		w, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		defer w.Close()
		buf := make([]byte, 64<<10)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		// unblock a writer still waiting for a reader
		if r, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
			io.Copy(io.Discard, r)
			r.Close()
		}
		<-done
	})
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
