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
	var page []ref  // candidates, sorted by token only after a prune
	var last []byte // once page has been pruned to limit: its greatest token
	prune := func() {
		slices.SortFunc(page, func(a, b ref) int { return bytes.Compare(s.slot(a).token(), s.slot(b).token()) })
		page = page[:min(limit, len(page))]
		if len(page) == limit {
			last = s.slot(page[limit-1]).token()
		}
	}
	for id, c := range s.chunks {
		if c == nil {
			continue
		}
		for off := 0; off < len(c.buf); {
			r := slot(c.buf[off:])
			at := makeRef(id, off)
			off += r.size()
			if !r.live() || r.expired(now) || bytes.Compare(r.token(), from) <= 0 ||
				last != nil && bytes.Compare(r.token(), last) >= 0 {
				continue
			}
			page = append(page, at)
			// Pruning once page holds twice limit keeps the walk
			// O(n log limit) without sorting every candidate.
			if len(page) >= 1024 && len(page)/2 >= limit {
				prune()
			}
		}
	}
	prune()
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
	if !vault.ResealApplies(cur, rec, fromKeyID) {
		return false, nil
	}
	cur.KeyID, cur.Ciphertext, cur.Version = rec.KeyID, rec.Ciphertext, rec.Version
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
