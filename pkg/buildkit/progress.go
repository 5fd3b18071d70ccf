package buildkit

import (
	"bytes"
	"sync"
	"time"

	"github.com/moby/buildkit/client"
	digest "github.com/opencontainers/go-digest"
)

// Step is one vertex of the solve as BuildKit reported it.
type Step struct {
	// Name is BuildKit's name for the step, e.g. "[2/4] RUN pip install ..." or
	// "exporting to image".
	Name string
	// Cached is true when the step's result came from BuildKit's cache.
	Cached bool
	// Error is the step's error, if it failed.
	Error string
	// Duration is how long the step ran (zero when cached or not completed).
	Duration time.Duration
}

// maxLogLines is how many output lines per step are kept for error messages.
const maxLogLines = 20

type vertexRecord struct {
	Step
	started   *time.Time
	completed *time.Time
	lines     []string
	partial   []byte
}

// recorder keeps what the error message and the Result need from the status stream: step
// names, cache status and the last output lines of each step.
type recorder struct {
	mu    sync.Mutex
	byDig map[digest.Digest]*vertexRecord
	order []digest.Digest
}

func newRecorder() *recorder { return &recorder{byDig: map[digest.Digest]*vertexRecord{}} }

func (r *recorder) add(s *client.SolveStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range s.Vertexes {
		rec := r.get(v.Digest)
		rec.Name = v.Name
		rec.Cached = rec.Cached || v.Cached
		if v.Error != "" {
			rec.Error = v.Error
		}
		if v.Started != nil {
			rec.started = v.Started
		}
		if v.Completed != nil {
			rec.completed = v.Completed
		}
		if rec.started != nil && rec.completed != nil {
			rec.Duration = rec.completed.Sub(*rec.started)
		}
	}
	for _, l := range s.Logs {
		rec := r.get(l.Vertex)
		data := append(rec.partial, l.Data...)
		for {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				break
			}
			rec.lines = appendLine(rec.lines, string(bytes.TrimRight(data[:i], "\r")))
			data = data[i+1:]
		}
		rec.partial = append([]byte(nil), data...)
	}
}

func appendLine(lines []string, l string) []string {
	lines = append(lines, l)
	if len(lines) > maxLogLines {
		lines = append(lines[:0], lines[len(lines)-maxLogLines:]...)
	}
	return lines
}

func (r *recorder) get(d digest.Digest) *vertexRecord {
	rec, ok := r.byDig[d]
	if !ok {
		rec = &vertexRecord{}
		r.byDig[d] = rec
		r.order = append(r.order, d)
	}
	return rec
}

// steps returns the named steps in the order BuildKit first reported them.
func (r *recorder) steps() []Step {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Step
	for _, d := range r.order {
		if rec := r.byDig[d]; rec.Name != "" {
			out = append(out, rec.Step)
		}
	}
	return out
}

// vertex returns the name and last output lines of a step, by digest.
func (r *recorder) vertex(d digest.Digest) (name string, lines []string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.byDig[d]
	if !ok {
		return "", nil, false
	}
	lines = append([]string(nil), rec.lines...)
	if len(rec.partial) > 0 {
		lines = appendLine(lines, string(rec.partial))
	}
	return rec.Name, lines, true
}

// failed returns the last step that reported an error.
func (r *recorder) failed() (digest.Digest, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.order) - 1; i >= 0; i-- {
		if r.byDig[r.order[i]].Error != "" {
			return r.order[i], true
		}
	}
	return "", false
}
