package submit

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Every deployer's objects, with every pod option, are accepted by the real API server (server-side
// dry run: full validation and admission, nothing stored).
func TestObjectsAcceptedByAPIServer(t *testing.T) {
	needCluster(t)
	t.Parallel()
	ns := namespace(t)
	tmpl := filepath.Join(t.TempDir(), "tmpl.yaml")
	os.WriteFile(tmpl, []byte("spec:\n  securityContext: {runAsNonRoot: false}\n  containers:\n  - name: x\n  - name: sidecar\n    image: "+busybox+"\n"), 0o644)
	pod := []string{"--image", busybox, "--env", "A=1", "--env-from-secret", "all-keys", "--env-from-secret", "B=sec:key",
		"--cpu", "100m:1", "--memory", "64Mi:128Mi", "--gpu", "1", "--volume", "pvc:data:/data:sub", "--volume", "secret:s:/s",
		"--volume", "configmap:cm:/cm", "--volume", "emptydir:tmp:/tmp2", "--node-selector", "a=b", "--toleration", "k=v:NoExecute:30",
		"--toleration", "*", "--service-account", "sa", "--image-pull-secret", "pull", "--annotation", "x=y", "--label", "l=v",
		"--credentials", "gcp", "--credentials", "aws", "--credentials", "docker", "--pod-template", tmpl, "--timeout", "1h", "--ttl", "10m"}
	kinds := [][]string{
		{"-d", "job", "--runs", "3"},
		{"-d", "tfjob", "--chief", "1", "--workers", "2", "--ps", "1"},
		{"-d", "pytorchjob", "--workers", "2"},
		{"-d", "serving", "--replicas", "2", "--service-type", "NodePort"},
		{"-d", "kserve", "--canary-traffic-percent", "50"},
		{"-d", "kserve", "--model-format", "sklearn", "--storage-uri", "gs://b/m"},
	}
	for _, k := range kinds {
		args := append(append([]string{"run", "--dry-run", "-o", "json"}, k...), pod...)
		r := submit(t, ns, append(args, "--", "sh", "-c", "echo hi")...)
		if r.code != 0 {
			t.Fatalf("%v: %s", k, r)
		}
		var list struct{ Items []map[string]any }
		if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list.Items) == 0 {
			t.Fatalf("%v: %v\n%s", k, err, r)
		}
		for _, it := range list.Items {
			u := &unstructured.Unstructured{Object: it}
			gv, _ := schema.ParseGroupVersion(u.GetAPIVersion())
			gvr := gv.WithResource(strings.ToLower(u.GetKind()) + "s")
			if u.GetKind() == "Service" && u.GetName() == "" {
				u.SetName("svc") // the Service takes the Deployment's generated name at create time
				u.SetGenerateName("")
			}
			_, err := dyn.Resource(gvr).Namespace(ns).Create(context.Background(), u, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"})
			if err != nil {
				t.Errorf("%v: the API server rejected the %s: %v", k, u.GetKind(), err)
			}
		}
	}
}
