package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The builder runs once per build, so what its packages do at start is paid on every build:
// client-go's initialisation alone was ~15 ms and ~18 MB of a 60 ms, 54 MB rebuild. Cluster
// credentials are read over plain HTTP (pkg/kubeauth) instead.
func TestNoKubernetesClient(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "k8s.io/") {
			t.Errorf("fairing-builder imports %s; `go mod why -m` or `go list -deps` shows through what", p)
		}
	}
}
