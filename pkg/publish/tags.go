package publish

import (
	"context"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Tags reads what a destination tag holds now, once per build. The layer builder asks early
// (to find layers by key on a machine with an empty cache) and the publisher late (to know
// which blobs the repository has): one manifest GET serves both, and it can be started while
// the context is still being walked.
type Tags struct {
	opts []remote.Option
	mu   sync.Mutex
	m    map[string]*tagGet
}

type tagGet struct {
	once sync.Once
	desc *remote.Descriptor
	err  error
}

// NewTags reads tags with opts.
func NewTags(opts []remote.Option) *Tags {
	return &Tags{opts: opts, m: map[string]*tagGet{}}
}

// Get is remote.Get(ref), asked of the registry once whoever asks and however often.
func (t *Tags) Get(ctx context.Context, ref name.Reference) (*remote.Descriptor, error) {
	t.mu.Lock()
	g := t.m[ref.String()]
	if g == nil {
		g = &tagGet{}
		t.m[ref.String()] = g
	}
	t.mu.Unlock()
	g.once.Do(func() {
		g.desc, g.err = remote.Get(ref, append(t.opts[:len(t.opts):len(t.opts)], remote.WithContext(ctx))...)
	})
	return g.desc, g.err
}
