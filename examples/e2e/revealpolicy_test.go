package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/tokproxy/tok/examples/internal/freeport"
	"github.com/tokproxy/tok/vault"
)

// revealCheckout is an inbound checkout route whose card field seals a
// reveal policy into its tokens: through the stripe egress route or /@me,
// twice, for a day.
const revealCheckout = `inbound:
  - name: checkout
    match: {method: POST, path: /checkout}
    fields:
      - json: card.number
        unique: true
        reveal_to: [stripe, "@me"]
        max_reveals: 2
        reveal_window: 24h
`

// TestRevealPolicy runs a per-token reveal policy through the binary: a
// checkout through an inbound route whose card field has reveal_to
// [stripe, "@me"] and max_reveals 2; payments through the stripe route
// work twice, with a restart of tok between them (the count is on disk),
// then are refused with 422 token_reveals_exhausted; the adyen route is
// refused with 422 token_reveal_not_allowed; no refused payment reaches a
// provider; and /@me shows the policy with its count.
func TestRevealPolicy(t *testing.T) {
	dir := t.TempDir()
	keyring := newKeyring(t, dir)
	shop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", r.Header.Get("Content-Type"))
		io.Copy(w, r.Body)
	}))
	t.Cleanup(shop.Close)
	provider := func(n *atomic.Int64) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"status":"succeeded"}`)
		}))
		t.Cleanup(s.Close)
		return s
	}
	var stripeN, adyenN atomic.Int64
	stripe, adyen := provider(&stripeN), provider(&adyenN)
	egressAddr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	const secret = "reveal-policy-secret"
	hash, err := bcrypt.GenerateFromPassword([]byte(secret), 10)
	if err != nil {
		t.Fatal(err)
	}
	cfg := writeFile(t, dir, "tok.yaml", fmt.Sprintf(`listen: {public: "127.0.0.1:0", auth: "127.0.0.1:0", admin: "127.0.0.1:0", egress: %q}
vault: {bolt: %q, keyring: %q}
audit: {path: %q}
clients:
  - {name: cih, secret_hash: %q, reveal: true}
  - {name: viewer, secret_hash: %q}
upstream: %s
`+revealCheckout+`egress:
  - name: stripe
    match: {method: POST, path: /stripe/*}
    upstream: %s
    strip_prefix: /stripe
    error_format: stripe
    fields: [{json: source.card.number}]
  - name: adyen
    match: {method: POST, path: /adyen/*}
    upstream: %s
    strip_prefix: /adyen
    fields: [{json: source.card.number}]
`, egressAddr, filepath.Join(dir, "tok.db"), keyring, filepath.Join(dir, "audit.log"), hash, hash, shop.URL, stripe.URL, adyen.URL))
	if code, out, errOut := tok(t, dir, "", "check", "-config", cfg); code != 0 {
		t.Fatalf("tok check: %s%s", out, errOut)
	}

	s := startTok(t, dir, cfg)
	post := func(url, body string) (int, string) {
		t.Helper()
		resp, err := http.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := post("http://"+s.addrs["public"]+"/checkout", `{"card":{"number":"`+testPAN+`"},"amount":100}`)
	var got struct{ Card struct{ Number string } }
	if code != 200 || json.Unmarshal([]byte(body), &got) != nil || got.Card.Number == testPAN || !vault.ValidToken(got.Card.Number) {
		t.Fatalf("checkout = %d %s, want the card's token", code, body)
	}
	token := got.Card.Number
	pay := func(route string) (int, string) {
		t.Helper()
		return post("http://"+egressAddr+"/"+route+"/v1/charges", `{"source":{"card":{"number":"`+token+`"}},"amount":100}`)
	}
	if code, body := pay("stripe"); code != 200 {
		t.Fatalf("first payment through stripe = %d %s, want 200", code, body)
	}

	// The count is durable: a restarted tok still knows one reveal is spent.
	s.stop(t)
	s = startTok(t, dir, cfg)
	viewer := s.login(t, "viewer", secret)
	if policy := mePolicy(t, s, viewer, token); policy.Reveals == nil || *policy.Reveals != 1 || policy.MaxReveals != 2 ||
		strings.Join(policy.RevealTo, ",") != "@me,stripe" {
		t.Errorf("/@me reveal_policy after a restart = %+v, want reveal_to [@me stripe], max_reveals 2, reveals 1", policy)
	}
	if code, body := pay("stripe"); code != 200 {
		t.Fatalf("second payment through stripe = %d %s, want 200", code, body)
	}
	if code, body := pay("stripe"); code != 422 || !strings.Contains(body, `"token_reveals_exhausted"`) {
		t.Errorf("third payment through stripe = %d %s, want 422 token_reveals_exhausted", code, body)
	}
	if code, body := pay("adyen"); code != 422 || !strings.Contains(body, `"token_reveal_not_allowed"`) {
		t.Errorf("payment through adyen = %d %s, want 422 token_reveal_not_allowed", code, body)
	}
	if st, ad := stripeN.Load(), adyenN.Load(); st != 2 || ad != 0 {
		t.Errorf("providers got stripe %d, adyen %d requests; want 2 and 0", st, ad)
	}
	// A full-number reveal through /@me is a reveal too: this token's
	// are spent.
	if code, pan := s.reveal(t, s.login(t, "cih", secret), token); code != 422 || pan != "" {
		t.Errorf("GET /@me as a reveal client = %d (card shown: %t), want 422 and no card", code, pan != "")
	}
	s.stop(t)

	// tok export carries the policy and the count so far, for the
	// receiving vault to keep enforcing them.
	exp, opened := exportVault(t, dir, cfg)
	if opened[token] != testPAN {
		t.Errorf("the export does not open to the card under its token %s", token)
	}
	b, err := os.ReadFile(exp)
	if err != nil {
		t.Fatal(err)
	}
	var line struct {
		Token        string        `json:"token"`
		RevealPolicy *revealPolicy `json:"reveal_policy"`
	}
	for _, l := range strings.Split(string(b), "\n") {
		if json.Unmarshal([]byte(l), &line) == nil && line.Token == token {
			break
		}
	}
	if p := line.RevealPolicy; line.Token != token || p == nil || p.Reveals == nil || *p.Reveals != 2 || p.MaxReveals != 2 ||
		strings.Join(p.RevealTo, ",") != "@me,stripe" || p.RevealUntil == "" {
		t.Errorf("the export's line for the token = %+v (policy %+v), want reveal_to [@me stripe], max_reveals 2, reveals 2, a reveal_until", line, line.RevealPolicy)
	}
}

// revealPolicy is the reveal_policy of a /@me answer.
type revealPolicy struct {
	RevealTo    []string `json:"reveal_to"`
	MaxReveals  uint32   `json:"max_reveals"`
	Reveals     *uint32  `json:"reveals"`
	RevealUntil string   `json:"reveal_until"`
}

// mePolicy returns the reveal_policy /@me shows for token (zero if none).
func mePolicy(t *testing.T, s *server, cookie *http.Cookie, token string) revealPolicy {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+s.addrs["auth"]+"/@me?token="+token, nil)
	req.AddCookie(cookie)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var me struct {
		RevealPolicy revealPolicy `json:"reveal_policy"`
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || json.Unmarshal(b, &me) != nil {
		t.Fatalf("GET /@me = %d %s", resp.StatusCode, b)
	}
	return me.RevealPolicy
}
