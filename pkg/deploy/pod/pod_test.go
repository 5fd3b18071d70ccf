package pod

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestParseVolume(t *testing.T) {
	tests := []struct {
		in      string
		want    Volume
		wantErr string
	}{
		{"pvc:data:/data", Volume{Type: "pvc", Name: "data", MountPath: "/data"}, ""},
		{"pvc:data:/data:models/v1", Volume{Type: "pvc", Name: "data", MountPath: "/data", SubPath: "models/v1"}, ""},
		{"secret:creds:/etc/creds", Volume{Type: "secret", Name: "creds", MountPath: "/etc/creds", ReadOnly: true}, ""},
		{"configMap:cfg:/cfg", Volume{Type: "configmap", Name: "cfg", MountPath: "/cfg", ReadOnly: true}, ""},
		{"emptydir:scratch:/scratch", Volume{Type: "emptydir", Name: "scratch", MountPath: "/scratch"}, ""},
		{"nfs:x:/y", Volume{}, "unknown type"},
		{"pvc:data", Volume{}, "want TYPE:NAME"},
		{"pvc:data:relative", Volume{}, "must be absolute"},
		{"pvc:data:/d:../escape", Volume{}, "stay inside"},
		{"pvc:Bad_Name:/d", Volume{}, "not a valid object name"},
	}
	for _, tc := range tests {
		got, err := ParseVolume(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: got %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestVolumeNamesAreValidAndDistinct(t *testing.T) {
	long := strings.Repeat("a", 60)
	a := Volume{Type: "pvc", Name: long + ".x"}.volumeName()
	b := Volume{Type: "secret", Name: long + ".x"}.volumeName()
	if a == b || len(a) > 63 || strings.Contains(a, ".") {
		t.Errorf("volume names %q and %q", a, b)
	}
}

func TestParseToleration(t *testing.T) {
	sec := int64(30)
	tests := []struct {
		in   string
		want corev1.Toleration
		err  bool
	}{
		{"*", corev1.Toleration{Operator: corev1.TolerationOpExists}, false},
		{"gpu", corev1.Toleration{Key: "gpu", Operator: corev1.TolerationOpExists}, false},
		{"gpu:NoSchedule", corev1.Toleration{Key: "gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}, false},
		{"pool=a:NoSchedule", corev1.Toleration{Key: "pool", Operator: corev1.TolerationOpEqual, Value: "a", Effect: corev1.TaintEffectNoSchedule}, false},
		{"k=v:NoExecute:30", corev1.Toleration{Key: "k", Operator: corev1.TolerationOpEqual, Value: "v", Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &sec}, false},
		{"k:NoSchedule:30", corev1.Toleration{}, true},
		{"k:Never", corev1.Toleration{}, true},
		{":NoSchedule", corev1.Toleration{}, true},
	}
	for _, tc := range tests {
		got, err := ParseToleration(tc.in)
		if (err != nil) != tc.err || !tc.err && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %+v, %v", tc.in, got, err)
		}
	}
}

func TestParseEnvAndSecrets(t *testing.T) {
	env, err := ParseEnv([]string{"A=1", "B=x=y", "C="})
	if err != nil || len(env) != 3 || env[1].Value != "x=y" || env[2].Value != "" {
		t.Errorf("ParseEnv: %+v %v", env, err)
	}
	for _, bad := range []string{"NOVALUE", "=x", "1A=x"} {
		if _, err := ParseEnv([]string{bad}); err == nil {
			t.Errorf("ParseEnv(%q) accepted", bad)
		}
	}
	senv, from, err := ParseEnvFromSecret([]string{"all", "TOKEN=api:token"})
	if err != nil || len(from) != 1 || from[0].SecretRef.Name != "all" || len(senv) != 1 ||
		senv[0].ValueFrom.SecretKeyRef.Name != "api" || senv[0].ValueFrom.SecretKeyRef.Key != "token" {
		t.Errorf("ParseEnvFromSecret: %+v %+v %v", senv, from, err)
	}
	if _, _, err := ParseEnvFromSecret([]string{"X=nokey"}); err == nil {
		t.Error("VAR=SECRET without :KEY accepted")
	}
}

func TestResources(t *testing.T) {
	req, lim := ParseRequestLimit("500m:2")
	r, err := Resources{CPURequest: req, CPULimit: lim, MemoryRequest: "1Gi", GPU: 2, GPUVendor: "amd"}.requirements()
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests.Cpu().String() != "500m" || r.Limits.Cpu().String() != "2" || r.Requests.Memory().String() != "1Gi" {
		t.Errorf("requirements %+v", r)
	}
	if _, ok := r.Limits[corev1.ResourceMemory]; ok {
		t.Error("REQ: must not set a memory limit")
	}
	if q := r.Limits["amd.com/gpu"]; q.Cmp(resource.MustParse("2")) != 0 {
		t.Errorf("gpu limit %v", r.Limits)
	}
	if req, lim := ParseRequestLimit("2Gi"); req != "2Gi" || lim != "2Gi" {
		t.Errorf("Q must set request and limit")
	}
	for _, bad := range []Resources{{CPURequest: "x"}, {MemoryRequest: "2Gi", MemoryLimit: "1Gi"}, {CPULimit: "-1"}, {GPU: 1, GPUVendor: "acme"}} {
		if _, err := bad.requirements(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestBuildAndCredentials(t *testing.T) {
	f := false
	o := Options{Image: "img", Credentials: []Credential{{"gcp", "user-gcp-sa"}, {"aws", "aws-secret"}, {"docker", "docker-secret"}},
		IstioSidecar: &f, Labels: map[string]string{"team": "a"}, ImagePullSecrets: []string{"mine"}}
	tm, err := o.Build(Container{Name: "main", RestartPolicy: corev1.RestartPolicyNever, Labels: map[string]string{LabelDeployer: "job"}})
	if err != nil {
		t.Fatal(err)
	}
	c := tm.Spec.Containers[0]
	if c.Name != "main" || c.Image != "img" || tm.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("container %+v", c)
	}
	if tm.Labels["team"] != "a" || tm.Labels[LabelDeployer] != "job" || tm.Annotations[IstioInject] != "false" {
		t.Errorf("meta %+v", tm.ObjectMeta)
	}
	if got := SecretRefs(&tm); !reflect.DeepEqual(got, []string{"aws-secret", "user-gcp-sa"}) {
		t.Errorf("SecretRefs %v", got)
	}
	if len(tm.Spec.ImagePullSecrets) != 2 || tm.Spec.ImagePullSecrets[1].Name != "docker-secret" {
		t.Errorf("pull secrets %v", tm.Spec.ImagePullSecrets)
	}
	if _, err := (&Options{}).Build(Container{Name: "x"}); err == nil {
		t.Error("no image accepted")
	}
	if _, err := ParseCredential("gcp=my-key"); err != nil {
		t.Error(err)
	}
}

func TestStripGPU(t *testing.T) {
	tm := corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Resources: corev1.ResourceRequirements{
		Limits: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("1"), "amd.com/gpu": resource.MustParse("1"), corev1.ResourceCPU: resource.MustParse("1")}}}}}}
	StripGPU(&tm)
	if l := tm.Spec.Containers[0].Resources.Limits; len(l) != 1 || l.Cpu().String() != "1" {
		t.Errorf("limits after StripGPU: %v", l)
	}
}

func TestLoadTemplate(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(s), 0o644)
		return p
	}
	for name, src := range map[string]string{
		"pod.yaml":      "apiVersion: v1\nkind: Pod\nmetadata: {labels: {a: b}}\nspec: {priorityClassName: hi, containers: [{name: c}]}\n",
		"tmpl.yaml":     "apiVersion: v1\nkind: PodTemplate\ntemplate: {metadata: {labels: {a: b}}, spec: {priorityClassName: hi, containers: [{name: c}]}}\n",
		"spec.yaml":     "metadata: {labels: {a: b}}\nspec: {priorityClassName: hi, containers: [{name: c}]}\n",
		"podspec.json":  `{"priorityClassName": "hi", "containers": [{"name": "c"}]}`,
		"wrongkind.yml": "kind: Deployment\n",
		"typo.yaml":     "spec: {priorityClassNam: hi}\n",
	} {
		tm, err := LoadTemplate(write(name, src))
		switch name {
		case "wrongkind.yml", "typo.yaml":
			if err == nil {
				t.Errorf("%s accepted", name)
			}
		default:
			if err != nil || tm.Spec.PriorityClassName != "hi" || len(tm.Spec.Containers) != 1 {
				t.Errorf("%s: %+v %v", name, tm, err)
			}
		}
	}
}

// A template file that holds no mapping is refused with what was wrong, not taken as a template
// that changes nothing (or decoded into a confusing type error).
func TestLoadTemplateNotAMapping(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, src string
		want      string // "" = accepted
	}{
		{"empty.yaml", "", "is empty"},
		{"blank.yaml", "\n  \n", "is empty"},
		{"comments.yaml", "# nothing here\n", "is empty"},
		{"null.json", "null", "is empty"},
		{"list.yaml", "- name: c\n  image: x\n", "is not a YAML mapping"},
		{"scalar.yaml", "just a string\n", "is not a YAML mapping"},
		{"number.json", "42", "is not a YAML mapping"},
		{"broken.yaml", "spec: {containers: [\n", "parse --pod-template"},
		{"valid.yaml", "spec: {priorityClassName: hi, containers: [{name: c}]}\n", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name)
			if err := os.WriteFile(p, []byte(tc.src), 0o644); err != nil {
				t.Fatal(err)
			}
			tm, err := LoadTemplate(p)
			if tc.want == "" {
				if err != nil || tm == nil || tm.Spec.PriorityClassName != "hi" {
					t.Fatalf("valid template: %+v, %v", tm, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted: %+v", tm)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want) || !strings.Contains(msg, p) {
				t.Errorf("error %q: want it to contain %q and the file name", msg, tc.want)
			}
			if strings.Contains(tc.want, "mapping") || strings.Contains(tc.want, "empty") {
				if !strings.Contains(err.Error(), "want a Pod, PodTemplate, or a pod template spec") {
					t.Errorf("error %q does not say what is wanted", err)
				}
			}
		})
	}
}

func TestGPUResource(t *testing.T) {
	tests := []struct {
		vendor string
		want   corev1.ResourceName
		err    string
	}{
		{"", "nvidia.com/gpu", ""},
		{"NVIDIA", "nvidia.com/gpu", ""},
		{"amd", "amd.com/gpu", ""},
		{"gpu.intel.com/i915", "gpu.intel.com/i915", ""},
		{"example.com/FPGA", "example.com/FPGA", ""}, // the name part is case-sensitive: kept as given
		{"acme", "", "want nvidia, amd, or a resource name"},
		{"gpu.intel.com/i915/x", "", `--gpu-vendor "gpu.intel.com/i915/x" is not a valid resource name`},
		{"Bad_Domain/gpu", "", `--gpu-vendor "Bad_Domain/gpu" is not a valid resource name: prefix part`},
		{"/gpu", "", `--gpu-vendor "/gpu" is not a valid resource name`},
		{"example.com/", "", `--gpu-vendor "example.com/" is not a valid resource name`},
		{"example.com/-x", "", `--gpu-vendor "example.com/-x" is not a valid resource name`},
	}
	for _, tc := range tests {
		got, err := GPUResource(tc.vendor)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("GPUResource(%q) = %q, %v; want %q", tc.vendor, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("GPUResource(%q) = %q, %v; want an error containing %q", tc.vendor, got, err, tc.err)
		}
	}
}
