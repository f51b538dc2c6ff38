// Package memory is a [vault.Store] that lives in the process's memory only.
// It is for volatile values (CVVs and other sensitive authentication data
// that PCI DSS forbids keeping after authorization): nothing it holds ever
// touches disk, and a record is gone once it expires or the process exits.
package memory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tokproxy/tok/vault"
)

// DefaultJanitorInterval is how often the janitor purges expired records
// unless [WithJanitorInterval] says otherwise.
const DefaultJanitorInterval = time.Minute

// maxFingerprint is the longest fingerprint the record encoding holds.
const maxFingerprint = 255

var _ vault.Store = (*Store)(nil)

// Store keeps records, sessions and lockouts in maps. Expired records (whose
// Expires is at or before the clock's now) are invisible to Get and Find, do
// not block a new record for the same fingerprint or token, and are removed
// by a background janitor. A Store is safe for concurrent use; its zero
// value is not usable: call [New].
type Store struct {
	now   func() time.Time
	every time.Duration
	tick  <-chan time.Time // tests replace the janitor's ticker
	stop  chan struct{}
	done  chan struct{}

	mu       sync.RWMutex
	closed   bool
	tokens   map[string]entry  // token → record
	fps      map[string]string // fingerprint → token
	sessions map[string]vault.Session
	lockouts map[string]vault.Lockout
}

// entry is one record in the encoding of [vault.MarshalRecord], so the store
// keeps exactly what a durable store would (milliseconds, nil fingerprints)
// and every read hands out a fresh copy.
type entry struct {
	value   []byte
	expires time.Time
}

func (e entry) expired(now time.Time) bool {
	return !e.expires.IsZero() && !now.Before(e.expires)
}

// Option configures a Store.
type Option func(*Store)

// WithClock replaces time.Now as the clock that judges expiry (tests).
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// WithJanitorInterval sets how often expired records are purged. Zero or
// negative turns the janitor off (expired records are still never returned).
func WithJanitorInterval(d time.Duration) Option { return func(s *Store) { s.every = d } }

// New returns an empty store and starts its janitor, which [Store.Close] stops.
func New(opts ...Option) *Store {
	s := &Store{
		now:      time.Now,
		every:    DefaultJanitorInterval,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		tokens:   map[string]entry{},
		fps:      map[string]string{},
		sessions: map[string]vault.Session{},
		lockouts: map[string]vault.Lockout{},
	}
	for _, o := range opts {
		o(s)
	}
	if s.tick == nil && s.every > 0 {
		t := time.NewTicker(s.every)
		s.tick = t.C
		go func() { <-s.done; t.Stop() }()
	}
	go s.janitor()
	return s
}

func (s *Store) janitor() {
	defer close(s.done)
	for {
		select {
		case <-s.stop:
			return
		case <-s.tick: // a nil channel (janitor off) never fires
			s.Purge()
		}
	}
}

// Purge removes every expired record now and returns how many it removed.
// The janitor calls it periodically.
func (s *Store) Purge() int {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for tok, e := range s.tokens {
		if e.expired(now) {
			s.remove(tok, e)
			n++
		}
	}
	return n
}

// Len returns the number of records held, expired or not.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.tokens)
}

// remove deletes a record and its fingerprint entry. s.mu must be held.
func (s *Store) remove(tok string, e entry) {
	delete(s.tokens, tok)
	// The fingerprint is in the value; decoding is the simplest way to find it.
	if r, err := vault.UnmarshalRecord(tok, e.value); err == nil && len(r.Fingerprint) > 0 {
		if s.fps[string(r.Fingerprint)] == tok {
			delete(s.fps, string(r.Fingerprint))
		}
	}
}

// begin checks ctx and that the store is open.
func (s *Store) begin(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed {
		return vault.ErrClosed
	}
	return nil
}

// validate rejects records the encoding cannot hold. Errors name the index,
// never a value.
func validate(recs []vault.Record) error {
	for i, r := range recs {
		if r.Token == "" {
			return fmt.Errorf("insert record %d: empty token: %w", i, vault.ErrInvalidToken)
		}
		if len(r.Fingerprint) > maxFingerprint {
			return fmt.Errorf("insert record %d: fingerprint of %d bytes: %w", i, len(r.Fingerprint), vault.ErrInvalidValue)
		}
	}
	return nil
}

// Insert implements [vault.Store]. All records are judged and written under
// one lock, so concurrent inserts of the same fingerprint converge.
func (s *Store) Insert(ctx context.Context, recs []vault.Record) ([]vault.Outcome, error) {
	if err := validate(recs); err != nil {
		return nil, err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	outs := make([]vault.Outcome, len(recs))
	for i, rec := range recs {
		if len(rec.Fingerprint) > 0 {
			if tok, ok := s.fps[string(rec.Fingerprint)]; ok {
				if e := s.tokens[tok]; !e.expired(now) {
					r, err := vault.UnmarshalRecord(tok, e.value)
					if err != nil {
						return nil, fmt.Errorf("insert record %d: %w", i, err)
					}
					outs[i] = vault.Outcome{Status: vault.Existing, Record: r}
					continue
				}
				s.remove(tok, s.tokens[tok])
			}
		}
		if e, ok := s.tokens[rec.Token]; ok {
			if !e.expired(now) {
				outs[i] = vault.Outcome{Status: vault.Collision}
				continue
			}
			s.remove(rec.Token, e)
		}
		v := vault.MarshalRecord(rec)
		r, err := vault.UnmarshalRecord(rec.Token, v)
		if err != nil {
			return nil, fmt.Errorf("insert record %d: %w", i, err)
		}
		s.tokens[rec.Token] = entry{value: v, expires: r.Expires}
		if len(r.Fingerprint) > 0 {
			s.fps[string(r.Fingerprint)] = rec.Token
		}
		outs[i] = vault.Outcome{Status: vault.Stored, Record: r}
	}
	return outs, nil
}

// Get implements [vault.Store]; expired records are not found.
func (s *Store) Get(ctx context.Context, token string) (vault.Record, error) {
	now := s.now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.begin(ctx); err != nil {
		return vault.Record{}, err
	}
	e, ok := s.tokens[token]
	if !ok || e.expired(now) {
		return vault.Record{}, vault.ErrNotFound
	}
	return vault.UnmarshalRecord(token, e.value)
}

// Find implements [vault.Store]; expired records are not found.
func (s *Store) Find(ctx context.Context, fingerprint []byte) (vault.Record, error) {
	now := s.now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.begin(ctx); err != nil {
		return vault.Record{}, err
	}
	tok, ok := s.fps[string(fingerprint)]
	if !ok || len(fingerprint) == 0 {
		return vault.Record{}, vault.ErrNotFound
	}
	e := s.tokens[tok]
	if e.expired(now) {
		return vault.Record{}, vault.ErrNotFound
	}
	return vault.UnmarshalRecord(tok, e.value)
}

// Delete implements [vault.Store].
func (s *Store) Delete(ctx context.Context, token string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.begin(ctx); err != nil {
		return err
	}
	e, ok := s.tokens[token]
	if !ok {
		return vault.ErrNotFound
	}
	s.remove(token, e)
	return nil
}

// Ping implements [vault.Store].
func (s *Store) Ping(ctx context.Context) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.begin(ctx)
}

// Close stops the janitor and drops everything the store holds. Later calls
// return [vault.ErrClosed].
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return vault.ErrClosed
	}
	s.closed = true
	s.tokens, s.fps, s.sessions, s.lockouts = nil, nil, nil, nil
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	return nil
}
