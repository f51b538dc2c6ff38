package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/tokproxy/tok/proxy/internal/httpx"
	"github.com/tokproxy/tok/vault"
)

// readyTimeout bounds the store ping behind /readyz.
const readyTimeout = 2 * time.Second

// readiness runs at most one store ping at a time for /readyz: a store
// that hangs (a stalled disk under bbolt, a silent PostgreSQL) costs one
// stuck goroutine, not one per probe, and probes still get an answer.
type readiness struct {
	mu      sync.Mutex
	pending chan struct{} // closed when the ping in flight ends; nil if none
	err     error         // the result of the last ping that ended
}

// pinger is a store /readyz asks whether it answers.
type pinger interface {
	Ping(ctx context.Context) error
}

// ping returns the store's answer, or gives up when ctx ends.
func (rd *readiness) ping(ctx context.Context, store pinger) error {
	rd.mu.Lock()
	if rd.pending == nil {
		done := make(chan struct{})
		rd.pending = done
		go func() {
			// Bounded by its own timeout, not the probe's, so one
			// impatient probe does not fail the next one's answer.
			pctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
			err := store.Ping(pctx)
			cancel()
			rd.mu.Lock()
			rd.err, rd.pending = err, nil
			rd.mu.Unlock()
			close(done)
		}()
	}
	done := rd.pending
	rd.mu.Unlock()
	select {
	case <-done:
		rd.mu.Lock()
		defer rd.mu.Unlock()
		return rd.err
	case <-ctx.Done():
		return fmt.Errorf("%w: %w: the store did not answer a ping within %v", vault.ErrUnavailable, vault.ErrStalled, readyTimeout)
	}
}

// serveReady is /readyz: 200 while the store answers and neither a commit
// nor an audit write has been in flight past the commit deadline (a
// stalled disk must not leave /readyz at 200 while writes hang);
// otherwise 503 not_ready, with a message naming the reason.
func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) error {
	if d, stuck := s.auditLog.Stalled(); stuck {
		return httpx.NewError(http.StatusServiceUnavailable, CodeNotReady,
			fmt.Sprintf("the audit log is stalled: a write has been in flight for %v, past vault.commit_timeout (%v)", d.Round(time.Second), s.opts.CommitTimeout), nil)

	}
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	err := s.ready.ping(ctx, s.opts.Store)
	if err == nil && s.opts.Volatile != nil {
		if err = s.volReady.ping(ctx, s.opts.Volatile); err != nil {
			return httpx.NewError(http.StatusServiceUnavailable, CodeNotReady,
				"the volatile store does not answer: requests with a CVC are refused until it does", err)

		}
	}
	switch {
	case err == nil:
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
		return nil
	case errors.Is(err, vault.ErrStalled):
		return httpx.NewError(http.StatusServiceUnavailable, CodeNotReady,
			"the vault store is stalled: a commit or ping has been in flight past its deadline (vault.commit_timeout)", err)

	}
	return httpx.NewError(http.StatusServiceUnavailable, CodeNotReady, "the vault store does not answer", err)
}
