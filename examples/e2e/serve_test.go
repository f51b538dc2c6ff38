package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/bolt"
)

// TestTwoReplicasPostgres runs two tok processes on one PostgreSQL vault:
// a token minted by one is revealed by the other, the same PAN
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

	// Log in through A; use the session on B. Convergence is the
	// logged-in client's /handle: the same card gets one token
	// from either replica.
	cookie := login(t, a, "cih", secret)
	tokA := a.clientHandle(t, cookie, testPAN)
	if tokB := b.clientHandle(t, cookie, testPAN); tokB != tokA {
		t.Errorf("replica B tokenized the PAN as %s, replica A as %s: want one token", tokB, tokA)
	}
	req, _ := http.NewRequest("GET", "http://"+b.addrs["auth"]+"/@me?token="+tokA, nil)
	req.AddCookie(cookie)
	resp, err := http.DefaultClient.Do(req)
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

// TestServeEgress runs tok with an egress route to a TLS provider whose CA
// is in a file, with the provider's key and the egress key read from the
// environment: the provider receives the card, the app only ever held the
// token.
func TestServeEgress(t *testing.T) {
	dir := t.TempDir()
	got := make(chan string, 1)
	psp := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r.Header.Get("Authorization") + " " + r.URL.Path + " " + string(b)
	}))
	defer psp.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: psp.Certificate().Raw})
	caFile := writeFile(t, dir, "psp-ca.pem", string(ca))
	keyring := newKeyring(t, dir)
	cfg := writeFile(t, dir, "tok.yaml", fmt.Sprintf(`listen: {public: "127.0.0.1:0", auth: "127.0.0.1:0", admin: "127.0.0.1:0", egress: "127.0.0.1:0"}
vault: {bolt: %q, keyring: %q}
audit: {path: "-"}
egress:
  - name: psp
    match: {method: POST, path: /psp/*}
    upstream: %s
    strip_prefix: /psp
    ca_file: %q
    fields: [{form: "card[number]"}]
    headers: {Authorization: "env:PSP_API_KEY"}
    egress_key: env:TOK_EGRESS_KEY
`, filepath.Join(dir, "tok.db"), keyring, psp.URL, caFile))
	s := startTok(t, dir, cfg, "PSP_API_KEY=Bearer sk_test_1", "TOK_EGRESS_KEY=app-key")
	egress := s.egressAddr(t)
	token := s.handle(t, testPAN)
	req, _ := http.NewRequest("POST", "http://"+egress+"/psp/v1/charges", strings.NewReader("card[number]="+token))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Tok-Egress-Key", "app-key")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST egress = %d, want 200", resp.StatusCode)
	}
	if g, want := <-got, "Bearer sk_test_1 /v1/charges card[number]="+testPAN; g != want {
		t.Errorf("provider got %q, want %q", vault.Mask(g), vault.Mask(want))
	}
	s.stop(t)
}

// TestAuditVerify runs "tok audit verify" on an intact and a tampered log
// of the old, unkeyed chain (tok before the chain was keyed): they verify only with
// -allow-unkeyed, and the verifier still needs the keyring.
func TestAuditVerify(t *testing.T) {
	dir := t.TempDir()
	keyring := newKeyring(t, dir)
	var lines []string
	prev := make([]byte, 32)
	for i := 1; i <= 3; i++ {
		l := fmt.Sprintf(`{"event":"login","client":"cih","source":"127.0.0.1","outcome":"ok","seq":%d,"prev":"%x"}`, i, prev)
		sum := sha256.Sum256([]byte(l))
		prev = sum[:]
		lines = append(lines, l)
	}
	good := writeFile(t, dir, "good.log", strings.Join(lines, "\n")+"\n")
	if code, out, _ := tok(t, dir, "", "audit", "verify", "-keyring", keyring, good); code != 1 || !strings.Contains(out, "unkeyed") {
		t.Errorf("audit verify (unkeyed, not allowed) = %d %q, want 1 naming the unkeyed line", code, out)
	}
	if code, out, _ := tok(t, dir, "", "audit", "verify", "-keyring", keyring, "-allow-unkeyed", good); code != 0 || !strings.Contains(out, "ok, 3 lines") || !strings.Contains(out, "first 3 lines are unkeyed") {
		t.Errorf("audit verify -allow-unkeyed (intact) = %d %q, want 0, ok and a warning", code, out)
	}
	lines[1] = strings.Replace(lines[1], `"ok"`, `"locked"`, 1)
	bad := writeFile(t, dir, "bad.log", strings.Join(lines, "\n")+"\n")
	if code, out, _ := tok(t, dir, "", "audit", "verify", "-keyring", keyring, "-allow-unkeyed", bad); code != 1 || !strings.Contains(out, "line 3") {
		t.Errorf("audit verify (line 2 edited) = %d %q, want 1 naming line 3, whose prev no longer matches", code, out)
	}
	if code, _, _ := tok(t, dir, "", "audit", "verify"); code != 2 {
		t.Errorf("audit verify without FILE = %d, want 2", code)
	}
}

// TestServeReload: SIGHUP applies a new route and a rotated keyring without
// a restart; a broken config is refused with its errors logged and the
// running configuration kept.
// reloadPAN fails the Luhn check, so the guard lets it pass outside fields.
const reloadPAN = "555213321212161777"

func TestServeReload(t *testing.T) {
	dir := t.TempDir()
	keyring := newKeyring(t, dir)
	got := make(chan string, 4)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- string(b)
	}))
	defer upstream.Close()
	const secret = "reload-secret"
	hash, _ := bcrypt.GenerateFromPassword([]byte(secret), 10)
	conf := func(field string) string {
		return fmt.Sprintf(`listen: {public: "127.0.0.1:0", auth: "127.0.0.1:0", admin: "127.0.0.1:0"}
vault: {bolt: %q, keyring: %q}
audit: {path: "-"}
clients: [{name: cih, secret_hash: %q, reveal: true}]
upstream: %s
inbound:
  - name: checkout
    match: {path: /checkout}
    fields: [{json: %s}]
`, filepath.Join(dir, "tok.db"), keyring, hash, upstream.URL, field)
	}
	cfg := writeFile(t, dir, "tok.yaml", conf("card.number"))
	s := startTok(t, dir, cfg)
	post := func(body string) string {
		resp, err := http.Post("http://"+s.addrs["public"]+"/checkout", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return <-got
	}
	// Before the reload payment.pan is not a field: a PAN failing Luhn
	// (the guard's test) passes through untouched.
	if b := post(`{"payment":{"pan":"` + reloadPAN + `"}}`); !strings.Contains(b, reloadPAN) {
		t.Fatalf("before reload the upstream got %q, want the body as sent", b)
	}
	waitLog := func(msg string) map[string]any {
		for m := range s.logs {
			if m["msg"] == msg {
				return m
			}
		}
		t.Fatalf("tok exited before logging %q", msg)
		return nil
	}

	// Rotate the keyring and move the card field, then SIGHUP.
	if code, _, errOut := tok(t, dir, "", "keys", "rotate", "-keyring", keyring); code != 0 {
		t.Fatalf("keys rotate: %s", errOut)
	}
	writeFile(t, dir, "tok.yaml", conf("payment.pan"))
	s.p.Signal(syscall.SIGHUP)
	waitLog("keyring reloaded")
	b := post(`{"payment":{"pan":"` + reloadPAN + `"}}`)
	if strings.Contains(b, reloadPAN) {
		t.Errorf("after reload the new field still reached the app in clear")
	}
	var sent struct{ Payment struct{ PAN string } }
	json.Unmarshal([]byte(b), &sent)
	// The new token is sealed under the new primary key version 2.
	resp, err := http.Post("http://"+s.addrs["auth"]+"/login", "application/json", strings.NewReader(`{"bank_coordinates":"cih","secret":"`+secret+`"}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("login: %v %v", err, resp)
	}
	resp.Body.Close()
	req, _ := http.NewRequest("GET", "http://"+s.addrs["auth"]+"/@me?token="+sent.Payment.PAN, nil)
	req.AddCookie(resp.Cookies()[0])
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var me struct {
		PAN        string `json:"pan"`
		KeyVersion int    `json:"key_version"`
	}
	json.NewDecoder(resp.Body).Decode(&me)
	resp.Body.Close()
	if me.PAN != reloadPAN || me.KeyVersion != 2 {
		t.Errorf("token after reload: pan %s, key_version %d; want the PAN under key 2", vault.Mask(me.PAN), me.KeyVersion)
	}

	// A broken config is refused; the running one stays.
	writeFile(t, dir, "tok.yaml", conf("payment..pan"))
	s.p.Signal(syscall.SIGHUP)
	waitLog("reload refused; the running configuration stays")
	if b := post(`{"payment":{"pan":"` + reloadPAN + `"}}`); strings.Contains(b, reloadPAN) {
		t.Error("after a refused reload the running route no longer tokenizes")
	}
	s.stop(t)
}

// TestServeBackup downloads GET /backup from a running tok and opens it as
// a vault holding the token minted before the download.
func TestServeBackup(t *testing.T) {
	dir := t.TempDir()
	keyring := newKeyring(t, dir)
	cfg := writeBoltConfig(t, dir, keyring, "")
	s := startTok(t, dir, cfg)
	token := s.handle(t, testPAN)
	resp, err := http.Get("http://" + s.addrs["admin"] + "/backup")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(b) == 0 {
		t.Fatalf("GET /backup = %d with %d bytes", resp.StatusCode, len(b))
	}
	s.stop(t)
	backup := writeFile(t, dir, "backup.db", string(b))
	restored := filepath.Join(dir, "restored", "tok.db")
	if _, err := bolt.Restore(backup, restored, false); err != nil {
		t.Fatal(err)
	}
	store, err := bolt.Open(restored, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	kb, _ := os.ReadFile(keyring)
	kf, _ := vault.ParseKeyringFile(kb)
	keys, _ := vault.NewKeyring(kf)
	v, _ := vault.New(store, keys)
	if rv, err := v.Reveal(context.Background(), token); err != nil || rv.Value != testPAN {
		t.Errorf("the backup reveals %s, %v; want the PAN", vault.Mask(rv.Value), err)
	}
}
