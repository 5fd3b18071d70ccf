package incluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/fairing-dev/fairing/pkg/deploy/follow"
	"github.com/fairing-dev/fairing/pkg/deploy/kube"
	"github.com/fairing-dev/fairing/pkg/deploy/workload"
)

func spec() Spec {
	return Spec{Namespace: "ns", ID: "id1", Context: "oci://reg.example/team/app@sha256:" + strings.Repeat("a", 64),
		BuilderImage: "reg.example/fairing-builder:v1", SubmitImage: "reg.example/fairing-submit:v1",
		BuildArgs: []string{"--base", "reg.example/base:1", "--destination", "reg.example/team/app"}, SubmitArgs: []string{"--env=A=1", "--", "python", "x.py"},
		ServiceAccount: "fairing-build", TTL: time.Hour}
}

func TestJob(t *testing.T) {
	j, err := Job(spec())
	if err != nil {
		t.Fatal(err)
	}
	if *j.Spec.BackoffLimit != 0 || *j.Spec.TTLSecondsAfterFinished != 3600 || j.GenerateName != "fairing-build-" ||
		j.Labels["fairing-deployer"] != "build" || j.Labels["fairing-id"] != "id1" {
		t.Errorf("job metadata/spec: %+v", j)
	}
	ps := j.Spec.Template.Spec
	if ps.RestartPolicy != corev1.RestartPolicyNever || ps.ServiceAccountName != "fairing-build" || len(ps.InitContainers) != 1 || len(ps.Containers) != 1 {
		t.Fatalf("pod: %+v", ps)
	}
	b, s := ps.InitContainers[0], ps.Containers[0]
	wantB := []string{"build", "--context", spec().Context, "--base", "reg.example/base:1", "--destination", "reg.example/team/app",
		"--image-name-with-digest-file", ImageFile, "--cache-dir", "/workspace/cache"}
	if strings.Join(b.Args, " ") != strings.Join(wantB, " ") {
		t.Errorf("build args %q, want %q", b.Args, wantB)
	}
	wantS := []string{"run", "--image-from-file", ImageFile, "--result-file", TerminationLog, "--namespace", "ns", "--id", "id1", "--env=A=1", "--", "python", "x.py"}
	if strings.Join(s.Args, " ") != strings.Join(wantS, " ") {
		t.Errorf("submit args %q, want %q", s.Args, wantS)
	}
	for _, c := range []corev1.Container{b, s} {
		if c.TerminationMessagePolicy != corev1.TerminationMessageFallbackToLogsOnError || c.SecurityContext == nil ||
			*c.SecurityContext.AllowPrivilegeEscalation || !*c.SecurityContext.RunAsNonRoot {
			t.Errorf("container %s: termination message policy %q, security %+v", c.Name, c.TerminationMessagePolicy, c.SecurityContext)
		}
	}
	if len(s.VolumeMounts) != 1 || !s.VolumeMounts[0].ReadOnly || s.VolumeMounts[0].MountPath != Workspace {
		t.Errorf("submit mounts %+v", s.VolumeMounts)
	}
	if ps.HostNetwork || len(ps.ImagePullSecrets) != 0 {
		t.Errorf("no host network nor pull secrets unless asked: %+v", ps)
	}
}

func TestJobOptions(t *testing.T) {
	s := spec()
	s.RegistrySecret = "regcred"
	s.HostNetwork = true
	s.APIServer = "https://127.0.0.1:26443"
	s.BuildTimeout = 10 * time.Minute
	s.BuildEnv = []corev1.EnvVar{{Name: "SOURCE_DATE_EPOCH", Value: "1"}}
	j, err := Job(s)
	if err != nil {
		t.Fatal(err)
	}
	ps := j.Spec.Template.Spec
	b := ps.InitContainers[0]
	env := map[string]string{}
	for _, e := range b.Env {
		env[e.Name] = e.Value
	}
	if env["DOCKER_CONFIG"] != DockerConfigDir || env["KUBERNETES_SERVICE_HOST"] != "127.0.0.1" || env["KUBERNETES_SERVICE_PORT"] != "26443" || env["SOURCE_DATE_EPOCH"] != "1" {
		t.Errorf("build env %v", env)
	}
	if !strings.Contains(strings.Join(b.Args, " "), "--timeout 10m0s") {
		t.Errorf("build args %q lack the timeout", b.Args)
	}
	var secretVol *corev1.Volume
	for i, v := range ps.Volumes {
		if v.Secret != nil {
			secretVol = &ps.Volumes[i]
		}
	}
	if secretVol == nil || secretVol.Secret.SecretName != "regcred" || secretVol.Secret.Items[0].Key != corev1.DockerConfigJsonKey || secretVol.Secret.Items[0].Path != "config.json" {
		t.Errorf("registry secret volume %+v", secretVol)
	}
	if !ps.HostNetwork || ps.DNSPolicy != corev1.DNSClusterFirstWithHostNet || len(ps.ImagePullSecrets) != 1 {
		t.Errorf("pod %+v", ps)
	}
	if se := ps.Containers[0].Env; len(se) != 2 || se[0].Value != "127.0.0.1" {
		t.Errorf("the submit step must reach the API server too: %v", se)
	}

	s = spec()
	s.Context = ""
	s.ContextVolume = &Volume{Kind: "pvc", Name: "data", SubPath: "proj"}
	if j, err = Job(s); err != nil {
		t.Fatal(err)
	}
	b = j.Spec.Template.Spec.InitContainers[0]
	if b.Args[2] != ContextDir || b.VolumeMounts[1].SubPath != "proj" || !b.VolumeMounts[1].ReadOnly ||
		j.Spec.Template.Spec.Volumes[1].PersistentVolumeClaim.ClaimName != "data" {
		t.Errorf("context volume: args %q mounts %+v", b.Args, b.VolumeMounts)
	}
}

func TestJobErrors(t *testing.T) {
	for name, mod := range map[string]func(*Spec){
		"no builder image":  func(s *Spec) { s.BuilderImage = "" },
		"no context":        func(s *Spec) { s.Context = "" },
		"two contexts":      func(s *Spec) { s.ContextVolume = &Volume{Kind: "pvc", Name: "x"} },
		"http api server":   func(s *Spec) { s.APIServer = "http://127.0.0.1:6443" },
		"api server path":   func(s *Spec) { s.APIServer = "https://h:6443/x" },
		"bad volume kind":   func(s *Spec) { s.Context = ""; s.ContextVolume = &Volume{Kind: "nfs", Name: "x"} },
		"no submit image":   func(s *Spec) { s.SubmitImage = "" },
		"api server no url": func(s *Spec) { s.APIServer = "127.0.0.1:6443" },
	} {
		s := spec()
		mod(&s)
		if _, err := Job(s); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestParseVolume(t *testing.T) {
	for in, want := range map[string]*Volume{
		"pvc:data":            {Kind: "pvc", Name: "data"},
		"pvc:data:proj/a":     {Kind: "pvc", Name: "data", SubPath: "proj/a"},
		"hostpath:/srv/ctx":   {Kind: "hostpath", Name: "/srv/ctx"},
		"PVC:data":            {Kind: "pvc", Name: "data"},
		"pvc:":                nil,
		"pvc:data:/abs":       nil,
		"pvc:data:a/../../b":  nil,
		"hostpath:relative":   nil,
		"nfs:server:/export":  nil,
		"/just/a/local/path":  nil,
		"emptydir:scratch:/x": nil,
	} {
		got, err := ParseVolume(in)
		switch {
		case want == nil && err == nil:
			t.Errorf("%q: no error", in)
		case want != nil && (err != nil || *got != *want):
			t.Errorf("%q: got %+v, %v; want %+v", in, got, err, want)
		}
	}
}

type staticKeychain map[string]authn.AuthConfig

func (k staticKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if c, ok := k[r.RegistryStr()]; ok {
		return authn.FromConfig(c), nil
	}
	return authn.Anonymous, nil
}

// Only the registries the user has credentials for go into the Secret; nothing else of the local
// configuration does.
func TestRegistrySecret(t *testing.T) {
	kc := staticKeychain{
		"reg.example":     {Username: "u", Password: "p"},
		"index.docker.io": {IdentityToken: "tok"},
		"other.example":   {Username: "x", Password: "y"},
	}
	s, err := RegistrySecret(context.Background(), kc, []string{"reg.example", "index.docker.io", "public.example", "reg.example"}, "ns", "id1")
	if err != nil {
		t.Fatal(err)
	}
	if s.Type != corev1.SecretTypeDockerConfigJson || s.Namespace != "ns" || s.Labels["fairing-id"] != "id1" || s.GenerateName != "fairing-registry-" {
		t.Errorf("secret %+v", s.ObjectMeta)
	}
	var cfg struct {
		Auths map[string]map[string]string
	}
	if err := json.Unmarshal(s.Data[corev1.DockerConfigJsonKey], &cfg); err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]string{
		"reg.example":                 {"username": "u", "password": "p", "auth": "dTpw"},
		"https://index.docker.io/v1/": {"identitytoken": "tok"},
	}
	if len(cfg.Auths) != len(want) {
		t.Fatalf("auths %v, want %v", cfg.Auths, want)
	}
	for k, v := range want {
		for f, val := range v {
			if cfg.Auths[k][f] != val {
				t.Errorf("auths[%s][%s] = %q, want %q", k, f, cfg.Auths[k][f], val)
			}
		}
	}
	if _, err := RegistrySecret(context.Background(), kc, []string{"public.example"}, "ns", "id"); err == nil || !strings.Contains(err.Error(), "no local credentials for public.example") {
		t.Errorf("no credentials at all: %v", err)
	}
}

func TestRouter(t *testing.T) {
	var out, progress bytes.Buffer
	r := router{out: &out, progress: &progress}
	for _, l := range []string{"[build] pushed x", "job/fairing-job-x created in namespace ns", "[fairing-job-x-abc] hello", "[fairing-job-x-abc/side] hi", "fairing-submit: failed"} {
		r.Write([]byte(l + "\n"))
	}
	if out.String() != "[fairing-job-x-abc] hello\n[fairing-job-x-abc/side] hi\n" {
		t.Errorf("out: %q", out.String())
	}
	if progress.String() != "[build] pushed x\njob/fairing-job-x created in namespace ns\nfairing-submit: failed\n" {
		t.Errorf("progress: %q", progress.String())
	}
}

func TestQuieter(t *testing.T) {
	var b bytes.Buffer
	w := quieter(&b, "fairing-build-abc")
	keep := []string{
		"build/fairing-build-abc created in namespace ns",
		"build/fairing-build-abc: Running",
		"build/fairing-build-abc: pod fairing-build-abc-x container build: ErrImagePull: not found",
		"build/fairing-build-abc: pod fairing-build-abc-x container submit: OOMKilled (exit code 137): out of memory",
		"build/fairing-build-other: Failed",
	}
	drop := []string{
		"build/fairing-build-abc: pod fairing-build-abc-x container build: Error (exit code 1): fairing-builder: read base",
		"build/fairing-build-abc: pod fairing-build-abc-x container submit: Error (exit code 3): {\"kind\":\"job\"}",
		"build/fairing-build-abc: Failed",
		"build/fairing-build-abc: Succeeded",
	}
	for _, l := range append(append([]string{}, keep...), drop...) {
		w.Write([]byte(l + "\n"))
	}
	if got := strings.TrimSpace(b.String()); got != strings.Join(keep, "\n") {
		t.Errorf("kept:\n%s\nwant:\n%s", got, strings.Join(keep, "\n"))
	}
}

func TestBuildError(t *testing.T) {
	tail := "5 files, 2 layers\nfairing-builder: read base r/x:1: not found (404)\n"
	if got := BuildError(tail, 1); got != "fairing-builder: read base r/x:1: not found (404)" {
		t.Errorf("got %q", got)
	}
	if got := BuildError("something else\n\n", 1); got != "something else" {
		t.Errorf("got %q", got)
	}
	if got := BuildError("", 137); got != "the build step exited with code 137" {
		t.Errorf("got %q", got)
	}
}

// evaluate reads the steps' outcomes from the build pod: the build's error, the submit step's JSON
// result, or a submit step that could not launch.
func TestEvaluate(t *testing.T) {
	j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "fairing-build-x", Namespace: "ns", UID: "u1"}}
	podWith := func(build, submit *corev1.ContainerStateTerminated) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "fairing-build-x-p", Namespace: "ns", Labels: map[string]string{batchv1.ControllerUidLabel: "u1"}}}
		p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: BuildContainer, State: corev1.ContainerState{Terminated: build}}}
		st := corev1.ContainerStatus{Name: SubmitContainer}
		if submit != nil {
			st.State.Terminated = submit
		} else {
			st.State.Waiting = &corev1.ContainerStateWaiting{Reason: "PodInitializing"}
		}
		p.Status.ContainerStatuses = []corev1.ContainerStatus{st}
		return p
	}
	result := `{"kind":"job","name":"fairing-job-y","namespace":"ns","state":"Failed","exitCode":3,"image":"r/app@sha256:` + strings.Repeat("b", 64) + `"}`
	tests := []struct {
		name     string
		pod      *corev1.Pod
		fr       follow.Result
		code     int
		reason   string
		contains string
	}{
		{"build failed", podWith(&corev1.ContainerStateTerminated{ExitCode: 1, Message: "x\nfairing-builder: read base b: not found\n"}, nil),
			follow.Result{Phase: workload.Failed}, ExitNotSubmitted, "BuildFailed", "fairing-builder: read base b: not found"},
		{"workload result", podWith(&corev1.ContainerStateTerminated{}, &corev1.ContainerStateTerminated{ExitCode: 3, Message: result}),
			follow.Result{Phase: workload.Failed}, 3, "", ""},
		{"submit failed", podWith(&corev1.ContainerStateTerminated{}, &corev1.ContainerStateTerminated{ExitCode: 2, Message: "fairing-submit: not allowed to create jobs.batch\n"}),
			follow.Result{Phase: workload.Failed}, 2, "SubmitFailed", "not allowed to create jobs.batch"},
		{"pod never ran", nil, follow.Result{Phase: workload.Failed, Reason: "ErrImagePull", Problem: &follow.Problem{Pod: "p", Container: BuildContainer, Reason: "ErrImagePull", Message: "not found"}},
			ExitNotSubmitted, "ErrImagePull", "not found"},
		{"interrupted", nil, follow.Result{Phase: workload.Failed, Reason: "Interrupted", Message: "following was interrupted", ExitCode: 1}, 1, "Interrupted", "interrupted"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewSimpleClientset()
			if tc.pod != nil {
				cs = fake.NewSimpleClientset(tc.pod)
			}
			res := &Result{Build: Build{Job: j.Name}}
			fr := tc.fr
			evaluate(context.Background(), &kube.Clients{Typed: cs}, jobDriver{}, j, &fr, res)
			if res.ExitCode != tc.code || res.Reason != tc.reason || !strings.Contains(res.Message, tc.contains) {
				t.Errorf("exit %d reason %q message %q; want %d %q containing %q", res.ExitCode, res.Reason, res.Message, tc.code, tc.reason, tc.contains)
			}
			if tc.name == "workload result" && (res.Kind != "job" || res.Name != "fairing-job-y" || !strings.HasPrefix(res.Image, "r/app@") || res.Build.State != workload.Succeeded) {
				t.Errorf("the submit step's result was not read: %+v", res)
			}
			if s := Summary(res); !strings.Contains(s, "build/fairing-build-x") {
				t.Errorf("summary %q", s)
			}
		})
	}
}

// Following ends as soon as the pod's steps are over, not a controller round trip later.
func TestStepsEnded(t *testing.T) {
	pod := func(build, submit corev1.ContainerState) *corev1.Pod {
		p := &corev1.Pod{}
		p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: BuildContainer, State: build}}
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: SubmitContainer, State: submit}}
		return p
	}
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	waiting := corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}
	done := func(code int32) corev1.ContainerState {
		return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code}}
	}
	for _, tc := range []struct {
		name  string
		p     *corev1.Pod
		ended bool
		phase workload.Phase
	}{
		{"building", pod(running, waiting), false, ""},
		{"built, submitting", pod(done(0), running), false, ""},
		{"build failed", pod(done(1), waiting), true, workload.Failed},
		{"workload succeeded", pod(done(0), done(0)), true, workload.Succeeded},
		{"workload failed", pod(done(0), done(3)), true, workload.Failed},
	} {
		st, ok := stepsEnded(tc.p)
		if ok != tc.ended || st.Phase != tc.phase {
			t.Errorf("%s: ended=%v phase=%q, want %v %q", tc.name, ok, st.Phase, tc.ended, tc.phase)
		}
	}
}

// preflight names what is missing before anything is sent: the build service account, the
// registry secret, or the namespace itself (not reported as a missing service account or secret).
func TestPreflight(t *testing.T) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "fairing-build", Namespace: "team-a"}}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "regcred", Namespace: "team-a"}}
	nsMissing := `namespace "team-a" does not exist: create it (kubectl create namespace team-a) or pick another with --namespace`
	tests := []struct {
		name    string
		objs    []runtime.Object
		sa, sec string
		forbid  string // resource the user may not get
		want    string // "" = no error
		notWant string
	}{
		{name: "all-there", objs: []runtime.Object{ns, sa, secret}, sa: "fairing-build", sec: "regcred"},
		{name: "nothing-to-check"},
		{name: "sa-missing", objs: []runtime.Object{ns, secret}, sa: "fairing-build", sec: "regcred",
			want: `service account "fairing-build" does not exist in namespace "team-a"`},
		{name: "secret-missing", objs: []runtime.Object{ns, sa}, sa: "fairing-build", sec: "regcred",
			want: `secret "regcred" (--registry-secret) does not exist in namespace "team-a"`},
		{name: "namespace-missing-sa", sa: "fairing-build", want: nsMissing, notWant: "service account"},
		{name: "namespace-missing-secret", sec: "regcred", want: nsMissing, notWant: `secret "regcred"`},
		{name: "namespaces-forbidden", sa: "fairing-build", forbid: "namespaces",
			want: `service account "fairing-build" does not exist in namespace "team-a"`},
		{name: "serviceaccounts-forbidden", objs: []runtime.Object{ns}, sa: "fairing-build", forbid: "serviceaccounts"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset(tc.objs...)
			if tc.forbid != "" {
				cs.PrependReactor("get", tc.forbid, func(k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, apierrors.NewForbidden(corev1.Resource(tc.forbid), "", errors.New("RBAC: access denied"))
				})
			}
			s := spec()
			s.Namespace, s.ServiceAccount, s.RegistrySecret = "team-a", tc.sa, tc.sec
			err := preflight(context.Background(), &kube.Clients{Typed: cs, Namespace: "team-a"}, "team-a", s)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("error %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			case tc.notWant != "" && strings.Contains(err.Error(), tc.notWant):
				t.Errorf("error %q: must not say %q", err, tc.notWant)
			}
		})
	}
}
