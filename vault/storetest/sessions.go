package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tokproxy/tok/vault"
)

// msUTC is t as stores keep it: milliseconds, UTC.
func msUTC(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return time.UnixMilli(t.UnixMilli()).UTC()
}

func diffSession(got, want vault.Session) string {
	switch {
	case string(got.Key) != string(want.Key):
		return "Key differs"
	case got.ID != want.ID:
		return fmt.Sprintf("ID = %q, want %q", got.ID, want.ID)
	case got.Client != want.Client:
		return fmt.Sprintf("Client = %q, want %q", got.Client, want.Client)
	case !got.Created.Equal(msUTC(want.Created)) || got.Created.Location() != time.UTC:
		return fmt.Sprintf("Created = %v, want %v", got.Created, msUTC(want.Created))
	case !got.LastSeen.Equal(msUTC(want.LastSeen)) || got.LastSeen.Location() != time.UTC:
		return fmt.Sprintf("LastSeen = %v, want %v", got.LastSeen, msUTC(want.LastSeen))
	}
	return ""
}

func testSessions(t *testing.T, s SessionStore) {
	ctx := context.Background()
	now := time.Date(2030, 1, 2, 3, 4, 5, 678901234, time.Local)
	a := vault.Session{Key: []byte("key-a-sha256......................"), ID: "sess_a", Client: "shop", Created: now, LastSeen: now.Add(time.Second)}
	b := vault.Session{Key: []byte("key-b"), ID: "sess_b", Client: "admin", Created: now, LastSeen: now}
	for _, sess := range []vault.Session{a, b} {
		if err := s.PutSession(ctx, sess); err != nil {
			t.Fatalf("PutSession(%q) = %v, want nil", sess.ID, err)
		}
	}
	get := func(key []byte) (vault.Session, error) { return s.GetSession(ctx, key) }
	for _, want := range []vault.Session{a, b} {
		got, err := get(want.Key)
		if err != nil {
			t.Fatalf("GetSession(%q) = %v, want nil", want.Key, err)
		}
		if d := diffSession(got, want); d != "" {
			t.Errorf("GetSession(%q): %s", want.Key, d)
		}
	}

	// Put replaces the session under the same key.
	a2 := a
	a2.ID, a2.Client, a2.LastSeen = "sess_a2", "other", now.Add(time.Hour)
	if err := s.PutSession(ctx, a2); err != nil {
		t.Fatalf("PutSession(replace) = %v, want nil", err)
	}
	got, err := get(a.Key)
	if err != nil || diffSession(got, a2) != "" {
		t.Errorf("GetSession(%q) after replace = %+v, %v; want %+v", a.Key, got, err, a2)
	}

	// The returned key is a copy.
	got.Key[0] ^= 0xff
	if _, err := get(a.Key); err != nil {
		t.Errorf("GetSession(%q) after mutating a returned key = %v, want nil", a.Key, err)
	}

	// Touch moves LastSeen and nothing else.
	touched := a2
	touched.LastSeen = now.Add(2 * time.Hour)
	if err := s.TouchSession(ctx, a.Key, touched.LastSeen); err != nil {
		t.Fatalf("TouchSession(%q) = %v, want nil", a.Key, err)
	}
	if got, err := get(a.Key); err != nil || diffSession(got, touched) != "" {
		t.Errorf("GetSession(%q) after touch = %+v, %v; want %+v", a.Key, got, err, touched)
	}

	if err := s.DeleteSession(ctx, a.Key); err != nil {
		t.Fatalf("DeleteSession(%q) = %v, want nil", a.Key, err)
	}
	if _, err := get(a.Key); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("GetSession(%q) after delete = %v, want %v", a.Key, err, vault.ErrNotFound)
	}
	// A touch after a delete (a logout racing a request) brings nothing back.
	if err := s.TouchSession(ctx, a.Key, now.Add(3*time.Hour)); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("TouchSession(%q) after delete = %v, want %v", a.Key, err, vault.ErrNotFound)
	}
	if _, err := get(a.Key); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("GetSession(%q) after a touch of a deleted session = %v, want %v", a.Key, err, vault.ErrNotFound)
	}
	if err := s.DeleteSession(ctx, a.Key); err != nil {
		t.Errorf("DeleteSession(%q) of an absent session = %v, want nil", a.Key, err)
	}
	if _, err := get([]byte("missing")); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("GetSession(%q) = %v, want %v", "missing", err, vault.ErrNotFound)
	}
	if got, err := get(b.Key); err != nil || diffSession(got, b) != "" {
		t.Errorf("GetSession(%q) = %+v, %v; want %+v", b.Key, got, err, b)
	}
}

func testLockout(t *testing.T, s SessionStore) {
	ctx := context.Background()
	until := time.Date(2030, 1, 2, 3, 4, 5, 678901234, time.Local)
	var seen []vault.Lockout
	l, err := s.UpdateLockout(ctx, "shop", func(cur vault.Lockout) vault.Lockout {
		seen = append(seen, cur)
		return vault.Lockout{Failures: 3, LockedUntil: until}
	})
	if err != nil {
		t.Fatalf("UpdateLockout(%q) = %v, want nil", "shop", err)
	}
	for _, cur := range seen {
		if cur != (vault.Lockout{}) {
			t.Errorf("UpdateLockout(%q) passed fn %+v, want the zero Lockout", "shop", cur)
		}
	}
	want := vault.Lockout{Failures: 3, LockedUntil: msUTC(until)}
	if l.Failures != want.Failures || !l.LockedUntil.Equal(want.LockedUntil) {
		t.Errorf("UpdateLockout(%q) = %+v, want %+v", "shop", l, want)
	}
	l, err = s.UpdateLockout(ctx, "shop", func(cur vault.Lockout) vault.Lockout {
		if cur.Failures != want.Failures || !cur.LockedUntil.Equal(want.LockedUntil) || cur.LockedUntil.Location() != time.UTC {
			t.Errorf("UpdateLockout(%q) passed fn %+v, want %+v in UTC", "shop", cur, want)
		}
		return vault.Lockout{} // a successful login resets the state
	})
	if err != nil || l.Failures != 0 || !l.LockedUntil.IsZero() {
		t.Errorf("UpdateLockout(%q, reset) = %+v, %v; want the zero Lockout", "shop", l, err)
	}
	// Clients do not share state.
	l, err = s.UpdateLockout(ctx, "other", func(cur vault.Lockout) vault.Lockout { cur.Failures++; return cur })
	if err != nil || l.Failures != 1 {
		t.Errorf("UpdateLockout(%q) = %+v, %v; want 1 failure", "other", l, err)
	}
}

// testLockoutConcurrent checks that UpdateLockout is atomic: concurrent
// increments are never lost.
func testLockoutConcurrent(t *testing.T, s SessionStore) {
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			_, err := s.UpdateLockout(context.Background(), "shop", func(cur vault.Lockout) vault.Lockout {
				cur.Failures++
				return cur
			})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("UpdateLockout = %v, want nil", err)
		}
	}
	l, err := s.UpdateLockout(context.Background(), "shop", func(cur vault.Lockout) vault.Lockout { return cur })
	if err != nil || l.Failures != n {
		t.Errorf("UpdateLockout after %d concurrent increments = %+v, %v; want %d failures", n, l, err, n)
	}
}

// testPurgeSessions: PurgeSessions removes exactly the sessions idle
// since seenBy or older than createdBy (both bounds inclusive), counts
// them, and leaves the rest untouched (the session janitor).
func testPurgeSessions(t *testing.T, s SessionStore) {
	ctx := context.Background()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	seenBy, createdBy := now.Add(-15*time.Minute), now.Add(-8*time.Hour)
	sessions := []struct {
		sess vault.Session
		gone bool
	}{
		{vault.Session{Key: []byte("live"), ID: "live", Client: "shop", Created: now.Add(-time.Hour), LastSeen: now.Add(-time.Minute)}, false},
		{vault.Session{Key: []byte("idle"), ID: "idle", Client: "shop", Created: now.Add(-time.Hour), LastSeen: now.Add(-16 * time.Minute)}, true},
		{vault.Session{Key: []byte("idle-edge"), ID: "idle-edge", Client: "shop", Created: now.Add(-time.Hour), LastSeen: seenBy}, true},
		{vault.Session{Key: []byte("just-live"), ID: "just-live", Client: "shop", Created: now.Add(-time.Hour), LastSeen: seenBy.Add(time.Millisecond)}, false},
		{vault.Session{Key: []byte("old"), ID: "old", Client: "shop", Created: createdBy, LastSeen: now}, true},
		{vault.Session{Key: []byte("ancient"), ID: "ancient", Client: "admin", Created: now.Add(-9 * time.Hour), LastSeen: now.Add(-9 * time.Hour)}, true},
	}
	want := 0
	for _, c := range sessions {
		if err := s.PutSession(ctx, c.sess); err != nil {
			t.Fatalf("PutSession(%q) = %v, want nil", c.sess.ID, err)
		}
		if c.gone {
			want++
		}
	}
	// Many more, so stores that purge in chunks go through several.
	const many = 600
	for i := range many {
		key := []byte(fmt.Sprintf("bulk-%04d", i))
		if err := s.PutSession(ctx, vault.Session{Key: key, ID: string(key), Client: "shop", Created: now.Add(-time.Hour), LastSeen: now.Add(-time.Hour)}); err != nil {
			t.Fatalf("PutSession(%q) = %v, want nil", key, err)
		}
	}
	want += many
	n, err := s.PurgeSessions(ctx, seenBy, createdBy)
	if err != nil || n != want {
		t.Fatalf("PurgeSessions = %d, %v; want %d, nil", n, err, want)
	}
	for _, c := range sessions {
		_, err := s.GetSession(ctx, c.sess.Key)
		switch {
		case c.gone && !errors.Is(err, vault.ErrNotFound):
			t.Errorf("GetSession(%q) after the purge = %v, want %v", c.sess.ID, err, vault.ErrNotFound)
		case !c.gone && err != nil:
			t.Errorf("GetSession(%q) after the purge = %v, want nil (it is live)", c.sess.ID, err)
		}
	}
	if _, err := s.GetSession(ctx, []byte("bulk-0000")); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("GetSession(bulk-0000) after the purge = %v, want %v", err, vault.ErrNotFound)
	}
	if n, err := s.PurgeSessions(ctx, seenBy, createdBy); err != nil || n != 0 {
		t.Errorf("second PurgeSessions = %d, %v; want 0, nil", n, err)
	}
}

// testSessionsContext checks that session and lockout writes with a
// context already done fail with its error and write nothing.
func testSessionsContext(t *testing.T, s SessionStore) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	sess := vault.Session{Key: []byte("k"), ID: "s1", Client: "c", Created: time.Now(), LastSeen: time.Now()}
	if err := s.PutSession(ctx, sess); !errors.Is(err, context.Canceled) {
		t.Errorf("PutSession(canceled ctx) = %v, want %v", err, context.Canceled)
	}
	if _, err := s.GetSession(context.Background(), sess.Key); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("GetSession after canceled PutSession = %v, want %v", err, vault.ErrNotFound)
	}
	inc := func(l vault.Lockout) vault.Lockout { l.Failures++; return l }
	if _, err := s.UpdateLockout(ctx, "c", inc); !errors.Is(err, context.Canceled) {
		t.Errorf("UpdateLockout(canceled ctx) = %v, want %v", err, context.Canceled)
	}
	l, err := s.UpdateLockout(context.Background(), "c", inc)
	if err != nil || l.Failures != 1 {
		t.Errorf("UpdateLockout after canceled one = %+v, %v; want 1 failure", l, err)
	}
}

// testSessionsClose checks that every session and lockout method of a
// closed store returns ErrClosed.
func testSessionsClose(t *testing.T, s SessionStore) {
	ctx := context.Background()
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v, want nil", err)
	}
	sess := vault.Session{Key: []byte("k"), ID: "s1", Client: "c"}
	calls := map[string]func() error{
		"PutSession":    func() error { return s.PutSession(ctx, sess) },
		"GetSession":    func() error { _, err := s.GetSession(ctx, sess.Key); return err },
		"DeleteSession": func() error { return s.DeleteSession(ctx, sess.Key) },
		"UpdateLockout": func() error {
			_, err := s.UpdateLockout(ctx, "c", func(l vault.Lockout) vault.Lockout { return l })
			return err
		},
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, vault.ErrClosed) {
			t.Errorf("%s after Close = %v, want %v", name, err, vault.ErrClosed)
		}
	}
}
