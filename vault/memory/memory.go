// Package memory is a [vault.Store] that lives in the process's memory only.
// It is for volatile values (CVVs and other sensitive authentication data
// that PCI DSS forbids keeping after authorization): nothing it holds ever
// touches disk, and a record is gone once it expires or the process exits.
//
// Records are kept in large pointer-free slabs with a pointer-free index
// (see slab.go), so that a store holding millions of them costs the garbage
// collector next to nothing; the number of records is capped
// ([WithMaxRecords]) so that posting checkouts cannot grow it without bound.
package memory

import (
	"context"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"time"

	"github.com/tokproxy/tok/vault"
)

// DefaultJanitorInterval is how often the janitor purges expired records
// unless [WithJanitorInterval] says otherwise. A second: an expired CVC
// leaves memory within about a second of its ttl, and a store at a steady
// rate holds about rate × (ttl + 1 s) records rather than filling up to its
// cap with dead ones between purges. A purge that finds nothing due costs a
// check per chunk (records' least expiry is kept per chunk): 0.3 ms at the
// default cap (BenchmarkPurgeIdle), 0.03% of a core at one a second.
const DefaultJanitorInterval = time.Second

// DefaultMaxRecords is the cap on records a store holds unless
// [WithMaxRecords] says otherwise: 262,144 CVC records take about 27 MB
// (101 to 108 bytes each, slabs and index together, measured by
// BenchmarkBytesPerRecord), which is 58 seconds of checkouts at 4,500 a
// second. A store must hold rate × ttl records to keep every record for its
// ttl; size the cap from the memory the process may spend on it, and the
// ttl from the cap and the rate, not the other way round.
const DefaultMaxRecords = 1 << 18

// maxFingerprint is the longest fingerprint the record encoding holds.
const maxFingerprint = 255

// ErrFull is returned (wrapped) by [Store.Insert] when the new records would
// take the store past its cap even after expired records are reclaimed. It
// is [vault.ErrFull], which wraps [vault.ErrUnavailable].
var ErrFull = vault.ErrFull

var (
	_ vault.Store         = (*Store)(nil)
	_ vault.SessionStore  = (*Store)(nil)
	_ vault.RevealCounter = (*Store)(nil)
)

// Store keeps records in slabs and sessions and lockouts in maps. Expired
// records (whose Expires is at or before the clock's now) are invisible to
// Get, Find and Scan, do not block a new record for the same fingerprint or
// token, and do not count against the cap; a background janitor reclaims
// them in steps that each hold the lock for one slab. A Store is safe for
// concurrent use; its zero value is not usable: call [New].
type Store struct {
	now   func() time.Time
	every time.Duration
	tick  <-chan time.Time // tests replace the janitor's ticker
	stop  chan struct{}
	done  chan struct{}
	max   int                 // 0: no cap
	hash  func(string) uint32 // of tokens, for the index; tests replace it

	mu       sync.RWMutex
	closed   bool
	count    int               // records held, expired or not
	index    map[uint32]ref    // hash(token) → record; see slab.go
	overflow map[string]ref    // token → record, for tokens whose hash is taken
	fps      map[string]string // fingerprint → token
	chunks   []*chunk          // by id; nil ids are free
	free     []uint32          // free chunk ids
	tail     int               // id of the chunk records are appended to; -1: none
	// nextExp is a lower bound on the expiry of every live record (Unix
	// milliseconds, noExpiry if none expires): until then nothing is
	// expired, and there is nothing to reclaim.
	nextExp   int64
	slabBytes int // capacity of all chunks
	sessions  map[string]vault.Session
	lockouts  map[string]vault.Lockout
	reveals   map[string]uint32 // token → reveal count; see reveals.go
}

// Option configures a Store.
type Option func(*Store)

// WithClock replaces time.Now as the clock that judges expiry (tests).
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// WithJanitorInterval sets how often expired records are purged. Zero or
// negative turns the janitor off (expired records are still never returned,
// and are reclaimed when the store is full).
func WithJanitorInterval(d time.Duration) Option { return func(s *Store) { s.every = d } }

// WithMaxRecords caps the records the store holds at n; 0 (or negative)
// means no cap. Past the cap, Insert reclaims expired records and, if that
// does not make room for every new record of the call, refuses them all
// with [ErrFull]. The default is [DefaultMaxRecords].
func WithMaxRecords(n int) Option { return func(s *Store) { s.max = max(n, 0) } }

// New returns an empty store and starts its janitor, which [Store.Close] stops.
func New(opts ...Option) *Store {
	seed := maphash.MakeSeed()
	s := &Store{
		now:      time.Now,
		every:    DefaultJanitorInterval,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		max:      DefaultMaxRecords,
		hash:     func(t string) uint32 { return uint32(maphash.String(seed, t)) },
		index:    map[uint32]ref{},
		overflow: map[string]ref{},
		fps:      map[string]string{},
		tail:     -1,
		nextExp:  noExpiry,
		sessions: map[string]vault.Session{},
		lockouts: map[string]vault.Lockout{},
		reveals:  map[string]uint32{},
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

// Len returns the number of records held, including expired ones not yet
// reclaimed.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.count
}

// Stats is a snapshot of what a [Store] holds, for metrics.
type Stats = vault.VolatileStats

// Stats returns what the store holds now.
func (s *Store) Stats() Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return Stats{Records: s.count, MaxRecords: s.max, SlabBytes: s.slabBytes}
}

// VolatileStats is [Store.Stats] for a reader that also serves stores on
// a server, whose stats take a round trip and can fail.
func (s *Store) VolatileStats(context.Context) (vault.VolatileStats, error) {
	return s.Stats(), nil
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
		if r.Token == "" || len(r.Token) > maxTokenLen {
			return fmt.Errorf("insert record %d: token of %d bytes: %w", i, len(r.Token), vault.ErrInvalidToken)
		}
		if len(r.Fingerprint) > maxFingerprint {
			return fmt.Errorf("insert record %d: fingerprint of %d bytes: %w", i, len(r.Fingerprint), vault.ErrInvalidValue)
		}
		if len(r.Ciphertext) > maxValueLen-64 { // 64: room for the rest of the encoding
			return fmt.Errorf("insert record %d: ciphertext of %d bytes: %w", i, len(r.Ciphertext), vault.ErrInvalidValue)
		}
	}
	return nil
}

// Insert implements [vault.Store]. All records are judged and written under
// one lock, so concurrent inserts of the same fingerprint converge. If the
// records stored would take the store past its cap, none is: Insert returns
// an error wrapping [ErrFull].
func (s *Store) Insert(ctx context.Context, recs []vault.Record) ([]vault.Outcome, error) {
	if err := validate(recs); err != nil {
		return nil, err
	}
	now := s.now().UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	if s.max > 0 && s.count+len(recs) > s.max {
		s.reclaimFor(len(recs), now)
	}
	outs := make([]vault.Outcome, len(recs))
	for i, rec := range recs {
		o, err := s.insertOne(rec, now)
		if err != nil {
			s.undo(outs[:i])
			return nil, fmt.Errorf("insert record %d: %w", i, err)
		}
		outs[i] = o
	}
	// Collisions and existing records take no room, so the cap is judged
	// on what was written; reclaimFor has already made all the room it can.
	if s.max > 0 && s.count > s.max {
		n := s.count
		s.undo(outs)
		return nil, fmt.Errorf("insert %d records with %d of %d held: %w", n-s.count, s.count, s.max, ErrFull)
	}
	return outs, nil
}

// insertOne judges and writes one record. s.mu must be held.
func (s *Store) insertOne(rec vault.Record, now int64) (vault.Outcome, error) {
	if len(rec.Fingerprint) > 0 {
		if tok, ok := s.fps[string(rec.Fingerprint)]; ok {
			at, _ := s.lookup(tok)
			if !s.slot(at).expired(now) {
				r, err := s.decode(tok, at)
				return vault.Outcome{Status: vault.Existing, Record: r}, err
			}
			s.drop(tok, at)
		}
	}
	if at, ok := s.lookup(rec.Token); ok {
		if !s.slot(at).expired(now) {
			return vault.Outcome{Status: vault.Collision}, nil
		}
		s.drop(rec.Token, at)
	}
	v := vault.MarshalRecord(rec)
	// The outcome is what a read would return: milliseconds, UTC, copies.
	r, err := vault.UnmarshalRecord(rec.Token, v)
	if err != nil {
		return vault.Outcome{}, err
	}
	var exp int64
	if !r.Expires.IsZero() {
		exp = r.Expires.UnixMilli()
	}
	var flags byte
	if len(r.Fingerprint) > 0 {
		flags = flagFingerprint
	}
	at, err := s.appendRecord(rec.Token, v, exp, flags)
	if err != nil {
		return vault.Outcome{}, fmt.Errorf("%w: %w", ErrFull, err)
	}
	s.link(rec.Token, at)
	s.count++
	if len(r.Fingerprint) > 0 {
		s.fps[string(r.Fingerprint)] = rec.Token
	}
	return vault.Outcome{Status: vault.Stored, Record: r}, nil
}

// undo removes the records outs says were stored: Insert writes all or
// nothing. Expired records those replaced stay removed: they were invisible
// already. s.mu must be held.
func (s *Store) undo(outs []vault.Outcome) {
	// Last first, so that each record is the last of its chunk and gives
	// its room back.
	for _, o := range slices.Backward(outs) {
		if o.Status != vault.Stored {
			continue
		}
		if at, ok := s.lookup(o.Record.Token); ok {
			s.drop(o.Record.Token, at)
		}
	}
}

// decode returns a fresh copy of the record at ref. s.mu must be held.
func (s *Store) decode(token string, at ref) (vault.Record, error) {
	return vault.UnmarshalRecord(token, s.slot(at).value())
}

// drop removes the record of token at ref and frees its chunk if that
// leaves it empty. s.mu must be held.
func (s *Store) drop(token string, at ref) {
	s.remove(token, at)
	s.freeIfEmpty(at.chunk())
}

// remove unindexes the record of token at ref and zeroes it, leaving its
// chunk for the caller to free (reclaim frees it once, after its walk).
// s.mu must be held.
func (s *Store) remove(token string, at ref) {
	r := s.slot(at)
	if r.hasFingerprint() {
		// The fingerprint is in the value; decoding is the simplest way
		// to find it, and volatile records seldom have one.
		if rec, err := vault.UnmarshalRecord(token, r.value()); err == nil && s.fps[string(rec.Fingerprint)] == token {
			delete(s.fps, string(rec.Fingerprint))
		}
	}
	s.unlink(token)
	s.kill(at)
	s.count--
	delete(s.reveals, token)
}

// Get implements [vault.Store]; expired records are not found.
func (s *Store) Get(ctx context.Context, token string) (vault.Record, error) {
	now := s.now().UnixMilli()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.begin(ctx); err != nil {
		return vault.Record{}, err
	}
	at, ok := s.lookup(token)
	if !ok || s.slot(at).expired(now) {
		return vault.Record{}, vault.ErrNotFound
	}
	return s.decode(token, at)
}

// Find implements [vault.Store]; expired records are not found.
func (s *Store) Find(ctx context.Context, fingerprint []byte) (vault.Record, error) {
	now := s.now().UnixMilli()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.begin(ctx); err != nil {
		return vault.Record{}, err
	}
	tok, ok := s.fps[string(fingerprint)]
	if !ok || len(fingerprint) == 0 {
		return vault.Record{}, vault.ErrNotFound
	}
	at, _ := s.lookup(tok)
	if s.slot(at).expired(now) {
		return vault.Record{}, vault.ErrNotFound
	}
	return s.decode(tok, at)
}

// Delete implements [vault.Store]. The record's bytes are zeroed before
// Delete returns (erasure of card data), expired or not.
func (s *Store) Delete(ctx context.Context, token string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.begin(ctx); err != nil {
		return err
	}
	at, ok := s.lookup(token)
	if !ok {
		return vault.ErrNotFound
	}
	s.drop(token, at)
	return nil
}

// Ping implements [vault.Store].
func (s *Store) Ping(ctx context.Context) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.begin(ctx)
}

// Close stops the janitor, zeroes every record and drops everything the
// store holds. Later calls return [vault.ErrClosed].
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return vault.ErrClosed
	}
	s.closed = true
	for _, c := range s.chunks {
		if c != nil {
			clear(c.buf)
		}
	}
	s.chunks, s.free, s.index, s.overflow, s.fps = nil, nil, nil, nil, nil
	s.sessions, s.lockouts, s.reveals = nil, nil, nil
	s.count, s.slabBytes, s.tail = 0, 0, -1
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	return nil
}
