package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net/url"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokproxy/tok/config"
	"github.com/tokproxy/tok/vault"
)

// TestOpenStorePostgresReportsCommits: the PostgreSQL store's group
// commits reach the commit hook that feeds tok_store_commit_ops and
// tok_store_commit_duration_seconds, as bbolt's do.
func TestOpenStorePostgresReportsCommits(t *testing.T) {
	raw := os.Getenv("TOK_TEST_POSTGRES_URL")
	if raw == "" {
		t.Skip("TOK_TEST_POSTGRES_URL is not set: skipping the PostgreSQL wiring test")
	}
	ctx := context.Background()
	b := make([]byte, 6)
	rand.Read(b)
	schema := "tok_test_main_" + hex.EncodeToString(b)
	conn, err := pgx.Connect(ctx, raw)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), raw)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer c.Close(context.Background())
		c.Exec(context.Background(), `DROP SCHEMA `+pgx.Identifier{schema}.Sanitize()+` CASCADE`)
	})
	u, err := url.Parse(raw)
	if err != nil {
		t.Skipf("TOK_TEST_POSTGRES_URL is not a URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()

	cfg := config.Default()
	cfg.Vault.Postgres = u.String()
	var commits, ops atomic.Int64
	store, err := openStore(ctx, cfg, false, func(_ time.Duration, n int) { commits.Add(1); ops.Add(int64(n)) },
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("openStore = %v", err)
	}
	defer store.Close()
	keys, err := vault.NewKeyring(vault.NewKeyringFile())
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.New(store, keys)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Tokenize(ctx, []vault.Request{{Value: "4111111111111111"}}); err != nil {
		t.Fatalf("Tokenize = %v", err)
	}
	if commits.Load() != 1 || ops.Load() != 1 {
		t.Errorf("commit hook saw %d commits of %d ops, want 1 of 1", commits.Load(), ops.Load())
	}
}
