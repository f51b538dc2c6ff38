package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tokproxy/tok/vault/postgres"
)

// TestLoginUnknownNamePostgres: the shared lockout record of unknown
// names was keyed with a NUL byte, which PostgreSQL's text type refuses,
// so on postgres an unknown name answered 500 where a wrong secret got
// 401 (telling the two apart). Both get 401 now. Needs
// TOK_TEST_POSTGRES_URL; runs in a schema of its own.
func TestLoginUnknownNamePostgres(t *testing.T) {
	url := os.Getenv("TOK_TEST_POSTGRES_URL")
	if url == "" {
		t.Skip("TOK_TEST_POSTGRES_URL is not set: skipping the PostgreSQL login test")
	}
	b := make([]byte, 6)
	rand.Read(b)
	schema := "tok_test_login_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), url)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(context.Background())
		conn.Exec(context.Background(), `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`)
	})
	s, err := postgres.Open(t.Context(), url, postgres.Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	e := newTestEnv(t, s)
	for _, c := range []struct{ name, secret string }{{"nobody", "x"}, {"cih", "wrong"}} {
		if rec := e.loginFrom("192.0.2.1", c.name, c.secret); rec.Code != 401 {
			t.Errorf("login as %s with a wrong secret on postgres = %d %s, want 401", c.name, rec.Code, rec.Body)
		}
	}
	if rec := e.loginFrom("192.0.2.1", "cih", testSecrets["cih"]); rec.Code != 200 {
		t.Errorf("login as cih on postgres = %d %s, want 200", rec.Code, rec.Body)
	}
}
