package proxy

import (
	"context"
	"errors"
	"sync"
	"time"
)

// DefaultSessionSweep is how often the session janitor removes expired
// sessions from the store: otherwise only a request presenting an expired
// session deletes it, and abandoned ones pile up.
const DefaultSessionSweep = time.Minute

// sweepTimeout bounds one sweep: a store that does not answer makes the
// sweep fail (logged), not pile up.
const sweepTimeout = 30 * time.Second

// sweepSessions removes the sessions expired at now under the live
// generation's session policy, and counts them in
// tok_sessions_purged_total.
func (s *Server) sweepSessions(ctx context.Context) (int, error) {
	live := s.live.Load()
	ctx, cancel := context.WithTimeout(ctx, sweepTimeout)
	defer cancel()
	n, err := live.auth.PurgeExpired(ctx)
	live.metrics.sessionsPurged.Add(float64(n))
	return n, err
}

// startJanitor runs the session janitor every SessionSweep until ctx is
// done; the returned func stops it and waits for it.
func (s *Server) startJanitor(ctx context.Context) (stop func()) {
	every := s.opts.SessionSweep
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			n, err := s.sweepSessions(ctx)
			switch {
			case err != nil && !errors.Is(err, context.Canceled):
				s.log.Warn("session janitor: removing expired sessions failed; retrying at the next sweep", "removed", n, "err", err)
			case n > 0:
				s.log.Debug("session janitor: expired sessions removed", "removed", n)
			}
		}
	})
	return func() { cancel(); wg.Wait() }
}
