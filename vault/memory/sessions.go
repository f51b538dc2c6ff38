package memory

import (
	"bytes"
	"context"
	"time"

	"github.com/tokproxy/tok/vault"
)

// msUTC truncates t to what durable stores keep: milliseconds, UTC.
func msUTC(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return time.UnixMilli(t.UnixMilli()).UTC()
}

// PutSession implements [vault.Store].
func (s *Store) PutSession(ctx context.Context, sess vault.Session) error {
	sess.Key = bytes.Clone(sess.Key)
	sess.Created, sess.LastSeen = msUTC(sess.Created), msUTC(sess.LastSeen)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.begin(ctx); err != nil {
		return err
	}
	s.sessions[string(sess.Key)] = sess
	return nil
}

// GetSession implements [vault.Store].
func (s *Store) GetSession(ctx context.Context, key []byte) (vault.Session, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.begin(ctx); err != nil {
		return vault.Session{}, err
	}
	sess, ok := s.sessions[string(key)]
	if !ok {
		return vault.Session{}, vault.ErrNotFound
	}
	sess.Key = bytes.Clone(sess.Key)
	return sess, nil
}

// TouchSession implements [vault.Store].
func (s *Store) TouchSession(ctx context.Context, key []byte, lastSeen time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.begin(ctx); err != nil {
		return err
	}
	sess, ok := s.sessions[string(key)]
	if !ok {
		return vault.ErrNotFound
	}
	sess.LastSeen = msUTC(lastSeen)
	s.sessions[string(key)] = sess
	return nil
}

// DeleteSession implements [vault.Store].
func (s *Store) DeleteSession(ctx context.Context, key []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.begin(ctx); err != nil {
		return err
	}
	delete(s.sessions, string(key))
	return nil
}

// PurgeSessions implements [vault.Store].
func (s *Store) PurgeSessions(ctx context.Context, seenBy, createdBy time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.begin(ctx); err != nil {
		return 0, err
	}
	n := 0
	for k, sess := range s.sessions {
		if sessionExpired(sess, seenBy, createdBy) {
			delete(s.sessions, k)
			n++
		}
	}
	return n, nil
}

// sessionExpired reports whether PurgeSessions removes sess.
func sessionExpired(sess vault.Session, seenBy, createdBy time.Time) bool {
	return !sess.LastSeen.After(msUTC(seenBy)) || !sess.Created.After(msUTC(createdBy))
}

// UpdateLockout implements [vault.Store]. fn runs once, under the store's
// lock, so it must not call back into the store.
func (s *Store) UpdateLockout(ctx context.Context, client string, fn func(vault.Lockout) vault.Lockout) (vault.Lockout, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.begin(ctx); err != nil {
		return vault.Lockout{}, err
	}
	l := fn(s.lockouts[client])
	l.LockedUntil = msUTC(l.LockedUntil)
	if l == (vault.Lockout{}) {
		delete(s.lockouts, client)
	} else {
		s.lockouts[client] = l
	}
	return l, nil
}
