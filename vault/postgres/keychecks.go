package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/tokproxy/tok/vault"
)

var _ vault.KeyCheckStore = (*Store)(nil)

// KeyChecks implements [vault.KeyCheckStore].
func (s *Store) KeyChecks(ctx context.Context) (map[string][]byte, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	out, err := s.readKeyChecks(ctx, s.pool)
	if err != nil {
		return nil, s.fail(ctx, "key checks", err)
	}
	return out, nil
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func (s *Store) readKeyChecks(ctx context.Context, q querier) (map[string][]byte, error) {
	rows, err := q.Query(ctx, s.q.keyChecks)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var name string
		var v []byte
		if err := rows.Scan(&name, &v); err != nil {
			return nil, err
		}
		out[name] = v
	}
	return out, rows.Err()
}

// AddKeyChecks implements [vault.KeyCheckStore] in one transaction: an
// INSERT ... ON CONFLICT DO NOTHING per name, then a read of them all.
func (s *Store) AddKeyChecks(ctx context.Context, checks map[string][]byte) (map[string][]byte, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	var out map[string][]byte
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for name, v := range checks {
			if _, err := tx.Exec(ctx, s.q.addKeyCheck, name, v); err != nil {
				return err
			}
		}
		out, err = s.readKeyChecks(ctx, tx)
		return err
	})
	if err != nil {
		return nil, s.fail(ctx, "add key checks", err)
	}
	return out, nil
}

// DeleteKeyCheck implements [vault.KeyCheckStore].
func (s *Store) DeleteKeyCheck(ctx context.Context, name string) error {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if _, err := s.pool.Exec(ctx, s.q.deleteKeyCheck, name); err != nil {
		return s.fail(ctx, "delete key check", err)
	}
	return nil
}
