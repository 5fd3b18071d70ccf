package buildkit

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/moby/patternmatcher"

	"github.com/fairing-dev/fairing/pkg/layer"
)

var update = flag.Bool("update", false, "rewrite the golden Dockerfiles in testdata/")

// project makes a small Python project: code, a requirements file, a local package it names.
func project(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"train.py":                     "import mylib\nprint(mylib.hello())\n",
		"util/helpers.py":              "X = 1\n",
		"requirements.txt":             "--no-index\n./pkgs/mylib\n",
		"pkgs/mylib/pyproject.toml":    "[project]\nname = \"mylib\"\n",
		"pkgs/mylib/mylib/__init__.py": "def hello(): return 'hi'\n",
		".git/HEAD":                    "ref: refs/heads/main\n",
	}
	for p, c := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestGenerateDockerfileGolden(t *testing.T) {
	dir := project(t)
	ignoreGit, err := patternmatcher.New([]string{".git", "pkgs", "requirements.txt"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		spec    Spec
		secrets []string
	}{
		{
			name: "code-only",
			spec: Spec{
				Base:    "127.0.0.1:5000/base/python:3.11",
				Sources: []layer.Source{{Dest: "/app/train.py", Path: filepath.Join(dir, "train.py")}},
				Cmd:     []string{"python3", "/app/train.py"},
			},
		},
		{
			// the original's layout: /app/requirements.txt is found and installed first
			name: "requirements",
			spec: Spec{
				Base: "registry.example.com/team/python:3.11",
				Env:  map[string]string{"MODE": "train", "QUOTED": `a "b" $HOME\x`},
				Sources: []layer.Source{
					{Dest: "/app/requirements.txt", Path: filepath.Join(dir, "requirements.txt")},
					{Dest: "/app/pkgs", Path: filepath.Join(dir, "pkgs"), Class: layer.ClassDeps},
					{Dest: "/app", Path: dir, Ignore: ignoreGit},
					{Dest: "/app/fairing_main.py", Data: []byte("import train\n"), Class: layer.ClassTop},
				},
				User:       "1000",
				Entrypoint: []string{"python3"},
				Cmd:        []string{"/app/fairing_main.py", "--data", "a b&c"},
			},
			secrets: []string{"pip.conf", "token"},
		},
		{
			// a notebook-style base: dependency files owned by its user, pip --user
			name: "non-root-base",
			spec: Spec{
				Base:     "127.0.0.1:5000/base/notebook:1",
				BaseUser: "jovyan",
				Sources: []layer.Source{
					{Dest: "/app/requirements.txt", Path: filepath.Join(dir, "requirements.txt")},
					{Dest: "/app/pkgs", Path: filepath.Join(dir, "pkgs"), Class: layer.ClassDeps},
					{Dest: "/app/train.py", Path: filepath.Join(dir, "train.py")},
				},
				Cmd: []string{"python3", "train.py"},
			},
		},
		{
			name: "root-base",
			spec: Spec{
				Base:     "127.0.0.1:5000/base/python:3.11",
				BaseUser: "0:0",
				Sources: []layer.Source{
					{Dest: "/app/requirements.txt", Path: filepath.Join(dir, "requirements.txt")},
					{Dest: "/app/train.py", Path: filepath.Join(dir, "train.py")},
				},
			},
		},
		{
			name: "explicit-requirements-workdir",
			spec: Spec{
				Base:         "python:3.11",
				WorkDir:      "/srv/job/",
				Requirements: []string{"reqs/base.txt", "/srv/job/requirements-dev.txt"},
				Sources: []layer.Source{
					{Dest: "/srv/job/reqs/base.txt", Data: []byte("numpy\n"), Class: layer.ClassDeps},
					{Dest: "/srv/job/requirements-dev.txt", Data: []byte("pytest\n")},
					{Dest: "/srv/job/model.bin", Data: []byte("weights"), Class: layer.ClassLarge},
					{Dest: "/srv/job/main.py", Data: []byte("print(1)\n")},
				},
				SecretEnv: map[string]string{"index": "PIP_INDEX_URL_FILE"},
			},
			secrets: []string{"index"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := GenerateDockerfile(context.Background(), tc.spec, tc.secrets...)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", tc.name+".Dockerfile")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if string(got) != string(want) {
				t.Errorf("generated Dockerfile differs from %s:\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}
}

func TestGenerateDockerfileErrors(t *testing.T) {
	dir := project(t)
	outside := t.TempDir()
	if err := os.Symlink(filepath.Join(outside), filepath.Join(dir, "escape")); err != nil {
		t.Fatal(err)
	}
	code := layer.Source{Dest: "/app/train.py", Path: filepath.Join(dir, "train.py")}
	for _, tc := range []struct {
		name string
		spec Spec
		want string
	}{
		{"no base", Spec{Sources: []layer.Source{code}}, "no base image"},
		{"bad env", Spec{Base: "b", Env: map[string]string{"A-B": "1"}}, `"A-B" is not valid`},
		{"env line break", Spec{Base: "b", Env: map[string]string{"A": "1\nRUN x"}}, "line break"},
		{"relative workdir", Spec{Base: "b", WorkDir: "app"}, "absolute"},
		{"relative dest", Spec{Base: "b", Sources: []layer.Source{{Dest: "app/x", Data: []byte("x")}}}, "must be an absolute path"},
		{"missing path", Spec{Base: "b", Sources: []layer.Source{{Dest: "/app/x", Path: filepath.Join(dir, "nope")}}}, "no such file"},
		{"requirements not deps", Spec{Base: "b", Sources: []layer.Source{{Dest: "/app/requirements.txt", Data: []byte("x"), Class: layer.ClassSource}}}, "not a dependency (ClassDeps) source"},
		{"requirements not provided", Spec{Base: "b", Requirements: []string{"req.txt"}, Sources: []layer.Source{code}}, "/app/req.txt is not provided"},
		{"symlink escapes", Spec{Base: "b", Sources: []layer.Source{{Dest: "/app", Path: dir}}}, "points outside"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := GenerateDockerfile(context.Background(), tc.spec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := GenerateDockerfile(context.Background(), Spec{Base: "b", Requirements: []string{}, Sources: []layer.Source{{Dest: "/app/requirements.txt", Data: []byte("x"), Class: layer.ClassDeps}}}, "bad id!"); err != nil {
		t.Fatalf("no install step, so the secret id is not used: %v", err)
	}
	if _, err := GenerateDockerfile(context.Background(), Spec{Base: "b", Sources: []layer.Source{{Dest: "/app/requirements.txt", Data: []byte("x")}}}, "bad id!"); err == nil {
		t.Fatal("a secret id with spaces was accepted into the install step")
	}
}

func TestRequirements(t *testing.T) {
	dir := project(t)
	for _, tc := range []struct {
		name string
		spec Spec
		want string
	}{
		{"none", Spec{Base: "b", Sources: []layer.Source{{Dest: "/app/train.py", Path: filepath.Join(dir, "train.py")}}}, ""},
		{"whole dir", Spec{Base: "b", Sources: []layer.Source{{Dest: "/app", Path: dir, Ignore: mustPM(t, "pkgs")}}}, "/app/requirements.txt"},
		{"nested only", Spec{Base: "b", Sources: []layer.Source{{Dest: "/app/sub", Path: dir, Ignore: mustPM(t, "pkgs")}}}, ""},
		{"disabled", Spec{Base: "b", Requirements: []string{}, Sources: []layer.Source{{Dest: "/app", Path: dir, Ignore: mustPM(t, "pkgs")}}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Requirements(context.Background(), tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, ",") != tc.want {
				t.Errorf("Requirements = %q, want %q", got, tc.want)
			}
		})
	}
}

func mustPM(t *testing.T, patterns ...string) *patternmatcher.PatternMatcher {
	t.Helper()
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	return pm
}

func TestPlanGroups(t *testing.T) {
	dir := project(t)
	big := filepath.Join(t.TempDir(), "weights.bin")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(16 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	p, err := planSpec(context.Background(), Spec{Base: "b", Sources: []layer.Source{
		{Dest: "/app", Path: dir, Ignore: mustPM(t, ".git", "pkgs/mylib/pyproject.toml")},
		{Dest: "/app/model/weights.bin", Path: big},
		{Dest: "/app/run.sh", Data: []byte("#!/bin/sh\n"), Mode: 0o755, Class: layer.ClassTop},
	}})
	if err != nil {
		t.Fatal(err)
	}
	where := map[string]string{}
	for _, g := range p.groups {
		for _, e := range g.entries {
			where["/"+e.Path] = g.dir
		}
	}
	for dest, want := range map[string]string{
		"/app/requirements.txt":             "00-dependencies",
		"/app/model/weights.bin":            "01-large",
		"/app/train.py":                     "02-source",
		"/app/pkgs/mylib/mylib/__init__.py": "02-source",
		"/app/util/helpers.py":              "02-source",
		"/app/run.sh":                       "03-generated",
	} {
		if where[dest] != want {
			t.Errorf("%s: in %q, want %q", dest, where[dest], want)
		}
	}
	for _, gone := range []string{"/app/.git/HEAD", "/app/.git", "/app/pkgs/mylib/pyproject.toml"} {
		if g, ok := where[gone]; ok {
			t.Errorf("%s is ignored but planned in %s", gone, g)
		}
	}
	if _, err := planSpec(context.Background(), Spec{Base: "b", Sources: []layer.Source{
		{Dest: "/app", Path: dir},
		{Dest: "/app/train.py", Data: []byte("x")},
	}}); err == nil {
		t.Error("two sources for one path were accepted")
	}
}

func TestMergeSource(t *testing.T) {
	g := func(c layer.Class, sizes ...int64) layer.Group {
		var es []layer.Entry
		for i, s := range sizes {
			es = append(es, layer.Entry{Path: fmt.Sprintf("f%d-%d", s, i), Type: layer.TypeFile, Size: s})
		}
		return layer.Group{Class: c, Entries: es}
	}
	in := []layer.Group{g(layer.ClassDeps, 1), g(layer.ClassLarge, 100), g(layer.ClassSource, 4), g(layer.ClassSource, 3, 3), g(layer.ClassSource, 5), g(layer.ClassSource, 1), g(layer.ClassTop, 1)}
	count := func(gs []layer.Group) string {
		var s []string
		for _, g := range gs {
			s = append(s, fmt.Sprintf("%d:%d", g.Class, len(g.Entries)))
		}
		return strings.Join(s, " ")
	}
	for _, tc := range []struct {
		min  int64
		want string
	}{
		{10, "1:1 2:1 3:3 3:2 4:1"}, // 4+3+3 ≥ 10, then 5+1 (the rest)
		{5, "1:1 2:1 3:3 3:1 3:1 4:1"},
		{1000, "1:1 2:1 3:5 4:1"},
		{-1, "1:1 2:1 3:1 3:2 3:1 3:1 4:1"},
	} {
		if got := count(mergeSource(in, tc.min)); got != tc.want {
			t.Errorf("min %d: %s, want %s", tc.min, got, tc.want)
		}
	}
	if len(in[2].Entries) != 1 {
		t.Error("mergeSource changed its input")
	}
}

func TestDockerfileReadsBaseUser(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	push := func(repo, user string) string {
		img, err := random.Image(64, 1)
		if err != nil {
			t.Fatal(err)
		}
		cf, _ := img.ConfigFile()
		cf = cf.DeepCopy()
		cf.Config.User = user
		cf.OS, cf.Architecture = "linux", runtime.GOARCH
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		ref := host + "/" + repo + ":1"
		if err := crane.Push(img, ref); err != nil {
			t.Fatal(err)
		}
		return ref
	}
	dir := project(t)
	sources := []layer.Source{{Dest: "/app/requirements.txt", Path: filepath.Join(dir, "requirements.txt")}, {Dest: "/app/pkgs", Path: filepath.Join(dir, "pkgs"), Class: layer.ClassDeps}}
	ctx := context.Background()
	for _, tc := range []struct {
		base     string
		want     []string
		warning  bool
		unwanted string
	}{
		{base: push("notebook", "1000:100"), want: []string{"COPY --chown=1000:100 00-dependencies/ /", "pip install --no-cache-dir --user -r"}},
		{base: push("python", ""), want: []string{"COPY --link 00-dependencies/ /", "pip install --no-cache-dir -r"}, unwanted: "--user"},
		{base: host + "/missing:1", want: []string{`if [ "$(id -u)" = 0 ]`}, warning: true},
	} {
		df, warnings, err := Dockerfile(ctx, Options{Spec: &Spec{Base: tc.base, Sources: sources}})
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range tc.want {
			if !strings.Contains(string(df), w) {
				t.Errorf("%s: Dockerfile lacks %q:\n%s", tc.base, w, df)
			}
		}
		if tc.unwanted != "" && strings.Contains(string(df), tc.unwanted) {
			t.Errorf("%s: Dockerfile has %q:\n%s", tc.base, tc.unwanted, df)
		}
		if (len(warnings) > 0) != tc.warning {
			t.Errorf("%s: warnings %q", tc.base, warnings)
		}
	}
	// the user's Dockerfile comes back as it is
	os.WriteFile(filepath.Join(dir, "Dockerfile.custom"), []byte("FROM scratch\n"), 0o644)
	df, _, err := Dockerfile(ctx, Options{ContextDir: dir, Dockerfile: filepath.Join(dir, "Dockerfile.custom")})
	if err != nil || string(df) != "FROM scratch\n" {
		t.Errorf("user Dockerfile: %q, %v", df, err)
	}
}
