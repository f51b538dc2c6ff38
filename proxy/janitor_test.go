package proxy

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/tokproxy/tok/vault"
)

// TestSessionJanitor: expired sessions are removed by the
// janitor, not only when a request presents one, and counted.
func TestSessionJanitor(t *testing.T) {
	e := newTestEnv(t, nil)
	ctx := context.Background()
	now := e.clock.Now()
	put := func(key string, created, seen time.Time) {
		t.Helper()
		if err := e.store.PutSession(ctx, vault.Session{Key: []byte(key), ID: key, Client: "cih", Created: created, LastSeen: seen}); err != nil {
			t.Fatal(err)
		}
	}
	put("idle", now.Add(-time.Hour), now.Add(-DefaultSessionIdle))
	put("old", now.Add(-DefaultSessionMax), now)
	put("live", now.Add(-time.Hour), now.Add(-time.Minute))
	live := e.login("cih") // a real session, just opened
	n, err := e.srv.sweepSessions(ctx)
	if err != nil || n != 2 {
		t.Fatalf("sweepSessions = %d, %v; want 2, nil", n, err)
	}
	for key, gone := range map[string]bool{"idle": true, "old": true, "live": false} {
		if _, err := e.store.GetSession(ctx, []byte(key)); errors.Is(err, vault.ErrNotFound) != gone {
			t.Errorf("GetSession(%q) after the sweep = %v, want gone=%v", key, err, gone)
		}
	}
	if got := counterValue(t, e.srv.metrics.sessionsPurged); got != 2 {
		t.Errorf("tok_sessions_purged_total = %v, want 2", got)
	}
	r := do(t, live, "GET", e.auth.URL+"/@me?token=x", "", "")
	if r.StatusCode == 401 {
		t.Errorf("the live login's session was swept: GET /@me = %d %s", r.StatusCode, r.body)
	}
	// Sixteen idle minutes later the login's session goes too.
	e.clock.Advance(DefaultSessionIdle + time.Minute)
	if n, err := e.srv.sweepSessions(ctx); err != nil || n != 2 {
		t.Errorf("sweepSessions after the idle time = %d, %v; want 2 (live and the login's), nil", n, err)
	}
}

// TestSessionJanitorRuns: Serve runs the janitor on its own.
func TestSessionJanitorRuns(t *testing.T) {
	e := newTestEnv(t, nil, func(o *Options) { o.SessionSweep = time.Millisecond })
	now := e.clock.Now()
	if err := e.store.PutSession(t.Context(), vault.Session{Key: []byte("idle"), ID: "idle", Client: "cih", Created: now.Add(-time.Hour), LastSeen: now.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ctx, map[string]net.Listener{ListenerAdmin: l}) }()
	// No timed assertion: wait as long as the test may run for the sweep.
	for counterValue(t, e.srv.metrics.sessionsPurged) < 1 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve = %v", err)
	}
	if _, err := e.store.GetSession(t.Context(), []byte("idle")); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("GetSession(idle) after the janitor ran = %v, want %v", err, vault.ErrNotFound)
	}
}
