package builder

import (
	"sort"

	"github.com/fairing-dev/fairing/pkg/preprocess"
)

// UsePreprocessed takes a preprocessor's result as the build's input: its files, and unless
// the user chose them, the command (the image's Cmd, with the base's Entrypoint cleared), the
// working directory and the eStargz priorities. Its environment goes before the user's, so
// --env wins; PYTHONPATH is put in front of the base's.
func (o *Options) UsePreprocessed(res *preprocess.Result) {
	o.Sources = res.Sources
	if o.Config.Cmd == nil && o.Config.Entrypoint == nil {
		o.Config.Cmd = res.Command
		o.Config.Entrypoint = []string{}
	}
	if res.WorkingDir != "" {
		o.Config.WorkingDir = res.WorkingDir
	}
	keys := make([]string, 0, len(res.Env))
	for k := range res.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var env []string
	for _, k := range keys {
		if k == "PYTHONPATH" {
			o.Config.PathEnv = append(o.Config.PathEnv, k+"="+res.Env[k])
			continue
		}
		env = append(env, k+"="+res.Env[k])
	}
	o.Config.Env = append(env, o.Config.Env...)
	if len(o.Layer.Prioritize) == 0 {
		o.Layer.Prioritize = res.Prioritize
	}
	o.Dependencies = nil
	for _, d := range res.Dependencies {
		o.Dependencies = append(o.Dependencies, d.Dest)
	}
}
