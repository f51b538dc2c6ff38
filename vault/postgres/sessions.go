package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokproxy/tok/vault"
)

// PutSession writes sess under sess.Key, replacing any session there. The
// session is visible to every replica once PutSession returns.
func (s *Store) PutSession(ctx context.Context, sess vault.Session) error {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if len(sess.Key) == 0 {
		return errors.New("postgres put session: empty key")
	}
	err = retry(ctx, func() error {
		_, err := s.pool.Exec(ctx, s.q.putSession, sess.Key, sess.ID, sess.Client, ms(sess.Created), ms(sess.LastSeen))
		return err
	})
	if err != nil {
		return s.fail(ctx, "put session", err)
	}
	return nil
}

// GetSession returns the session under key or [vault.ErrNotFound].
func (s *Store) GetSession(ctx context.Context, key []byte) (vault.Session, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return vault.Session{}, err
	}
	defer cancel()
	sess := vault.Session{Key: bytes.Clone(key)}
	var created, lastSeen time.Time
	err = s.pool.QueryRow(ctx, s.q.getSession, key).Scan(&sess.ID, &sess.Client, &created, &lastSeen)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return vault.Session{}, vault.ErrNotFound
	case err != nil:
		return vault.Session{}, s.fail(ctx, "get session", err)
	}
	sess.Created, sess.LastSeen = ms(created), ms(lastSeen)
	return sess, nil
}

// TouchSession sets the session's last_seen with an UPDATE, which never
// brings back a row a concurrent DeleteSession removed.
func (s *Store) TouchSession(ctx context.Context, key []byte, lastSeen time.Time) error {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	var n int64
	err = retry(ctx, func() error {
		tag, err := s.pool.Exec(ctx, s.q.touchSession, key, ms(lastSeen))
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return s.fail(ctx, "touch session", err)
	}
	if n == 0 {
		return vault.ErrNotFound
	}
	return nil
}

// DeleteSession removes the session under key; an absent one is no error.
func (s *Store) DeleteSession(ctx context.Context, key []byte) error {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if _, err := s.pool.Exec(ctx, s.q.deleteSession, key); err != nil {
		return s.fail(ctx, "delete session", err)
	}
	return nil
}

// PurgeSessions implements [vault.Store] with one DELETE: replicas
// sharing the database may all run it; each row goes once.
func (s *Store) PurgeSessions(ctx context.Context, seenBy, createdBy time.Time) (int, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer cancel()
	tag, err := s.pool.Exec(ctx, s.q.purgeSessions, ms(seenBy), ms(createdBy))
	if err != nil {
		return 0, s.fail(ctx, "purge sessions", err)
	}
	return int(tag.RowsAffected()), nil
}

// errLockoutGone: the lockout row vanished between inserting and locking it
// (a concurrent reset deleted it); the transaction is simply run again.
var errLockoutGone = errors.New("lockout row deleted concurrently")

// UpdateLockout replaces the lockout state of client with fn(current) in one
// transaction and returns the new state, as stored: LockedUntil at
// millisecond precision in UTC. The row is locked (SELECT ... FOR UPDATE)
// while fn runs, so concurrent updates from any replica queue up and none
// is lost. fn may run more than once. A zero state deletes the row, so
// clients that log in successfully leave nothing behind.
func (s *Store) UpdateLockout(ctx context.Context, client string, fn func(vault.Lockout) vault.Lockout) (vault.Lockout, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return vault.Lockout{}, err
	}
	defer cancel()
	var next vault.Lockout
	for range maxAttempts {
		err = retry(ctx, func() error {
			var err error
			next, err = s.updateLockout(ctx, client, fn)
			return err
		})
		if !errors.Is(err, errLockoutGone) {
			break
		}
	}
	if err != nil {
		return vault.Lockout{}, s.fail(ctx, "update lockout", err)
	}
	return next, nil
}

// updateLockout runs one transaction of UpdateLockout.
func (s *Store) updateLockout(ctx context.Context, client string, fn func(vault.Lockout) vault.Lockout) (vault.Lockout, error) {
	var next vault.Lockout
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		cur, err := lockLockout(ctx, tx, s.q.lockLockout, client)
		if errors.Is(err, pgx.ErrNoRows) {
			// No row to lock yet. Create an empty one (or find that a
			// concurrent transaction just did) and lock that, so that two
			// first failures cannot both start from zero.
			if _, err := tx.Exec(ctx, s.q.ensureLockout, client); err != nil {
				return err
			}
			cur, err = lockLockout(ctx, tx, s.q.lockLockout, client)
			if errors.Is(err, pgx.ErrNoRows) {
				return errLockoutGone
			}
		}
		if err != nil {
			return err
		}
		next = fn(cur)
		next.LockedUntil = ms(next.LockedUntil)
		if next.Failures == 0 && next.LockedUntil.IsZero() {
			_, err = tx.Exec(ctx, s.q.dropLockout, client)
			return err
		}
		if next.Failures < 0 || next.Failures > math.MaxInt32 {
			return fmt.Errorf("%w: failure count %d", errOutOfRange, next.Failures)
		}
		_, err = tx.Exec(ctx, s.q.setLockout, client, int32(next.Failures), nullTime(next.LockedUntil))
		return err
	})
	return next, err
}

// lockLockout reads and locks the lockout row of client.
func lockLockout(ctx context.Context, tx pgx.Tx, sql, client string) (vault.Lockout, error) {
	var (
		failures int32
		until    *time.Time
	)
	if err := tx.QueryRow(ctx, sql, client).Scan(&failures, &until); err != nil {
		return vault.Lockout{}, err
	}
	return vault.Lockout{Failures: int(failures), LockedUntil: fromNull(until)}, nil
}
