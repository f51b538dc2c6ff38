package redis

import (
	"context"
	"errors"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tokproxy/tok/vault"
)

// maxFingerprint is the longest fingerprint accepted (an HMAC-SHA256 is 32
// bytes; the memory store takes 255).
const maxFingerprint = 255

// maxTokenLen bounds a token: a bound key is a card token, "/" and a
// short token.
const maxTokenLen = 128

// resealRetries bounds how often Reseal and UpdateLockout retry when
// another client changed the key between the read and the write.
const resealRetries = 16

// validate rejects records the store cannot hold. Errors name the index,
// never a value.
func validate(recs []vault.Record) error {
	for i, r := range recs {
		if r.Token == "" || len(r.Token) > maxTokenLen {
			return fmt.Errorf("insert record %d: token of %d bytes: %w", i, len(r.Token), vault.ErrInvalidToken)
		}
		if len(r.Fingerprint) > maxFingerprint {
			return fmt.Errorf("insert record %d: fingerprint of %d bytes: %w", i, len(r.Fingerprint), vault.ErrInvalidValue)
		}
	}
	return nil
}

// Insert implements [vault.Store]: one script judges and writes every
// record, so concurrent inserts of the same fingerprint converge across
// replicas. If the records stored would take the store past its cap, none
// is: Insert returns an error wrapping [ErrFull].
func (s *Store) Insert(ctx context.Context, recs []vault.Record) ([]vault.Outcome, error) {
	if err := validate(recs); err != nil {
		return nil, err
	}
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return []vault.Outcome{}, nil
	}
	res, err := s.insert(ctx, insertArgs(recs))
	if err != nil {
		return nil, s.fail(ctx, "insert", err)
	}
	return outcomes(recs, res)
}

// insertArgs is recs as one call's part of insertScript's arguments.
func insertArgs(recs []vault.Record) []any {
	args := make([]any, 0, 1+4*len(recs))
	args = append(args, len(recs))
	for _, r := range recs {
		var exp int64
		if !r.Expires.IsZero() {
			exp = max(r.Expires.UnixMilli(), 1)
		}
		args = append(args, r.Token, r.Fingerprint, vault.MarshalRecord(r), exp)
	}
	return args
}

// outcomes decodes insertScript's reply for recs.
func outcomes(recs []vault.Record, res []any) ([]vault.Outcome, error) {
	if len(res) == 3 && res[0] == "full" {
		return nil, fmt.Errorf("insert %d records with %v of %v held: %w", len(recs), res[1], res[2], ErrFull)
	}
	if len(res) != 1+3*len(recs) || res[0] != "ok" {
		return nil, fmt.Errorf("redis insert: %w: unexpected reply of %d items", vault.ErrUnavailable, len(res))
	}
	outs := make([]vault.Outcome, len(recs))
	for i, rec := range recs {
		status, _ := res[1+3*i].(int64)
		tok, _ := res[2+3*i].(string)
		val, _ := res[3+3*i].(string)
		switch status {
		case 0:
			// The outcome is what a read would return: milliseconds, UTC, copies.
			r, err := vault.UnmarshalRecord(rec.Token, vault.MarshalRecord(rec))
			if err != nil {
				return nil, err
			}
			outs[i] = vault.Outcome{Status: vault.Stored, Record: r}
		case 1:
			r, err := vault.UnmarshalRecord(tok, []byte(val))
			if err != nil {
				return nil, fmt.Errorf("insert record %d: existing record: %w", i, err)
			}
			outs[i] = vault.Outcome{Status: vault.Existing, Record: r}
		default:
			outs[i] = vault.Outcome{Status: vault.Collision}
		}
	}
	return outs, nil
}

// decode unmarshals a stored value and hides it if it has expired by tok's
// clock (Redis's TTL may lag it, or run on a clock behind).
func (s *Store) decode(token string, v []byte) (vault.Record, error) {
	r, err := vault.UnmarshalRecord(token, v)
	if err != nil {
		return vault.Record{}, err
	}
	if r.Expired(s.now()) {
		return vault.Record{}, vault.ErrNotFound
	}
	return r, nil
}

// Get implements [vault.Store]; expired records are not found.
func (s *Store) Get(ctx context.Context, token string) (vault.Record, error) {
	if err := s.begin(ctx); err != nil {
		return vault.Record{}, err
	}
	v, err := s.c.HGet(ctx, s.key("r", token), "v").Bytes()
	switch {
	case errors.Is(err, goredis.Nil):
		return vault.Record{}, vault.ErrNotFound
	case err != nil:
		return vault.Record{}, s.fail(ctx, "get", err)
	}
	return s.decode(token, v)
}

// Find implements [vault.Store]; expired records are not found.
func (s *Store) Find(ctx context.Context, fingerprint []byte) (vault.Record, error) {
	if err := s.begin(ctx); err != nil {
		return vault.Record{}, err
	}
	if len(fingerprint) == 0 {
		return vault.Record{}, vault.ErrNotFound
	}
	res, err := findScript.Run(ctx, s.c, s.indexes(), s.prefix, s.now().UnixMilli(), fingerprint).StringSlice()
	switch {
	case errors.Is(err, goredis.Nil):
		return vault.Record{}, vault.ErrNotFound
	case err != nil:
		return vault.Record{}, s.fail(ctx, "find", err)
	case len(res) != 2:
		return vault.Record{}, vault.ErrNotFound
	}
	return s.decode(res[0], []byte(res[1]))
}

// Delete implements [vault.Store]. Redis frees the value; it cannot be made
// to zero the memory that held the (sealed) bytes.
func (s *Store) Delete(ctx context.Context, token string) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	n, err := deleteScript.Run(ctx, s.c, s.indexes(), s.prefix, s.now().UnixMilli(), token).Int()
	if err != nil {
		return s.fail(ctx, "delete", err)
	}
	if n == 0 {
		return vault.ErrNotFound
	}
	return nil
}

// Scan implements [vault.Store]: one script walks the token index in byte
// order, skipping expired records.
func (s *Store) Scan(ctx context.Context, after string, limit int) ([]vault.Record, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return []vault.Record{}, nil
	}
	res, err := scanScript.Run(ctx, s.c, s.indexes(), s.prefix, s.now().UnixMilli(), after, limit).StringSlice()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, s.fail(ctx, "scan", err)
	}
	recs := make([]vault.Record, 0, len(res)/2)
	for i := 0; i+1 < len(res); i += 2 {
		r, err := vault.UnmarshalRecord(res[i], []byte(res[i+1]))
		if err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	return recs, nil
}

// Reseal implements [vault.Store]: a compare-and-swap under WATCH, retried
// if another replica changed the record between the read and the write.
// The record keeps its TTL.
func (s *Store) Reseal(ctx context.Context, rec vault.Record, fromKeyID uint32) (bool, error) {
	if err := s.begin(ctx); err != nil {
		return false, err
	}
	rk := s.key("r", rec.Token)
	for range resealRetries {
		replaced := false
		err := s.c.Watch(ctx, func(tx *goredis.Tx) error {
			v, err := tx.HGet(ctx, rk, "v").Bytes()
			if errors.Is(err, goredis.Nil) {
				return nil
			}
			if err != nil {
				return err
			}
			cur, err := vault.UnmarshalRecord(rec.Token, v)
			if err != nil {
				return err
			}
			if !vault.ResealApplies(cur, rec, fromKeyID) {
				return nil
			}
			cur.KeyID, cur.Ciphertext, cur.Version = rec.KeyID, rec.Ciphertext, rec.Version
			_, err = tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
				p.HSet(ctx, rk, "v", vault.MarshalRecord(cur))
				return nil
			})
			replaced = err == nil
			return err
		}, rk)
		switch {
		case err == nil:
			return replaced, nil
		case errors.Is(err, goredis.TxFailedErr):
			continue
		}
		return false, s.fail(ctx, "reseal", err)
	}
	return false, fmt.Errorf("redis reseal: %w: the record kept changing", vault.ErrUnavailable)
}
