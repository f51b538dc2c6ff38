package memory

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/tokproxy/tok/vault"
)

// Scan implements [vault.Store]: it walks every record on each call, under
// the read lock, keeping the limit least tokens after after (the store is
// volatile and small next to a durable one). Expired records are skipped,
// as Get skips them.
func (s *Store) Scan(ctx context.Context, after string, limit int) ([]vault.Record, error) {
	now := s.now().UnixMilli()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return []vault.Record{}, nil
	}
	from := []byte(after)
	byToken := func(at ref, tok []byte) int { return bytes.Compare(s.slot(at).token(), tok) }
	var page []ref // sorted by token, at most limit long
	for id, c := range s.chunks {
		if c == nil {
			continue
		}
		for off := 0; off < len(c.buf); {
			r := slot(c.buf[off:])
			off += r.size()
			if !r.live() || r.expired(now) || bytes.Compare(r.token(), from) <= 0 {
				continue
			}
			if len(page) == limit && byToken(page[limit-1], r.token()) < 0 {
				continue
			}
			i, _ := slices.BinarySearchFunc(page, r.token(), byToken)
			if len(page) == limit {
				page = page[:limit-1]
			}
			page = slices.Insert(page, i, makeRef(id, off-r.size()))
		}
	}
	recs := make([]vault.Record, 0, len(page))
	for _, at := range page {
		r := s.slot(at)
		rec, err := vault.UnmarshalRecord(string(r.token()), r.value())
		if err != nil {
			return nil, err
		}
		recs = append(recs, rec)
	}
	return recs, nil
}

// Reseal implements [vault.Store]. The old ciphertext is overwritten or
// zeroed, never left behind.
func (s *Store) Reseal(ctx context.Context, rec vault.Record, fromKeyID uint32) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.begin(ctx); err != nil {
		return false, err
	}
	at, ok := s.lookup(rec.Token)
	if !ok {
		return false, nil
	}
	cur, err := s.decode(rec.Token, at)
	if err != nil {
		return false, err
	}
	if cur.KeyID != fromKeyID {
		return false, nil
	}
	cur.KeyID, cur.Ciphertext = rec.KeyID, rec.Ciphertext
	v := vault.MarshalRecord(cur)
	if old := s.slot(at); len(v) == old.valueLen() {
		copy(old.value(), v)
		return true, nil
	}
	old := s.slot(at)
	moved, err := s.appendRecord(rec.Token, v, old.expires(), old.flags())
	if err != nil {
		return false, fmt.Errorf("reseal: %w: %w", ErrFull, err)
	}
	s.relink(rec.Token, moved)
	s.kill(at)
	s.freeIfEmpty(at.chunk())
	return true, nil
}
