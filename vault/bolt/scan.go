package bolt

import (
	"bytes"
	"context"
	"fmt"

	"go.etcd.io/bbolt"

	"github.com/tokproxy/tok/vault"
)

// Scan implements [vault.Store]. It first forces a checkpoint, as Backup
// does, so that every write acknowledged before the call is in bbolt, then
// reads the page from the tokens bucket in one read transaction, in byte
// order. Records written while pages are read live in the memtables until
// the next checkpoint and may be missed; a rekey does not mind, since new
// records are sealed under the primary key already. Each call costs a
// checkpoint (usually a small one): use pages of hundreds of records.
func (s *Store) Scan(ctx context.Context, after string, limit int) ([]vault.Record, error) {
	if err := s.checkpointAll(ctx); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return []vault.Record{}, nil
	}
	var recs []vault.Record
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketTokens).Cursor()
		k, v := c.Seek([]byte(after))
		if k != nil && bytes.Equal(k, []byte(after)) {
			k, v = c.Next()
		}
		for ; k != nil && len(recs) < limit; k, v = c.Next() {
			r, err := vault.UnmarshalRecord(string(k), v)
			if err != nil {
				return fmt.Errorf("scan: %w", err)
			}
			recs = append(recs, r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if recs == nil {
		recs = []vault.Record{}
	}
	return recs, nil
}

// Reseal implements [vault.Store] as one committer op: it reads the
// current record through the memtables, and the new value is WAL-logged
// and fdatasync'd like every write.
func (s *Store) Reseal(ctx context.Context, rec vault.Record, fromKeyID uint32) (bool, error) {
	swapped := false
	err := s.write(ctx, func(t *txn) error {
		swapped = false
		key := []byte(rec.Token)
		v := t.get(bTokens, key)
		if v == nil {
			return nil
		}
		cur, err := vault.UnmarshalRecord(rec.Token, v)
		if err != nil {
			return fmt.Errorf("reseal: %w", err)
		}
		if !vault.ResealApplies(cur, rec, fromKeyID) {
			return nil
		}
		cur.KeyID, cur.Ciphertext, cur.Version = rec.KeyID, rec.Ciphertext, rec.Version
		if err := t.put(bTokens, key, vault.MarshalRecord(cur)); err != nil {
			return fmt.Errorf("reseal: %w", err)
		}
		swapped = true
		return nil
	})
	if err != nil {
		return false, err
	}
	return swapped, nil
}
