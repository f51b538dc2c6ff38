package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stripe/stripe-go/v82"

	"github.com/tokproxy/tok/examples/internal/freeport"
	"github.com/tokproxy/tok/vault"
)

// TestEgressStripeSDKBinary is one SDK flow through the built binary, as
// the README's Stripe set-up writes it: stripe-go calls a Host route with
// the egress key as its API key (egress_key_header: authorization-bearer),
// tok reveals the card token and sends the provider its own secret; the
// answer's Luhn-valid network transaction id (response_ignore) and a
// Luhn-valid Amex-range id of a network the route does not take
// (response_cards) reach the app unchanged, while a Visa number echoed in
// the answer is tokenized with a WARN naming route, path and reason. A
// wrong API key is Stripe's 401, sent once, and never reaches the
// provider.
func TestEgressStripeSDKBinary(t *testing.T) {
	const (
		egressKey = "sk_test_e2e_egress_key"
		secret    = "sk_live_e2e_provider_secret"
		nti       = "4839312345678914" // Luhn-valid, Visa prefix and length
		amexLike  = "378282246310005"  // Luhn-valid, in Amex's range
		echoed    = "4012888888881881" // a Visa card number in the answer
		panTest   = "4111111111111111" // the card the shop collects
	)
	dir := t.TempDir()
	keyring := newKeyring(t, dir)
	shop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.Copy(w, r.Body)
	}))
	t.Cleanup(shop.Close)
	var mu sync.Mutex
	var got []*http.Request
	var bodies []url.Values
	psp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		mu.Lock()
		got, bodies = append(got, r), append(bodies, r.PostForm)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"pi_1","object":"payment_intent","status":"succeeded","amount":4999,"currency":"eur",`+
			`"metadata":{"acquirer_ref":%q,"note":%q},"latest_charge":{"id":"ch_1","object":"charge",`+
			`"payment_method_details":{"type":"card","card":{"last4":"1111","network_transaction_id":%q}}}}`, amexLike, echoed, nti)
	}))
	t.Cleanup(psp.Close)
	egressAddr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	cfg := writeFile(t, dir, "tok.yaml", fmt.Sprintf(`listen: {public: "127.0.0.1:0", auth: "127.0.0.1:0", admin: "127.0.0.1:0", egress: %q}
vault: {bolt: %q, keyring: %q}
audit: {path: %q}
upstream: %s
inbound:
  - name: checkout
    match: {method: POST, path: /checkout}
    fields: [{json: card.number}]
egress:
  - name: stripe
    match: {host: stripe.egress.internal}
    upstream: %s
    error_format: stripe
    egress_key: env:TOK_STRIPE_EGRESS_KEY
    egress_key_header: authorization-bearer
    headers: {Authorization: "Bearer {env:STRIPE_SECRET}"}
    response_ignore: [latest_charge.payment_method_details.card.network_transaction_id]
    response_cards: {networks: [visa, mastercard]}
    fields:
      - form: payment_method_data[card][number]
`, egressAddr, filepath.Join(dir, "tok.db"), keyring, filepath.Join(dir, "audit.log"), shop.URL, psp.URL))
	s := startTok(t, dir, cfg, "TOK_STRIPE_EGRESS_KEY="+egressKey, "STRIPE_SECRET="+secret)

	resp, err := http.Post("http://"+s.addrs["public"]+"/checkout", "application/json", strings.NewReader(`{"card":{"number":"`+panTest+`"}}`))
	if err != nil {
		t.Fatal(err)
	}
	var co struct{ Card struct{ Number string } }
	json.NewDecoder(resp.Body).Decode(&co)
	resp.Body.Close()
	if resp.StatusCode != 200 || co.Card.Number == panTest || co.Card.Number == "" {
		t.Fatalf("checkout = %d, token %s", resp.StatusCode, vault.Mask(co.Card.Number))
	}

	// stripe-go as the app configures it: its API key is the egress key,
	// its base URL the Host route (the dialer stands in for DNS).
	requests := 0
	client := func(apiKey string) *stripe.Client {
		d := &net.Dialer{}
		tr := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			requests++
			return d.DialContext(ctx, network, egressAddr)
		}, DisableKeepAlives: true}
		base := "http://stripe.egress.internal:8081"
		b := stripe.NewBackendsWithConfig(&stripe.BackendConfig{URL: &base, HTTPClient: &http.Client{Transport: tr},
			LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull}})
		return stripe.NewClient(apiKey, stripe.WithBackends(b))
	}
	pay := func(apiKey string) (*stripe.PaymentIntent, error) {
		p := &stripe.PaymentIntentCreateParams{Amount: stripe.Int64(4999), Currency: stripe.String("eur"), Confirm: stripe.Bool(true),
			PaymentMethodData: &stripe.PaymentIntentCreatePaymentMethodDataParams{Type: stripe.String("card")}}
		p.AddExtra("payment_method_data[card][number]", co.Card.Number)
		p.SetIdempotencyKey("order-e2e")
		return client(apiKey).V1PaymentIntents.Create(t.Context(), p)
	}
	pi, err := pay(egressKey)
	if err != nil || pi.Status != stripe.PaymentIntentStatusSucceeded {
		t.Fatalf("PaymentIntents.Create = %+v, %v", pi, err)
	}
	mu.Lock()
	if len(got) != 1 || bodies[0].Get("payment_method_data[card][number]") != panTest || got[0].Header.Get("Authorization") != "Bearer "+secret {
		t.Errorf("provider got %d requests, Authorization %q; want one with the card and tok's secret", len(got), got[0].Header.Get("Authorization"))
	}
	mu.Unlock()
	if c := pi.LatestCharge.PaymentMethodDetails.Card; c.NetworkTransactionID != nti {
		t.Errorf("network_transaction_id = %q, want it unchanged (response_ignore)", c.NetworkTransactionID)
	}
	if pi.Metadata["acquirer_ref"] != amexLike {
		t.Errorf("metadata.acquirer_ref = %q, want it unchanged (response_cards takes no Amex)", pi.Metadata["acquirer_ref"])
	}
	if n := pi.Metadata["note"]; n == echoed || len(n) != len(echoed) || n[:6] != echoed[:6] {
		t.Errorf("metadata.note = %s, want a token in its place", vault.Mask(n))
	}
	warn := s.waitFor(t, "egress response guard changed a value of the provider's answer")
	if warn["level"] != "WARN" || warn["route"] != "stripe" || warn["path"] != "metadata.note" || !strings.Contains(fmt.Sprint(warn["reason"]), "visa") {
		t.Errorf("guard log line = %v, want a WARN naming route stripe, path metadata.note and a visa reason", warn)
	}

	// A wrong key: Stripe's 401, one request, none at the provider.
	requests = 0
	_, err = pay("sk_live_guessed")
	var se *stripe.Error
	if !errors.As(err, &se) || se.HTTPStatusCode != 401 || se.Code != "invalid_egress_key" || requests != 1 {
		t.Errorf("wrong API key: %v after %d requests, want one 401 invalid_egress_key", err, requests)
	}
	mu.Lock()
	if len(got) != 1 {
		t.Errorf("the provider got %d requests, want 1", len(got))
	}
	mu.Unlock()
	s.stop(t)
}
