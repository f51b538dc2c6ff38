package bolt

import (
	"bytes"
	"context"
	"fmt"

	"go.etcd.io/bbolt"

	"github.com/tokproxy/tok/vault"
)

// keyCheckPrefix prefixes the meta bucket's keys that hold key check
// values: "check:" + name (see [vault.KeyCheckStore]). They are written
// straight to bbolt, not through the WAL: they change once per key
// version, and a bbolt commit is durable (fsync'd) when it returns.
var keyCheckPrefix = []byte("check:")

var _ vault.KeyCheckStore = (*Store)(nil)

// KeyChecks implements [vault.KeyCheckStore].
func (s *Store) KeyChecks(ctx context.Context) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		readKeyChecks(tx, out)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func readKeyChecks(tx *bbolt.Tx, out map[string][]byte) {
	c := tx.Bucket(bucketMeta).Cursor()
	for k, v := c.Seek(keyCheckPrefix); k != nil && bytes.HasPrefix(k, keyCheckPrefix); k, v = c.Next() {
		out[string(k[len(keyCheckPrefix):])] = bytes.Clone(v)
	}
}

// AddKeyChecks implements [vault.KeyCheckStore] in one bbolt transaction.
func (s *Store) AddKeyChecks(ctx context.Context, checks map[string][]byte) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		for name, v := range checks {
			key := append(bytes.Clone(keyCheckPrefix), name...)
			if meta.Get(key) != nil {
				continue
			}
			if err := meta.Put(key, bytes.Clone(v)); err != nil {
				return err
			}
		}
		readKeyChecks(tx, out)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteKeyCheck implements [vault.KeyCheckStore].
func (s *Store) DeleteKeyCheck(ctx context.Context, name string) error {
	return s.update(ctx, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMeta).Delete(append(bytes.Clone(keyCheckPrefix), name...))
	})
}

// update runs fn in a bbolt write transaction (committed with fsync),
// mapping a closed store to ErrClosed and bbolt failures to ErrUnavailable.
func (s *Store) update(ctx context.Context, fn func(tx *bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return vault.ErrClosed
	}
	if err := s.db.Update(fn); err != nil {
		return fmt.Errorf("%w: write vault meta: %w", vault.ErrUnavailable, err)
	}
	return nil
}
