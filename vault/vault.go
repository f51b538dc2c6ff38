package vault

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// maxCollisionRetries bounds how often Tokenize draws a fresh token for a
// value whose token was already taken.
const maxCollisionRetries = 8

// Request asks for one value to be tokenized under a spec.
type Request struct {
	Value string
	Spec  Spec
}

// Revealed is a record together with its decrypted value.
type Revealed struct {
	Record
	Value string
}

// Vault tokenizes and reveals values. It owns no store: the caller opens and
// closes them. A Vault is safe for concurrent use.
type Vault struct {
	durable  Store
	volatile Store // may be nil: volatile specs are then refused
	keys     *Keyring
	now      func() time.Time
}

// Option configures a Vault.
type Option func(*Vault)

// WithVolatile sets the store for Spec.Volatile values (vault/memory).
func WithVolatile(s Store) Option { return func(v *Vault) { v.volatile = s } }

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option { return func(v *Vault) { v.now = now } }

// New returns a Vault writing durable records to store and sealing them with keys.
func New(store Store, keys *Keyring, opts ...Option) (*Vault, error) {
	if store == nil || keys == nil {
		return nil, errors.New("vault: store and keyring are required")
	}
	v := &Vault{durable: store, keys: keys, now: time.Now}
	for _, o := range opts {
		o(v)
	}
	return v, nil
}

// Keyring returns the vault's keyring.
func (v *Vault) Keyring() *Keyring { return v.keys }

// Tokenize returns one token per request, in order. Every returned token has
// a committed record: new records for all requests are written in one
// commit per store. Convergent specs return the existing token of a value
// seen before. An error means no token may be used; errors wrapping
// ErrInvalidValue name the request's index, never its value.
func (v *Vault) Tokenize(ctx context.Context, reqs []Request) ([]string, error) {
	tokens, _, err := v.TokenizeCount(ctx, reqs)
	return tokens, err
}

// TokenizeCount is [Vault.Tokenize] that also reports how many new records
// it stored; the other tokens were found by fingerprint. A rate of new
// records far above the usual is how an operator sees someone searching
// the card space (issue 19).
func (v *Vault) TokenizeCount(ctx context.Context, reqs []Request) (tokens []string, created int, err error) {
	tokens = make([]string, len(reqs))
	var durable, volatile []int
	values := make([]string, len(reqs))
	for i, r := range reqs {
		d, err := r.Spec.Normalize(r.Value)
		if err != nil {
			return nil, 0, fmt.Errorf("value %d: %w", i, err)
		}
		values[i] = d
		if r.Spec.Volatile {
			if v.volatile == nil {
				return nil, 0, errors.New("vault: no volatile store configured")
			}
			volatile = append(volatile, i)
		} else {
			durable = append(durable, i)
		}
	}
	if err := v.tokenizeIn(ctx, v.durable, reqs, values, durable, tokens, &created); err != nil {
		return nil, 0, err
	}
	if err := v.tokenizeIn(ctx, v.volatile, reqs, values, volatile, tokens, &created); err != nil {
		return nil, 0, err
	}
	return tokens, created, nil
}

// tokenizeIn fills tokens[i] for every i in idx using store s, adding the
// records it stored to *created.
func (v *Vault) tokenizeIn(ctx context.Context, s Store, reqs []Request, values []string, idx []int, tokens []string, created *int) error {
	if len(idx) == 0 {
		return nil
	}
	now := v.now().UTC()
	fps := make(map[int][]byte)
	// Convergent values seen before are a read, not a write.
	pending := idx[:0:0]
	for _, i := range idx {
		spec := reqs[i].Spec
		if spec.Unique || spec.Volatile || spec.TTL > 0 { // an expiring record must not be handed out again
			pending = append(pending, i)
			continue
		}
		fp := v.keys.Fingerprint(spec.Domain(), values[i])
		fps[i] = fp
		rec, err := s.Find(ctx, fp)
		switch {
		case err == nil && !rec.Expired(now):
			tokens[i] = rec.Token
		case err == nil || errors.Is(err, ErrNotFound):
			pending = append(pending, i)
		default:
			return fmt.Errorf("find fingerprint: %w", err)
		}
	}
	for attempt := 0; len(pending) > 0; attempt++ {
		if attempt > maxCollisionRetries {
			return ErrCollision
		}
		recs := make([]Record, len(pending))
		for j, i := range pending {
			recs[j] = v.newRecord(reqs[i].Spec, values[i], fps[i], now)
			// The two stores share one token space: a token the other
			// store holds is a collision too.
			for tries := 0; ; tries++ {
				held, err := v.heldElsewhere(ctx, s, reqs[i].Spec, recs[j].Token)
				if err != nil {
					return err
				}
				if !held {
					break
				}
				if tries >= maxCollisionRetries {
					return ErrCollision
				}
				recs[j] = v.newRecord(reqs[i].Spec, values[i], fps[i], now)
			}
		}
		outs, err := s.Insert(ctx, recs)
		if err != nil {
			return fmt.Errorf("insert records: %w", err)
		}
		if len(outs) != len(recs) {
			return fmt.Errorf("insert records: store returned %d outcomes for %d records", len(outs), len(recs))
		}
		retry := pending[:0:0]
		for j, i := range pending {
			switch outs[j].Status {
			case Stored:
				tokens[i] = outs[j].Record.Token
				*created++
			case Existing:
				tokens[i] = outs[j].Record.Token
			default:
				retry = append(retry, i)
			}
		}
		pending = retry
	}
	return nil
}

// heldElsewhere reports whether the store other than s returns a record
// under token (bbolt returns expired ones too; the memory store hides
// them, and its janitor reclaims them). Opaque tokens (131 random bits) skip the
// lookup: they never meet.
func (v *Vault) heldElsewhere(ctx context.Context, s Store, spec Spec, token string) (bool, error) {
	other := v.volatile
	if s == v.volatile {
		other = v.durable
	}
	if other == nil || spec.Format == FormatOpaque {
		return false, nil
	}
	_, err := other.Get(ctx, token)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrNotFound):
		return false, nil
	}
	return false, fmt.Errorf("get token: %w", err)
}

func (v *Vault) newRecord(spec Spec, value string, fp []byte, now time.Time) Record {
	tok := spec.newToken(value)
	kid, ct := v.keys.Seal(tok, value)
	r := Record{Token: tok, KeyID: kid, Ciphertext: ct, Fingerprint: fp, Created: now, Format: spec.Format}
	if spec.TTL > 0 {
		r.Expires = now.Add(spec.TTL)
	}
	return r
}

// Lookup returns the record for token without decrypting it: ErrInvalidToken
// if token cannot be a token, ErrNotFound if there is no live record.
func (v *Vault) Lookup(ctx context.Context, token string) (Record, error) {
	if !ValidToken(token) {
		return Record{}, ErrInvalidToken
	}
	now := v.now()
	var found []Record
	for _, s := range []Store{v.durable, v.volatile} {
		if s == nil {
			continue
		}
		rec, err := s.Get(ctx, token)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return Record{}, fmt.Errorf("get token: %w", err)
		}
		found = append(found, rec)
	}
	switch {
	case len(found) == 0 || len(found) == 1 && found[0].Expired(now):
		return Record{}, ErrNotFound
	case len(found) > 1:
		return Record{}, ErrAmbiguous
	}
	return found[0], nil
}

// Delete erases the record for token from whichever store holds it, with
// its fingerprint entry: the token no longer reveals, and the value gets a
// new token if it is tokenized again. ErrNotFound if there was none.
func (v *Vault) Delete(ctx context.Context, token string) error {
	if !ValidToken(token) {
		return ErrInvalidToken
	}
	if _, err := v.Lookup(ctx, token); errors.Is(err, ErrAmbiguous) {
		return err // deleting either could destroy another value's record
	}
	for _, s := range []Store{v.durable, v.volatile} {
		if s == nil {
			continue
		}
		err := s.Delete(ctx, token)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("delete token: %w", err)
		}
		return nil
	}
	return ErrNotFound
}

// Reveal returns the record for token and its decrypted value.
func (v *Vault) Reveal(ctx context.Context, token string) (Revealed, error) {
	rec, err := v.Lookup(ctx, token)
	if err != nil {
		return Revealed{}, err
	}
	val, err := v.keys.Open(rec.KeyID, rec.Token, rec.Ciphertext)
	if err != nil {
		return Revealed{}, fmt.Errorf("open record: %w", err)
	}
	return Revealed{Record: rec, Value: val}, nil
}
