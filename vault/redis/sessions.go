package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tokproxy/tok/vault"
)

// Sessions and lockouts are part of [vault.Store], so this store keeps them
// too, although tok keeps its sessions in the durable store: one hash per
// session (i id, c client, cr created and ls last seen in Unix ms) and a set
// of session keys for the purge; one hash per lockout (n failures, u locked
// until in Unix ms, 0: none).

// ms is t in Unix milliseconds, 0 for the zero time.
func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// fromMS is the inverse of ms, in UTC.
func fromMS(s string) time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n == 0 {
		return time.Time{}
	}
	return time.UnixMilli(n).UTC()
}

// PutSession implements [vault.Store].
func (s *Store) PutSession(ctx context.Context, sess vault.Session) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	sk := s.key("s", string(sess.Key))
	_, err := s.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.Del(ctx, sk)
		p.HSet(ctx, sk, "i", sess.ID, "c", sess.Client, "cr", ms(sess.Created), "ls", ms(sess.LastSeen))
		p.SAdd(ctx, s.prefix+"sessions", sess.Key)
		return nil
	})
	if err != nil {
		return s.fail(ctx, "put session", err)
	}
	return nil
}

// GetSession implements [vault.Store].
func (s *Store) GetSession(ctx context.Context, key []byte) (vault.Session, error) {
	if err := s.begin(ctx); err != nil {
		return vault.Session{}, err
	}
	m, err := s.c.HGetAll(ctx, s.key("s", string(key))).Result()
	if err != nil {
		return vault.Session{}, s.fail(ctx, "get session", err)
	}
	if len(m) == 0 {
		return vault.Session{}, vault.ErrNotFound
	}
	return vault.Session{
		Key: append([]byte(nil), key...), ID: m["i"], Client: m["c"],
		Created: fromMS(m["cr"]), LastSeen: fromMS(m["ls"]),
	}, nil
}

// DeleteSession implements [vault.Store].
func (s *Store) DeleteSession(ctx context.Context, key []byte) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	_, err := s.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.Del(ctx, s.key("s", string(key)))
		p.SRem(ctx, s.prefix+"sessions", key)
		return nil
	})
	if err != nil {
		return s.fail(ctx, "delete session", err)
	}
	return nil
}

// TouchSession implements [vault.Store].
func (s *Store) TouchSession(ctx context.Context, key []byte, lastSeen time.Time) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	n, err := touchScript.Run(ctx, s.c, []string{s.key("s", string(key))}, ms(lastSeen)).Int()
	if err != nil {
		return s.fail(ctx, "touch session", err)
	}
	if n == 0 {
		return vault.ErrNotFound
	}
	return nil
}

// PurgeSessions implements [vault.Store] in one script.
func (s *Store) PurgeSessions(ctx context.Context, seenBy, createdBy time.Time) (int, error) {
	if err := s.begin(ctx); err != nil {
		return 0, err
	}
	n, err := sessionPurgeScript.Run(ctx, s.c, []string{s.prefix + "sessions"}, s.prefix, ms(seenBy), ms(createdBy)).Int()
	if err != nil {
		return 0, s.fail(ctx, "purge sessions", err)
	}
	return n, nil
}

// UpdateLockout implements [vault.Store]: a compare-and-swap under WATCH,
// retried when another replica updated the same client in between.
func (s *Store) UpdateLockout(ctx context.Context, client string, fn func(vault.Lockout) vault.Lockout) (vault.Lockout, error) {
	if err := s.begin(ctx); err != nil {
		return vault.Lockout{}, err
	}
	lk := s.key("l", client)
	for range resealRetries * 4 {
		var next vault.Lockout
		err := s.c.Watch(ctx, func(tx *goredis.Tx) error {
			m, err := tx.HGetAll(ctx, lk).Result()
			if err != nil {
				return err
			}
			var cur vault.Lockout
			cur.Failures, _ = strconv.Atoi(m["n"])
			cur.LockedUntil = fromMS(m["u"])
			next = fn(cur)
			next.LockedUntil = fromMS(strconv.FormatInt(ms(next.LockedUntil), 10))
			_, err = tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
				p.HSet(ctx, lk, "n", next.Failures, "u", ms(next.LockedUntil))
				return nil
			})
			return err
		}, lk)
		switch {
		case err == nil:
			return next, nil
		case errors.Is(err, goredis.TxFailedErr):
			continue
		}
		return vault.Lockout{}, s.fail(ctx, "update lockout", err)
	}
	return vault.Lockout{}, fmt.Errorf("redis update lockout: %w: the lockout kept changing", vault.ErrUnavailable)
}
