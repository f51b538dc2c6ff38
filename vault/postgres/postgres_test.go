package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/storetest"
)

// urlEnv names the environment variable holding the test server's URL.
const urlEnv = "TOK_TEST_POSTGRES_URL"

// testURL returns the test server's URL or skips the test.
func testURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv(urlEnv)
	if u == "" {
		tb.Skipf("%s is not set: skipping PostgreSQL tests "+
			"(e.g. %s=postgres://postgres@127.0.0.1:5432/test?sslmode=disable)", urlEnv, urlEnv)
	}
	return u
}

// newSchema returns a fresh schema name and drops that schema when tb ends,
// so every test gets an empty vault on the shared server.
func newSchema(tb testing.TB, url string) string {
	tb.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	schema := "tok_test_" + hex.EncodeToString(b)
	tb.Cleanup(func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return schema
}

// openStore opens a store on url in opts.Schema and closes it when tb ends
// (cleanups run last-registered first, so before the schema is dropped).
func openStore(tb testing.TB, url string, opts Options) *Store {
	tb.Helper()
	s, err := Open(context.Background(), url, opts)
	if err != nil {
		tb.Fatalf("Open = %v, want nil", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// openFresh opens a store on an empty schema of its own.
func openFresh(tb testing.TB) *Store {
	tb.Helper()
	url := testURL(tb)
	return openStore(tb, url, Options{Schema: newSchema(tb, url)})
}

func TestConformance(t *testing.T) {
	testURL(t)
	storetest.Run(t, func(t *testing.T) vault.Store { return openFresh(t) })
}

func TestSessionsConformance(t *testing.T) {
	testURL(t)
	storetest.RunSessions(t, func(t *testing.T) storetest.SessionStore { return openFresh(t) })
}

func TestOpenBadURL(t *testing.T) {
	const secret = "hunter2-secret"
	_, err := Open(context.Background(), "postgres://tok:"+secret+"@127.0.0.1:5432/x?sslmode=bogus", Options{})
	if err == nil {
		t.Fatal("Open(bad url) = nil, want an error")
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("Open(bad url) error repeats the password: %v", err)
	}
}

// TestSize: the tokens table's size with its indexes, for
// limits.vault_bytes, grows as records are written.
func TestSize(t *testing.T) {
	s := openFresh(t)
	ctx := context.Background()
	before, err := s.Size(ctx)
	if err != nil || before <= 0 {
		t.Fatalf("Size of an empty vault = %d, %v; want its table's pages", before, err)
	}
	keys, err := vault.NewKeyring(vault.NewKeyringFile())
	if err != nil {
		t.Fatal(err)
	}
	recs := make([]vault.Record, 500)
	for i := range recs {
		recs[i] = storetest.NewRecord(keys, true)
	}
	if _, err := s.Insert(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if after, err := s.Size(ctx); err != nil || after <= before {
		t.Errorf("Size after 500 records = %d, %v; want more than %d", after, err, before)
	}
}
