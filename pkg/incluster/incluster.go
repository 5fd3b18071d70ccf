// Package incluster builds an image inside the cluster and submits it from there, driven by one
// command outside the cluster. The context travels through the registry itself, as a
// content-addressed artifact (pkg/contextimage: an unchanged context uploads nothing, an edited
// one only the changed layer); a build Job's pod runs fairing-builder (the build step, an init
// container) and then fairing-submit with the user's deployer options (the submit step); the
// user's terminal follows both and gets the workload's result.
//
// A failed build fails the pod before anything is submitted, and the user's command reports the
// build's own error message (the termination message falls back to the build's last log lines).
package incluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/fairing-dev/fairing/pkg/builder"
	"github.com/fairing-dev/fairing/pkg/contextimage"
	"github.com/fairing-dev/fairing/pkg/deploy"
	"github.com/fairing-dev/fairing/pkg/deploy/follow"
	"github.com/fairing-dev/fairing/pkg/deploy/job"
	"github.com/fairing-dev/fairing/pkg/deploy/kube"
	"github.com/fairing-dev/fairing/pkg/deploy/workload"
	"github.com/fairing-dev/fairing/pkg/registryclient"
)

// RBACHint is the file holding the build pod's service account, Role and RoleBinding.
const RBACHint = "deploy/rbac/fairing-build.yaml"

// ExitNotSubmitted is the exit code when nothing was submitted (the build failed or its pod
// could not run), like fairing-submit's "could not be launched".
const ExitNotSubmitted = 2

// Options of an in-cluster build and submit.
type Options struct {
	// Spec is the build Job. Its Context is filled in by Run when Push is set.
	Spec Spec
	// Push sends the local (preprocessed) context to ContextRepo as an artifact before the Job
	// is created; nil when Spec.ContextVolume holds the files. Meta is recorded with it.
	Push        *builder.Options
	ContextRepo string
	Meta        contextimage.Meta
	// CreateRegistrySecret makes a Docker config Secret from Keychain's credentials for
	// Registries (the user's own, only when asked), owned by the build Job.
	CreateRegistrySecret bool
	Keychain             authn.Keychain
	Registries           []string
	// Cleanup of the build Job, a created Secret and the context artifact after following:
	// never, on-success (default), always.
	Cleanup workload.Cleanup
	// Logs: LogsNone streams nothing; otherwise the build step's and the submit step's logs.
	Logs follow.LogMode
	// Out receives the workload's log lines; Progress everything else (nil: discarded).
	Out, Progress io.Writer
	// FailFast ends following when the build pod cannot start (image pull, scheduling).
	FailFast bool
}

// Result of an in-cluster build and submit: the workload's result as the submit step reported
// it (empty when nothing was submitted), the image built, and what happened to the build.
type Result struct {
	deploy.Result
	// Image is NAME@sha256:... of the image built (and deployed).
	Image string `json:"image,omitempty"`
	Build Build  `json:"build"`
}

// Build describes the build Job's run.
type Build struct {
	Job       string         `json:"job"`
	Namespace string         `json:"namespace"`
	Pod       string         `json:"pod,omitempty"`
	Context   string         `json:"context,omitempty"`
	State     workload.Phase `json:"state"`
	Reason    string         `json:"reason,omitempty"`
	Message   string         `json:"message,omitempty"`
	// ContextBlobs and ContextBytes are what sending the context uploaded.
	ContextBlobs   int     `json:"contextBlobsPushed"`
	ContextBytes   int64   `json:"contextBytesPushed"`
	Deleted        bool    `json:"deleted"`
	ContextDeleted bool    `json:"contextDeleted"`
	Seconds        float64 `json:"durationSeconds"`
}

// Check validates o without a cluster.
func Check(o Options) error {
	s := o.Spec
	if o.Push != nil {
		s.Context = contextimage.Scheme + "check"
	}
	_, err := Job(s)
	return err
}

// Run sends the context, creates the build Job, follows it and cleans up. The returned result
// carries the exit code (the workload's, or ExitNotSubmitted); err is for failures to start or
// follow the build (no result).
func Run(ctx context.Context, c *kube.Clients, o Options) (*Result, error) {
	start := time.Now()
	s := o.Spec
	if s.Namespace == "" {
		s.Namespace = c.Namespace
	}
	ns := s.Namespace
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	say := func(format string, a ...any) { fmt.Fprintf(progress, format+"\n", a...) }
	if err := Check(o); err != nil {
		return nil, err
	}
	d := jobDriver{}
	if err := follow.CheckAccess(ctx, c, d, ns, true, o.Logs); err != nil {
		return nil, err
	}
	if err := preflight(ctx, c, ns, s); err != nil {
		return nil, err
	}

	res := &Result{Build: Build{Namespace: ns}}
	if o.Push != nil {
		ref, rep, err := builder.PushContext(ctx, *o.Push, o.ContextRepo, o.Meta)
		if err != nil {
			return nil, fmt.Errorf("send the build context to %s: %w", o.ContextRepo, err)
		}
		s.Context = ref
		res.Build.ContextBlobs, res.Build.ContextBytes = len(rep.Pushed), rep.BytesUploaded
		unchanged := 0
		for _, l := range rep.Layers {
			if l.Cached {
				unchanged++
			}
		}
		say("context: %d files, %d layers (%d unchanged), %d blobs sent (%s) in %s: %s", rep.Entries, len(rep.Layers), unchanged,
			len(rep.Pushed), humanBytes(rep.BytesUploaded), (time.Duration(rep.Timings.TotalMs) * time.Millisecond).String(), ref)
	}
	res.Build.Context = s.Context

	var secret *corev1.Secret
	if o.CreateRegistrySecret {
		sec, err := RegistrySecret(ctx, o.Keychain, o.Registries, ns, s.ID)
		if err != nil {
			return nil, err
		}
		if secret, err = c.Typed.CoreV1().Secrets(ns).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
			return nil, kube.Explain(err, "create", corev1.Resource("secrets"), ns)
		}
		s.RegistrySecret = secret.Name
		say("secret/%s created from your local credentials for %s", secret.Name, strings.Join(dedup(o.Registries), ", "))
	}
	deleteSecret := func() {
		if secret == nil {
			return
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := c.Typed.CoreV1().Secrets(ns).Delete(dctx, secret.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			say("secret/%s: cleanup failed: %v", secret.Name, err)
		}
	}

	j, err := Job(s)
	if err != nil {
		deleteSecret()
		return nil, err
	}
	created, err := c.Typed.BatchV1().Jobs(ns).Create(ctx, j, metav1.CreateOptions{})
	if err != nil {
		deleteSecret()
		err = kube.Explain(err, "create", d.Resources()[0], ns)
		if s.BuildKit && strings.Contains(err.Error(), "privileged") {
			err = fmt.Errorf("%w; BuildKit build pods run privileged (buildkitd's OCI worker mounts and runs the install steps): "+
				"ask a cluster admin to allow privileged pods in namespace %q (Pod Security level privileged), or pass --builder append "+
				"to build without installing", err, ns)
		}
		return nil, err
	}
	res.Build.Job = created.Name
	say("%s/%s created in namespace %s", Deployer, created.Name, ns)
	if secret != nil {
		// the Secret goes with the Job (its TTL, a delete), also when nobody cleans up
		secret.OwnerReferences = []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: created.Name, UID: created.UID}}
		if _, err := c.Typed.CoreV1().Secrets(ns).Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
			say("secret/%s: could not make it owned by the build Job (delete it yourself): %v", secret.Name, err)
		}
	}

	logs := follow.LogsAll
	if o.Logs == follow.LogsNone {
		logs = follow.LogsNone
	}
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	fr, err := follow.Follow(ctx, c, d, created, follow.Options{
		Logs: logs, Out: router{out: out, progress: progress}, Progress: quieter(progress, created.Name), FailFast: o.FailFast,
		Prefix: func(_, container string) string {
			if container == BuildContainer {
				return buildPrefix
			}
			return "" // the submit step prefixes the workload's lines itself
		},
		Ended: stepsEnded,
	})
	if err != nil {
		return nil, err
	}
	evaluate(ctx, c, d, created, fr, res)
	res.Build.Seconds = time.Since(start).Round(time.Millisecond).Seconds()

	policy := o.Cleanup
	if policy == "" {
		policy = workload.CleanupOnSuccess
	}
	if fr.Reason != "Interrupted" && (policy == workload.CleanupAlways || policy == workload.CleanupOnSuccess && res.ExitCode == 0) {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := d.Delete(dctx, c, ns, created.Name); err != nil && !apierrors.IsNotFound(err) {
			say("%s/%s: cleanup failed: %v", Deployer, created.Name, err)
		} else {
			res.Build.Deleted = true
		}
		deleteSecret()
		if o.Push != nil {
			if err := deleteContext(dctx, s.Context, o.Push.Registry); err != nil {
				say("context %s: cleanup failed: %v", s.Context, err)
			} else {
				res.Build.ContextDeleted = true
			}
		}
	}
	return res, nil
}

// jobDriver is the Job deployer named "build", whose main container is the submit step.
type jobDriver struct{ job.Driver }

func (jobDriver) Kind() string { return Deployer }

func (jobDriver) Pods(obj runtime.Object) workload.Pods {
	p := job.Driver{}.Pods(obj)
	p.Container = SubmitContainer
	return p
}

// preflight reports a missing service account or registry secret before anything is sent or
// created. A user who may not read them is not stopped.
func preflight(ctx context.Context, c *kube.Clients, ns string, s Spec) error {
	if s.ServiceAccount != "" {
		_, err := c.Typed.CoreV1().ServiceAccounts(ns).Get(ctx, s.ServiceAccount, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			if err := kube.MissingNamespace(ctx, c, ns); err != nil {
				return err
			}
			return fmt.Errorf("service account %q does not exist in namespace %q: the build pod runs as it; create it with its Role "+
				"(kubectl -n %s apply -f %s) or name another with --build-service-account", s.ServiceAccount, ns, ns, RBACHint)
		case err != nil && !apierrors.IsForbidden(err):
			return kube.Explain(err, "get", corev1.Resource("serviceaccounts"), ns)
		}
	}
	if s.RegistrySecret != "" {
		_, err := c.Typed.CoreV1().Secrets(ns).Get(ctx, s.RegistrySecret, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			if err := kube.MissingNamespace(ctx, c, ns); err != nil {
				return err
			}
			return fmt.Errorf("secret %q (--registry-secret) does not exist in namespace %q: create it "+
				"(kubectl -n %s create secret docker-registry %s --docker-server=... ) or pass --create-registry-secret", s.RegistrySecret, ns, ns, s.RegistrySecret)
		case err != nil && !apierrors.IsForbidden(err):
			return kube.Explain(err, "get", corev1.Resource("secrets"), ns)
		}
	}
	return nil
}

const buildPrefix = "[build] "

// quieter drops what following the build Job says that the user sees better elsewhere: a step that
// exited with an error (the build's error is in its log and the summary; the submit step reported
// the workload's result itself), and the Job's final state (the summary says what it means).
func quieter(w io.Writer, job string) io.Writer {
	q := regexp.QuoteMeta(Deployer + "/" + job + ": ")
	return filter{w: w, drop: regexp.MustCompile(`^` + q + `(pod \S+ container (` + BuildContainer + `|` + SubmitContainer +
		`): Error \(exit code \d+\)|(Succeeded|Failed)$)`)}
}

// filter writes the lines (one per Write) that drop does not match.
type filter struct {
	w    io.Writer
	drop *regexp.Regexp
}

func (f filter) Write(b []byte) (int, error) {
	if f.drop.Match(bytes.TrimSuffix(b, []byte("\n"))) {
		return len(b), nil
	}
	return f.w.Write(b)
}

// router sends the pod's log lines where they belong: the build step's lines and the submit
// step's own messages to progress, the workload's log lines (which the submit step prefixes with
// [pod]) to out. follow writes one whole line per Write.
type router struct{ out, progress io.Writer }

func (r router) Write(b []byte) (int, error) {
	if bytes.HasPrefix(b, []byte(buildPrefix)) || !bytes.HasPrefix(b, []byte("[")) {
		return r.progress.Write(b)
	}
	return r.out.Write(b)
}

// evaluate reads the build pod's steps: a failed build step, the submit step's result (its
// termination message holds fairing-submit's JSON result), or a pod that never ran.
func evaluate(ctx context.Context, c *kube.Clients, d jobDriver, j *batchv1.Job, fr *follow.Result, res *Result) {
	b := &res.Build
	b.State, b.Reason, b.Message = fr.Phase, fr.Reason, fr.Message
	res.Kind, res.Namespace = "", j.Namespace
	var p *corev1.Pod
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if l, err := c.Typed.CoreV1().Pods(j.Namespace).List(lctx, metav1.ListOptions{LabelSelector: d.Pods(j).All.String()}); err == nil && len(l.Items) > 0 {
		sort.Slice(l.Items, func(a, b int) bool {
			return l.Items[a].CreationTimestamp.After(l.Items[b].CreationTimestamp.Time)
		})
		p = &l.Items[0]
		b.Pod = p.Name
	}
	build, submit := status(p, BuildContainer, true), status(p, SubmitContainer, false)
	switch {
	case build != nil && build.State.Terminated != nil && build.State.Terminated.ExitCode != 0:
		t := build.State.Terminated
		b.State, b.Reason, b.Message = workload.Failed, "BuildFailed", BuildError(t.Message, t.ExitCode)
		res.Phase, res.Reason, res.Message, res.ExitCode = workload.Failed, b.Reason, b.Message, ExitNotSubmitted
	case submit != nil && (submit.State.Terminated != nil || submit.LastTerminationState.Terminated != nil):
		t := submit.State.Terminated
		if t == nil {
			t = submit.LastTerminationState.Terminated
		}
		b.State, b.Reason, b.Message = workload.Succeeded, "", ""
		var r Result
		if err := json.Unmarshal([]byte(t.Message), &r); err == nil && r.Kind != "" {
			res.Result, res.Image = r.Result, r.Image
			return
		}
		// fairing-submit ended without a result: it could not launch the workload
		res.Phase, res.ExitCode = workload.Failed, int(t.ExitCode)
		if t.ExitCode == 0 {
			res.Phase = workload.Succeeded
		}
		res.Reason, res.Message = "SubmitFailed", lastLine(t.Message, "fairing-submit: ")
	default:
		// the pod never ran its steps to the end: it could not start, or following stopped
		if fr.Phase == workload.Succeeded {
			fr.Phase = workload.Failed // a Job cannot complete without its container
		}
		b.State = fr.Phase
		if fr.Problem != nil {
			b.Reason, b.Message = fr.Problem.Reason, fr.Problem.String()
		}
		res.Phase, res.Reason, res.Message = workload.Failed, b.Reason, b.Message
		res.ExitCode = ExitNotSubmitted
		if fr.Reason == "Interrupted" || fr.Reason == "Timeout" {
			res.Reason, res.Message, res.ExitCode = fr.Reason, fr.Message, fr.ExitCode
		}
	}
}

// stepsEnded ends following as soon as the pod's steps are over (the build failed, or the submit
// step ended): their results are in the pod, and the Job's condition would come a controller round
// trip later.
func stepsEnded(p *corev1.Pod) (workload.State, bool) {
	if b := status(p, BuildContainer, true); b != nil && b.State.Terminated != nil && b.State.Terminated.ExitCode != 0 {
		return workload.State{Phase: workload.Failed, Reason: "BuildFailed"}, true
	}
	if s := status(p, SubmitContainer, false); s != nil && s.State.Terminated != nil {
		if s.State.Terminated.ExitCode == 0 {
			return workload.State{Phase: workload.Succeeded}, true
		}
		return workload.State{Phase: workload.Failed, Reason: "SubmitStepFailed"}, true
	}
	return workload.State{}, false
}

func status(p *corev1.Pod, name string, init bool) *corev1.ContainerStatus {
	if p == nil {
		return nil
	}
	list := p.Status.ContainerStatuses
	if init {
		list = p.Status.InitContainerStatuses
	}
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	return nil
}

// BuildError is the build step's error from its termination message (the last lines of its
// log): fairing-builder's own error line when there is one.
func BuildError(msg string, code int32) string {
	if l := lastLine(msg, "fairing-builder: "); l != "" {
		return l
	}
	return fmt.Sprintf("the build step exited with code %d", code)
}

// lastLine returns the last line of msg starting with prefix, or else its last non-empty line.
func lastLine(msg, prefix string) string {
	lines := strings.Split(strings.TrimSpace(msg), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], prefix) {
			return strings.TrimSpace(lines[i])
		}
	}
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			return l
		}
	}
	return ""
}

// deleteContext removes the context artifact's manifest (its blobs stay while images use them).
func deleteContext(ctx context.Context, ref string, rc registryclient.Config) error {
	r, err := rc.ParseReference(strings.TrimPrefix(ref, contextimage.Scheme))
	if err != nil {
		return err
	}
	d, ok := r.(name.Digest)
	if !ok {
		return fmt.Errorf("not a digest reference")
	}
	opts, err := rc.RemoteOptions(ctx)
	if err != nil {
		return err
	}
	if err := remote.Delete(d, opts...); err != nil {
		return registryclient.Explain(err)
	}
	return nil
}

// Summary is the one-line report of the build.
func Summary(r *Result) string {
	b := r.Build
	what := Deployer + "/" + b.Job
	var s string
	switch {
	case b.State == workload.Succeeded && r.Reason == "SubmitFailed":
		s = fmt.Sprintf("%s built the image, but the submit step failed: %s", what, r.Message)
		if strings.Contains(r.Message, "not allowed to") {
			s += fmt.Sprintf(" (the build pod's rights come from %s)", RBACHint)
		}
	case b.State == workload.Succeeded && r.Image != "":
		s = fmt.Sprintf("%s built %s and submitted it in %.1fs", what, r.Image, b.Seconds)
	case b.State == workload.Succeeded:
		s = fmt.Sprintf("%s built and ran the submit step in %.1fs", what, b.Seconds)
	default:
		s = what + " failed"
		if b.Reason != "" {
			s += " (" + b.Reason + ")"
		}
		if b.Message != "" {
			s += ": " + strings.Join(strings.Fields(b.Message), " ")
		}
		if b.Reason == "BuildFailed" && strings.Contains(b.Message, "lists packages to install") {
			s += " (to install them in the cluster: pass --builder buildkit)"
		}
		if b.Reason == "BuildFailed" && (strings.Contains(b.Message, "401 Unauthorized") || strings.Contains(b.Message, "403 Forbidden")) {
			s += " (the build pod has no credentials for that registry: pass --create-registry-secret, or --registry-secret with a docker-registry Secret)"
		}
		if b.Reason != "Interrupted" {
			s += "; nothing was submitted"
		}
	}
	if b.Deleted {
		s += "; build job deleted"
	} else if b.Job != "" {
		s += fmt.Sprintf("; kept for inspection (fairing-submit logs %s; fairing-submit delete %s)", b.Job, b.Job)
	}
	return s
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
