package follow

import (
	"bufio"
	"context"
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
// restarts. A reconnect can only ask from a whole second: a logCursor skips the lines already shown.
// Once the container has ended, what is left of its log is read: a stream can end before the log
// does (a connection cut, an API server or kubelet restarting, which may even end it cleanly) just
// as the container ends.
func streamLogs(ctx context.Context, cs kubernetes.Interface, ns, pod, container, prefix string, out *LineWriter) {
	pods := cs.CoreV1().Pods(ns)
	var cur logCursor
	for {
		opts := cur.options(container)
		opts.Follow = true
		rc, err := pods.GetLogs(pod, opts).Stream(ctx)
		if err == nil {
			copyLines(rc, prefix, &cur, out)
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
			// the rest of the log, if any: one last read without follow
			if rc, err := pods.GetLogs(pod, cur.options(container)).Stream(ctx); err == nil {
				copyLines(rc, prefix, &cur, out)
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

// logCursor is how far a container's log was read. The kubelet's log interleaves stdout and
// stderr, whose timestamps need not be in order, so a reconnect from a whole second cannot skip
// what was shown by comparing timestamps: it skips as many lines as were shown from that second
// on (the kubelet returns them again first, in the same order).
type logCursor struct {
	since  time.Time   // the whole second a reconnect asks from; zero: the start
	recent []time.Time // timestamps of the lines shown at or after since
}

func (c *logCursor) options(container string) *corev1.PodLogOptions {
	o := &corev1.PodLogOptions{Container: container, Timestamps: true}
	if !c.since.IsZero() {
		since := metav1.NewTime(c.since)
		o.SinceTime = &since
	}
	return o
}

func (c *logCursor) add(t time.Time) {
	if s := t.Truncate(time.Second); s.After(c.since) {
		c.since = s
		kept := c.recent[:0]
		for _, r := range c.recent {
			if !r.Before(s) {
				kept = append(kept, r)
			}
		}
		c.recent = kept
	}
	if !t.Before(c.since) {
		c.recent = append(c.recent, t)
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

// copyLines prints the lines of a timestamped log stream read from where cur says, skipping
// those cur has seen, and moves cur on.
func copyLines(r io.Reader, prefix string, cur *logCursor, out *LineWriter) {
	skip := len(cur.recent)
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
				if skip > 0 {
					skip--
					continue
				}
				cur.add(t)
				out.Line(prefix, text)
			default:
				out.Line(prefix, line)
			}
		}
		if err != nil {
			return
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
			copyLines(rc, prefix, &logCursor{}, w)
			rc.Close()
		}
	}
	return nil
}
