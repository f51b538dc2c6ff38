package vault

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// AES-GCM with random 96-bit nonces is safe for about 2^32 encryptions
// under one key (NIST SP 800-38D, section 8.3): beyond that, a repeated
// nonce, which leaks the authentication key, becomes likely enough to
// matter. tok warns long before.
const (
	// NonceLimit is the number of encryptions one data key may perform.
	NonceLimit = 1 << 32
	// UsageWarnThreshold: when a key version's records plus this process's
	// encryptions under it pass this (a quarter of NonceLimit), tok warns
	// the operator to rotate.
	UsageWarnThreshold = NonceLimit / 4
	// SealWarnInterval: each time this process's encryptions under one
	// version cross a multiple of this, the Seal path logs it.
	SealWarnInterval = 1 << 28
)

// DefaultRekeyPage is the page size of a rekey and of [Vault.KeyUsage].
const DefaultRekeyPage = 500

// volatileCursor prefixes a rekey cursor in the volatile store. Tokens
// never hold a ':', so no durable cursor starts with it.
const volatileCursor = "volatile:"

// rekeyWorkers reseal one page concurrently, so that a store with group
// commit (bolt) shares its fsyncs between them.
const rekeyWorkers = 8

// Rekey re-encrypts one page of records under the primary key version:
// each record sealed under another version, or at a record version older
// than [RecordVersion] (its format, expiry and fingerprint were
// not bound), is decrypted with its own key and resealed with
// [Keyring.SealRecord], then
// swapped in with [Store.Reseal], which refuses if the record changed in
// between (deleted, or resealed by someone else). It pages through the
// durable store, then the volatile one. Call it with after "" first, then
// with the returned next until next is "": the cursor is all the state,
// so a rekey resumes from any cursor it returned, in this process or
// another. n counts the records resealed. Traffic may continue meanwhile:
// records written during a rekey are sealed under the primary already.
//
// A record whose key version is not in the keyring stops the rekey with an
// error wrapping [ErrUnknownKey]. On any error, next is the cursor to
// retry from (the page's start), not a sign of completion.
func (v *Vault) Rekey(ctx context.Context, after string, limit int) (next string, n int, err error) {
	if limit <= 0 {
		limit = DefaultRekeyPage
	}
	store, prefix := v.durable, ""
	if rest, ok := strings.CutPrefix(after, volatileCursor); ok {
		if v.volatile == nil {
			return "", 0, nil
		}
		store, prefix, after = v.volatile, volatileCursor, rest
	}
	recs, err := store.Scan(ctx, after, limit)
	if err != nil {
		return after, 0, fmt.Errorf("rekey: scan: %w", err)
	}
	primary := v.keys.Primary()
	var (
		mu    sync.Mutex
		errs  []error
		wg    sync.WaitGroup
		todo  = make(chan Record)
		count int
	)
	for range rekeyWorkers {
		wg.Go(func() {
			for rec := range todo {
				ok, err := v.reseal(ctx, store, rec)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else if ok {
					count++
				}
				mu.Unlock()
			}
		})
	}
	for _, rec := range recs {
		if rec.KeyID == primary && rec.version() >= RecordVersion {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		todo <- rec
	}
	close(todo)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return prefix + after, count, fmt.Errorf("rekey: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return prefix + after, count, err
	}
	switch {
	case len(recs) == limit:
		return prefix + recs[len(recs)-1].Token, count, nil
	case prefix == "" && v.volatile != nil:
		return volatileCursor, count, nil
	}
	return "", count, nil
}

// reseal moves one record to the primary key at [RecordVersion], binding
// its format, expiry and fingerprint as they are stored now (Reseal keeps
// them).
func (v *Vault) reseal(ctx context.Context, s Store, rec Record) (bool, error) {
	val, err := v.keys.OpenRecord(rec)
	if err != nil {
		return false, fmt.Errorf("token %s: %w", rec.Token, err)
	}
	next := rec
	v.keys.SealRecord(&next, val)
	ok, err := s.Reseal(ctx, Record{Token: rec.Token, KeyID: next.KeyID, Ciphertext: next.Ciphertext, Version: next.Version}, rec.KeyID)
	if err != nil {
		return false, fmt.Errorf("token %s: reseal: %w", rec.Token, err)
	}
	return ok, nil
}

// KeyUsage counts the records sealed under each key version, in both
// stores, by paging through them (a full scan: it takes a while on a big
// vault). Versions no record uses are absent. Like Scan, it is not a
// snapshot: records written while it runs may or may not be counted.
func (v *Vault) KeyUsage(ctx context.Context) (map[uint32]int, error) {
	counts := map[uint32]int{}
	for _, s := range []Store{v.durable, v.volatile} {
		if s == nil {
			continue
		}
		after := ""
		for {
			recs, err := s.Scan(ctx, after, DefaultRekeyPage*2)
			if err != nil {
				return nil, fmt.Errorf("key usage: %w", err)
			}
			for _, r := range recs {
				counts[r.KeyID]++
			}
			if len(recs) < DefaultRekeyPage*2 {
				break
			}
			after = recs[len(recs)-1].Token
		}
	}
	return counts, nil
}
