package follow

import (
	"bufio"
	"context"
	"errors"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/fairing-dev/fairing/pkg/deploy/kube"
	"github.com/fairing-dev/fairing/pkg/deploy/workload"
)

// LineWriter writes whole lines, each with a prefix, from many goroutines without interleaving
// them: every line is one Write.
type LineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// NewLineWriter wraps w.
func NewLineWriter(w io.Writer) *LineWriter { return &LineWriter{w: w} }

// Line writes prefix+line+"\n" in one Write.
func (l *LineWriter) Line(prefix, line string) {
	b := make([]byte, 0, len(prefix)+len(line)+1)
	b = append(append(append(b, prefix...), line...), '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.w.Write(b)
}

// streamLogs follows one container's log until the container has terminated for good (or the pod
// is gone, or ctx ends), reconnecting when the stream breaks while it still runs and following
// restarts. Lines are read with their kubelet timestamps so that a reconnect (which can only ask
// for whole seconds) skips the lines already shown.
func streamLogs(ctx context.Context, cs kubernetes.Interface, ns, pod, container, prefix string, out *LineWriter) {
	pods := cs.CoreV1().Pods(ns)
	var last time.Time
	for {
		opts := &corev1.PodLogOptions{Container: container, Follow: true, Timestamps: true}
		if !last.IsZero() {
			since := metav1.NewTime(last.Truncate(time.Second))
			opts.SinceTime = &since
		}
		rc, err := pods.GetLogs(pod, opts).Stream(ctx)
		if err == nil {
			last = copyLines(rc, prefix, last, out)
			rc.Close()
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil && apierrors.IsNotFound(err) {
			return
		}
		// the stream ended or could not start: is there more to come?
		p, gerr := pods.Get(ctx, pod, metav1.GetOptions{})
		if gerr != nil {
			if apierrors.IsNotFound(gerr) || ctx.Err() != nil {
				return
			}
		} else if done(p, container) {
			if err == nil {
				return
			}
			// the container ended before we could read its log: one last try without follow
			if rc, err := pods.GetLogs(pod, &corev1.PodLogOptions{Container: container, Timestamps: true}).Stream(ctx); err == nil {
				copyLines(rc, prefix, last, out)
				rc.Close()
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// done says the container will not run again: it terminated and the pod does not restart it.
func done(p *corev1.Pod, container string) bool {
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed || p.DeletionTimestamp != nil {
		return true
	}
	for _, s := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if s.Name != container {
			continue
		}
		if s.State.Terminated == nil {
			return false
		}
		switch p.Spec.RestartPolicy {
		case corev1.RestartPolicyNever:
			return true
		case corev1.RestartPolicyOnFailure:
			return s.State.Terminated.ExitCode == 0
		}
		return false
	}
	return false
}

// copyLines prints the lines of a timestamped log stream newer than after and returns the newest
// timestamp seen.
func copyLines(r io.Reader, prefix string, after time.Time, out *LineWriter) time.Time {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadString('\n')
		if len(line) > 0 {
			line = strings.TrimSuffix(line, "\n")
			ts, text, ok := strings.Cut(line, " ")
			t, perr := time.Parse(time.RFC3339Nano, ts)
			switch {
			case !ok && perr == nil: // an empty line: only the timestamp
				text = ""
				fallthrough
			case perr == nil:
				if !after.IsZero() && !t.After(after) {
					continue
				}
				after = t
				out.Line(prefix, text)
			default:
				out.Line(prefix, line)
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return after
			}
			return after
		}
	}
}

// PrintLogs prints the current logs of a workload's pods (no following): the main container of
// the main pods, or every container of every pod with LogsAll. Each line is prefixed by its pod.
func PrintLogs(ctx context.Context, c *kube.Clients, sel workload.Pods, ns string, mode LogMode, out io.Writer) error {
	s := sel.Main
	if mode == LogsAll {
		s = sel.All
	}
	l, err := c.Typed.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: s.String()})
	if err != nil {
		return kube.Explain(err, "list", corev1.Resource("pods"), ns)
	}
	sort.Slice(l.Items, func(i, j int) bool { return l.Items[i].Name < l.Items[j].Name })
	w := NewLineWriter(out)
	for _, p := range l.Items {
		for _, ctr := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
			if mode != LogsAll && ctr.Name != sel.Container && hasContainer(&p, sel.Container) {
				continue
			}
			prefix := "[" + p.Name + "] "
			if ctr.Name != sel.Container {
				prefix = "[" + p.Name + "/" + ctr.Name + "] "
			}
			rc, err := c.Typed.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{Container: ctr.Name, Timestamps: true}).Stream(ctx)
			if err != nil {
				if apierrors.IsBadRequest(err) { // not started yet
					continue
				}
				return kube.Explain(err, "get logs of pod "+p.Name+" from", corev1.Resource("pods/log"), ns)
			}
			copyLines(rc, prefix, time.Time{}, w)
			rc.Close()
		}
	}
	return nil
}
