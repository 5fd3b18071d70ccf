package buildkit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/util/progress/progressui"
	"github.com/tonistiigi/fsutil"
	"golang.org/x/sync/errgroup"

	"github.com/fairing-dev/fairing/pkg/registryclient"
)

// Build connects to buildkitd (or starts a private one, see ConnectOptions), builds, exports to
// every destination and disconnects (stopping a private daemon).
func Build(ctx context.Context, o Options) (*Result, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	// read the base's user while buildkitd starts or answers: it is a registry round trip
	var lookup chan baseUserResult
	if o.Spec != nil && o.Spec.BaseUser == "" {
		lookup = make(chan baseUserResult, 1)
		go func() {
			u, err := baseUser(ctx, o.Spec.Base, o.Platforms, o.Registry)
			lookup <- baseUserResult{u, err}
		}()
	}
	co := o.ConnectOptions
	co.InsecureRegistries = o.insecure()
	conn, err := Connect(ctx, co)
	if err != nil {
		return nil, err
	}
	var warnings []string
	if lookup != nil {
		o, warnings = withBaseUser(o, <-lookup)
	}
	res, err := conn.build(ctx, o, warnings)
	if cerr := conn.Close(); cerr != nil && err == nil {
		return nil, fmt.Errorf("stop daemonless buildkitd: %w", cerr)
	}
	return res, err
}

// Dockerfile returns the Dockerfile Build would build for o, without building (the CLI's
// --print-dockerfile): the user's file as it is, or the generated one, with the base image's
// user read from the registry as Build does. The warnings say what could not be determined.
func Dockerfile(ctx context.Context, o Options) ([]byte, []string, error) {
	if err := o.validate(); err != nil {
		return nil, nil, err
	}
	var warnings []string
	if o.Spec != nil && o.Spec.BaseUser == "" {
		u, err := baseUser(ctx, o.Spec.Base, o.Platforms, o.Registry)
		o, warnings = withBaseUser(o, baseUserResult{u, err})
	}
	ids := make([]string, 0, len(o.Secrets))
	for _, s := range o.Secrets {
		sec, err := parseSecret(s)
		if err != nil {
			return nil, nil, err
		}
		ids = append(ids, sec.id)
	}
	_, data, err := prepare(ctx, &o, ids)
	return data, warnings, err
}

// Build runs one build on this connection (the connection options in o are ignored).
func (c *Conn) Build(ctx context.Context, o Options) (*Result, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	var warnings []string
	if o.Spec != nil && o.Spec.BaseUser == "" {
		u, err := baseUser(ctx, o.Spec.Base, o.Platforms, o.Registry)
		o, warnings = withBaseUser(o, baseUserResult{u, err})
	}
	return c.build(ctx, o, warnings)
}

type baseUserResult struct {
	user string
	err  error
}

// withBaseUser puts the base's user into the spec, or explains why the install step will
// check it when it runs.
func withBaseUser(o Options, r baseUserResult) (Options, []string) {
	if r.err != nil {
		return o, []string{fmt.Sprintf("could not read the base image's user (%v): the install step checks it when it runs", r.err)}
	}
	spec := *o.Spec
	spec.BaseUser = r.user
	o.Spec = &spec
	return o, nil
}

func (c *Conn) build(ctx context.Context, o Options, warnings []string) (*Result, error) {
	secrets := make([]secret, 0, len(o.Secrets))
	ids := make([]string, 0, len(o.Secrets))
	for _, s := range o.Secrets {
		sec, err := parseSecret(s)
		if err != nil {
			return nil, err
		}
		secrets = append(secrets, sec)
		ids = append(ids, sec.id)
	}
	in, dockerfile, err := prepare(ctx, &o, ids)
	if err != nil {
		return nil, err
	}
	opt, outs, err := solveOpt(ctx, &o, in, secrets)
	if err != nil {
		return nil, err
	}
	rec := newRecorder()
	resp, solveWarnings, err := c.solve(ctx, opt, rec, o.Progress, o.ProgressOut)
	if err != nil {
		outs.abort()
		return nil, buildError(err, rec)
	}
	res, err := newResult(resp.ExporterResponse, o.Destinations)
	if err != nil {
		outs.abort()
		return nil, err
	}
	res.Steps, res.Warnings, res.Dockerfile = rec.steps(), append(warnings, solveWarnings...), dockerfile
	if err := outs.finish(); err != nil {
		return nil, err
	}
	return res, nil
}

// solve runs the solve with BuildKit's progress display, recording steps for errors and results.
func (c *Conn) solve(ctx context.Context, opt client.SolveOpt, rec *recorder, mode ProgressMode, w io.Writer) (*client.SolveResponse, []string, error) {
	dm, err := mode.display()
	if err != nil {
		return nil, nil, err
	}
	if w == nil {
		w = os.Stderr
	}
	display, err := progressui.NewDisplay(w, dm)
	if err != nil {
		return nil, nil, fmt.Errorf("progress display: %w", err)
	}
	statusCh := make(chan *client.SolveStatus)
	displayCh := make(chan *client.SolveStatus)
	var resp *client.SolveResponse
	var warnings []string
	eg, ectx := errgroup.WithContext(ctx)
	eg.Go(func() error {
		var err error
		resp, err = c.Solve(ectx, nil, opt, statusCh) // closes statusCh
		return err
	})
	eg.Go(func() error {
		defer close(displayCh)
		for s := range statusCh {
			rec.add(s)
			displayCh <- s
		}
		return nil
	})
	eg.Go(func() error {
		// not ectx: the display finishes printing the failed step's output after an error
		ws, err := display.UpdateFrom(context.WithoutCancel(ctx), displayCh)
		for range displayCh { // keep draining if the display gave up
		}
		for _, wn := range ws {
			warnings = append(warnings, string(wn.Short))
		}
		return err
	})
	if err := eg.Wait(); err != nil {
		return nil, nil, err
	}
	return resp, warnings, nil
}

// baseUser reads the user a base image runs as from its config ("root" when unset), for the
// platform being built (the first, when several).
func baseUser(ctx context.Context, base string, platforms []string, rc registryclient.Config) (string, error) {
	ref, err := rc.ParseReference(base)
	if err != nil {
		return "", err
	}
	opts, err := rc.RemoteOptions(ctx)
	if err != nil {
		return "", err
	}
	p := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	if len(platforms) > 0 {
		pp, err := v1.ParsePlatform(platforms[0])
		if err != nil {
			return "", fmt.Errorf("platform %q: %w", platforms[0], err)
		}
		p = *pp
	}
	img, err := remote.Image(ref, append(opts, remote.WithPlatform(p))...)
	if err != nil {
		return "", registryclient.Explain(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return "", registryclient.Explain(err)
	}
	if cf.Config.User == "" {
		return "root", nil
	}
	return cf.Config.User, nil
}

// prepare resolves the Dockerfile and context: the user's as they are, or a generated
// Dockerfile and the planned sources served from memory and the user's files.
func prepare(ctx context.Context, o *Options, secretIDs []string) (input, []byte, error) {
	if o.Spec == nil {
		ctxDir, err := filepath.Abs(o.ContextDir)
		if err != nil {
			return input{}, nil, err
		}
		if fi, err := os.Stat(ctxDir); err != nil || !fi.IsDir() {
			return input{}, nil, fmt.Errorf("build context %s is not a directory", o.ContextDir)
		}
		df := o.Dockerfile
		if df == "" {
			df = filepath.Join(ctxDir, "Dockerfile")
		}
		if df, err = filepath.Abs(df); err != nil {
			return input{}, nil, err
		}
		data, err := os.ReadFile(df)
		if err != nil {
			return input{}, nil, fmt.Errorf("read Dockerfile: %w", err)
		}
		ctxFS, err := fsutil.NewFS(ctxDir)
		if err != nil {
			return input{}, nil, fmt.Errorf("build context %s: %w", ctxDir, err)
		}
		dfFS, err := fsutil.NewFS(filepath.Dir(df))
		if err != nil {
			return input{}, nil, fmt.Errorf("Dockerfile directory: %w", err)
		}
		return input{context: ctxFS, dockerfile: dfFS, filename: filepath.Base(df), sharedKey: "fairing-" + shortHash(ctxDir)}, data, nil
	}

	p, err := planSpec(ctx, *o.Spec)
	if err != nil {
		return input{}, nil, err
	}
	data, err := render(*o.Spec, p, secretIDs)
	if err != nil {
		return input{}, nil, err
	}
	epoch, err := o.epoch()
	if err != nil {
		return input{}, nil, err
	}
	return input{
		context:    newContextFS(p, epoch.Unix()),
		dockerfile: newFileFS("Dockerfile", data, epoch.Unix()),
		filename:   "Dockerfile",
		sharedKey:  "fairing-" + specKey(*o.Spec),
	}, data, nil
}

// specKey names a generated build's state: the same sources (by place, not content) map to the
// same context name, so BuildKit's copy of it is updated by a diff.
func specKey(s Spec) string {
	var parts []string
	for _, src := range s.Sources {
		p := src.Path
		if p != "" {
			if abs, err := filepath.Abs(p); err == nil {
				p = abs
			}
		}
		parts = append(parts, src.Dest+"\x00"+p)
	}
	sort.Strings(parts)
	b, _ := json.Marshal(parts)
	return shortHash(string(b))
}

func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:8])
}

// finish moves tarballs into place and names the image in the OCI layouts.
func (out *outputs) finish() error {
	for final, tmp := range out.tarTemps {
		if err := os.Rename(tmp, final); err != nil {
			return fmt.Errorf("write %s: %w", final, err)
		}
	}
	for dir, lo := range out.layouts {
		if lo.w == nil {
			return fmt.Errorf("oci layout %s: buildkitd sent no image", dir)
		}
		if err := lo.w.commit(lo.tags); err != nil {
			return err
		}
	}
	return nil
}
