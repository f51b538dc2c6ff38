package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/tokproxy/tok/vault"
)

// TestTwoReplicasPostgres runs two tok processes on one PostgreSQL vault
// (issue 5): a token minted by one is revealed by the other, the same PAN
// converges to one token on both, and a session opened through one works
// on the other.
func TestTwoReplicasPostgres(t *testing.T) {
	pg := os.Getenv("TOK_TEST_POSTGRES_URL")
	if pg == "" {
		t.Skip("TOK_TEST_POSTGRES_URL is unset: no PostgreSQL to test against")
	}
	// A schema of its own, so the run sees only its own rows.
	var rnd [6]byte
	rand.Read(rnd[:])
	schema := "tok_replicas_" + hex.EncodeToString(rnd[:])
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE") })
	sep := "?"
	if strings.Contains(pg, "?") {
		sep = "&"
	}
	url := pg + sep + "search_path=" + schema

	keyring, err := vault.NewKeyringFile().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	const secret = "replica-secret"
	hash, err := bcrypt.GenerateFromPassword([]byte(secret), 10)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := writeFile(t, dir, "tok.yaml", fmt.Sprintf(`listen: {public: "127.0.0.1:0", auth: "127.0.0.1:0", admin: "127.0.0.1:0"}
vault: {keyring: /nonexistent/keyring.yaml}
audit: {path: "-"}
clients:
  - {name: cih, secret_hash: %q, reveal: true}
`, hash))
	env := []string{"TOK_POSTGRES_URL=" + url, "TOK_KEYRING=" + string(keyring)}
	a := startTok(t, dir, cfg, env...)
	b := startTok(t, dir, cfg, env...)

	tokA := a.handle(t, testPAN)
	if tokB := b.handle(t, testPAN); tokB != tokA {
		t.Errorf("replica B tokenized the PAN as %s, replica A as %s: want one token", tokB, tokA)
	}

	// Log in through A; use the session on B.
	resp, err := http.Post("http://"+a.addrs["auth"]+"/login", "application/json",
		strings.NewReader(`{"bank_coordinates":"cih","secret":"`+secret+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(resp.Cookies()) != 1 {
		t.Fatalf("POST /login on A = %d with %d cookies", resp.StatusCode, len(resp.Cookies()))
	}
	cookie := resp.Cookies()[0]
	req, _ := http.NewRequest("GET", "http://"+b.addrs["auth"]+"/@me?token="+tokA, nil)
	req.AddCookie(cookie)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var me struct{ PAN string }
	json.Unmarshal(body, &me)
	if resp.StatusCode != http.StatusOK || me.PAN != testPAN {
		t.Errorf("GET /@me on B with A's session = %d, pan %s; want 200 and the PAN", resp.StatusCode, vault.Mask(me.PAN))
	}
	a.stop(t)
	b.stop(t)
	var rows int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+schema+".tokens").Scan(&rows); err != nil || rows != 1 {
		t.Errorf("%s.tokens holds %d rows (%v), want exactly 1 for the one PAN", schema, rows, err)
	}
}
