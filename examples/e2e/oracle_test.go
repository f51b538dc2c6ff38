package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/tokproxy/tok/vault"
)

// Through the binary: the /handle oracle that recovered a card
// from its pan token in under a second, run again against tok on its
// default budgets.

// oracleBIN and oracleLast are the visible digits of the target card's
// pan token; the attacker also knows the middle's first digit (oracleKnown),
// which leaves 10^5 middles and 10^4 Luhn-valid candidates: ten requests of
// 1,000, a tenth of the whole space, enough to show the answer holds no
// information while keeping the test to a few seconds.
const (
	oracleBIN   = "453201"
	oracleKnown = "7"
	oracleLast  = "0366"
)

// candidates returns every Luhn-valid card 453201 7xxxxx 0366, in order.
func candidates() []string {
	var out []string
	for m := range 100_000 {
		c := fmt.Sprintf("%s%s%05d%s", oracleBIN, oracleKnown, m, oracleLast)
		if vault.Luhn(c) {
			out = append(out, c)
		}
	}
	return out
}

// TestOracleClosed mints a pan token for a card at an inbound route, as
// a shopper's checkout does, then runs the attack: every
// candidate to the anonymous POST /handle in batches of 1,000, looking for
// the target token among the answers. No answer may hold it. Then the same
// search on the convergent path a logged-in client has: it stops at the
// client's budget, long before the space is searched, and the inbound
// route stops an address at its own. The guesses an attacker gets per
// hour under the defaults are measured and logged (go test -v -run
// TestOracleClosed ./examples/e2e/).
func TestOracleClosed(t *testing.T) {
	cands := candidates()
	if len(cands) != 10_000 {
		t.Fatalf("%d candidates, want 10000", len(cands))
	}
	// The card sits late in the order: a search stopped early misses it.
	target := cands[len(cands)-17]

	dir := t.TempDir()
	keyring := newKeyring(t, dir)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body) // whole, before answering: net/http may cut a body read after the answer starts
		w.Write(b)                 // an app that echoes what it received: the worst case
	}))
	defer up.Close()
	const secret = "oracle-secret"
	hash, _ := bcrypt.GenerateFromPassword([]byte(secret), 10)
	cfg := writeFile(t, dir, "tok.yaml", fmt.Sprintf(`listen: {public: "127.0.0.1:0", auth: "127.0.0.1:0", admin: "127.0.0.1:0"}
vault: {bolt: %q, keyring: %q}
audit: {path: %q}
clients: [{name: cih, secret_hash: %q, reveal: true}]
upstream: %s
inbound:
  - name: checkout
    match: {method: POST, path: /checkout}
    fields: [{json: card.number}]
  - name: wallet
    match: {method: POST, path: /wallet}
    fields: [{json: "cards.#"}]
`, filepath.Join(dir, "tok.db"), keyring, filepath.Join(dir, "audit.log"), hash, up.URL))
	s := startTok(t, dir, cfg)

	// The shopper's checkout: the app (and whoever reads its logs) holds
	// the pan token.
	var echoed struct{ Card struct{ Number string } }
	checkoutAt := time.Now()
	status, body := s.postJSON(t, "public", "/checkout", nil, `{"card":{"number":"`+target+`"}}`)
	if status != 200 || json.Unmarshal(body, &echoed) != nil || echoed.Card.Number == "" {
		t.Fatalf("POST /checkout = %d %s", status, body)
	}
	want := echoed.Card.Number
	if want[:6] != oracleBIN || want[len(want)-4:] != oracleLast {
		t.Fatalf("pan token %s does not show %s…%s", want, oracleBIN, oracleLast)
	}

	// The attack on the anonymous /handle: 10 requests of 1,000.
	seen := map[string]bool{}
	for i := 0; i < len(cands); i += 1000 {
		toks := s.handleBatch(t, "public", nil, cands[i:i+1000])
		for j, tk := range toks {
			if tk == want {
				t.Fatalf("anonymous /handle answered candidate %d with the target token: the card is recovered", i+j)
			}
			if seen[tk] {
				t.Fatalf("anonymous /handle returned %s twice", tk)
			}
			seen[tk] = true
		}
	}
	t.Logf("anonymous /handle: %d candidates in %d requests, the true card among them: 0 answers matched the target token", len(cands), len(cands)/1000)

	// The convergent path of a logged-in client answers the oracle's
	// question, so it is budgeted: 1,000 values an hour by default.
	cookie := login(t, s, "cih", secret)
	accepted := 0
	var retryAfter string
	for i := 0; i < len(cands); i += 1000 {
		status, body := s.postJSON(t, "auth", "/handle", cookie, batchBody(cands[i:i+1000]))
		if status == http.StatusTooManyRequests {
			var e struct{ Error string }
			json.Unmarshal(body, &e)
			if e.Error != "budget_exceeded" {
				t.Fatalf("429 with code %q, want budget_exceeded", e.Error)
			}
			retryAfter = s.lastRetryAfter
			break
		}
		if status != 200 {
			t.Fatalf("client /handle = %d %s", status, body)
		}
		var out struct{ Tokens []string }
		json.Unmarshal(body, &out)
		for _, tk := range out.Tokens {
			if tk == want {
				t.Fatalf("the client's budget let the search reach the card")
			}
		}
		accepted += len(out.Tokens)
	}
	if accepted != 1000 || retryAfter == "" {
		t.Fatalf("client /handle took %d candidates before refusing (Retry-After %q); want 1000 and then 429", accepted, retryAfter)
	}
	// The next batch waits for the budget to refill by 1,000 values: an
	// hour, less the moments the test took since spending it.
	ra, _ := strconv.Atoi(retryAfter)
	if ra < 1 || ra > 3600 {
		t.Fatalf("Retry-After %q for a batch of 1000, want at most 3600 s", retryAfter)
	}
	t.Logf("client /handle (convergent): %d candidates, then 429 budget_exceeded; the next batch of 1000 waits %d s: %d guesses/hour sustained (%d in the first hour with the full budget); mean time to one card (5·10^4 of 10^5 candidates) ≈ %d h",
		accepted, ra, accepted*3600/ra, 2*accepted, 50_000*ra/accepted/3600)

	// An inbound route whose app echoes tokens is an oracle too: an address
	// gets its budget of 10,000 convergent values an hour (the checkout
	// above spent 1), then 429. The budget refills as the test runs (one
	// value per 0.36 s), so the bound allows for the time it took.
	inbound, found, refused := 1, false, false
	wallet := func(pans []string) int {
		b, _ := json.Marshal(map[string][]string{"cards": pans})
		status, body := s.postJSON(t, "public", "/wallet", nil, string(b))
		switch status {
		case http.StatusOK:
			inbound += len(pans)
			found = found || bytes.Contains(body, []byte(want))
		case http.StatusTooManyRequests:
		default:
			t.Fatalf("POST /wallet = %d %.200s", status, body)
		}
		return status
	}
	for i := 0; i < 20 && !refused; i++ { // the candidates again if need be: each lookup spends
		refused = wallet(cands[i%10*1000:i%10*1000+1000]) == http.StatusTooManyRequests
	}
	refill := int(time.Since(checkoutAt)*10_000/time.Hour) + 1
	if !refused || inbound < 9001 || inbound > 10_000+refill {
		t.Fatalf("the inbound route took %d convergent values (refused: %v); want 9001 to %d (10,000 and the refill of %v), then 429",
			inbound, refused, 10_000+refill, time.Since(checkoutAt).Round(time.Millisecond))
	}
	// A refused batch left at least 999 values of the budget: they pass.
	if inbound == 9001 && wallet(cands[9000:9999]) != http.StatusOK {
		t.Fatalf("the last 999 values of the inbound budget were refused")
	}
	t.Logf("inbound route, app echoing tokens: %d convergent values from one address in %v, then 429 for a batch of 1000; the true card among them: %v",
		inbound, time.Since(checkoutAt).Round(time.Millisecond), found)

	// The attack is visible to the operator.
	if status, body := s.getMetrics(t); status != 200 || !strings.Contains(body, `tok_budget_refusals_total{budget="handle_client"} 1`) ||
		!strings.Contains(body, `tok_records_created_total{path="handle_anonymous"} 10000`) {
		t.Errorf("/metrics = %d, lacking the refusals and new records of the attack", status)
	}
	s.stop(t)
}

// TestRevealBudgetAndMaskedShape: through the binary, /@me stops a client
// at its reveal budget (100 lookups an hour by default), so 3-digit tokens
// cannot be enumerated, and a masked-only client gets no ciphertext or
// fingerprint while a reveal client keeps the prototype's fields.
func TestRevealBudgetAndMaskedShape(t *testing.T) {
	dir := t.TempDir()
	keyring := newKeyring(t, dir)
	hash, _ := bcrypt.GenerateFromPassword([]byte("s1"), 10)
	cfg := writeBoltConfig(t, dir, keyring, fmt.Sprintf(`clients:
  - {name: cih, secret_hash: %q, reveal: true}
  - {name: viewer, secret_hash: %q, reveal: false}
`, hash, hash))
	s := startTok(t, dir, cfg)
	token := s.handle(t, testPAN)
	start := time.Now()

	for client, fields := range map[string][]string{"cih": {"token", "encrypted_pan", "hash", "transaction_time", "pan"}, "viewer": {"token", "masked_pan"}} {
		c := login(t, s, client, "s1")
		status, body := s.get2(t, "auth", "/@me?token="+token, c)
		var m map[string]any
		if status != 200 || json.Unmarshal(body, &m) != nil {
			t.Fatalf("GET /@me as %s = %d %s", client, status, body)
		}
		for _, f := range fields {
			if v, _ := m[f].(string); v == "" {
				t.Errorf("GET /@me as %s lacks %s: %s", client, f, body)
			}
		}
		if client == "viewer" {
			for _, f := range []string{"encrypted_pan", "hash", "pan"} {
				if _, ok := m[f]; ok {
					t.Errorf("GET /@me as the masked-only viewer holds %s: %s", f, body)
				}
			}
		}
	}

	// cih spent 1 lookup above; 99 more pass (misses included), then 429.
	// One lookup refills every 36 s: the bound allows for the time taken.
	c := login(t, s, "cih", "s1")
	n := 1
	for ; n <= 1000; n++ {
		status, _ := s.get2(t, "auth", fmt.Sprintf("/@me?token=%03d", n%1000), c)
		if status == http.StatusTooManyRequests {
			break
		}
	}
	refill := int(time.Since(start)/(36*time.Second)) + 1
	if n < 100 || n > 100+refill || s.lastRetryAfter == "" {
		t.Errorf("/@me refused lookup %d (Retry-After %q); want the 100th refused after the budget of 100 (or up to %d more refilled)", n, s.lastRetryAfter, refill)
	}
	t.Logf("/@me: %d lookups, then 429 (Retry-After %s s)", n, s.lastRetryAfter)
	s.stop(t)
}

// login opens a session for client and returns its cookie.
func login(t *testing.T, s *server, client, secret string) *http.Cookie {
	t.Helper()
	resp, err := http.Post("http://"+s.addrs["auth"]+"/login", "application/json",
		strings.NewReader(`{"bank_coordinates":"`+client+`","secret":"`+secret+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(resp.Cookies()) != 1 {
		t.Fatalf("POST /login as %s = %d with %d cookies", client, resp.StatusCode, len(resp.Cookies()))
	}
	return resp.Cookies()[0]
}

// clientHandle tokenizes pan on the auth listener's convergent /handle.
func (s *server) clientHandle(t *testing.T, cookie *http.Cookie, pan string) string {
	t.Helper()
	status, body := s.postJSON(t, "auth", "/handle", cookie, `{"pan_number":"`+pan+`"}`)
	var out struct{ Token string }
	if status != 200 || json.Unmarshal(body, &out) != nil || out.Token == "" {
		t.Fatalf("POST /handle (auth) = %d %s", status, body)
	}
	return out.Token
}

// handleBatch sends pans to listener's /handle in one request and returns
// the tokens.
func (s *server) handleBatch(t *testing.T, listener string, cookie *http.Cookie, pans []string) []string {
	t.Helper()
	status, body := s.postJSON(t, listener, "/handle", cookie, batchBody(pans))
	var out struct{ Tokens []string }
	if status != 200 || json.Unmarshal(body, &out) != nil || len(out.Tokens) != len(pans) {
		t.Fatalf("POST /handle (%s) with %d values = %d %.300s", listener, len(pans), status, body)
	}
	return out.Tokens
}

func batchBody(pans []string) string {
	b, _ := json.Marshal(map[string][]string{"pan_numbers": pans})
	return string(b)
}

// postJSON posts body to listener, with cookie if set, and returns the
// status and body; Retry-After is kept in s.lastRetryAfter.
func (s *server) postJSON(t *testing.T, listener, path string, cookie *http.Cookie, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+s.addrs[listener]+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	return s.do(t, req, cookie)
}

// get2 is a GET on listener with cookie, returning status and body.
func (s *server) get2(t *testing.T, listener, path string, cookie *http.Cookie) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+s.addrs[listener]+path, nil)
	return s.do(t, req, cookie)
}

func (s *server) getMetrics(t *testing.T) (int, string) {
	t.Helper()
	status, body := s.get2(t, "admin", "/metrics", nil)
	return status, string(body)
}

func (s *server) do(t *testing.T, req *http.Request, cookie *http.Cookie) (int, []byte) {
	t.Helper()
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	s.lastRetryAfter = resp.Header.Get("Retry-After")
	return resp.StatusCode, b
}
