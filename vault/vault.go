package vault

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"time"
)

// maxCollisionRetries bounds how often Tokenize inserts a value again
// whose token turned out taken (each insert is a commit), and maxDraws how
// often it draws a token before the insert while the one drawn is held
// (each draw is a lookup). Digits tokens, whose space can be small, are
// looked up in both stores before the commit: at a third full, 32 draws
// fail once in 10^15 values, where 8 commits failed once in 20,000 and
// made a 4-digit field answer 507 now and then.
const (
	maxCollisionRetries = 8
	maxDraws            = 32
)

// A bound value's token is drawn at random among its card's; a draw is one
// memory insert. After evictAfter draws that all hit live tokens the card's
// namespace is taken to be full (a 3-digit one holds 900: one card checked
// out hundreds of times within the ttl, a load test on one test card, say),
// and the oldest of evictSample of the card's live values, drawn at random,
// gives up its token to the new one, so a checkout is never refused for
// it. Sixteen straight collisions happen once in 65,000 draws at half full;
// the oldest of 16 samples is older than 94% of the card's values on
// average. maxBoundRetries bounds the whole.
const (
	evictAfter      = 16
	evictSample     = 16
	maxBoundRetries = 32
)

// boundSep joins a card token and a bound value's token into the key the
// bound record is stored under. No token holds it.
const boundSep = "/"

// Request asks for one value to be tokenized under a spec.
type Request struct {
	Value string
	Spec  Spec
	// BindTo, for a Spec.Bound request, is the index in the same call of
	// the request whose token the value is bound to (the card number a
	// CVC was collected with). It is not read otherwise.
	BindTo int
}

// Revealed is a record together with its decrypted value.
type Revealed struct {
	Record
	Value string
	// Reveals is the token's reveal count, this reveal included, when its
	// policy has a MaxReveals and [Vault.RevealFor] counted it; else 0.
	Reveals uint32
}

// Vault tokenizes and reveals values. It owns no store: the caller opens and
// closes them. A Vault is safe for concurrent use.
type Vault struct {
	durable  Store
	volatile Store // may be nil: volatile specs are then refused
	keys     *Keyring
	now      func() time.Time
	quota    *Quota // nil: none
	// volatileFormats, if declared, is the set (a bit per Format) of the
	// formats the volatile store may hold an unbound token of.
	volatileFormats  uint8
	volatileDeclared bool
}

// Option configures a Vault.
type Option func(*Vault)

// WithVolatile sets the store for Spec.Volatile values (vault/memory).
func WithVolatile(s Store) Option { return func(v *Vault) { v.volatile = s } }

// WithVolatileFormats declares the formats of every unbound value the
// volatile store may hold (those of the fields configured with store:
// memory and no bind). A new durable token of another format then needs no
// lookup in the volatile store to rule out a shared token: on a volatile
// store on a server (Redis) that lookup is a round trip per new card. The
// vault refuses to put a value of an undeclared format in the volatile
// store, so the two stores still never share a token. Replicas sharing a
// volatile store must declare the same formats. Without this option every
// format is looked up.
func WithVolatileFormats(formats ...Format) Option {
	return func(v *Vault) {
		v.volatileDeclared = true
		for _, f := range formats {
			v.volatileFormats |= 1 << f
		}
	}
}

// mayBeVolatile reports whether the volatile store may hold an unbound
// token of format f.
func (v *Vault) mayBeVolatile(f Format) bool {
	return !v.volatileDeclared || v.volatileFormats&(1<<f) != 0
}

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
	if v.quota != nil {
		v.quota.now = v.now // measurements age by the vault's clock
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
//
// A Bound request is tokenized after every other: its token is drawn afresh
// (bound values never converge, so equal CVCs of one card do not show as
// equal tokens) and is unique among the live values bound to the token of
// reqs[BindTo], under which it is stored in the volatile store.
func (v *Vault) Tokenize(ctx context.Context, reqs []Request) ([]string, error) {
	tokens, _, err := v.TokenizeCount(ctx, reqs)
	return tokens, err
}

// TokenizeCount is [Vault.Tokenize] that also reports how many new records
// it stored; the other tokens were found by fingerprint. A rate of new
// records far above the usual is how an operator sees someone searching
// the card space.
func (v *Vault) TokenizeCount(ctx context.Context, reqs []Request) (tokens []string, created int, err error) {
	tokens = make([]string, len(reqs))
	var durable, volatile, bound []int
	values := make([]string, len(reqs))
	for i, r := range reqs {
		d, err := r.Spec.Normalize(r.Value)
		if err != nil {
			return nil, 0, fmt.Errorf("value %d: %w", i, err)
		}
		values[i] = d
		if err := r.Spec.checkPolicy(); err != nil {
			return nil, 0, fmt.Errorf("value %d: %w", i, err)
		}
		if r.Spec.Bound {
			if err := v.checkBinding(reqs, i); err != nil {
				return nil, 0, fmt.Errorf("value %d: %w", i, err)
			}
			bound = append(bound, i)
			continue
		}
		if r.Spec.Volatile {
			if v.volatile == nil {
				return nil, 0, errors.New("vault: no volatile store configured")
			}
			if !v.mayBeVolatile(r.Spec.Format) {
				return nil, 0, fmt.Errorf("value %d: vault: format %s is not declared volatile (WithVolatileFormats)", i, r.Spec.Format)
			}
			volatile = append(volatile, i)
		} else {
			durable = append(durable, i)
		}
	}
	var early *earlyBound
	var drafted func([]string)
	if bindsDurable(reqs, bound) {
		drafted = func(cards []string) { early = v.startBound(ctx, reqs, values, bound, cards) }
	}
	if err := v.tokenizeIn(ctx, v.durable, reqs, values, durable, tokens, &created, drafted); err != nil {
		early.abandon(ctx, v.volatile)
		return nil, 0, err
	}
	if err := v.tokenizeIn(ctx, v.volatile, reqs, values, volatile, tokens, &created, nil); err != nil {
		early.abandon(ctx, v.volatile)
		return nil, 0, err
	}
	rest, err := early.settle(ctx, v.volatile, reqs, bound, tokens)
	if err != nil {
		return nil, 0, err
	}
	if err := v.tokenizeBound(ctx, reqs, values, rest, func(i int) string { return tokens[reqs[i].BindTo] }, tokens); err != nil {
		return nil, 0, err
	}
	return tokens, created + len(bound), nil
}

// checkBinding checks that request i may be bound as it asks.
func (v *Vault) checkBinding(reqs []Request, i int) error {
	r := reqs[i]
	switch {
	case !r.Spec.Volatile || r.Spec.Format != FormatDigits || r.Spec.TTL <= 0:
		return errors.New("vault: a bound value must be a digits value held in memory with a ttl")
	case v.volatile == nil:
		return errors.New("vault: no volatile store configured")
	case r.BindTo < 0 || r.BindTo >= len(reqs) || r.BindTo == i || reqs[r.BindTo].Spec.Bound:
		return fmt.Errorf("vault: value bound to value %d, which is not an unbound value of the call", r.BindTo)
	}
	return nil
}

// tokenizeBound fills out[i] for every bound request i of idx, bound to
// the card token card(i).
func (v *Vault) tokenizeBound(ctx context.Context, reqs []Request, values []string, idx []int, card func(int) string, out []string) error {
	now := v.now().UTC()
	pending := idx
	for attempt := 0; len(pending) > 0; attempt++ {
		if attempt > maxBoundRetries {
			return ErrCollision
		}
		recs := make([]Record, len(pending))
		shorts := make([]string, len(pending))
		for j, i := range pending {
			spec := reqs[i].Spec
			card := card(i)
			shorts[j] = spec.newToken(values[i])
			if attempt >= evictAfter {
				freed, err := v.freeBoundToken(ctx, card, spec, values[i])
				if err != nil {
					return err
				}
				shorts[j] = freed
			}
			recs[j] = Record{Token: BoundKey(card, shorts[j]), Created: now, Expires: now.Add(spec.TTL), Format: spec.Format}
			v.keys.SealRecord(&recs[j], values[i])
		}
		outs, err := v.volatile.Insert(ctx, recs)
		if err != nil {
			return fmt.Errorf("insert bound records: %w", err)
		}
		if len(outs) != len(recs) {
			return fmt.Errorf("insert bound records: store returned %d outcomes for %d records", len(outs), len(recs))
		}
		retry := pending[:0:0]
		for j, i := range pending {
			if outs[j].Status == Stored {
				out[i] = shorts[j]
			} else {
				retry = append(retry, i)
			}
		}
		pending = retry
	}
	return nil
}

// freeBoundToken returns a token for a new value bound to card from a
// namespace that is (nearly) full: a free token if one of evictSample
// random draws finds one, else the token of the oldest value drawn, which
// it erases. It costs evictSample reads, never a walk of the store.
func (v *Vault) freeBoundToken(ctx context.Context, card string, spec Spec, value string) (string, error) {
	var oldest Record
	var oldestTok string
	now := v.now()
	for range evictSample {
		t := spec.newToken(value)
		rec, err := v.volatile.Get(ctx, BoundKey(card, t))
		switch {
		case errors.Is(err, ErrNotFound):
			return t, nil
		case err != nil:
			return "", fmt.Errorf("get bound value: %w", err)
		case rec.Expired(now):
			return t, nil
		case oldestTok == "" || rec.Created.Before(oldest.Created):
			oldest, oldestTok = rec, t
		}
	}
	switch err := v.volatile.Delete(ctx, oldest.Token); {
	case err == nil, errors.Is(err, ErrNotFound): // a concurrent checkout took it: the insert collides and retries
	default:
		return "", fmt.Errorf("evict bound value: %w", err)
	}
	return oldestTok, nil
}

// scanBound calls fn with every live value bound to card, in token order.
func (v *Vault) scanBound(ctx context.Context, card string, fn func(Record) error) error {
	const page = 1024
	prefix := card + boundSep
	now := v.now()
	for after := prefix; ; {
		recs, err := v.volatile.Scan(ctx, after, page)
		if err != nil {
			return fmt.Errorf("scan bound values: %w", err)
		}
		for _, rec := range recs {
			if !strings.HasPrefix(rec.Token, prefix) {
				return nil
			}
			if !rec.Expired(now) {
				if err := fn(rec); err != nil {
					return err
				}
			}
			after = rec.Token
		}
		if len(recs) < page {
			return nil
		}
	}
}

// BoundKey is the key the record of a value bound to the token card, with
// token token, is stored under. The key is bound into the record's
// associated data as its token is, so a bound record opens only under the
// card token it was bound to.
func BoundKey(card, token string) string { return card + boundSep + token }

// tokenizeIn fills tokens[i] for every i in idx using store s, adding the
// records it stored to *created. If drafted is not nil, it is called once,
// before the first insert, with the token each request of idx will have if
// that insert stores it, or "" where that is not likely (see draftTokens).
func (v *Vault) tokenizeIn(ctx context.Context, s Store, reqs []Request, values []string, idx []int, tokens []string, created *int, drafted func([]string)) error {
	if len(idx) == 0 {
		return nil
	}
	now := v.now().UTC()
	fps := make(map[int][]byte)
	c, ok := s.(Converger)
	skipFind := ok && c.ConvergesOnInsert()
	pending, err := v.findKnown(ctx, s, reqs, values, idx, tokens, fps, skipFind)
	if err != nil {
		return err
	}
	if len(pending) > 0 && s == v.durable && v.quota != nil {
		if quotaErr := v.quota.check(ctx); quotaErr != nil {
			if !skipFind {
				return quotaErr
			}
			// Past the quota only known values get tokens: look
			// them up after all.
			if pending, err = v.findKnown(ctx, s, reqs, values, pending, tokens, fps, false); err != nil {
				return err
			}
			if len(pending) > 0 {
				return quotaErr
			}
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
				held, err := v.held(ctx, s, reqs[i].Spec, recs[j].Token)
				if err != nil {
					return err
				}
				if !held {
					break
				}
				if tries >= maxDraws {
					return ErrCollision
				}
				recs[j] = v.newRecord(reqs[i].Spec, values[i], fps[i], now)
			}
		}
		if drafted != nil {
			drafted(draftTokens(len(reqs), idx, tokens, pending, recs, fps, skipFind))
			drafted = nil
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
			case Existing:
				if err := v.checkFound(outs[j].Record, fps[i], values[i]); err != nil {
					return err
				}
				tokens[i] = outs[j].Record.Token
			case Stored:
				*created++
				tokens[i] = outs[j].Record.Token
			default:
				retry = append(retry, i)
			}
		}
		pending = retry
	}
	return nil
}

// findKnown fills tokens[i] for the requests i of idx whose convergent
// values have a live record in s, and returns the others (recording the
// fingerprints it computes in fps). With skip, it looks nothing up (s
// converges on Insert) and returns idx, fingerprints computed.
func (v *Vault) findKnown(ctx context.Context, s Store, reqs []Request, values []string, idx []int, tokens []string, fps map[int][]byte, skip bool) ([]int, error) {
	now := v.now()
	pending := idx[:0:0]
	for _, i := range idx {
		spec := reqs[i].Spec
		if spec.Unique || spec.Volatile || spec.TTL > 0 { // an expiring record must not be handed out again
			pending = append(pending, i)
			continue
		}
		fp := fps[i]
		if fp == nil {
			fp = v.keys.Fingerprint(spec.Domain(), values[i])
			fps[i] = fp
		}
		if skip {
			pending = append(pending, i)
			continue
		}
		rec, err := s.Find(ctx, fp)
		if err == nil {
			err = v.checkFound(rec, fp, values[i])
		}
		switch {
		case err == nil && !rec.Expired(now):
			tokens[i] = rec.Token
		case err == nil || errors.Is(err, ErrNotFound):
			pending = append(pending, i)
		default:
			return nil, fmt.Errorf("find fingerprint: %w", err)
		}
	}
	return pending, nil
}

// held reports whether token is taken where a new record of spec in s
// could not have it: in the store other than s (bbolt returns expired
// records too; the memory store hides them, and its janitor reclaims
// them), and, for digits tokens, whose space may be small, in s itself,
// so that a collision costs a lookup rather than a commit. Opaque tokens
// (131 random bits) skip the lookups: they never meet, and so does a durable
// token of a format the volatile store holds none of (WithVolatileFormats).
func (v *Vault) held(ctx context.Context, s Store, spec Spec, token string) (bool, error) {
	if spec.Format == FormatOpaque {
		return false, nil
	}
	other := v.volatile
	if s == v.volatile {
		other = v.durable
	} else if !v.mayBeVolatile(spec.Format) {
		other = nil // the volatile store holds no token of this format
	}
	look := []Store{other}
	if spec.Format == FormatDigits {
		look = append(look, s)
	}
	for _, st := range look {
		if st == nil {
			continue
		}
		_, err := st.Get(ctx, token)
		switch {
		case err == nil:
			return true, nil
		case !errors.Is(err, ErrNotFound):
			return false, fmt.Errorf("get token: %w", err)
		}
	}
	return false, nil
}

func (v *Vault) newRecord(spec Spec, value string, fp []byte, now time.Time) Record {
	r := Record{Token: spec.newToken(value), Fingerprint: fp, Created: now, Format: spec.Format, Policy: spec.policy(now)}
	if spec.TTL > 0 {
		r.Expires = now.Add(spec.TTL)
	}
	v.keys.SealRecord(&r, value)
	return r
}

// checkFound proves that rec, found under fingerprint fp, holds value
// before its token is handed out: an edit of the store that
// swapped two records' fingerprints would otherwise answer one card's
// tokenization with another card's token. The record must open with fp in
// its associated data (RecordV2; for RecordV1 the token alone is bound)
// and decrypt to value.
func (v *Vault) checkFound(rec Record, fp []byte, value string) error {
	rec.Fingerprint = fp
	got, err := v.keys.OpenRecord(rec)
	if err != nil {
		return fmt.Errorf("token %s found by fingerprint: %w: %w", rec.Token, ErrMismatch, err)
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(value)) != 1 {
		return fmt.Errorf("token %s found by fingerprint: %w", rec.Token, ErrMismatch)
	}
	return nil
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
// its fingerprint entry, and every value bound to it: the token no longer
// reveals, and the value gets a new token if it is tokenized again.
// ErrNotFound if there was none.
func (v *Vault) Delete(ctx context.Context, token string) error {
	if !ValidToken(token) {
		return ErrInvalidToken
	}
	if _, err := v.Lookup(ctx, token); errors.Is(err, ErrAmbiguous) {
		return err // deleting either could destroy another value's record
	}
	n, err := v.deleteBound(ctx, token)
	if err != nil {
		return err
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
	if n > 0 {
		return nil
	}
	return ErrNotFound
}

// deleteBound erases every value bound to card and returns how many.
func (v *Vault) deleteBound(ctx context.Context, card string) (int, error) {
	if v.volatile == nil || IsShortToken(card) {
		return 0, nil
	}
	n := 0
	err := v.scanBound(ctx, card, func(rec Record) error {
		switch err := v.volatile.Delete(ctx, rec.Token); {
		case err == nil:
			n++
		case !errors.Is(err, ErrNotFound):
			return fmt.Errorf("delete bound value: %w", err)
		}
		return nil
	})
	return n, err
}

// DeleteBound erases the value bound to card under token. ErrNotFound if
// there is none.
func (v *Vault) DeleteBound(ctx context.Context, card, token string) error {
	if err := checkBoundPair(card, token); err != nil {
		return err
	}
	if v.volatile == nil {
		return ErrNotFound
	}
	if err := v.volatile.Delete(ctx, BoundKey(card, token)); err != nil {
		if errors.Is(err, ErrNotFound) {
			return err
		}
		return fmt.Errorf("delete bound value: %w", err)
	}
	return nil
}

// checkBoundPair checks that card can be a card token and token a bound
// value's (digits) token.
func checkBoundPair(card, token string) error {
	if !ValidToken(card) || IsShortToken(card) || !ValidToken(token) || strings.HasPrefix(token, opaquePrefix) {
		return ErrInvalidToken
	}
	return nil
}

// RevealBound returns the value bound to the card token card under token,
// decrypted: ErrNotFound if card has no live value under that token. It
// never looks further than card's own bound values, so a token bound to
// another card reveals nothing.
func (v *Vault) RevealBound(ctx context.Context, card, token string) (Revealed, error) {
	if err := checkBoundPair(card, token); err != nil {
		return Revealed{}, err
	}
	if v.volatile == nil {
		return Revealed{}, ErrNotFound
	}
	rec, err := v.volatile.Get(ctx, BoundKey(card, token))
	switch {
	case errors.Is(err, ErrNotFound):
		return Revealed{}, err
	case err != nil:
		return Revealed{}, fmt.Errorf("get bound value: %w", err)
	case rec.Expired(v.now()):
		return Revealed{}, ErrNotFound
	}
	val, err := v.keys.OpenRecord(rec)
	if err != nil {
		return Revealed{}, fmt.Errorf("open bound record: %w", err)
	}
	rec.Token = token
	return Revealed{Record: rec, Value: val}, nil
}

// Reveal returns the record for token and its decrypted value. A
// short-value token is refused with ErrUnbound: see [Vault.RevealBound].
func (v *Vault) Reveal(ctx context.Context, token string) (Revealed, error) {
	if IsShortToken(token) {
		return Revealed{}, ErrUnbound
	}
	rec, err := v.Lookup(ctx, token)
	if err != nil {
		return Revealed{}, err
	}
	val, err := v.keys.OpenRecord(rec)
	if err != nil {
		return Revealed{}, fmt.Errorf("open record: %w", err)
	}
	return Revealed{Record: rec, Value: val}, nil
}
