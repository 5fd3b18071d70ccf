package kube

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// Lister is what typed and dynamic resource clients share for listing and watching.
type Lister[L runtime.Object] interface {
	List(ctx context.Context, o metav1.ListOptions) (L, error)
	Watch(ctx context.Context, o metav1.ListOptions) (watch.Interface, error)
}

// NameListWatch lists and watches the one object named name, for watchtools.UntilWithSync and
// informers (which relist and resume when a watch expires).
func NameListWatch[L runtime.Object](r Lister[L], name string) cache.ListerWatcher {
	return SelectorListWatch(r, fields.OneTermEqualSelector("metadata.name", name).String(), "")
}

// SelectorListWatch lists and watches the objects matching a field and a label selector.
func SelectorListWatch[L runtime.Object](r Lister[L], fieldSelector, labelSelector string) cache.ListerWatcher {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector, o.LabelSelector = fieldSelector, labelSelector
			return r.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector, o.LabelSelector = fieldSelector, labelSelector
			return r.Watch(ctx, o)
		},
	}
}

// ListWatcher tells the reflector whether the clients support streaming lists (WatchList): the
// fake clientset of unit tests does not, real API servers do.
func (c *Clients) ListWatcher(lw cache.ListerWatcher) cache.ListerWatcher {
	if l, ok := lw.(*cache.ListWatch); ok && c.Typed != nil {
		return cache.ToListWatcherWithWatchListSemantics(l, c.Typed)
	}
	return lw
}
