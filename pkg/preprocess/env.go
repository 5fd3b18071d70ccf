package preprocess

import (
	"sort"
	"strings"
)

// MergeEnv adds env to an image's environment (KEY=VALUE entries, as in an OCI config):
// existing keys keep their position and take the new value, new keys are appended in sorted
// order. PYTHONPATH is the exception: the base's value is kept after ours, so that what the
// base image put on the path stays importable.
func MergeEnv(base []string, env map[string]string) []string {
	out := make([]string, 0, len(base)+len(env))
	done := map[string]bool{}
	for _, kv := range base {
		k, v, _ := strings.Cut(kv, "=")
		nv, ok := env[k]
		switch {
		case !ok || done[k]:
			out = append(out, kv)
			continue
		case k == "PYTHONPATH" && (v == nv || strings.HasPrefix(v, nv+":")):
			nv = v // already first, e.g. when the base was built by fairing
		case k == "PYTHONPATH" && v != "":
			nv = nv + ":" + v
		}
		out = append(out, k+"="+nv)
		done[k] = true
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		if !done[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, k+"="+env[k])
	}
	return out
}
