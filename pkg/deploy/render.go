package deploy

import (
	"encoding/json"
	"fmt"

	"github.com/fairing-dev/fairing/pkg/deploy/workload"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// Render prints objects as --dry-run shows them: YAML documents separated by "---", or (format
// "json") a v1 List like kubectl's -o json. Empty fields are left out.
func Render(objs []runtime.Object, format string) ([]byte, error) {
	items := make([]any, 0, len(objs))
	for _, o := range objs {
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
		if err != nil {
			return nil, fmt.Errorf("encode %T: %w", o, err)
		}
		workload.Clean(u)
		items = append(items, u)
	}
	switch format {
	case "json":
		b, err := json.MarshalIndent(map[string]any{"apiVersion": "v1", "kind": "List", "items": items}, "", "  ")
		if err != nil {
			return nil, err
		}
		return append(b, '\n'), nil
	case "", "yaml":
		var out []byte
		for i, it := range items {
			b, err := yaml.Marshal(it)
			if err != nil {
				return nil, err
			}
			if i > 0 {
				out = append(out, "---\n"...)
			}
			out = append(out, b...)
		}
		return out, nil
	}
	return nil, fmt.Errorf("output format %q: want yaml or json", format)
}
