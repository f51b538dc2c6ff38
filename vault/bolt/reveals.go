package bolt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tokproxy/tok/vault"
)

// Reveal counts live in their own bucket, token → uvarint count, written
// through the committer like every write: a count returned is in the WAL
// and fdatasync'd, so a reveal once counted survives a crash. A token
// with no entry has revealed no times. Delete removes the entry with the
// record.

// readCount decodes a count entry (nil: none yet).
func readCount(v []byte) (uint32, error) {
	if v == nil {
		return 0, nil
	}
	n, k := binary.Uvarint(v)
	if k != len(v) || n > 1<<32-1 {
		return 0, fmt.Errorf("reveal count: %w", errCorrupt)
	}
	return uint32(n), nil
}

// updateCount replaces token's count with fn(count) in one durable commit,
// and returns the new count. fn may run more than once (a batch retried).
func (s *Store) updateCount(ctx context.Context, token string, fn func(uint32) (uint32, error)) (uint32, error) {
	var out uint32
	err := s.write(ctx, func(t *txn) error {
		key := []byte(token)
		if t.get(bTokens, key) == nil {
			return vault.ErrNotFound
		}
		n, err := readCount(t.get(bReveals, key))
		if err != nil {
			return err
		}
		next, err := fn(n)
		out = next
		if err != nil || next == n {
			return err
		}
		return t.put(bReveals, key, binary.AppendUvarint(nil, uint64(next)))
	})
	return out, err
}

// CountReveal implements [vault.RevealCounter].
func (s *Store) CountReveal(ctx context.Context, token string, max uint32) (uint32, error) {
	return s.updateCount(ctx, token, func(n uint32) (uint32, error) {
		if n >= max {
			return n, vault.ErrRevealsExhausted
		}
		return n + 1, nil
	})
}

// UncountReveal implements [vault.RevealCounter].
func (s *Store) UncountReveal(ctx context.Context, token string) error {
	_, err := s.updateCount(ctx, token, func(n uint32) (uint32, error) {
		if n == 0 {
			return 0, nil
		}
		return n - 1, nil
	})
	return err
}

// Reveals implements [vault.RevealCounter].
func (s *Store) Reveals(ctx context.Context, token string) (uint32, error) {
	if _, err := s.get(ctx, bTokens, []byte(token)); err != nil {
		return 0, err
	}
	v, err := s.get(ctx, bReveals, []byte(token))
	switch {
	case errors.Is(err, vault.ErrNotFound):
		return 0, nil
	case err != nil:
		return 0, err
	}
	return readCount(v)
}
