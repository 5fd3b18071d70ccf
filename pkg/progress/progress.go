// Package progress shows upload progress: a bar on a terminal, nothing in CI or with --quiet
// (where logs must stay machine-readable).
package progress

import (
	"io"
	"os"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// IsTerminal reports whether w is an interactive terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())) && os.Getenv("CI") == ""
}

// Uploads returns a channel for go-containerregistry's progress updates and a function that
// waits until the channel was closed and the bar finished. With w nil the updates are drained
// silently.
func Uploads(w io.Writer, description string) (chan v1.Update, func()) {
	ch := make(chan v1.Update, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var bar *progressbar.ProgressBar
		for u := range ch {
			if w == nil || u.Total == 0 {
				continue
			}
			if bar == nil {
				bar = progressbar.NewOptions64(u.Total,
					progressbar.OptionSetWriter(w),
					progressbar.OptionSetDescription(description),
					progressbar.OptionShowBytes(true),
					progressbar.OptionUseIECUnits(true),
					progressbar.OptionSetWidth(30),
					progressbar.OptionThrottle(100*time.Millisecond),
					progressbar.OptionClearOnFinish(),
				)
			}
			bar.ChangeMax64(u.Total)
			bar.Set64(u.Complete)
		}
		if bar != nil {
			bar.Finish()
		}
	}()
	return ch, func() { <-done }
}
