package buildkit

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/moby/buildkit/util/progress/progressui"

	"github.com/fairing-dev/fairing/pkg/publish"
	"github.com/fairing-dev/fairing/pkg/registryclient"
)

// Options is one BuildKit build. Exactly one of Spec (generate the Dockerfile) or
// ContextDir (the user's Dockerfile and context) is set.
type Options struct {
	ConnectOptions

	// Spec generates the Dockerfile from the preprocessors' sources.
	Spec *Spec
	// ContextDir is the build context of the user's Dockerfile, sent as a local mount; the
	// Dockerfile frontend applies its .dockerignore (or <Dockerfile>.dockerignore).
	ContextDir string
	// Dockerfile is the user's Dockerfile; default ContextDir/Dockerfile.
	Dockerfile string
	// Target is the stage to build (multi-stage Dockerfiles).
	Target string
	// BuildArgs are passed as build-arg:KEY.
	BuildArgs map[string]string
	// Labels are set on the image config.
	Labels map[string]string
	// Annotations are set on the image manifest (OCI annotations).
	Annotations map[string]string
	// Platforms builds for each platform ("linux/amd64,linux/arm64" style); several make an index.
	Platforms []string
	// NoCache ignores BuildKit's cache for this build.
	NoCache bool
	// Secrets are "id=ID,src=FILE" or "id=ID,env=VAR" (buildctl's --secret syntax), available to
	// RUN --mount=type=secret and to the generated install step; never stored in the image.
	Secrets []string

	// Destinations receive the image; none means build and report the digest without pushing.
	Destinations []publish.Destination
	// CacheRepo is a registry reference for BuildKit's cache (imported, and exported with
	// mode=max), so a build on another machine reuses layers. A reference without a tag gets
	// the tag "buildcache".
	CacheRepo string
	// Compression of the layers the exporter creates.
	Compression Compression
	// DockerMediaTypes writes Docker v2 media types instead of OCI ones (every exporter alike, so
	// registry, oci: and tar: destinations get the same digest).
	DockerMediaTypes bool
	// SourceDateEpoch is the build's timestamp: the config's and history's times, and, for a
	// generated Dockerfile, the file times in the layers of the copied files (so those layers
	// are the same for every checkout and machine). Nil means $SOURCE_DATE_EPOCH when set, else
	// the Unix epoch.
	SourceDateEpoch *time.Time
	// RewriteTimestamp also clamps the file times of every layer the build creates (RUN
	// layers, and the copies of a user's Dockerfile) to SourceDateEpoch, with BuildKit's
	// rewrite-timestamp. It costs a decompress and recompress of those layers on every export,
	// cached or not.
	RewriteTimestamp bool

	// Registry is how this process reaches registries (the append path's configuration): its
	// keychain answers buildkitd's credential requests (base pulls, pushes, cache), its
	// insecure hosts get plain-HTTP pushes, and it reads the base's config for the generated
	// Dockerfile. A zero value means Docker's config and credential helpers (plus the pod's
	// service account in a cluster).
	Registry registryclient.Config
	// Progress is the display mode; default auto (tty on a terminal, plain otherwise).
	Progress ProgressMode
	// ProgressOut receives the progress display; default os.Stderr.
	ProgressOut io.Writer
}

// ProgressMode is BuildKit's progress display mode.
type ProgressMode string

const (
	ProgressAuto  ProgressMode = "auto"
	ProgressTTY   ProgressMode = "tty"
	ProgressPlain ProgressMode = "plain"
	ProgressQuiet ProgressMode = "quiet"
	// ProgressJSON prints BuildKit's raw status as JSON lines (machine-readable).
	ProgressJSON ProgressMode = "rawjson"
)

func (m ProgressMode) display() (progressui.DisplayMode, error) {
	switch m {
	case "", ProgressAuto:
		return progressui.AutoMode, nil
	case ProgressTTY:
		return progressui.TtyMode, nil
	case ProgressPlain:
		return progressui.PlainMode, nil
	case ProgressQuiet:
		return progressui.QuietMode, nil
	case ProgressJSON:
		return progressui.RawJSONMode, nil
	}
	return "", fmt.Errorf("progress mode %q: want auto, tty, plain, quiet or rawjson", string(m))
}

// Compression is the compression of the image's layers.
//
// Every layer gets it (BuildKit's force-compression): otherwise a layer buildkitd already holds
// in another compression, from an earlier build with other options, would be reused as it is,
// and a gzip image could come out with zstd layers. Base layers already in the requested
// compression are left alone; others are converted once (buildkitd keeps the variant).
type Compression struct {
	// Type is gzip (default), zstd, estargz or uncompressed.
	Type string
	// Level is the compression level; 0 means the exporter's default.
	Level int
}

func (c Compression) attrs(ociTypes bool) (map[string]string, error) {
	a := map[string]string{}
	t := c.Type
	switch t {
	case "", "gzip":
		t = "gzip"
	case "zstd", "uncompressed":
	case "estargz":
	default:
		return nil, fmt.Errorf("compression %q: want gzip, zstd, estargz or uncompressed", c.Type)
	}
	if (t == "zstd" || t == "estargz") && !ociTypes {
		return nil, fmt.Errorf("compression %s needs OCI media types; drop the Docker media types option", t)
	}
	a["compression"] = t
	if c.Level != 0 {
		a["compression-level"] = strconv.Itoa(c.Level)
	}
	a["force-compression"] = "true"
	return a, nil
}

// secret is one parsed --secret.
type secret struct {
	id, file, env string
}

func parseSecret(s string) (secret, error) {
	r := csv.NewReader(strings.NewReader(s))
	fields, err := r.Read()
	if err != nil {
		return secret{}, fmt.Errorf("secret %q: %w", s, err)
	}
	var out secret
	typ := ""
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return secret{}, fmt.Errorf("secret %q: %q is not key=value (want id=ID,src=FILE or id=ID,env=VAR)", s, f)
		}
		switch strings.ToLower(k) {
		case "id":
			out.id = v
		case "src", "source":
			out.file = v
		case "env":
			out.env = v
		case "type":
			if v != "file" && v != "env" {
				return secret{}, fmt.Errorf("secret %q: type %q: want file or env", s, v)
			}
			typ = v
		default:
			return secret{}, fmt.Errorf("secret %q: unknown key %q (want id, src or env)", s, k)
		}
	}
	if typ == "env" && out.env == "" {
		out.env, out.file = out.file, ""
	}
	if out.id == "" {
		switch {
		case out.env != "":
			out.id = out.env
		case out.file != "":
			return secret{}, fmt.Errorf("secret %q: no id given", s)
		}
	}
	if out.id == "" || (out.file == "" && out.env == "") {
		return secret{}, fmt.Errorf("secret %q: want id=ID,src=FILE or id=ID,env=VAR", s)
	}
	if out.file != "" {
		if _, err := os.Stat(out.file); err != nil {
			return secret{}, fmt.Errorf("secret %s: %w", out.id, err)
		}
	}
	if out.env != "" {
		if _, ok := os.LookupEnv(out.env); !ok {
			return secret{}, fmt.Errorf("secret %s: environment variable %s is not set", out.id, out.env)
		}
	}
	return out, nil
}

func (o *Options) validate() error {
	if (o.Spec == nil) == (o.ContextDir == "") {
		if o.Spec == nil {
			return errors.New("nothing to build: give a context directory (with a Dockerfile) or a generated-Dockerfile spec")
		}
		return errors.New("give either a generated-Dockerfile spec or a context directory, not both")
	}
	if o.Spec != nil && (o.Dockerfile != "" || o.Target != "") {
		return errors.New("a Dockerfile path and a target apply to the user's Dockerfile, not to a generated one")
	}
	if _, err := o.Progress.display(); err != nil {
		return err
	}
	return nil
}

func (o *Options) epoch() (time.Time, error) {
	if o.SourceDateEpoch != nil {
		return o.SourceDateEpoch.UTC(), nil
	}
	if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since the Unix epoch", v)
		}
		return time.Unix(n, 0).UTC(), nil
	}
	return time.Unix(0, 0).UTC(), nil
}
