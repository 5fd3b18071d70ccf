package testenv

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestRunImageBusybox(t *testing.T) {
	bb := BusyboxBase(t)
	out, code := RunImage(t, bb, WithArgs("/bin/sh", "-c", "echo hello from busybox; echo oops >&2; exit 3"))
	if out != "hello from busybox\n" || code != 3 {
		t.Errorf("got stdout %q, exit code %d; want %q, 3", out, code, "hello from busybox\n")
	}

	// the image's own Cmd (/bin/sh) reads the script from stdin; PATH, root and /tmp come from the base
	out, code = RunImage(t, bb, WithStdin(strings.NewReader("echo $PATH; id -un; stat -c %a /tmp; ls /bin/ls\n")))
	want := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nroot\n1777\n/bin/ls\n"
	if out != want || code != 0 {
		t.Errorf("default Cmd: got %q, exit code %d; want %q, 0", out, code, want)
	}

	out, _ = RunImage(t, bb, WithEnv("GREETING=hi", "PATH=/bin"), WithCwd("/tmp"),
		WithArgs("sh", "-c", `echo "$GREETING $PATH $(pwd)"; cat /sys/class/net/lo/operstate`))
	if want := "hi /bin /tmp\nunknown\n"; out != want {
		t.Errorf("env, cwd and loopback: got %q, want %q", out, want)
	}
}

func TestRunImageOtherBases(t *testing.T) {
	for _, ref := range []string{BusyboxDockerBase(t), MultiarchBase(t)} {
		out, code := RunImage(t, ref, WithArgs("uname", "-m"))
		if out != "x86_64\n" || code != 0 {
			t.Errorf("%s: got %q, exit code %d; want x86_64, 0", ref, out, code)
		}
	}
}

func TestRunImageHostNetwork(t *testing.T) {
	// with the host's network the test registry is reachable from inside (busybox wget)
	reg := Registry(t)
	script := "wget -q -O - http://" + reg + "/v2/ && echo reached"
	out, code := RunImage(t, BusyboxBase(t), WithHostNetwork(), WithArgs("sh", "-c", script))
	if !strings.HasSuffix(out, "reached\n") || code != 0 {
		t.Errorf("host network: got %q, exit code %d", out, code)
	}
	out, code = RunImage(t, BusyboxBase(t), WithArgs("sh", "-c", script))
	if code == 0 {
		t.Errorf("own network namespace reached the registry on 127.0.0.1: %q", out)
	}
}

func TestRunLayout(t *testing.T) {
	ref, err := name.ParseReference(BusyboxBase(t))
	if err != nil {
		t.Fatal(err)
	}
	base, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	script := "#!/bin/sh\necho from the layout image: \"$@\"\n"
	for _, h := range []*tar.Header{
		{Name: "app/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "app/run.sh", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(script))},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tw.Write([]byte(script)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	// an OCI manifest takes OCI layers: umoci refuses a Docker layer media type in one
	layer, err := tarball.LayerFromReader(&buf, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf.Config.Entrypoint, cf.Config.Cmd = []string{"/app/run.sh"}, []string{"a", "b"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}

	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "app"})); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}

	out, code := RunLayout(t, dir, "app")
	if out != "from the layout image: a b\n" || code != 0 {
		t.Errorf("got %q, exit code %d", out, code)
	}
	after, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil || !bytes.Equal(before, after) {
		t.Errorf("RunLayout changed the layout's index.json (%v)", err)
	}
}

func TestPythonBase(t *testing.T) {
	script := "import sys, pip, ssl; print(sys.version_info[:2] >= (3, 11), pip.__version__ != '')"
	out, code := RunImage(t, PythonBase(t), WithArgs("python3", "-c", script))
	if out != "True True\n" || code != 0 {
		t.Errorf("python base: got %q, exit code %d", out, code)
	}
}

func TestNotebookBase(t *testing.T) {
	nb := `{"cells":[{"cell_type":"code","execution_count":null,"id":"c1","metadata":{},"outputs":[],"source":["print(6*7)"]}],` +
		`"metadata":{"kernelspec":{"display_name":"Python 3","language":"python","name":"python3"}},"nbformat":4,"nbformat_minor":5}`
	out, code := RunImage(t, NotebookBase(t), WithStdin(strings.NewReader(nb)), WithArgs("sh", "-c",
		"cat > /tmp/n.ipynb && python3 -m nbconvert --to notebook --execute --stdout /tmp/n.ipynb"))
	if code != 0 {
		t.Fatalf("nbconvert --execute: exit code %d", code)
	}
	var got struct {
		Cells []struct {
			Outputs []struct {
				Text []string `json:"text"`
			} `json:"outputs"`
		} `json:"cells"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("nbconvert output is not a notebook: %v\n%s", err, out)
	}
	if len(got.Cells) != 1 || len(got.Cells[0].Outputs) != 1 || !slices.Equal(got.Cells[0].Outputs[0].Text, []string{"42\n"}) {
		t.Errorf("executed notebook: %s", out)
	}
}

func TestEditSpec(t *testing.T) {
	spec := specs.Spec{
		Process: &specs.Process{Terminal: true, Args: []string{"/bin/sh"}, Env: []string{"PATH=/bin", "TERM=xterm"}, Cwd: "/"},
		Linux:   &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}}},
	}
	tests := []struct {
		name   string
		cfg    runConfig
		want   specs.Process
		wantNS int
	}{
		{"defaults", runConfig{}, specs.Process{Args: []string{"/bin/sh"}, Env: []string{"PATH=/bin", "TERM=xterm"}, Cwd: "/"}, 2},
		{"overrides", runConfig{args: []string{"echo", "x"}, env: []string{"PATH=/usr/bin", "A=b"}, cwd: "/tmp", hostNet: true},
			specs.Process{Args: []string{"echo", "x"}, Env: []string{"PATH=/usr/bin", "TERM=xterm", "A=b"}, Cwd: "/tmp"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.json")
			b, _ := json.Marshal(spec)
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := editSpec(path, tt.cfg); err != nil {
				t.Fatal(err)
			}
			var got specs.Spec
			b, _ = os.ReadFile(path)
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			p := got.Process
			if p.Terminal || !slices.Equal(p.Args, tt.want.Args) || !slices.Equal(p.Env, tt.want.Env) || p.Cwd != tt.want.Cwd {
				t.Errorf("process = %+v, want %+v", *p, tt.want)
			}
			if len(got.Linux.Namespaces) != tt.wantNS {
				t.Errorf("namespaces = %v, want %d", got.Linux.Namespaces, tt.wantNS)
			}
		})
	}

	// an image with nothing to run gets a clear error
	empty := spec
	empty.Process = &specs.Process{}
	b, _ := json.Marshal(empty)
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := editSpec(path, runConfig{}); err == nil || !strings.Contains(err.Error(), "WithArgs") {
		t.Errorf("no args: err = %v", err)
	}
}
