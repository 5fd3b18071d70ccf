package buildkit

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/moby/buildkit/solver/errdefs"
	digest "github.com/opencontainers/go-digest"
)

// BuildError is a failed solve, with what a user needs to fix it.
type BuildError struct {
	// Step is the failing step as BuildKit names it, e.g. "[3/5] RUN pip install -r ...".
	Step string
	// Output holds the step's last output lines.
	Output []string
	// Source is the Dockerfile excerpt around the failing instruction, the line marked ">>>"
	// (a parse error in the user's Dockerfile, or the instruction of a failed step).
	Source string
	// Err is BuildKit's error.
	Err error
}

func (e *BuildError) Error() string {
	var b strings.Builder
	msg := strings.TrimPrefix(e.Err.Error(), "failed to solve: ")
	if e.Step != "" {
		fmt.Fprintf(&b, "build step %q failed: %s", e.Step, msg)
	} else {
		fmt.Fprintf(&b, "build failed: %s", msg)
	}
	if e.Source != "" {
		b.WriteString("\n")
		b.WriteString(strings.TrimRight(e.Source, "\n"))
	}
	if len(e.Output) > 0 {
		fmt.Fprintf(&b, "\nlast %d lines of its output:\n", len(e.Output))
		for _, l := range e.Output {
			b.WriteString("  " + l + "\n")
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

func (e *BuildError) Unwrap() error { return e.Err }

// buildError explains a solve error with the failing step, its output and the Dockerfile line.
func buildError(err error, rec *recorder) error {
	be := &BuildError{Err: err}
	if srcs := errdefs.Sources(err); len(srcs) > 0 {
		var b bytes.Buffer
		if perr := srcs[len(srcs)-1].Print(&b); perr == nil {
			be.Source = b.String()
		}
	}
	var dig digest.Digest
	var ve *errdefs.VertexError
	if errors.As(err, &ve) && ve.Vertex != nil {
		dig = digest.Digest(ve.Digest)
	} else if d, ok := rec.failed(); ok {
		dig = d
	}
	if dig != "" {
		if name, lines, ok := rec.vertex(dig); ok {
			be.Step, be.Output = name, lines
		}
	}
	return be
}
