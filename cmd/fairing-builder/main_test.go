package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// run executes the CLI in-process and returns stdout, stderr and the error.
func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errw bytes.Buffer
	app := &cli.App{
		Name: "fairing-builder", Writer: &out, ErrWriter: &errw, DisableSliceFlagSeparator: true,
		Commands: []*cli.Command{buildCommand(), pushContextCommand(), versionCommand()},
	}
	err := app.RunContext(context.Background(), append([]string{"fairing-builder"}, args...))
	return out.String(), errw.String(), err
}

func tree(t *testing.T) string {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755)
	return dir
}

func TestBuildNoPushPrintsDigest(t *testing.T) {
	dir := tree(t)
	cache := t.TempDir()
	out, _, err := run(t, "build", "--context", dir, "--no-push", "--cache-dir", cache, "--quiet", "--cmd", "/app/run.sh")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "sha256:") {
		t.Fatalf("stdout = %q, want one digest line", out)
	}
	// Same inputs, another cache: the same digest.
	out2, _, err := run(t, "build", "--context", dir, "--no-push", "--cache-dir", t.TempDir(), "--quiet", "--cmd", "/app/run.sh")
	if err != nil || out2 != out {
		t.Errorf("second build printed %q (err %v), want %q", out2, err, out)
	}
	// The environment variable form of a flag.
	t.Setenv("FAIRING_CMD", "/app/other.sh")
	out3, _, err := run(t, "build", "--context", dir, "--no-push", "--cache-dir", cache, "--quiet")
	if err != nil || out3 == out {
		t.Errorf("FAIRING_CMD ignored: %q (err %v)", out3, err)
	}
}

func TestBuildOutputsToLayoutAndFiles(t *testing.T) {
	dir := tree(t)
	out := t.TempDir()
	stdout, _, err := run(t, "build", "--context", dir, "--cache-dir", t.TempDir(), "--quiet",
		"--destination", "oci:"+filepath.Join(out, "layout")+":v1", "--digest-file", filepath.Join(out, "digest"),
		"--metadata-file", filepath.Join(out, "meta.json"), "--label", "a=b,c", "--env", "X=1,2")
	if err != nil {
		t.Fatal(err)
	}
	digest, _ := os.ReadFile(filepath.Join(out, "digest"))
	if !strings.HasPrefix(string(digest), "sha256:") || strings.TrimSpace(stdout) != "oci:"+filepath.Join(out, "layout")+"@"+string(digest) {
		t.Errorf("stdout %q, digest file %q", stdout, digest)
	}
	if _, err := os.Stat(filepath.Join(out, "layout", "index.json")); err != nil {
		t.Error(err)
	}
	meta, _ := os.ReadFile(filepath.Join(out, "meta.json"))
	if !strings.Contains(string(meta), `"digest": "`+string(digest)) {
		t.Errorf("metadata lacks the digest: %s", meta)
	}
}

func TestBuildErrors(t *testing.T) {
	dir := tree(t)
	file := filepath.Join(dir, "run.sh")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--context", filepath.Join(dir, "missing"), "--no-push"}, "does not exist"},
		{[]string{"--context", file, "--no-push"}, "is a file, not a folder"},
		{[]string{"--context", dir}, "no --destination"},
		{[]string{"--context", dir, "--no-push", "--cmd", `["unterminated`}, "not a JSON array"},
		{[]string{"--context", dir, "--no-push", "--env", "NOEQUALS"}, "expected KEY=VALUE"},
		{[]string{"--context", dir, "--no-push", "--workdir", "app"}, "absolute path"},
		{[]string{"--context", dir, "--no-push", "--compression", "lz4"}, "unknown compression"},
		{[]string{"--context", dir, "--no-push", "--compression-level", "42"}, "out of range"},
		{[]string{"--context", dir, "--no-push", "--chown", "root"}, "numeric UID:GID"},
		{[]string{"--context", dir, "--destination", "bad ref!"}, "invalid image reference"},
		{[]string{"--context", dir, "extra-arg"}, "unexpected argument"},
		{[]string{"--context", dir, "--no-push", "--cache-from", "Team/App:latest"}, "--cache-from: invalid image reference"},
		{[]string{"--context", dir, "--no-push", "--builder", "buildkit", "--cache-from", "registry.example/team/app:latest"}, "--cache-repo instead"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, _, err := run(t, append([]string{"build", "--cache-dir", t.TempDir()}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
	if _, _, err := run(t, "build", "--context", dir, "--no-push"); err == nil || !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH") {
		t.Errorf("bad SOURCE_DATE_EPOCH: err = %v", err)
	}
}
