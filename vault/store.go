package vault

import (
	"context"
	"time"
)

// Store keeps token records, sessions and login lockouts. Implementations
// live in vault/bolt (embedded, the default), vault/postgres (shared by
// replicas) and vault/memory (volatile); all pass the suite in
// vault/storetest. Methods are safe for concurrent use. A write returns only
// once it is durable for that store (fsync'd commit for bolt, committed
// transaction for postgres).
type Store interface {
	// Insert stores recs in one atomic commit and reports, in order, what
	// happened to each:
	//   - Stored: the record was written.
	//   - Existing: rec.Fingerprint is set and a record with that fingerprint
	//     already exists (possibly written earlier in the same call); the
	//     outcome carries that record and nothing was written for rec.
	//   - Collision: rec.Token is already taken by another record; nothing
	//     was written for rec and the caller retries with a new token.
	// On error nothing is written.
	Insert(ctx context.Context, recs []Record) ([]Outcome, error)
	// Get returns the record for token or ErrNotFound. Expiry is the
	// caller's to judge (stores may also purge expired records).
	Get(ctx context.Context, token string) (Record, error)
	// Find returns the record with that fingerprint or ErrNotFound.
	Find(ctx context.Context, fingerprint []byte) (Record, error)
	// Delete removes the record for token (and its fingerprint entry). It
	// returns ErrNotFound if there was none.
	Delete(ctx context.Context, token string) error
	// Scan returns up to limit records whose tokens sort after after, in
	// ascending token order (the store's order: bytes for bolt and memory,
	// the column's collation for postgres), for paging through the whole
	// store: pass the last token of one page as after for the next, and
	// stop at a page shorter than limit. It is not a snapshot: a record
	// written or deleted while pages are read may or may not be seen.
	// Expired records may be returned.
	Scan(ctx context.Context, after string, limit int) ([]Record, error)
	// Reseal replaces the KeyID, Ciphertext and Version of the record
	// rec.Token with rec's, only if that record still exists and
	// [ResealApplies] (it is sealed under fromKeyID and not already at
	// rec's key and version): a compare-and-swap, durable like every
	// write. Everything else in the stored record is kept. It reports
	// whether it replaced: false means the record was deleted or already
	// resealed since it was read.
	Reseal(ctx context.Context, rec Record, fromKeyID uint32) (bool, error)

	// PutSession writes s under s.Key, replacing any session there.
	PutSession(ctx context.Context, s Session) error
	// GetSession returns the session under key or ErrNotFound.
	GetSession(ctx context.Context, key []byte) (Session, error)
	// DeleteSession removes the session under key; no error if absent.
	DeleteSession(ctx context.Context, key []byte) error
	// TouchSession sets the LastSeen of the session under key, in one
	// atomic step: ErrNotFound if there is none. It never recreates a
	// session a concurrent DeleteSession (a logout, maybe on another
	// replica) removed, as a PutSession of what was read would.
	TouchSession(ctx context.Context, key []byte, lastSeen time.Time) error
	// PurgeSessions removes every session last seen at or before seenBy,
	// or created at or before createdBy, and returns how many it removed
	// (issue 13: the session janitor). A session touched after it was
	// found expired, by a request racing the purge, is kept only if its
	// new LastSeen is after seenBy. It may remove them in several
	// commits; an error may come after some were removed.
	PurgeSessions(ctx context.Context, seenBy, createdBy time.Time) (int, error)
	// UpdateLockout atomically replaces the lockout state of client with
	// fn(current) (the zero Lockout if none) and returns the new state. fn
	// must be pure: it may run more than once.
	UpdateLockout(ctx context.Context, client string, fn func(Lockout) Lockout) (Lockout, error)

	// Ping reports whether the store can serve requests.
	Ping(ctx context.Context) error
	// Close releases the store. Later calls return ErrClosed.
	Close() error
}

// Converger is a Store whose Find costs as much as an Insert (both a round
// trip to a server that commits whatever it is sent), and whose Insert
// answers a known fingerprint with its record at no extra cost (the
// Existing outcome every Store reports). [Vault] then tokenizes a
// convergent value with Insert alone, not a Find followed by an Insert:
// one round trip per new value instead of two. A Find still comes first
// when the vault is past its quota, so known values keep their tokens.
type Converger interface {
	Store
	// ConvergesOnInsert reports whether the Find before Insert should be
	// skipped.
	ConvergesOnInsert() bool
}

// Status is what Insert did with one record.
type Status uint8

// Insert outcomes.
const (
	Stored Status = iota
	Existing
	Collision
)

// Outcome is Insert's report for one record. Record is the stored record
// for Stored and Existing, and the zero Record for Collision.
type Outcome struct {
	Status Status
	Record Record
}

// Session is a server-side login session. Key is the SHA-256 of the secret
// cookie value, so a copy of the store does not hold live session secrets.
type Session struct {
	Key      []byte
	ID       string // public id, safe to log and to show the client
	Client   string
	Created  time.Time
	LastSeen time.Time
}

// Lockout is the failed-login state of one client name.
type Lockout struct {
	Failures    int
	LockedUntil time.Time
}
