package builder

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/fairing-dev/fairing/pkg/build"
	"github.com/fairing-dev/fairing/pkg/layer"
)

func TestNeedsInstall(t *testing.T) {
	for _, tc := range []struct {
		name    string
		files   map[string]string // relative path: content
		workdir string
		extra   []layer.Source
		want    []string
	}{
		{name: "no requirements file", files: map[string]string{"train.py": "print(1)\n"}},
		{name: "requirements file with packages", files: map[string]string{"requirements.txt": "numpy==2.1\n"}, want: []string{"/app/requirements.txt"}},
		{name: "requirements file with comments only", files: map[string]string{"requirements.txt": "# none yet\n\n"}},
		{name: "elsewhere than the work dir", files: map[string]string{"sub/requirements.txt": "numpy\n"}},
		{name: "another work dir", workdir: "/srv", files: map[string]string{"requirements.txt": "numpy\n"}, want: []string{"/srv/requirements.txt"}},
		{name: "excluded by .dockerignore", files: map[string]string{"requirements.txt": "numpy\n", ".dockerignore": "requirements.txt\n"}},
		{name: "generated", files: map[string]string{"train.py": "print(1)\n"},
			extra: []layer.Source{{Dest: "/app/requirements.txt", Data: []byte("torch\n")}}, want: []string{"/app/requirements.txt"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for p, c := range tc.files {
				p = filepath.Join(dir, p)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			wd := tc.workdir
			if wd == "" {
				wd = "/app"
			}
			src, err := LocalSources(dir, "", wd)
			if err != nil {
				t.Fatal(err)
			}
			o := Options{Base: "registry.example/base:1", Sources: append(src, tc.extra...), Config: build.Config{WorkingDir: tc.workdir}}
			got, err := NeedsInstall(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("NeedsInstall = %q, want %q", got, tc.want)
			}
		})
	}
}

// In auto mode NeedsInstall runs before every build: with nothing to install it must not walk
// the context (it did, twice, doubling the time of an unchanged rebuild). A context the walk
// refuses (a file name with a line break) shows whether it was walked.
func TestNeedsInstallDoesNotWalk(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bad\nname.py"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := LocalSources(dir, "", "/app")
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Base: "registry.example/base:1", Sources: src}
	if got, err := NeedsInstall(context.Background(), o); err != nil || len(got) != 0 {
		t.Fatalf("NeedsInstall = %q, %v; want nothing, without reading the context", got, err)
	}
	// With packages to install, the planner decides, and the walk reports the bad name.
	if err := os.WriteFile(filepath.Join(dir, "requirements.txt"), []byte("numpy\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NeedsInstall(context.Background(), o); err == nil {
		t.Fatal("NeedsInstall walked nothing although a requirements file lists packages")
	}
}
