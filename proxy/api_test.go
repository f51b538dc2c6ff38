package proxy

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokproxy/tok/vault"
)

// TestSeedWalkthrough follows the prototype README's curl commands: tokenize
// on the public listener, log in on the auth listener, look the token up.
func TestSeedWalkthrough(t *testing.T) {
	e := newTestEnv(t, nil)

	tok := e.handle(seedPAN)
	if len(tok) != len(seedPAN) || tok[:6] != seedPAN[:6] || tok[len(tok)-4:] != seedPAN[len(seedPAN)-4:] {
		t.Errorf("token %q does not keep the first 6 and last 4 digits of %s", tok, vault.Mask(seedPAN))
	}
	if tok == seedPAN || vault.Luhn(tok) {
		t.Errorf("token %q equals the PAN or passes Luhn", tok)
	}
	// Anonymous /handle never converges: whether a card has a
	// token already is not for an unauthenticated caller to learn.
	if again := e.handle(seedPAN); again == tok {
		t.Errorf("second POST /handle = %q, the same token again; want a fresh one", again)
	}

	jar := e.login("cih")
	r := do(t, jar, "GET", e.auth.URL+"/@me?token="+tok, "application/json", "")
	if r.StatusCode != 200 {
		t.Fatalf("GET /@me = %d %s", r.StatusCode, r.body)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
	m := r.json(t)
	for _, k := range []string{"token", "encrypted_pan", "hash", "transaction_time", "masked_pan", "pan"} {
		if s, _ := m[k].(string); s == "" {
			t.Errorf("GET /@me: field %q missing or empty in %s", k, r.body)
		}
	}
	if m["token"] != tok || m["pan"] != seedPAN || m["masked_pan"] != vault.Mask(seedPAN) {
		t.Errorf("GET /@me = token %v masked %v, want %s and the PAN", m["token"], m["masked_pan"], tok)
	}
	if m["transaction_time"] != "2026-11-27 10:00:00" {
		t.Errorf("transaction_time = %v, want the prototype's layout at the clock's time", m["transaction_time"])
	}
	if strings.Contains(fmt.Sprint(m["encrypted_pan"]), seedPAN) {
		t.Error("encrypted_pan holds the PAN in clear")
	}

	// POST /@me reads the token from a JSON body.
	r = do(t, jar, "POST", e.auth.URL+"/@me", "application/json", `{"token":"`+tok+`"}`)
	if r.StatusCode != 200 || r.json(t)["pan"] != seedPAN {
		t.Errorf("POST /@me = %d %s", r.StatusCode, r.body)
	}

	// A client without reveal sees the masked PAN only.
	viewer := e.login("viewer")
	r = do(t, viewer, "GET", e.auth.URL+"/@me?token="+tok, "", "")
	vm := r.json(t)
	if r.StatusCode != 200 || vm["pan"] != nil || vm["masked_pan"] != vault.Mask(seedPAN) {
		t.Errorf("GET /@me as viewer = %d %s, want masked only", r.StatusCode, r.body)
	}

	// Step 4: the logged-in client's /handle converges.
	if conv, again := e.clientHandle(jar, seedPAN), e.clientHandle(jar, seedPAN); conv != again || conv == tok {
		t.Errorf("client POST /handle = %s then %s (anonymous gave %s); want one convergent token of its own", conv, again, tok)
	}

	// Logout ends the session.
	r = do(t, jar, "POST", e.auth.URL+"/logout", "", "")
	if r.StatusCode != 200 {
		t.Errorf("POST /logout = %d %s", r.StatusCode, r.body)
	}
	wantError(t, do(t, jar, "GET", e.auth.URL+"/@me?token="+tok, "", ""), 401, "unauthenticated")
}

func TestLoginCookie(t *testing.T) {
	e := newTestEnv(t, nil)
	r := do(t, nil, "POST", e.auth.URL+"/login", "application/json", `{"bank_coordinates":"cih","secret":"cih-secret-1"}`)
	if r.StatusCode != 200 {
		t.Fatalf("POST /login = %d %s", r.StatusCode, r.body)
	}
	m := r.json(t)
	if m["bank_coordinates"] != "cih" || m["id"] == "" {
		t.Errorf("POST /login body = %s", r.body)
	}
	cookies := r.Cookies()
	if len(cookies) != 1 {
		t.Fatalf("POST /login set %d cookies, want 1", len(cookies))
	}
	c := cookies[0]
	if c.Name != "session" || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Secure {
		t.Errorf("cookie = %+v, want session; HttpOnly; SameSite=Strict; Path=/ (not Secure over plain HTTP)", c)
	}
	if c.Value == m["id"] {
		t.Error("the public session id equals the cookie secret")
	}
	// A fresh id at every login.
	r2 := do(t, nil, "POST", e.auth.URL+"/login", "application/json", `{"bank_coordinates":"cih","secret":"cih-secret-1"}`)
	if r2.Cookies()[0].Value == c.Value || r2.json(t)["id"] == m["id"] {
		t.Error("a second login reused the session")
	}
	// The store holds the hash of the cookie, never the cookie itself.
	if _, err := e.store.GetSession(t.Context(), []byte(c.Value)); err == nil {
		t.Error("session stored under its cookie value")
	}
	if strings.Contains(e.log.String(), c.Value) || strings.Contains(e.audit.String(), c.Value) {
		t.Error("session cookie value reached the log or the audit log")
	}
}

func TestSessionExpiry(t *testing.T) {
	e := newTestEnv(t, nil)
	tok := e.handle(seedPAN)
	get := func(c *http.Client) response { return do(t, c, "GET", e.auth.URL+"/@me?token="+tok, "", "") }

	c := e.login("cih")
	e.clock.Advance(14 * time.Minute)
	if r := get(c); r.StatusCode != 200 {
		t.Fatalf("after 14 idle minutes: %d %s, want 200", r.StatusCode, r.body)
	}
	e.clock.Advance(14 * time.Minute) // 14 idle minutes since the last use
	if r := get(c); r.StatusCode != 200 {
		t.Fatalf("activity must reset the idle timer: %d %s", r.StatusCode, r.body)
	}
	e.clock.Advance(15 * time.Minute)
	wantError(t, get(c), 401, "session_expired")
	wantError(t, get(c), 401, "unauthenticated") // deleted, not merely refused

	// Absolute limit: 8 hours however active the session is.
	c = e.login("cih")
	for i := 0; i < 8*60/10-1; i++ {
		e.clock.Advance(10 * time.Minute)
		if r := get(c); r.StatusCode != 200 {
			t.Fatalf("active session refused after %d min: %d %s", (i+1)*10, r.StatusCode, r.body)
		}
	}
	e.clock.Advance(10 * time.Minute)
	wantError(t, get(c), 401, "session_expired")
}

// TestLoginLockoutConcurrent: wrong secrets sent at once, from two tok
// servers sharing one store (replicas), are checked at most lockout-threshold
// times per lock: each attempt is counted before its secret is checked.
// The burst also meets the per-source limits (one bcrypt slot, a rate a
// minute), which refuse with too_many_logins before any check; so once the
// burst is over the test goes on, one attempt at a time, until the lock
// answers, and counts every check on the way.
func TestLoginLockoutConcurrent(t *testing.T) {
	a := newTestEnv(t, nil)
	b := newTestEnv(t, a.store)
	var checked, locked atomic.Int32
	attempt := func(url string) {
		r := do(t, nil, "POST", url+"/login", "application/json", `{"bank_coordinates":"cih","secret":"wrong"}`)
		switch code := errorCode(r); {
		case r.StatusCode == 401:
			checked.Add(1)
		case r.StatusCode == 429 && code == "locked":
			locked.Add(1)
		case r.StatusCode == 429 && code == "too_many_logins":
		default:
			t.Errorf("login = %d %s", r.StatusCode, r.body)
		}
	}
	var wg sync.WaitGroup
	for g := range 16 {
		url := []string{a.auth.URL, b.auth.URL}[g%2]
		wg.Go(func() {
			for range 5 {
				attempt(url)
			}
		})
	}
	wg.Wait()
	// The source rate refills within a minute; the lock lasts 30.
	a.clock.Advance(2 * time.Minute)
	b.clock.Advance(2 * time.Minute)
	for i := 0; locked.Load() == 0 && i < 2*DefaultLockoutThreshold; i++ {
		attempt([]string{a.auth.URL, b.auth.URL}[i%2])
	}
	if n := checked.Load(); n != DefaultLockoutThreshold || locked.Load() == 0 {
		t.Errorf("%d wrong secrets were checked before the lock (%d refused as locked), want exactly %d",
			n, locked.Load(), DefaultLockoutThreshold)
	}
}

// errorCode is the stable code of a JSON error body, or "" if it has none.
func errorCode(r response) string {
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(r.body, &e)
	return e.Error
}

func TestLoginLockout(t *testing.T) {
	e := newTestEnv(t, nil)
	login := func(client, secret string) response {
		return do(t, nil, "POST", e.auth.URL+"/login", "application/json",
			`{"bank_coordinates":"`+client+`","secret":"`+secret+`"}`)
	}
	for i := 0; i < 9; i++ {
		wantError(t, login("cih", "wrong"), 401, "invalid_credentials")
	}
	if r := login("cih", testSecrets["cih"]); r.StatusCode != 200 {
		t.Fatalf("login after 9 failures = %d, want 200 (success resets the count)", r.StatusCode)
	}
	for i := 0; i < 10; i++ {
		wantError(t, login("cih", "wrong"), 401, "invalid_credentials")
	}
	wantError(t, login("cih", testSecrets["cih"]), 429, "locked")
	if r := login("viewer", testSecrets["viewer"]); r.StatusCode != 200 {
		t.Errorf("another client is locked too: %d", r.StatusCode)
	}
	e.clock.Advance(29 * time.Minute)
	wantError(t, login("cih", testSecrets["cih"]), 429, "locked")
	e.clock.Advance(time.Minute)
	if r := login("cih", testSecrets["cih"]); r.StatusCode != 200 {
		t.Errorf("login after the 30-minute lock = %d %s, want 200", r.StatusCode, r.body)
	}
	// Unknown names answer exactly like wrong secrets.
	u := login("nobody", "x")
	w := login("cih", "x")
	wantError(t, u, 401, "invalid_credentials")
	if string(u.body) != string(w.body) {
		t.Errorf("unknown client body %s differs from wrong-secret body %s", u.body, w.body)
	}
	audit := e.audit.String()
	for _, want := range []string{`"outcome":"locked"`, `"outcome":"invalid_credentials"`, `"event":"login"`} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit log lacks %s", want)
		}
	}
	if strings.Contains(audit, "nobody") || strings.Contains(audit, testSecrets["cih"]) {
		t.Error("audit log holds an unknown client name or a secret")
	}
}

func TestMeErrors(t *testing.T) {
	e := newTestEnv(t, nil)
	tok := e.handle(seedPAN)
	c := e.login("cih")
	wantError(t, do(t, nil, "GET", e.auth.URL+"/@me?token="+tok, "", ""), 401, "unauthenticated")
	wantError(t, do(t, nil, "GET", e.auth.URL+"/@me?token="+tok, "", "", "Cookie", "session=forged"), 401, "unauthenticated")
	wantError(t, do(t, c, "GET", e.auth.URL+"/@me?token=5552130000000001777", "", ""), 404, "token_not_found")
	wantError(t, do(t, c, "GET", e.auth.URL+"/@me?token=not-a-token", "", ""), 400, "invalid_token")
	wantError(t, do(t, c, "GET", e.auth.URL+"/@me", "", ""), 400, "missing_field")
	wantError(t, do(t, c, "PUT", e.auth.URL+"/@me?token="+tok, "", ""), 405, "method_not_allowed")
	wantError(t, do(t, c, "POST", e.auth.URL+"/@me", "text/plain", tok), 415, "unsupported_media_type")
	// A PAN pasted where a token belongs is refused and never logged.
	wantError(t, do(t, c, "GET", e.auth.URL+"/@me?token=4111111111111111", "", ""), 404, "token_not_found")
	if strings.Contains(e.audit.String(), "4111111111111111") {
		t.Error("a PAN sent as a token reached the audit log")
	}
}

func TestAuditReveal(t *testing.T) {
	e := newTestEnv(t, nil)
	tok := e.handle(seedPAN)
	c := e.login("cih")
	do(t, c, "GET", e.auth.URL+"/@me?token="+tok, "", "")
	lines := strings.Split(strings.TrimSpace(e.audit.String()), "\n")
	last := lines[len(lines)-1]
	for _, want := range []string{`"event":"reveal"`, `"client":"cih"`, `"token":"` + tok + `"`, `"source":"127.0.0.1"`, `"outcome":"ok"`, `"time":"2026-11-27T10:00:00Z"`} {
		if !strings.Contains(last, want) {
			t.Errorf("audit line %s lacks %s", last, want)
		}
	}
	if strings.Contains(e.audit.String(), seedPAN) {
		t.Error("the PAN reached the audit log")
	}
}

func TestRevealRefusedWithoutAudit(t *testing.T) {
	e := newTestEnv(t, nil)
	tok := e.handle(seedPAN)
	c := e.login("cih")
	e.audit.breakWrites()
	r := do(t, c, "GET", e.auth.URL+"/@me?token="+tok, "", "")
	wantError(t, r, 503, "audit_unavailable")
	if strings.Contains(string(r.body), seedPAN) {
		t.Error("PAN revealed although the audit line was not written")
	}
}

func TestHandleBatch(t *testing.T) {
	e := newTestEnv(t, nil)
	pans := []string{"4111111111111111", "5555 5555 5555 4444", "3782-822463-10005", "4111111111111111"}
	r := do(t, nil, "POST", e.public.URL+"/handle", "application/json", `{"pan_numbers":["`+strings.Join(pans, `","`)+`"]}`)
	if r.StatusCode != 200 {
		t.Fatalf("batch = %d %s", r.StatusCode, r.body)
	}
	toks, _ := r.json(t)["tokens"].([]any)
	if len(toks) != len(pans) {
		t.Fatalf("batch returned %d tokens for %d PANs", len(toks), len(pans))
	}
	if toks[0] == toks[3] {
		t.Errorf("the same PAN twice in one anonymous batch got one token %v; want two fresh ones", toks[0])
	}
	// A logged-in client's batch on the auth listener converges.
	r = do(t, e.login("cih"), "POST", e.auth.URL+"/handle", "application/json", `{"pan_numbers":["`+strings.Join(pans, `","`)+`"]}`)
	if r.StatusCode != 200 {
		t.Fatalf("client batch = %d %s", r.StatusCode, r.body)
	}
	if ct, _ := r.json(t)["tokens"].([]any); len(ct) != len(pans) || ct[0] != ct[3] {
		t.Errorf("client batch tokens %v: want %d, the same PAN twice getting one token", ct, len(pans))
	}
	for i, tk := range toks {
		rv, err := e.vault.Reveal(t.Context(), tk.(string))
		want := strings.NewReplacer(" ", "", "-", "").Replace(pans[i])
		if err != nil || rv.Value != want {
			t.Errorf("Reveal(tokens[%d]) = %s, %v; want %s", i, vault.Mask(rv.Value), err, vault.Mask(want))
		}
	}
	big := `{"pan_numbers":[` + strings.TrimSuffix(strings.Repeat(`"4111111111111111",`, MaxBatch+1), ",") + `]}`
	wantError(t, do(t, nil, "POST", e.public.URL+"/handle", "application/json", big), 413, "batch_too_large")
	r = do(t, nil, "POST", e.public.URL+"/handle", "application/json", `{"pan_numbers":["4111111111111111","12ab"]}`)
	wantError(t, r, 400, "invalid_pan")
	if !strings.Contains(string(r.body), "pan_numbers[1]") {
		t.Errorf("batch error %s does not name the element", r.body)
	}
}

// TestHandleBadInput: every malformed request gets a clear 4xx, stores
// nothing and echoes no card number.
func TestHandleBadInput(t *testing.T) {
	const pan = "4111111111111111"
	e := newTestEnv(t, nil, func(o *Options) { o.MaxBody = 1024 })
	tests := []struct {
		name, method, ct, body string
		status                 int
		code                   string
	}{
		{"GET", "GET", "", "", 405, "method_not_allowed"},
		{"no content type", "POST", "", `{"pan_number":"` + pan + `"}`, 415, "unsupported_media_type"},
		{"form", "POST", "application/x-www-form-urlencoded", "pan_number=" + pan, 415, "unsupported_media_type"},
		{"latin1", "POST", "application/json; charset=iso-8859-1", `{"pan_number":"` + pan + `"}`, 415, "unsupported_media_type"},
		{"empty", "POST", "application/json", "", 400, "empty_body"},
		{"whitespace", "POST", "application/json", "  \n", 400, "empty_body"},
		{"malformed", "POST", "application/json", `{"pan_number":"` + pan, 400, "invalid_json"},
		{"not an object", "POST", "application/json", `"` + pan + `"`, 400, "wrong_type"},
		{"two objects", "POST", "application/json", `{"pan_number":"` + pan + `"}{}`, 400, "invalid_json"},
		{"number", "POST", "application/json", `{"pan_number":` + pan + `}`, 400, "wrong_type"},
		{"null", "POST", "application/json", `{"pan_number":null}`, 400, "missing_field"},
		{"unknown field", "POST", "application/json", `{"pan_number":"` + pan + `","cvv":"123"}`, 400, "unknown_field"},
		{"pan as key", "POST", "application/json", `{"` + pan + `":1}`, 400, "unknown_field"},
		{"letters", "POST", "application/json", `{"pan_number":"4111x11111111111"}`, 400, "invalid_pan"},
		{"too short", "POST", "application/json", `{"pan_number":"41111111111"}`, 400, "invalid_pan"},
		{"too long", "POST", "application/json", `{"pan_number":"41111111111111111111"}`, 400, "invalid_pan"},
		{"unicode digits", "POST", "application/json", `{"pan_number":"４１１１１１１１１１１１１１１１"}`, 400, "invalid_pan"},
		{"both", "POST", "application/json", `{"pan_number":"` + pan + `","pan_numbers":["` + pan + `"]}`, 400, "invalid_request"},
		{"empty batch", "POST", "application/json", `{"pan_numbers":[]}`, 400, "invalid_request"},
		{"huge", "POST", "application/json", `{"pan_number":"` + pan + `","x":"` + strings.Repeat("a", 2048) + `"}`, 413, "body_too_large"},
		{"gzip", "POST", "application/json", `{"pan_number":"` + pan + `"}`, 415, "unsupported_encoding"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdr []string
			if tt.name == "gzip" {
				hdr = []string{"Content-Encoding", "gzip"}
			}
			r := do(t, nil, tt.method, e.public.URL+"/handle", tt.ct, tt.body, hdr...)
			wantError(t, r, tt.status, tt.code)
			if strings.Contains(string(r.body), pan) || strings.Contains(string(r.body), "41111111111") {
				t.Errorf("error body %s echoes the card number", r.body)
			}
		})
	}
	if got := metricValue(t, e, `tok_tokenize_values_total{outcome="ok"}`); got != "" {
		t.Errorf("bad requests tokenized values: %s", got)
	}
	if strings.Contains(e.log.String(), pan) {
		t.Error("a card number reached the log")
	}
}

func TestVaultUnavailable(t *testing.T) {
	fs := &failingStore{}
	e := newTestEnv(t, nil)
	fs.Durable = e.store
	e = newTestEnv(t, fs)
	fs.fail = true
	wantError(t, do(t, nil, "POST", e.public.URL+"/handle", "application/json", `{"pan_number":"`+seedPAN+`"}`), 503, "vault_unavailable")
	wantError(t, do(t, nil, "GET", e.admin.URL+"/readyz", "", ""), 503, "not_ready")
	if strings.Contains(e.log.String(), seedPAN) {
		t.Error("the PAN reached the log")
	}
	fs.fail = false
	if tok := e.handle(seedPAN); tok == "" {
		t.Error("no token after the store recovered")
	}
	if r := do(t, nil, "GET", e.admin.URL+"/readyz", "", ""); r.StatusCode != 200 {
		t.Errorf("/readyz after recovery = %d", r.StatusCode)
	}
}

func TestAdmin(t *testing.T) {
	e := newTestEnv(t, nil)
	e.handle(seedPAN)
	if r := do(t, nil, "GET", e.admin.URL+"/healthz", "", ""); r.StatusCode != 200 {
		t.Errorf("/healthz = %d", r.StatusCode)
	}
	if r := do(t, nil, "GET", e.admin.URL+"/readyz", "", ""); r.StatusCode != 200 {
		t.Errorf("/readyz = %d", r.StatusCode)
	}
	for _, want := range []string{
		`tok_http_requests_total{code="200",route="handle"} 1`,
		`tok_tokenize_values_total{outcome="ok"} 1`,
		`tok_tokenize_duration_seconds_count 1`,
	} {
		if !strings.Contains(scrape(t, e), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	wantError(t, do(t, nil, "GET", e.public.URL+"/nope", "", ""), 404, "not_found")
}

func scrape(t *testing.T, e *testEnv) string {
	t.Helper()
	r := do(t, nil, "GET", e.admin.URL+"/metrics", "", "")
	if r.StatusCode != 200 {
		t.Fatalf("/metrics = %d", r.StatusCode)
	}
	return string(r.body)
}

// metricValue returns the value of the series named exactly so, or "".
func metricValue(t *testing.T, e *testEnv, series string) string {
	for _, line := range strings.Split(scrape(t, e), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

func TestDeleteToken(t *testing.T) {
	e := newTestEnv(t, nil, func(o *Options) { o.Clients[0].Delete = true })
	tok := e.handle(seedPAN)
	viewer := e.login("viewer")
	wantError(t, do(t, viewer, "DELETE", e.auth.URL+"/@me?token="+tok, "", ""), 403, "forbidden")
	c := e.login("cih")
	r := do(t, c, "DELETE", e.auth.URL+"/@me?token="+tok, "", "")
	if r.StatusCode != 200 {
		t.Fatalf("DELETE /@me = %d %s", r.StatusCode, r.body)
	}
	wantError(t, do(t, c, "GET", e.auth.URL+"/@me?token="+tok, "", ""), 404, "token_not_found")
	wantError(t, do(t, c, "DELETE", e.auth.URL+"/@me?token="+tok, "", ""), 404, "token_not_found")
	// Erased means forgotten: the same PAN now gets a new token.
	if again := e.handle(seedPAN); again == tok {
		t.Error("the deleted token was handed out again for its PAN")
	}
	audit := e.audit.String()
	for _, want := range []string{`"event":"delete","client":"viewer"`, `"outcome":"forbidden"`, `"outcome":"started"`, `"event":"delete","client":"cih"`} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit log lacks %s", want)
		}
	}
}

// TestAdminLoopbackOnly: backup, keys, rekey and profiles answer loopback
// peers only; probes and metrics answer anyone who reaches the listener.
func TestAdminLoopbackOnly(t *testing.T) {
	e := newTestEnv(t, nil)
	h := e.srv.AdminHandler()
	for _, tt := range []struct {
		method, path string
		remote       string
		want         int
		host         string // 127.0.0.1:9090 if empty
	}{
		{"GET", "/keys", "10.1.2.3:5555", 403, ""},
		{"POST", "/rekey", "10.1.2.3:5555", 403, ""},
		{"GET", "/backup", "[fd00::1]:5555", 403, ""},
		{"GET", "/debug/pprof/", "10.1.2.3:5555", 403, ""},
		{"GET", "/healthz", "10.1.2.3:5555", 200, ""},
		{"GET", "/readyz", "10.1.2.3:5555", 200, ""},
		{"GET", "/metrics", "10.1.2.3:5555", 200, ""},
		{"GET", "/keys", "127.0.0.1:5555", 200, ""},
		{"GET", "/debug/pprof/", "[::1]:5555", 200, ""},
		{"GET", "/keys", "127.0.0.1:5555", 200, "localhost:9090"},
		{"GET", "/keys", "[::1]:5555", 200, "[::1]:9090"},
		// DNS rebinding: a page on attacker.example, rebound to 127.0.0.1.
		{"GET", "/backup", "127.0.0.1:5555", 403, "attacker.example:9090"},
		{"GET", "/keys", "127.0.0.1:5555", 403, "attacker.example"},
		{"POST", "/rekey", "127.0.0.1:5555", 403, "localhost.attacker.example:9090"},
		{"GET", "/debug/pprof/", "[::1]:5555", 403, "attacker.example:9090"},
		{"GET", "/metrics", "127.0.0.1:5555", 200, "attacker.example:9090"}, // not loopback-only
	} {
		req := httptest.NewRequest(tt.method, tt.path, nil)
		req.RemoteAddr = tt.remote
		req.Host = cmp.Or(tt.host, "127.0.0.1:9090")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tt.want {
			t.Errorf("%s %s from %s = %d, want %d", tt.method, tt.path, tt.remote, rec.Code, tt.want)
		}
	}
}
