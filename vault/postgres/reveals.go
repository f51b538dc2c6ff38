package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/tokproxy/tok/vault"
)

var _ vault.RevealCounter = (*Store)(nil)

// CountReveal implements [vault.RevealCounter] as one statement (see
// queries.countReveal), committed when it returns.
func (s *Store) CountReveal(ctx context.Context, token string, max uint32) (uint32, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer cancel()
	var counted, cur *int64
	if err := s.pool.QueryRow(ctx, s.q.countReveal, token, int64(max)).Scan(&counted, &cur); err != nil {
		return 0, s.fail(ctx, "count reveal", err)
	}
	switch {
	case counted != nil:
		return uint32(*counted), nil
	case cur == nil:
		return 0, vault.ErrNotFound
	}
	return uint32(min(*cur, int64(max))), vault.ErrRevealsExhausted
}

// UncountReveal implements [vault.RevealCounter].
func (s *Store) UncountReveal(ctx context.Context, token string) error {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	tag, err := s.pool.Exec(ctx, s.q.uncountReveal, token)
	if err != nil {
		return s.fail(ctx, "uncount reveal", err)
	}
	if tag.RowsAffected() == 0 {
		// Nothing to give back, or no such token: tell them apart.
		_, err := s.Reveals(ctx, token)
		return err
	}
	return nil
}

// Reveals implements [vault.RevealCounter].
func (s *Store) Reveals(ctx context.Context, token string) (uint32, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer cancel()
	var n int64
	err = s.pool.QueryRow(ctx, s.q.reveals, token).Scan(&n)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return 0, vault.ErrNotFound
	case err != nil:
		return 0, s.fail(ctx, "reveals", err)
	}
	return uint32(n), nil
}
