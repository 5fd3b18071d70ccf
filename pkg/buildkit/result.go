package buildkit

import (
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"

	"github.com/fairing-dev/fairing/pkg/publish"
)

// Result is a finished build.
type Result struct {
	// Digest is the image's (or, for several platforms, the index's) manifest digest.
	Digest v1.Hash
	// Descriptor is the manifest's descriptor (media type, size, digest).
	Descriptor v1.Descriptor
	// ConfigDigest is the image config's digest (zero for an index).
	ConfigDigest v1.Hash
	// References are NAME@DIGEST for every registry destination, in destination order; the
	// CLI prints the first as its last line and writes it to --digest-file.
	References []name.Digest
	// Steps are the solve's steps with their cache status.
	Steps []Step
	// Warnings are BuildKit's build warnings (e.g. Dockerfile lint), one line each.
	Warnings []string
	// Dockerfile is the Dockerfile that was built (generated or the user's).
	Dockerfile []byte
	// ExporterResponse is BuildKit's raw exporter response.
	ExporterResponse map[string]string
}

// Metadata is the content of --metadata-file, in buildctl's format: the exporter response, with
// values that are base64-encoded JSON decoded ("containerimage.descriptor", ...).
func (r *Result) Metadata() map[string]any {
	out := make(map[string]any, len(r.ExporterResponse))
	for k, v := range r.ExporterResponse {
		if dt, err := base64.StdEncoding.DecodeString(v); err == nil {
			var raw map[string]any
			if json.Unmarshal(dt, &raw) == nil {
				out[k] = raw
				continue
			}
		}
		out[k] = v
	}
	return out
}

// CachedSteps returns how many named steps came from the cache, of how many.
func (r *Result) CachedSteps() (cached, total int) {
	for _, s := range r.Steps {
		total++
		if s.Cached {
			cached++
		}
	}
	return cached, total
}

func newResult(resp map[string]string, dests []publish.Destination) (*Result, error) {
	r := &Result{ExporterResponse: resp}
	ds := resp[exptypes.ExporterImageDigestKey]
	if ds == "" {
		return nil, fmt.Errorf("buildkitd reported no image digest (exporter response: %v)", keys(resp))
	}
	h, err := v1.NewHash(ds)
	if err != nil {
		return nil, fmt.Errorf("image digest %q: %w", ds, err)
	}
	r.Digest = h
	if enc := resp[exptypes.ExporterImageDescriptorKey]; enc != "" {
		dt, err := base64.StdEncoding.DecodeString(enc)
		if err != nil {
			return nil, fmt.Errorf("image descriptor: %w", err)
		}
		if err := json.Unmarshal(dt, &r.Descriptor); err != nil {
			return nil, fmt.Errorf("image descriptor: %w", err)
		}
	}
	if cd := resp[exptypes.ExporterImageConfigDigestKey]; cd != "" {
		if r.ConfigDigest, err = v1.NewHash(cd); err != nil {
			return nil, fmt.Errorf("config digest %q: %w", cd, err)
		}
	}
	for _, d := range dests {
		if d.Kind == publish.Registry {
			r.References = append(r.References, d.Ref.Context().Digest(h.String()))
		}
	}
	return r, nil
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
