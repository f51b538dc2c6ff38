package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tokproxy/tok/vault"
)

// encodingVersion leads every session and lockout value.
const encodingVersion = 1

var errCorrupt = errors.New("corrupt value")

// appendTime appends t as varint Unix milliseconds, 0 for the zero time.
func appendTime(b []byte, t time.Time) []byte {
	var ms int64
	if !t.IsZero() {
		ms = t.UnixMilli()
	}
	return binary.AppendVarint(b, ms)
}

// reader decodes the values below; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) time() time.Time {
	ms := r.varint()
	if ms == 0 || r.err != nil {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func (r *reader) string() string {
	n, k := binary.Uvarint(r.b)
	if k <= 0 || uint64(len(r.b)-k) < n {
		r.err = errCorrupt
		return ""
	}
	s := string(r.b[k : k+int(n)]) // string() copies out of the transaction
	r.b = r.b[k+int(n):]
	return s
}

// marshalSession encodes everything but the key:
// version(1) len(ID) ID len(Client) Client created(varint ms) lastSeen(varint ms).
func marshalSession(s vault.Session) []byte {
	b := make([]byte, 0, 1+2+len(s.ID)+2+len(s.Client)+2*binary.MaxVarintLen64)
	b = append(b, encodingVersion)
	b = binary.AppendUvarint(b, uint64(len(s.ID)))
	b = append(b, s.ID...)
	b = binary.AppendUvarint(b, uint64(len(s.Client)))
	b = append(b, s.Client...)
	b = appendTime(b, s.Created)
	return appendTime(b, s.LastSeen)
}

func unmarshalSession(key, v []byte) (vault.Session, error) {
	if len(v) < 1 || v[0] != encodingVersion {
		return vault.Session{}, fmt.Errorf("session: %w", errCorrupt)
	}
	r := reader{b: v[1:]}
	s := vault.Session{Key: bytes.Clone(key), ID: r.string(), Client: r.string(), Created: r.time(), LastSeen: r.time()}
	if r.err != nil {
		return vault.Session{}, fmt.Errorf("session: %w", r.err)
	}
	return s, nil
}

// marshalLockout encodes version(1) failures(varint) lockedUntil(varint ms).
func marshalLockout(l vault.Lockout) []byte {
	b := []byte{encodingVersion}
	b = binary.AppendVarint(b, int64(l.Failures))
	return appendTime(b, l.LockedUntil)
}

func unmarshalLockout(v []byte) (vault.Lockout, error) {
	if len(v) < 1 || v[0] != encodingVersion {
		return vault.Lockout{}, fmt.Errorf("lockout: %w", errCorrupt)
	}
	r := reader{b: v[1:]}
	l := vault.Lockout{Failures: int(r.varint()), LockedUntil: r.time()}
	if r.err != nil {
		return vault.Lockout{}, fmt.Errorf("lockout: %w", r.err)
	}
	return l, nil
}

// PutSession implements [vault.Store].
func (s *Store) PutSession(ctx context.Context, sess vault.Session) error {
	if len(sess.Key) == 0 || len(sess.Key) > bbolt.MaxKeySize {
		return fmt.Errorf("put session: key of %d bytes: %w", len(sess.Key), vault.ErrInvalidValue)
	}
	key, v := bytes.Clone(sess.Key), marshalSession(sess)
	return s.write(ctx, func(t *txn) error {
		return t.put(bSessions, key, v)
	})
}

// GetSession implements [vault.Store].
func (s *Store) GetSession(ctx context.Context, key []byte) (vault.Session, error) {
	v, err := s.get(ctx, bSessions, key)
	if err != nil {
		return vault.Session{}, err
	}
	return unmarshalSession(key, v)
}

// TouchSession implements [vault.Store]: the committer reads and rewrites
// the session in one op, so a delete queued before it wins.
func (s *Store) TouchSession(ctx context.Context, key []byte, lastSeen time.Time) error {
	key = bytes.Clone(key)
	return s.write(ctx, func(t *txn) error {
		if len(key) == 0 {
			return vault.ErrNotFound
		}
		v := t.get(bSessions, key)
		if v == nil {
			return vault.ErrNotFound
		}
		sess, err := unmarshalSession(key, v)
		if err != nil {
			return err
		}
		sess.LastSeen = lastSeen
		return t.put(bSessions, key, marshalSession(sess))
	})
}

// DeleteSession implements [vault.Store].
func (s *Store) DeleteSession(ctx context.Context, key []byte) error {
	key = bytes.Clone(key)
	return s.write(ctx, func(t *txn) error {
		if len(key) == 0 || t.get(bSessions, key) == nil {
			return nil // no such session (bbolt refuses empty keys): nothing to log
		}
		t.del(bSessions, key)
		return nil
	})
}

// UpdateLockout implements [vault.Store]. fn runs in the committer, so
// concurrent updates of one client serialize.
func (s *Store) UpdateLockout(ctx context.Context, client string, fn func(vault.Lockout) vault.Lockout) (vault.Lockout, error) {
	if client == "" || len(client) > bbolt.MaxKeySize {
		return vault.Lockout{}, fmt.Errorf("update lockout: client name of %d bytes: %w", len(client), vault.ErrInvalidValue)
	}
	var out vault.Lockout
	err := s.write(ctx, func(t *txn) error {
		key := []byte(client)
		var cur vault.Lockout
		old := t.get(bLockouts, key)
		if v := old; v != nil {
			var err error
			if cur, err = unmarshalLockout(v); err != nil {
				return err
			}
		}
		next := fn(cur)
		v := marshalLockout(next)
		if next.Failures == 0 && next.LockedUntil.IsZero() {
			out = vault.Lockout{}
			if old != nil {
				t.del(bLockouts, key)
			}
			return nil
		}
		// Hand back what a later read will see (milliseconds, UTC).
		var err error
		out, err = unmarshalLockout(v)
		if err != nil {
			return err
		}
		return t.put(bLockouts, key, v)
	})
	if err != nil {
		return vault.Lockout{}, err
	}
	return out, nil
}

// purgeChunk bounds the sessions one PurgeSessions op deletes, so one
// WAL frame stays small.
const purgeChunk = 512

// PurgeSessions implements [vault.Store]. It finds expired sessions in
// the memtables, then in bbolt (keys the memtables hold are theirs to
// answer for), without forcing a checkpoint, and deletes them through the
// committer in ops of up to purgeChunk sessions. Each op reads every
// session again: one touched since (a request racing the janitor) is
// kept. A session written while it looks may be missed; the next sweep
// finds it. Undecodable values are left for GetSession to report.
func (s *Store) PurgeSessions(ctx context.Context, seenBy, createdBy time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var keys [][]byte
	inMem := map[string]bool{}
	s.mu.RLock() // as in get: Close waits, and a closed store's memtables are not read
	if s.closed {
		s.mu.RUnlock()
		return 0, vault.ErrClosed
	}
	s.memMu.RLock()
	for _, m := range []*memtable{s.active, s.frozen} {
		if m == nil {
			continue
		}
		m.each(bSessions, func(_ ref, k, v []byte) {
			if inMem[string(k)] {
				return // the active memtable's entry, seen first, wins
			}
			inMem[string(k)] = true
			if sess, err := unmarshalSession(k, v); v != nil && err == nil && sessionExpired(sess, seenBy, createdBy) {
				keys = append(keys, bytes.Clone(k))
			}
		})
	}
	s.memMu.RUnlock()
	s.mu.RUnlock()
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketSessions).ForEach(func(k, v []byte) error {
			if inMem[string(k)] {
				return nil
			}
			if sess, err := unmarshalSession(k, v); err == nil && sessionExpired(sess, seenBy, createdBy) {
				keys = append(keys, bytes.Clone(k))
			}
			return nil
		})
	})
	if err != nil {
		return 0, err
	}
	removed := 0
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), purgeChunk)]
		keys = keys[len(chunk):]
		n := 0
		err := s.write(ctx, func(t *txn) error {
			n = 0
			for _, k := range chunk {
				v := t.get(bSessions, k)
				if v == nil {
					continue
				}
				if sess, err := unmarshalSession(k, v); err == nil && sessionExpired(sess, seenBy, createdBy) {
					t.del(bSessions, k)
					n++
				}
			}
			return nil
		})
		if err != nil {
			return removed, err
		}
		removed += n
	}
	return removed, nil
}

// sessionExpired reports whether PurgeSessions removes sess: last seen at
// or before seenBy, or created at or before createdBy (both compared at
// the millisecond precision sessions are kept at).
func sessionExpired(sess vault.Session, seenBy, createdBy time.Time) bool {
	return sess.LastSeen.UnixMilli() <= seenBy.UnixMilli() || sess.Created.UnixMilli() <= createdBy.UnixMilli()
}
