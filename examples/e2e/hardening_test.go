package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/bolt"
)

// Tests of the security review's medium and low findings, each replaying
// the attack against the binary.

// waitFor reads s's log lines until one has msg, and returns it.
func (s *server) waitFor(t *testing.T, msg string) map[string]any {
	t.Helper()
	for m := range s.logs {
		if m["msg"] == msg {
			return m
		}
	}
	t.Fatalf("tok exited before logging %q", msg)
	return nil
}

// login opens a session for client with secret on s's auth listener.
func (s *server) login(t *testing.T, client, secret string) *http.Cookie {
	t.Helper()
	resp, err := http.Post("http://"+s.addrs["auth"]+"/login", "application/json",
		strings.NewReader(`{"bank_coordinates":"`+client+`","secret":"`+secret+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(resp.Cookies()) != 1 {
		t.Fatalf("POST /login = %d", resp.StatusCode)
	}
	return resp.Cookies()[0]
}

// reveal asks /@me for token with cookie (nil: none) and returns the status
// and the PAN revealed.
func (s *server) reveal(t *testing.T, cookie *http.Cookie, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+s.addrs["auth"]+"/@me?token="+token, nil)
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var me struct{ PAN string }
	json.NewDecoder(resp.Body).Decode(&me)
	return resp.StatusCode, me.PAN
}

// revealConfig is a bolt config with an audit file and a reveal client.
func revealConfig(t *testing.T, dir, keyring, extra string) (cfg, secret string) {
	t.Helper()
	secret = "hardening-secret"
	hash, err := bcrypt.GenerateFromPassword([]byte(secret), 10)
	if err != nil {
		t.Fatal(err)
	}
	cfg = writeFile(t, dir, "tok.yaml", fmt.Sprintf(`listen: {public: "127.0.0.1:0", auth: "127.0.0.1:0", admin: "127.0.0.1:0"}
vault: {bolt: %q, keyring: %q}
audit: {path: %q}
clients: [{name: cih, secret_hash: %q, reveal: true}]
`, filepath.Join(dir, "tok.db"), keyring, filepath.Join(dir, "audit.log"), hash)+extra)
	return cfg, secret
}

// copyFile copies src to dst (mode 0600).
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestKeyCheckValues: rotating a stale copy of
// the keyring made a different key v2; SIGHUP used to say "keyring
// reloaded" and every record sealed under the real v2 answered 500. Now
// the reload is refused and the running keyring kept; a start on that
// keyring, on a foreign one, or on one lacking a version records use is
// refused with a message naming the key.
func TestKeyCheckValues(t *testing.T) {
	dir := t.TempDir()
	keyring := newKeyring(t, dir)
	stale := filepath.Join(dir, "stale.yaml")
	copyFile(t, keyring, stale)
	cfg, secret := revealConfig(t, dir, keyring, "")
	s := startTok(t, dir, cfg)
	if code, _, errOut := tok(t, dir, "", "keys", "rotate", "-keyring", keyring); code != 0 {
		t.Fatalf("keys rotate: %s", errOut)
	}
	s.p.Signal(syscall.SIGHUP)
	s.waitFor(t, "keyring reloaded")
	token := s.handle(t, testPAN) // sealed under the real version 2
	cookie := s.login(t, "cih", secret)

	// The attack: rotate the stale copy (another key as version 2) and
	// put it in place.
	if code, _, errOut := tok(t, dir, "", "keys", "rotate", "-keyring", stale); code != 0 {
		t.Fatalf("keys rotate (stale copy): %s", errOut)
	}
	good := filepath.Join(dir, "good.yaml")
	copyFile(t, keyring, good)
	copyFile(t, stale, keyring)
	s.p.Signal(syscall.SIGHUP)
	m := s.waitFor(t, "reload refused; the running configuration stays")
	if e, _ := m["err"].(string); !strings.Contains(e, "data key version 2") {
		t.Errorf("reload refusal = %q, want it to name data key version 2", e)
	}
	if code, pan := s.reveal(t, cookie, token); code != http.StatusOK || pan != testPAN {
		t.Errorf("after the refused reload GET /@me = %d, %s; want 200 and the PAN under the running keyring", code, vault.Mask(pan))
	}
	s.stop(t)

	// A start on the stale keyring is refused.
	code, _, errOut := tok(t, dir, "", "serve", "-config", cfg)
	if code != 1 || !strings.Contains(errOut, "data key version 2 in the keyring is not the key this vault recorded") {
		t.Errorf("serve on the stale keyring = %d, want 1 naming version 2:\n%s", code, errOut)
	}
	// A foreign keyring: the fingerprint key is named.
	foreign := filepath.Join(dir, "foreign.yaml")
	if code, _, errOut := tok(t, dir, "", "keys", "new", "-o", foreign); code != 0 {
		t.Fatal(errOut)
	}
	copyFile(t, foreign, keyring)
	if code, _, errOut := tok(t, dir, "", "serve", "-config", cfg); code != 1 || !strings.Contains(errOut, "the fingerprint key in the keyring is not the key this vault recorded") {
		t.Errorf("serve on a foreign keyring = %d, want 1 naming the fingerprint key:\n%s", code, errOut)
	}
	// A keyring lacking version 1, which records (the first /handle's) may use.
	b, _ := os.ReadFile(good)
	kf, err := vault.ParseKeyringFile(b)
	if err != nil {
		t.Fatal(err)
	}
	delete(kf.DataKeys, 1)
	if err := vault.WriteKeyringFile(keyring, kf, true); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := tok(t, dir, "", "serve", "-config", cfg); code != 1 || !strings.Contains(errOut, "the keyring lacks data key version 1") {
		t.Errorf("serve on a keyring lacking version 1 = %d, want 1 naming it:\n%s", code, errOut)
	}
	// The right keyring starts, and the token reveals.
	copyFile(t, good, keyring)
	s = startTok(t, dir, cfg)
	if code, pan := s.reveal(t, s.login(t, "cih", secret), token); code != http.StatusOK || pan != testPAN {
		t.Errorf("with the right keyring GET /@me = %d, %s; want the PAN", code, vault.Mask(pan))
	}
	s.stop(t)
}

// TestKeysRotateLocked: rotations of one keyring run at once never both
// write the same next version ("keys rotate" holds a lock from its read
// to its write).
func TestKeysRotateLocked(t *testing.T) {
	dir := t.TempDir()
	keyring := newKeyring(t, dir)
	const n = 4
	outs := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			code, out, errOut := tok(t, dir, "", "keys", "rotate", "-keyring", keyring)
			if code != 0 {
				t.Errorf("keys rotate: %d %s", code, errOut)
			}
			outs[i] = strings.TrimSpace(out)
		})
	}
	wg.Wait()
	slices.Sort(outs)
	if want := []string{"2", "3", "4", "5"}; !slices.Equal(outs, want) {
		t.Errorf("concurrent rotations made versions %v, want %v", outs, want)
	}
	b, _ := os.ReadFile(keyring)
	kf, err := vault.ParseKeyringFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(kf.DataKeys) != n+1 || kf.Primary != n+1 {
		t.Errorf("keyring after %d concurrent rotations: primary %d, %d versions; want %d and %d", n, kf.Primary, len(kf.DataKeys), n+1, n+1)
	}
}

// TestAuditChainKeyedBinary: deleting a reveal line from
// the audit log and recomputing seq and prev for the lines after it used
// to pass "tok audit verify". Now the chain is keyed: the forgery is found
// at the deleted line, and verifying needs the keyring.
func TestAuditChainKeyedBinary(t *testing.T) {
	dir := t.TempDir()
	keyring := newKeyring(t, dir)
	cfg, secret := revealConfig(t, dir, keyring, "")
	s := startTok(t, dir, cfg)
	token := s.handle(t, testPAN)
	cookie := s.login(t, "cih", secret)
	for range 3 {
		if code, _ := s.reveal(t, cookie, token); code != http.StatusOK {
			t.Fatalf("GET /@me = %d", code)
		}
	}
	s.stop(t)
	logPath := filepath.Join(dir, "audit.log")
	if code, out, _ := tok(t, dir, "", "audit", "verify", "-keyring", keyring, logPath); code != 0 || !strings.Contains(out, "ok, 5 lines") || !strings.Contains(out, "last seq 5") {
		t.Fatalf("audit verify (intact) = %d %q, want ok, 5 lines (handle, login, 3 reveals)", code, out)
	}
	if code, _, errOut := tok(t, dir, "", "audit", "verify", "-config", filepath.Join(dir, "none.yaml"), logPath); code != 1 || !strings.Contains(errOut, "keyring") {
		t.Errorf("audit verify without a keyring = %d %q, want 1 asking for the keyring", code, errOut)
	}

	// The attack: drop the first reveal (line 3) and rebuild seq and
	// prev after it, as the unkeyed chain computed them, dropping macs.
	raw, _ := os.ReadFile(logPath)
	lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	out := append([]string{}, lines[:2]...)
	prevSum := sha256.Sum256([]byte(lines[1]))
	for _, l := range lines[3:] {
		var ev map[string]any
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatal(err)
		}
		ev["seq"] = ev["seq"].(float64) - 1
		ev["prev"] = hex.EncodeToString(prevSum[:])
		delete(ev, "mac")
		b, _ := json.Marshal(ev)
		out = append(out, string(b))
		prevSum = sha256.Sum256(b)
	}
	forged := writeFile(t, dir, "forged.log", strings.Join(out, "\n")+"\n")
	for _, args := range [][]string{{"-keyring", keyring}, {"-keyring", keyring, "-allow-unkeyed"}} {
		code, outText, _ := tok(t, dir, "", append(append([]string{"audit", "verify"}, args...), forged)...)
		if code != 1 || !strings.Contains(outText, "line 3") {
			t.Errorf("audit verify %v of the log with a reveal deleted = %d %q; want 1 naming line 3", args, code, outText)
		}
	}
}

// TestAdminCrossSiteBinary: a browser on the tok host
// used to be able to POST /rekey (202) or start a CPU profile from any web
// page. Now cross-site requests and POSTs without X-Tok-Admin are refused,
// and each refusal is in the audit log.
func TestAdminCrossSiteBinary(t *testing.T) {
	dir := t.TempDir()
	keyring := newKeyring(t, dir)
	cfg, _ := revealConfig(t, dir, keyring, "")
	s := startTok(t, dir, cfg)
	admin := "http://" + s.addrs["admin"]
	send := func(method, path string, hdr ...string) int {
		t.Helper()
		req, _ := http.NewRequest(method, admin+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	// What a page on another site makes a browser send.
	refused := []struct {
		method, path string
		hdr          []string
	}{
		{"POST", "/rekey", []string{"Origin", "http://attacker.example", "Sec-Fetch-Site", "cross-site", "Content-Type", "application/x-www-form-urlencoded"}},
		{"POST", "/rekey", []string{"Content-Type", "text/plain"}}, // an old browser: no Origin, no Sec-Fetch-Site
		{"GET", "/debug/pprof/profile?seconds=30", []string{"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Dest", "image"}},
		{"GET", "/backup", []string{"Sec-Fetch-Site", "cross-site"}},
	}
	for _, r := range refused {
		if code := send(r.method, r.path, r.hdr...); code != http.StatusForbidden {
			t.Errorf("%s %s with %q = %d, want 403", r.method, r.path, r.hdr, code)
		}
	}
	// The CLI's and the README's requests pass.
	if code := send("POST", "/rekey", "X-Tok-Admin", "1"); code != http.StatusAccepted {
		t.Errorf("POST /rekey with X-Tok-Admin: 1 = %d, want 202", code)
	}
	s.stop(t)
	raw, _ := os.ReadFile(filepath.Join(dir, "audit.log"))
	if n := strings.Count(string(raw), `"outcome":"cross_site"`); n != 3 {
		t.Errorf("audit log has %d cross_site refusals, want 3:\n%s", n, raw)
	}
	if n := strings.Count(string(raw), `"outcome":"admin_header_missing"`); n != 1 {
		t.Errorf("audit log has %d admin_header_missing refusals, want 1:\n%s", n, raw)
	}
}

// TestAuditGapsBinary (PCI DSS 10.2.1): /@me with no or a
// bogus session, GET /backup and GET /keys used to write no audit line.
func TestAuditGapsBinary(t *testing.T) {
	dir := t.TempDir()
	keyring := newKeyring(t, dir)
	cfg, _ := revealConfig(t, dir, keyring, "")
	s := startTok(t, dir, cfg)
	token := s.handle(t, testPAN)
	const bogus = "not-a-session-0123456789abcdef"
	if code, _ := s.reveal(t, nil, token); code != http.StatusUnauthorized {
		t.Errorf("GET /@me without a session = %d, want 401", code)
	}
	if code, _ := s.reveal(t, &http.Cookie{Name: "session", Value: bogus}, token); code != http.StatusUnauthorized {
		t.Errorf("GET /@me with a bogus session = %d, want 401", code)
	}
	for _, path := range []string{"/backup", "/keys"} {
		resp, err := http.Get("http://" + s.addrs["admin"] + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body) // the whole backup: a client that hangs up gets "aborted"
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d, want 200", path, resp.StatusCode)
		}
	}
	s.stop(t)
	raw, _ := os.ReadFile(filepath.Join(dir, "audit.log"))
	log := string(raw)
	for _, want := range []string{
		`"event":"session","endpoint":"GET /@me","source":"127.0.0.1","outcome":"unauthenticated"`,
		`"event":"backup","endpoint":"GET /backup","source":"127.0.0.1","outcome":"started"`,
		`"event":"backup","endpoint":"GET /backup","source":"127.0.0.1","outcome":"ok"`,
		`"event":"keys","endpoint":"GET /keys","source":"127.0.0.1","outcome":"ok"`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("audit log lacks %s:\n%s", want, log)
		}
	}
	if n := strings.Count(log, `"event":"session"`); n != 2 {
		t.Errorf("audit log has %d refused sessions, want 2", n)
	}
	if strings.Contains(log, bogus) || strings.Contains(log, testPAN) {
		t.Errorf("audit log holds the session cookie or the PAN:\n%s", log)
	}
	if code, out, _ := tok(t, dir, "", "audit", "verify", "-keyring", keyring, filepath.Join(dir, "audit.log")); code != 0 {
		t.Errorf("audit verify = %d %q", code, out)
	}
}

// TestFingerprintSwapBinary: an edit of the vault file
// that swapped two records' fingerprints used to make the convergent path
// hand out a token with another card's BIN. Now the found record must
// open with the fingerprint bound, so the request is refused and nothing
// reaches the app; both records refuse to reveal.
func TestFingerprintSwapBinary(t *testing.T) {
	const panA, panB = "4111111111111111", "5555555555554444"
	dir := t.TempDir()
	keyring := newKeyring(t, dir)
	got := make(chan string, 4)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- string(b)
	}))
	defer upstream.Close()
	cfg, secret := revealConfig(t, dir, keyring, fmt.Sprintf(`upstream: %s
inbound:
  - name: checkout
    match: {method: POST, path: /checkout}
    fields: [{json: card.number}]
`, upstream.URL))
	checkout := func(s *server, pan string) (int, string) {
		resp, err := http.Post("http://"+s.addrs["public"]+"/checkout", "application/json", strings.NewReader(`{"card":{"number":"`+pan+`"}}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return resp.StatusCode, ""
		}
		var body struct{ Card struct{ Number string } }
		json.Unmarshal([]byte(<-got), &body)
		return resp.StatusCode, body.Card.Number
	}
	s := startTok(t, dir, cfg)
	_, tokA := checkout(s, panA)
	_, tokB := checkout(s, panB)
	s.stop(t)
	if tokA == "" || tokB == "" || tokA[:6] != panA[:6] || tokB[:6] != panB[:6] {
		t.Fatalf("tokens %q, %q; want each with its card's BIN", tokA, tokB)
	}

	// The attack: swap the two records' fingerprints in the vault file.
	store, err := bolt.Open(filepath.Join(dir, "tok.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ra, errA := store.Get(ctx, tokA)
	rb, errB := store.Get(ctx, tokB)
	if errA != nil || errB != nil {
		t.Fatal(errA, errB)
	}
	store.Delete(ctx, tokA)
	store.Delete(ctx, tokB)
	ra.Fingerprint, rb.Fingerprint = rb.Fingerprint, ra.Fingerprint
	if _, err := store.Insert(ctx, []vault.Record{ra, rb}); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	s = startTok(t, dir, cfg)
	code, forwarded := checkout(s, panA)
	if code == http.StatusOK || forwarded == tokB {
		t.Errorf("POST /checkout with card A after the swap = %d, forwarded %q; want a refusal, never card B's token %s", code, forwarded, tokB)
	}
	select {
	case b := <-got:
		t.Errorf("the app received %q after the swap", b)
	default:
	}
	cookie := s.login(t, "cih", secret)
	for _, tk := range []string{tokA, tokB} {
		if code, pan := s.reveal(t, cookie, tk); code == http.StatusOK {
			t.Errorf("GET /@me of a record whose fingerprint was swapped = 200 (%s), want a refusal", vault.Mask(pan))
		}
	}
	// Stop without the startTok error check: the refusals logged errors.
	s.p.Signal(syscall.SIGTERM)
	for range s.logs {
	}
	s.p.Err()
}

// TestRekeyUpgradesOldRecordsBinary: a vault written
// before record version 2 (token-only associated data, no key check
// values) starts, its check values are recorded, its old records reveal,
// and POST /rekey upgrades them to version 2 under the same key.
func TestRekeyUpgradesOldRecordsBinary(t *testing.T) {
	dir := t.TempDir()
	keyring := newKeyring(t, dir)
	b, _ := os.ReadFile(keyring)
	kf, err := vault.ParseKeyringFile(b)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := vault.NewKeyring(kf)
	if err != nil {
		t.Fatal(err)
	}
	// An old tok's vault: version 1 records, sealed with the token alone.
	store, err := bolt.Open(filepath.Join(dir, "tok.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pans := map[string]string{}
	var recs []vault.Record
	for i := range 5 {
		pan := fmt.Sprintf("41111100%08d", i)
		token := pan[:6] + fmt.Sprintf("%06d", 900000+i) + pan[12:]
		kid, ct := keys.Seal(token, pan)
		recs = append(recs, vault.Record{Token: token, KeyID: kid, Ciphertext: ct, Fingerprint: keys.Fingerprint("pan:6:4", pan),
			Created: time.Now(), Format: vault.FormatPAN, Version: vault.RecordV1})
		pans[token] = pan
	}
	if _, err := store.Insert(ctx, recs); err != nil {
		t.Fatal(err)
	}
	store.Close()

	cfg, secret := revealConfig(t, dir, keyring, "")
	s := startTok(t, dir, cfg)
	cookie := s.login(t, "cih", secret)
	for tk, pan := range pans {
		if code, got := s.reveal(t, cookie, tk); code != http.StatusOK || got != pan {
			t.Errorf("GET /@me of a version 1 record = %d %s, want its PAN", code, vault.Mask(got))
		}
	}
	admin := "http://" + s.addrs["admin"]
	req, _ := http.NewRequest("POST", admin+"/rekey", nil)
	req.Header.Set("X-Tok-Admin", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /rekey = %d", resp.StatusCode)
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp, err := http.Get(admin + "/rekey")
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			Done     bool
			Resealed int
			Error    string
		}
		json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if st.Done || st.Error != "" {
			if st.Resealed != len(pans) || st.Error != "" {
				t.Errorf("rekey resealed %d (error %q), want all %d version 1 records", st.Resealed, st.Error, len(pans))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("rekey did not finish within 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.stop(t)

	store, err = bolt.Open(filepath.Join(dir, "tok.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for tk, pan := range pans {
		rec, err := store.Get(ctx, tk)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := keys.OpenRecord(rec); rec.Version != vault.RecordV2 || err != nil || got != pan {
			t.Errorf("record %s after the rekey: version %d, open %v; want version 2 holding its PAN", tk, rec.Version, err)
		}
	}
	if checks, err := store.KeyChecks(ctx); err != nil || len(checks) != 2 {
		t.Errorf("key check values recorded at the first start = %d, %v; want the fingerprint key's and version 1's", len(checks), err)
	}
}

// pgSchema creates a schema named prefix plus random hex in the database
// at url, drops it when the test ends, and returns url with its
// search_path set to it, so a test's tok sees only its own tables.
func pgSchema(t *testing.T, url, prefix string) string {
	t.Helper()
	var rnd [6]byte
	rand.Read(rnd[:])
	schema := prefix + hex.EncodeToString(rnd[:])
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		conn.Close(ctx)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		conn.Close(context.Background())
	})
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	return url + sep + "search_path=" + schema
}
