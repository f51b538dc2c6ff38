package memory

import (
	"context"
	"slices"
	"strings"

	"github.com/tokproxy/tok/vault"
)

// Scan implements [vault.Store]: it sorts the tokens after after on each
// call (the store is volatile and small next to a durable one). Expired
// records are skipped, as Get skips them.
func (s *Store) Scan(ctx context.Context, after string, limit int) ([]vault.Record, error) {
	now := s.now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return []vault.Record{}, nil
	}
	toks := make([]string, 0, len(s.tokens))
	for tok, e := range s.tokens {
		if tok > after && !e.expired(now) {
			toks = append(toks, tok)
		}
	}
	slices.SortFunc(toks, strings.Compare)
	toks = toks[:min(limit, len(toks))]
	recs := make([]vault.Record, 0, len(toks))
	for _, tok := range toks {
		r, err := vault.UnmarshalRecord(tok, s.tokens[tok].value)
		if err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	return recs, nil
}

// Reseal implements [vault.Store].
func (s *Store) Reseal(ctx context.Context, rec vault.Record, fromKeyID uint32) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.begin(ctx); err != nil {
		return false, err
	}
	e, ok := s.tokens[rec.Token]
	if !ok {
		return false, nil
	}
	cur, err := vault.UnmarshalRecord(rec.Token, e.value)
	if err != nil {
		return false, err
	}
	if cur.KeyID != fromKeyID {
		return false, nil
	}
	cur.KeyID, cur.Ciphertext = rec.KeyID, rec.Ciphertext
	e.value = vault.MarshalRecord(cur)
	s.tokens[rec.Token] = e
	return true, nil
}
