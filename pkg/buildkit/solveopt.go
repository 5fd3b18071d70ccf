package buildkit

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/secrets/secretsprovider"
	"github.com/tonistiigi/fsutil"

	"github.com/fairing-dev/fairing/pkg/publish"
	"github.com/fairing-dev/fairing/pkg/registryclient"
)

// input is the prepared Dockerfile and context of one build.
type input struct {
	context    fsutil.FS // sent as the "context" local mount
	dockerfile fsutil.FS // sent as the "dockerfile" local mount
	filename   string    // the Dockerfile's name in it
	sharedKey  string    // names BuildKit's copy of the context, so the next transfer is a diff
}

// outputs finishes the file-based exports once the solve succeeded (or cleans them up).
type outputs struct {
	tarTemps map[string]string // final path → temp file being written
	layouts  map[string]*layoutOutput
}

// layoutOutput is one oci: directory: its tags, and the writer the exporter streams into.
type layoutOutput struct {
	tags []string
	w    *layoutWriter
}

func (out *outputs) abort() {
	for _, tmp := range out.tarTemps {
		os.Remove(tmp)
	}
}

// solveOpt maps Options onto BuildKit's SolveOpt: frontend attributes, local mounts, exports,
// cache and session attachables (credentials, secrets).
func solveOpt(ctx context.Context, o *Options, in input, secrets []secret) (client.SolveOpt, *outputs, error) {
	epoch, err := o.epoch()
	if err != nil {
		return client.SolveOpt{}, nil, err
	}
	attrs := map[string]string{
		"filename":                    in.filename,
		"build-arg:SOURCE_DATE_EPOCH": strconv.FormatInt(epoch.Unix(), 10),
	}
	if o.Target != "" {
		attrs["target"] = o.Target
	}
	for k, v := range o.BuildArgs {
		if k == "" || strings.ContainsAny(k, "= ") {
			return client.SolveOpt{}, nil, fmt.Errorf("build arg %q: not a valid name", k)
		}
		attrs["build-arg:"+k] = v
	}
	for k, v := range o.Labels {
		attrs["label:"+k] = v
	}
	if len(o.Platforms) > 0 {
		attrs["platform"] = strings.Join(o.Platforms, ",")
	}
	if o.NoCache {
		attrs["no-cache"] = ""
	}

	exports, out, err := exportEntries(o, epoch.Unix())
	if err != nil {
		return client.SolveOpt{}, nil, err
	}

	kc := o.Registry.Keychain
	if kc == nil {
		kc = registryclient.DefaultKeychain(ctx)
	}
	attachables := []session.Attachable{AuthProvider(kc)}
	if len(secrets) > 0 {
		srcs := make([]secretsprovider.Source, 0, len(secrets))
		for _, s := range secrets {
			srcs = append(srcs, secretsprovider.Source{ID: s.id, FilePath: s.file, Env: s.env})
		}
		store, err := secretsprovider.NewStore(srcs)
		if err != nil {
			return client.SolveOpt{}, nil, fmt.Errorf("secrets: %w", err)
		}
		attachables = append(attachables, secretsprovider.NewSecretProvider(store))
	}

	opt := client.SolveOpt{
		Frontend:      "dockerfile.v0",
		FrontendAttrs: attrs,
		LocalMounts:   map[string]fsutil.FS{"context": in.context, "dockerfile": in.dockerfile},
		SharedKey:     in.sharedKey,
		Exports:       exports,
		Session:       attachables,
	}
	if o.CacheRepo != "" {
		ref, err := cacheRef(o.CacheRepo)
		if err != nil {
			return client.SolveOpt{}, nil, err
		}
		imp := map[string]string{"ref": ref}
		exp := map[string]string{"ref": ref, "mode": "max", "image-manifest": "true", "oci-mediatypes": "true"}
		if r, _ := name.ParseReference(ref); r != nil && slices.Contains(o.insecure(), r.Context().RegistryStr()) {
			imp["registry.insecure"], exp["registry.insecure"] = "true", "true"
		}
		opt.CacheImports = []client.CacheOptionsEntry{{Type: "registry", Attrs: imp}}
		opt.CacheExports = []client.CacheOptionsEntry{{Type: "registry", Attrs: exp}}
	}
	return opt, out, nil
}

// insecure lists the registries that may be reached over plain HTTP: the registry
// configuration's and the connection's.
func (o *Options) insecure() []string {
	return append(append([]string(nil), o.Registry.Insecure...), o.InsecureRegistries...)
}

// cacheRef turns --cache-repo into a registry cache reference (a tag is required by BuildKit).
func cacheRef(s string) (string, error) {
	ref, err := name.ParseReference(s)
	if err != nil {
		return "", fmt.Errorf("cache repo %q: %w", s, err)
	}
	if _, ok := ref.(name.Digest); ok {
		return "", fmt.Errorf("cache repo %q: give a repository or a tag, not a digest", s)
	}
	if !strings.Contains(strings.TrimPrefix(s, ref.Context().RegistryStr()), ":") {
		return ref.Context().Tag("buildcache").String(), nil
	}
	return ref.String(), nil
}

// exportEntries makes one exporter per kind of destination, all with the same media types and
// compression so every destination receives the same digest.
func exportEntries(o *Options, epoch int64) ([]client.ExportEntry, *outputs, error) {
	ociTypes := !o.DockerMediaTypes
	common, err := o.Compression.attrs(ociTypes)
	if err != nil {
		return nil, nil, err
	}
	common["oci-mediatypes"] = strconv.FormatBool(ociTypes)
	for k, v := range o.Annotations {
		if k == "" || strings.ContainsAny(k, "=, ") {
			return nil, nil, fmt.Errorf("annotation %q: not a valid key", k)
		}
		common["annotation."+k] = v
	}
	if o.RewriteTimestamp {
		common["rewrite-timestamp"] = "true"
	}
	common["source-date-epoch"] = strconv.FormatInt(epoch, 10)
	with := func(extra map[string]string) map[string]string {
		m := make(map[string]string, len(common)+len(extra))
		for k, v := range common {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}

	var names, layoutDirs []string
	out := &outputs{tarTemps: map[string]string{}, layouts: map[string]*layoutOutput{}}
	var exports []client.ExportEntry
	for _, d := range o.Destinations {
		switch d.Kind {
		case publish.Registry:
			names = append(names, d.Ref.Name())
		case publish.Layout:
			dir := filepath.Clean(d.Path)
			if out.layouts[dir] == nil {
				out.layouts[dir] = &layoutOutput{}
				layoutDirs = append(layoutDirs, dir)
			}
			out.layouts[dir].tags = append(out.layouts[dir].tags, d.Tag)
		}
	}
	sort.Strings(names)
	if len(names) > 0 || (len(layoutDirs) == 0 && !hasKind(o.Destinations, publish.Tarball)) {
		// with no destination at all the image exporter still reports the digest, unpushed
		attrs := with(nil)
		if len(names) > 0 {
			attrs["name"] = strings.Join(dedupe(names), ",")
			attrs["push"] = "true"
			if anyInsecure(o.Destinations, o.insecure()) {
				attrs["registry.insecure"] = "true"
			}
		}
		exports = append(exports, client.ExportEntry{Type: client.ExporterImage, Attrs: attrs})
	}
	for _, dir := range layoutDirs {
		lo := out.layouts[dir]
		exports = append(exports, client.ExportEntry{
			Type:  client.ExporterOCI,
			Attrs: with(nil),
			Output: func(map[string]string) (io.WriteCloser, error) {
				w, err := newLayoutWriter(dir)
				lo.w = w
				return w, err
			},
		})
	}
	for _, d := range o.Destinations {
		if d.Kind != publish.Tarball {
			continue
		}
		final := d.Path
		if _, dup := out.tarTemps[final]; dup {
			continue
		}
		tmp := filepath.Join(filepath.Dir(final), "."+filepath.Base(final)+".partial")
		out.tarTemps[final] = tmp
		extra := map[string]string{}
		if len(names) > 0 {
			extra["name"] = strings.Join(dedupe(names), ",") // docker load tags the image with these
		}
		exports = append(exports, client.ExportEntry{
			Type:  client.ExporterDocker,
			Attrs: with(extra),
			Output: func(map[string]string) (io.WriteCloser, error) {
				return os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			},
		})
	}
	return exports, out, nil
}

func anyInsecure(ds []publish.Destination, insecure []string) bool {
	for _, d := range ds {
		if d.Kind == publish.Registry && slices.Contains(insecure, d.Ref.Context().RegistryStr()) {
			return true
		}
	}
	return false
}

func hasKind(ds []publish.Destination, k publish.Kind) bool {
	for _, d := range ds {
		if d.Kind == k {
			return true
		}
	}
	return false
}

func dedupe(ss []string) []string {
	out := ss[:0:0]
	for i, s := range ss {
		if i == 0 || s != ss[i-1] {
			out = append(out, s)
		}
	}
	return out
}
