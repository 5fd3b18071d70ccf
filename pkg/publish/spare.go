package publish

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// spareUpload is an upload session opened while the layers are still being written, for the
// image config that will follow them. A config names the layers' diffIDs, so it exists only
// once the last layer is done, and its upload is on the critical path of every build that
// changed something: opened then, it costs three round trips (POST, PATCH, PUT) before the
// manifest can be written; into a session opened earlier, one (PUT with the body).
type spareUpload struct {
	ready  chan struct{} // closed once the session is open, or could not be
	client *http.Client
	loc    *url.URL // nil: no session (the config goes the usual way)
	used   bool     // taken by a config (under the publisher's lock)
	sent   v1.Hash  // the blob it holds, once written
}

// pushClient is an authenticated client for one repository, made once (a ping, and a token
// where the registry wants one) and shared by its spare sessions.
type pushClient struct {
	ready  chan struct{}
	client *http.Client // nil: none could be made
}

// maxSpares bounds the sessions opened per repository: a base of many platforms does not
// make a burst of uploads the registry may count against a rate limit.
const maxSpares = 16

// ExpectConfigs says how many image configs the build will have (one per platform): as many
// spare sessions (up to maxSpares) are opened per repository once a layer is sent. Default one.
func (p *Publisher) ExpectConfigs(n int) {
	p.spareMu.Lock()
	p.wantSpares = min(n, maxSpares)
	var open []name.Repository
	for repo := range p.spares {
		open = append(open, repo) // a layer was sent already: open the rest now
	}
	p.spareMu.Unlock()
	for _, repo := range open {
		p.spare(repo)
	}
}

// spare opens repo's spare sessions in the background, as many as configs are expected.
func (p *Publisher) spare(repo name.Repository) {
	p.spareMu.Lock()
	defer p.spareMu.Unlock()
	if p.spares == nil {
		p.spares = map[name.Repository][]*spareUpload{}
		p.clients = map[name.Repository]*pushClient{}
	}
	pc := p.clients[repo]
	if pc == nil {
		pc = &pushClient{ready: make(chan struct{})}
		p.clients[repo] = pc
		go func() {
			defer close(pc.ready)
			if rt, err := p.rc.PushTransport(p.sessCtx, repo); err == nil {
				pc.client = &http.Client{Transport: rt}
			}
		}()
	}
	for len(p.spares[repo]) < max(1, p.wantSpares) {
		s := &spareUpload{ready: make(chan struct{})}
		p.spares[repo] = append(p.spares[repo], s)
		go func() {
			defer close(s.ready)
			<-pc.ready
			if pc.client != nil {
				s.client, s.loc = pc.client, p.openUpload(p.sessCtx, pc.client, repo)
			}
		}()
	}
}

// takeSpare returns one of repo's spare sessions for one blob, or nil.
func (p *Publisher) takeSpare(repo name.Repository) *spareUpload {
	p.spareMu.Lock()
	defer p.spareMu.Unlock()
	for _, s := range p.spares[repo] {
		if !s.used {
			s.used = true
			return s
		}
	}
	return nil
}

// openUpload starts an upload (POST /v2/REPO/blobs/uploads/). Any failure means no spare: the
// blob then goes through the pusher, which reports errors properly.
func (p *Publisher) openUpload(ctx context.Context, client *http.Client, repo name.Repository) *url.URL {
	u := url.URL{Scheme: repo.Scheme(), Host: repo.RegistryStr(), Path: fmt.Sprintf("/v2/%s/blobs/uploads/", repo.RepositoryStr())}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), nil)
	if err != nil {
		return nil
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Location") == "" || err != nil {
		return nil
	}
	loc = resp.Request.URL.ResolveReference(loc)
	if loc.Host != resp.Request.URL.Host {
		// Uploads sent elsewhere (a storage service) are left to ggcr, which vets the host.
		p.cancelUpload(client, loc)
		return nil
	}
	return loc
}

// put writes the blob into the session and closes it: one request. A session the registry
// did not close is canceled.
func (p *Publisher) put(ctx context.Context, s *spareUpload, digest v1.Hash, data []byte) (err error) {
	<-s.ready
	if s.loc == nil {
		return errNoSpare
	}
	defer func() {
		if err != nil {
			p.cancelUpload(s.client, s.loc)
		}
	}()
	u := *s.loc
	q := u.Query()
	q.Set("digest", digest.String())
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u.String(), bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusCreated); err != nil {
		return err
	}
	s.sent = digest
	return nil
}

// spareSent lists the blobs written into each repository's spare sessions.
func (p *Publisher) spareSent() map[name.Repository][]v1.Hash {
	p.spareMu.Lock()
	defer p.spareMu.Unlock()
	sent := map[name.Repository][]v1.Hash{}
	for repo, ss := range p.spares {
		for _, s := range ss {
			select {
			case <-s.ready:
				if s.sent != (v1.Hash{}) {
					sent[repo] = append(sent[repo], s.sent)
				}
			default:
			}
		}
	}
	return sent
}

var errNoSpare = fmt.Errorf("no upload session open")

// dropSpares cancels the sessions nothing was written into (a build that failed, or changed
// no config), so the registry does not keep them until it purges stale uploads.
func (p *Publisher) dropSpares() {
	p.spareMu.Lock()
	var unused []*spareUpload
	for _, ss := range p.spares {
		for _, s := range ss {
			if !s.used {
				unused = append(unused, s)
			}
			s.used = true
		}
	}
	p.spareMu.Unlock()
	for _, s := range unused {
		<-s.ready
		if s.loc != nil {
			p.cancelUpload(s.client, s.loc)
		}
	}
}

// cancelUpload deletes an upload session, best effort and briefly: the registry purges stale
// ones itself eventually.
func (p *Publisher) cancelUpload(client *http.Client, loc *url.URL) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, loc.String(), nil)
	if err != nil {
		return
	}
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
	}
}
