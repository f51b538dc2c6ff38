package bolt

import (
	"context"
	"fmt"

	"go.etcd.io/bbolt"

	"github.com/tokproxy/tok/vault"
)

// maxFingerprint is the longest fingerprint vault.MarshalRecord can encode
// (its length is one byte).
const maxFingerprint = 255

// buckets returns the record buckets of tx.
//
// They keep bbolt's default FillPercent (0.5). Tokens and fingerprints are
// random, so inserts land all over both trees, and a full page split in
// halves is what keeps pages fullest on average (about 69%). Measured at
// 200k records with BenchmarkBytesPerToken: 0.5 gives 69% full leaves,
// 0.8 gives 55%, 1.0 gives 19-28% (a split leaves a near-empty remainder).
func buckets(tx *bbolt.Tx) (toks, fps *bbolt.Bucket) {
	return tx.Bucket(bucketTokens), tx.Bucket(bucketFingerprints)
}

// validate rejects, before anything is queued, records that could not be
// stored. Errors name the index, never a value.
func validate(recs []vault.Record) error {
	for i, r := range recs {
		switch {
		case r.Token == "":
			return fmt.Errorf("insert record %d: empty token: %w", i, vault.ErrInvalidToken)
		case len(r.Token) > bbolt.MaxKeySize:
			return fmt.Errorf("insert record %d: token of %d bytes: %w", i, len(r.Token), vault.ErrInvalidToken)
		case len(r.Fingerprint) > maxFingerprint:
			return fmt.Errorf("insert record %d: fingerprint of %d bytes: %w", i, len(r.Fingerprint), vault.ErrInvalidValue)
		}
	}
	return nil
}

// Insert implements [vault.Store]. The outcomes are decided by the
// committer against the current state, in queue order, so concurrent inserts of one
// fingerprint converge on one token. It returns once the records are
// in the WAL and fdatasync'd.
func (s *Store) Insert(ctx context.Context, recs []vault.Record) ([]vault.Outcome, error) {
	if err := validate(recs); err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return []vault.Outcome{}, nil
	}
	// Encode outside the transaction: the committer's time is everyone's.
	values := make([][]byte, len(recs))
	for i, r := range recs {
		values[i] = vault.MarshalRecord(r)
	}
	outs := make([]vault.Outcome, len(recs))
	var req *request
	op := func(t *txn) error {
		req.stored = 0
		for i, r := range recs {
			if len(r.Fingerprint) > 0 {
				if tok := t.get(bFingerprints, r.Fingerprint); tok != nil {
					existing, err := decodeRecord(tok, t.get(bTokens, tok))
					if err != nil {
						return fmt.Errorf("insert record %d: existing fingerprint: %w", i, err)
					}
					outs[i] = vault.Outcome{Status: vault.Existing, Record: existing}
					continue
				}
			}
			key := []byte(r.Token)
			if t.get(bTokens, key) != nil {
				outs[i] = vault.Outcome{Status: vault.Collision}
				continue
			}
			if err := t.put(bTokens, key, values[i]); err != nil {
				return fmt.Errorf("insert record %d: %w", i, err)
			}
			if len(r.Fingerprint) > 0 {
				if err := t.put(bFingerprints, r.Fingerprint, key); err != nil {
					return fmt.Errorf("insert record %d: %w", i, err)
				}
			}
			outs[i] = vault.Outcome{Status: vault.Stored}
			req.stored++
		}
		return nil
	}
	req = &request{op: op, records: len(recs)}
	if err := s.submit(ctx, req); err != nil {
		return nil, err
	}
	// Stored records are returned as a reader will see them: decoded from
	// their value (milliseconds, UTC, nil fingerprint if unique), copied.
	for i, o := range outs {
		if o.Status != vault.Stored {
			continue
		}
		r, err := vault.UnmarshalRecord(recs[i].Token, values[i])
		if err != nil {
			return nil, fmt.Errorf("insert record %d: %w", i, err)
		}
		outs[i].Record = r
	}
	return outs, nil
}

// decodeRecord decodes the value v of token tok (nil if there is none);
// the result owns its memory.
func decodeRecord(tok, v []byte) (vault.Record, error) {
	if v == nil {
		return vault.Record{}, vault.ErrNotFound
	}
	return vault.UnmarshalRecord(string(tok), v)
}

// Get implements [vault.Store]. Expired records are returned: the vault
// judges expiry.
func (s *Store) Get(ctx context.Context, token string) (vault.Record, error) {
	v, err := s.get(ctx, bTokens, []byte(token))
	if err != nil {
		return vault.Record{}, err
	}
	return vault.UnmarshalRecord(token, v)
}

// Find implements [vault.Store]. The fingerprint entry and the record are
// read one after the other; a record deleted in between gives ErrNotFound,
// as it would a moment later.
func (s *Store) Find(ctx context.Context, fingerprint []byte) (vault.Record, error) {
	if len(fingerprint) == 0 {
		return vault.Record{}, vault.ErrNotFound // unique records are not indexed
	}
	tok, err := s.get(ctx, bFingerprints, fingerprint)
	if err != nil {
		return vault.Record{}, err
	}
	return s.Get(ctx, string(tok))
}

// Delete implements [vault.Store]: the record and its fingerprint entry go
// in one durable commit.
func (s *Store) Delete(ctx context.Context, token string) error {
	found := false
	err := s.write(ctx, func(t *txn) error {
		found = false
		key := []byte(token)
		v := t.get(bTokens, key)
		if v == nil {
			return nil
		}
		found = true
		rec, err := vault.UnmarshalRecord(token, v)
		if err != nil {
			return fmt.Errorf("delete: %w", err)
		}
		if len(rec.Fingerprint) > 0 && string(t.get(bFingerprints, rec.Fingerprint)) == token {
			t.del(bFingerprints, rec.Fingerprint)
		}
		t.del(bTokens, key)
		t.del(bReveals, key)
		return nil
	})
	if err != nil {
		return err
	}
	if !found {
		return vault.ErrNotFound
	}
	return nil
}
