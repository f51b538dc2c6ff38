package memory

import (
	"context"

	"github.com/tokproxy/tok/vault"
)

// liveRecord reports whether token has a live record. s.mu must be held.
func (s *Store) liveRecord(token string) bool {
	at, ok := s.lookup(token)
	return ok && !s.slot(at).expired(s.now().UnixMilli())
}

// CountReveal implements [vault.RevealCounter]. A count lives as long as
// its record: removing the record (deleted, expired and reclaimed) drops it.
func (s *Store) CountReveal(ctx context.Context, token string, max uint32) (uint32, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.begin(ctx); err != nil {
		return 0, err
	}
	if !s.liveRecord(token) {
		return 0, vault.ErrNotFound
	}
	n := s.reveals[token]
	if n >= max {
		return n, vault.ErrRevealsExhausted
	}
	s.reveals[token] = n + 1
	return n + 1, nil
}

// UncountReveal implements [vault.RevealCounter].
func (s *Store) UncountReveal(ctx context.Context, token string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.begin(ctx); err != nil {
		return err
	}
	if !s.liveRecord(token) {
		return vault.ErrNotFound
	}
	if n := s.reveals[token]; n > 0 {
		s.reveals[token] = n - 1
	}
	return nil
}

// Reveals implements [vault.RevealCounter].
func (s *Store) Reveals(ctx context.Context, token string) (uint32, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.begin(ctx); err != nil {
		return 0, err
	}
	if !s.liveRecord(token) {
		return 0, vault.ErrNotFound
	}
	return s.reveals[token], nil
}
