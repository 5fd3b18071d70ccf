// Package follow watches a workload until it ends: it judges the main object's state, watches the
// workload's pods for problems (image pulls, crashes, scheduling, OOM), streams the logs of the
// pods that matter line by line with a pod prefix, and computes the result and exit code.
//
// Watches go through informers (watchtools.UntilWithSync and a pod informer), which relist and
// resume when the API server ends or expires a watch, so following never hangs on a dead watch.
package follow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fairing-dev/fairing/pkg/deploy/kube"
	"github.com/fairing-dev/fairing/pkg/deploy/workload"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

// LogMode selects whose logs are streamed.
type LogMode string

const (
	LogsMain LogMode = "main" // the workload's main container in its main pods (default)
	LogsAll  LogMode = "all"  // every container of every pod of the workload
	LogsNone LogMode = "none"
)

// Options of Follow.
type Options struct {
	Logs LogMode
	// Out receives the log lines; Progress the state changes and problems (nil: discarded).
	Out, Progress io.Writer
	// FailFast ends following as soon as a pod shows a problem that does not heal by itself:
	// ErrImagePull/ImagePullBackOff, InvalidImageName, CreateContainerConfigError, CrashLoopBackOff,
	// Unschedulable. Without it those are reported and following goes on (until Timeout).
	FailFast bool
	// Timeout of following; zero: none.
	Timeout time.Duration
	// Drain is how long to wait for log streams to finish after the workload ended (default 15 s).
	Drain time.Duration
}

// Result of following a workload.
type Result struct {
	Kind      string         `json:"kind"`
	Name      string         `json:"name"`
	Namespace string         `json:"namespace"`
	Phase     workload.Phase `json:"state"`
	Reason    string         `json:"reason,omitempty"`
	Message   string         `json:"message,omitempty"`
	ExitCode  int            `json:"exitCode"`
	URL       string         `json:"url,omitempty"`
	Pods      []string       `json:"pods,omitempty"`
	// Problem is the pod-level cause of a failure, when one is known.
	Problem  *Problem      `json:"problem,omitempty"`
	Duration time.Duration `json:"-"`
	Seconds  float64       `json:"durationSeconds"`
}

// Problem is something wrong with one container or pod.
type Problem struct {
	Pod       string `json:"pod"`
	Container string `json:"container,omitempty"`
	Reason    string `json:"reason"`
	Message   string `json:"message,omitempty"`
	ExitCode  int    `json:"exitCode,omitempty"`
	// Fatal problems do not heal by themselves (with FailFast they end following).
	Fatal bool `json:"-"`
	// Lingering problems may be transient (a registry timeout): with FailFast they end following
	// only when they last (LingerFatal).
	Lingering bool `json:"-"`
}

// LingerFatal is how long a possibly transient problem may last before FailFast gives up.
const LingerFatal = 60 * time.Second

// permanent says whether an image pull or container creation message names a cause that only
// the user can fix.
func permanent(msg string) bool {
	m := strings.ToLower(msg)
	for _, s := range []string{"not found", "manifest unknown", "unauthorized", "denied", "forbidden", "invalid", "no such host", "couldn't find key"} {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

func (p *Problem) String() string {
	s := ""
	if p.Pod != "" {
		s = "pod " + p.Pod
	}
	if p.Container != "" {
		s += " container " + p.Container
	}
	if s != "" {
		s += ": "
	}
	s += p.Reason
	if p.ExitCode != 0 {
		s += fmt.Sprintf(" (exit code %d)", p.ExitCode)
	}
	if p.Message != "" {
		s += ": " + oneLine(p.Message)
	}
	return s
}

// fatalWaiting are container waiting reasons that need a change by the user to go away.
var fatalWaiting = map[string]bool{
	"ErrImagePull": true, "ImagePullBackOff": true, "InvalidImageName": true, "ErrImageNeverPull": true,
	"CreateContainerConfigError": true, "CreateContainerError": true, "CrashLoopBackOff": true,
}

// Inspect lists the problems of a pod: containers waiting for a reason that will not heal,
// terminated with an error or OOMKilled, and scheduling failures with the scheduler's reason.
func Inspect(p *corev1.Pod) []Problem {
	var out []Problem
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			out = append(out, Problem{Pod: p.Name, Reason: "Unschedulable", Message: c.Message, Fatal: true})
		}
	}
	statuses := append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
	for _, s := range statuses {
		if w := s.State.Waiting; w != nil && fatalWaiting[w.Reason] {
			pr := Problem{Pod: p.Name, Container: s.Name, Reason: w.Reason, Message: w.Message, Fatal: true}
			switch w.Reason {
			case "ErrImagePull", "ImagePullBackOff", "CreateContainerError", "CreateContainerConfigError":
				if !permanent(w.Message) {
					pr.Fatal, pr.Lingering = false, true
				}
			}
			if t := s.LastTerminationState.Terminated; t != nil && w.Reason == "CrashLoopBackOff" {
				pr.ExitCode = int(t.ExitCode)
				if t.Reason == "OOMKilled" {
					pr.Message = "last run was OOMKilled (" + memLimit(p, s.Name) + "); " + pr.Message
				}
			}
			out = append(out, pr)
		}
		if t := s.State.Terminated; t != nil && (t.ExitCode != 0 || t.Reason == "OOMKilled") {
			pr := Problem{Pod: p.Name, Container: s.Name, Reason: t.Reason, Message: t.Message, ExitCode: int(t.ExitCode)}
			if pr.Reason == "" {
				pr.Reason = "Error"
			}
			// a restarted container that failed again is crash-looping: the kubelet says so only
			// when its back-off (10 s, 20 s, ...) catches up with the next sync
			if p.Spec.RestartPolicy != corev1.RestartPolicyNever && s.RestartCount >= 1 {
				pr.Reason, pr.Fatal = "CrashLoopBackOff", true
				pr.Message = strings.TrimSpace(fmt.Sprintf("failed again after %d restart(s) (last reason %s) %s", s.RestartCount, t.Reason, pr.Message))
			}
			if t.Reason == "OOMKilled" {
				pr.Message = strings.TrimSpace("out of memory (" + memLimit(p, s.Name) + ") " + t.Message)
			}
			out = append(out, pr)
		}
	}
	if p.Status.Phase == corev1.PodFailed && len(out) == 0 && p.Status.Reason != "" {
		out = append(out, Problem{Pod: p.Name, Reason: p.Status.Reason, Message: p.Status.Message})
	}
	return out
}

// FatalEvent says whether a warning event means pods cannot be created or started until the user
// changes something: a missing service account, secret, configMap or claim, a forbidden or invalid
// pod. Transient ones ("failed to sync configmap cache", timeouts) are only reported.
func FatalEvent(e *corev1.Event) bool {
	if e.Reason != "FailedCreate" && e.Reason != "FailedMount" {
		return false
	}
	m := strings.ToLower(e.Message)
	return strings.Contains(m, "not found") || strings.Contains(m, "forbidden") || strings.Contains(m, "invalid")
}

func memLimit(p *corev1.Pod, container string) string {
	for _, c := range p.Spec.Containers {
		if c.Name == container {
			if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
				return "memory limit " + q.String()
			}
		}
	}
	return "no memory limit set"
}

type objEvent struct {
	obj     runtime.Object
	state   workload.State
	deleted bool
}

// Follow follows the workload whose main object was just created (or fetched) until it reaches a
// terminal state, a fatal problem (with FailFast), the timeout, or ctx's end.
func Follow(ctx context.Context, c *kube.Clients, d workload.Driver, created runtime.Object, o Options) (*Result, error) {
	start := time.Now()
	m, err := meta.Accessor(created)
	if err != nil {
		return nil, fmt.Errorf("follow: %w", err)
	}
	ns, name := m.GetNamespace(), m.GetName()
	res := &Result{Kind: d.Kind(), Name: name, Namespace: ns, Phase: workload.Pending}
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Logs == "" {
		o.Logs = LogsMain
	}
	if o.Drain == 0 {
		o.Drain = 15 * time.Second
	}
	say := func(format string, a ...any) { fmt.Fprintf(progress, format+"\n", a...) }

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var timeoutC <-chan time.Time
	if o.Timeout > 0 {
		t := time.NewTimer(o.Timeout)
		defer t.Stop()
		timeoutC = t.C
	}

	// the main object
	objs := make(chan objEvent, 16)
	watchErr := make(chan error, 1)
	lw, typ := d.ListWatch(c, ns, name)
	lw = c.ListWatcher(lw)
	go func() {
		_, err := watchtools.UntilWithSync(wctx, lw, typ, nil, func(ev watch.Event) (bool, error) {
			e := objEvent{obj: ev.Object}
			if ev.Type == watch.Deleted {
				e.deleted = true
			} else {
				e.state = d.Evaluate(ev.Object)
			}
			select {
			case objs <- e:
			case <-wctx.Done():
			}
			return e.deleted || e.state.Phase.Terminal(), nil
		})
		watchErr <- err
	}()

	// its pods
	sel := d.Pods(created)
	podsC := make(chan *corev1.Pod, 64)
	inf := cache.NewSharedIndexInformer(
		c.ListWatcher(kube.SelectorListWatch[*corev1.PodList](c.Typed.CoreV1().Pods(ns), "", sel.All.String())),
		&corev1.Pod{}, 0, cache.Indexers{})
	send := func(obj any) {
		if p, ok := obj.(*corev1.Pod); ok {
			select {
			case podsC <- p:
			case <-wctx.Done():
			}
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    send,
		UpdateFunc: func(_, n any) { send(n) },
	}); err != nil {
		return nil, fmt.Errorf("watch pods: %w", err)
	}
	go inf.RunWithContext(wctx)

	// warning events of the workload, its pods and its ReplicaSets: pods that cannot be created
	// (a missing service account, quota, admission) or volumes that cannot be mounted show only here
	eventsC := make(chan *corev1.Event, 64)
	evs := c.Typed.CoreV1().Events(ns)
	warnings := fields.OneTermEqualSelector("type", corev1.EventTypeWarning).String()
	if _, err := evs.List(wctx, metav1.ListOptions{FieldSelector: warnings, Limit: 1}); err == nil { // no rights: no events
		einf := cache.NewSharedIndexInformer(c.ListWatcher(kube.SelectorListWatch[*corev1.EventList](evs, warnings, "")), &corev1.Event{}, 0, cache.Indexers{})
		sendEv := func(obj any) {
			if e, ok := obj.(*corev1.Event); ok {
				select {
				case eventsC <- e:
				case <-wctx.Done():
				}
			}
		}
		if _, err := einf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: sendEv, UpdateFunc: func(_, n any) { sendEv(n) }}); err == nil {
			go einf.RunWithContext(wctx)
		}
	}

	// log streams
	lctx, lcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer lcancel()
	go func() { // the caller's cancellation (Ctrl-C) stops the streams at once
		select {
		case <-ctx.Done():
			lcancel()
		case <-lctx.Done():
		}
	}()
	lines := NewLineWriter(o.Out)
	var wg sync.WaitGroup
	streaming := map[string]context.CancelFunc{}
	seen := map[string]bool{}
	reported := map[string]bool{}
	var mainObj runtime.Object = created
	startStreams := func(p *corev1.Pod) {
		if o.Logs == LogsNone || p.DeletionTimestamp != nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			return
		}
		if o.Logs == LogsMain && !sel.Main.Matches(labelsOf(p)) {
			return
		}
		statuses := p.Status.ContainerStatuses
		if o.Logs == LogsAll {
			statuses = append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), statuses...)
		}
		for _, s := range statuses {
			if o.Logs == LogsMain && s.Name != sel.Container && hasContainer(p, sel.Container) {
				continue
			}
			if s.State.Running == nil && s.State.Terminated == nil && s.LastTerminationState.Terminated == nil {
				continue
			}
			key := p.Name + "/" + s.Name
			if streaming[key] != nil {
				continue
			}
			sctx, scancel := context.WithCancel(lctx)
			streaming[key] = scancel
			prefix := "[" + p.Name + "] "
			if s.Name != sel.Container || o.Logs == LogsAll && len(p.Spec.Containers)+len(p.Spec.InitContainers) > 1 {
				prefix = "[" + p.Name + "/" + s.Name + "] "
			}
			wg.Add(1)
			go func(pod, ctr, prefix string) {
				defer wg.Done()
				streamLogs(sctx, c.Typed, ns, pod, ctr, prefix, lines)
			}(p.Name, s.Name, prefix)
		}
	}
	var fatal *Problem
	var lastProblem *Problem
	since := map[string]time.Time{} // when a lingering problem was first seen
	handlePod := func(p *corev1.Pod) {
		if !seen[p.Name] {
			seen[p.Name] = true
			res.Pods = append(res.Pods, p.Name)
		}
		startStreams(p)
		for _, pr := range Inspect(p) {
			pr := pr
			key := pr.Pod + "/" + pr.Container + "/" + pr.Reason
			if !reported[key] {
				reported[key] = true
				say("%s/%s: %s", d.Kind(), name, pr.String())
			}
			if pr.ExitCode != 0 || pr.Reason == "OOMKilled" {
				lastProblem = &pr
			}
			if pr.Lingering {
				k := pr.Pod + "/" + pr.Container + "/lingering"
				if _, ok := since[k]; !ok {
					since[k] = time.Now()
				}
				pr.Fatal = time.Since(since[k]) > LingerFatal
			}
			if pr.Fatal && o.FailFast && fatal == nil {
				fatal = &pr
			}
		}
	}

	mainUID := m.GetUID()
	handleEvent := func(e *corev1.Event) {
		io := e.InvolvedObject
		ours := io.UID == mainUID && mainUID != "" || io.Kind == "Pod" && seen[io.Name] ||
			io.Kind == "ReplicaSet" && strings.HasPrefix(io.Name, name+"-")
		if !ours || e.LastTimestamp.Time.Before(start.Add(-time.Second)) && e.EventTime.Time.Before(start.Add(-time.Second)) {
			return
		}
		key := io.Kind + "/" + io.Name + "/" + e.Reason + "/" + e.Message
		if reported[key] {
			return
		}
		reported[key] = true
		what := strings.ToLower(io.Kind) + " " + io.Name
		say("%s/%s: %s: %s: %s", d.Kind(), name, what, e.Reason, oneLine(e.Message))
		if FatalEvent(e) && o.FailFast && fatal == nil {
			fatal = &Problem{Pod: io.Name, Reason: e.Reason, Message: e.Message, Fatal: true}
			if io.Kind != "Pod" {
				fatal.Pod = ""
			}
		}
	}

	finish := func(st workload.State) (*Result, error) {
		cancel() // stop the watches
		res.Phase, res.Reason, res.Message = st.Phase, st.Reason, st.Message
		if st.URL != "" {
			res.URL = st.URL
		}
		// a last look at the pods: catch containers that ended before their events reached us,
		// so that no log and no exit code is missed
		fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer fcancel()
		if st.Phase != workload.Ready && st.Phase != workload.Deleted {
			if l, err := c.Typed.CoreV1().Pods(ns).List(fctx, metav1.ListOptions{LabelSelector: sel.All.String()}); err == nil {
				sort.Slice(l.Items, func(i, j int) bool { return l.Items[i].Name < l.Items[j].Name })
				live := map[string]bool{}
				for i := range l.Items {
					p := &l.Items[i]
					if ctx.Err() == nil {
						handlePod(p)
					}
					// wait only for the logs of containers that ended for good; the others (killed
					// at a deadline, crash-looping, still serving) would keep us waiting
					for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
						if cs.State.Terminated != nil && done(p, cs.Name) {
							live[p.Name+"/"+cs.Name] = true
						}
					}
				}
				for key, stop := range streaming {
					if !live[key] {
						stop()
					}
				}
				if res.Problem == nil && st.Phase == workload.Failed {
					res.Problem = pickProblem(l.Items, sel, fatal, lastProblem)
				}
			}
			// let the log streams reach the end of the logs
			doneC := make(chan struct{})
			go func() { wg.Wait(); close(doneC) }()
			select {
			case <-doneC:
			case <-time.After(o.Drain):
				say("%s/%s: gave up waiting for the end of the logs after %s", d.Kind(), name, o.Drain)
			case <-ctx.Done():
			}
		}
		lcancel()
		wg.Wait()
		if res.Problem == nil && res.Phase == workload.Failed {
			res.Problem = fatal
			if res.Problem == nil {
				res.Problem = lastProblem
			}
		}
		switch res.Phase {
		case workload.Succeeded, workload.Ready:
			res.ExitCode = 0
		default:
			res.ExitCode = 1
			if res.Problem != nil && res.Problem.ExitCode != 0 && res.Reason != "DeadlineExceeded" && res.Reason != "Timeout" {
				res.ExitCode = res.Problem.ExitCode
			}
		}
		if res.Phase == workload.Ready && res.URL == "" {
			if r, ok := d.(workload.URLResolver); ok {
				uctx := ctx
				var ucancel context.CancelFunc = func() {}
				if o.Timeout > 0 {
					uctx, ucancel = context.WithTimeout(uctx, max(o.Timeout-time.Since(start), time.Second))
				}
				u, err := r.URL(uctx, c, mainObj)
				ucancel()
				if err != nil {
					res.Phase, res.Reason, res.Message, res.ExitCode = workload.Failed, "NoURL", err.Error(), 1
				}
				res.URL = u
			}
		}
		sort.Strings(res.Pods)
		res.Duration = time.Since(start)
		res.Seconds = res.Duration.Round(time.Millisecond).Seconds()
		return res, nil
	}

	lastPhase := workload.Phase("")
	for {
		select {
		case e := <-objs:
			mainObj = e.obj
			if e.deleted {
				return finish(workload.State{Phase: workload.Deleted, Reason: "Deleted", Message: d.Kind() + " " + name + " was deleted while it was followed"})
			}
			if e.state.Phase != lastPhase {
				lastPhase = e.state.Phase
				msg := ""
				if e.state.Message != "" && !e.state.Phase.Terminal() {
					msg = ": " + oneLine(e.state.Message)
				}
				say("%s/%s: %s%s", d.Kind(), name, e.state.Phase, msg)
			}
			if e.state.Phase.Terminal() {
				return finish(e.state)
			}
		case e := <-eventsC:
			handleEvent(e)
			if fatal != nil {
				res.Problem = fatal
				return finish(workload.State{Phase: workload.Failed, Reason: fatal.Reason, Message: fatal.String()})
			}
		case p := <-podsC:
			handlePod(p)
			if fatal != nil {
				res.Problem = fatal
				return finish(workload.State{Phase: workload.Failed, Reason: fatal.Reason, Message: fatal.String()})
			}
		case err := <-watchErr:
			if ctx.Err() != nil {
				return finish(workload.State{Phase: workload.Failed, Reason: "Interrupted", Message: "following was interrupted; the workload is still there"})
			}
			if err != nil && !errors.Is(err, context.Canceled) {
				return nil, fmt.Errorf("watch %s %s: %w", d.Kind(), name, err)
			}
		case <-timeoutC:
			msg := fmt.Sprintf("no result within the timeout of %s (last state %s)", o.Timeout, lastPhase)
			if lastProblem != nil {
				msg += "; last problem: " + lastProblem.String()
			}
			return finish(workload.State{Phase: workload.Failed, Reason: "Timeout", Message: msg})
		case <-ctx.Done():
			return finish(workload.State{Phase: workload.Failed, Reason: "Interrupted", Message: "following was interrupted; the workload is still there"})
		}
	}
}

// pickProblem finds the failure's cause among the pods: the main container of a main pod that
// failed, else any failed container, else the fatal problem seen while following.
func pickProblem(pods []corev1.Pod, sel workload.Pods, fatal, last *Problem) *Problem {
	var best *Problem
	score := -1
	for i := range pods {
		p := &pods[i]
		for _, pr := range Inspect(p) {
			s := 0
			if pr.ExitCode != 0 || pr.Reason == "OOMKilled" {
				s += 4
			}
			if pr.Container == sel.Container {
				s += 2
			}
			if sel.Main.Matches(labelsOf(p)) {
				s++
			}
			if s > score {
				pr := pr
				best, score = &pr, s
			}
		}
	}
	if best != nil && (best.ExitCode != 0 || fatal == nil) {
		return best
	}
	if fatal != nil {
		return fatal
	}
	if best != nil {
		return best
	}
	return last
}

func labelsOf(p *corev1.Pod) labels.Set { return labels.Set(p.Labels) }
func oneLine(s string) string           { return strings.Join(strings.Fields(s), " ") }
func hasContainer(p *corev1.Pod, n string) bool {
	for _, c := range p.Spec.Containers {
		if c.Name == n {
			return true
		}
	}
	return false
}
