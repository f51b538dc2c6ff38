package proxy

import (
	"context"
	"crypto/x509"
	"net"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokproxy/tok/vault"
)

// policyEnv is an egress env with three routes to one provider stand-in:
// psp (plain refusals), other (Stripe's envelope) and down, whose upstream
// refuses connections.
func newPolicyEnv(t *testing.T) *egressEnv {
	t.Helper()
	p := newPSP(t, nil)
	roots := x509.NewCertPool()
	roots.AddCert(p.Certificate())
	// A port nobody listens on: a listener opened and closed.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL, _ := url.Parse("https://" + l.Addr().String())
	l.Close()
	route := func(name string, up *url.URL) EgressRoute {
		return EgressRoute{Name: name, Method: "POST", Path: "/" + name + "/*", Upstream: up, StripPrefix: "/" + name,
			RootCAs: roots, Fields: []RouteField{{JSON: "source.card.number"}}}
	}
	u, _ := url.Parse(p.URL + "/base")
	other := route("other", u)
	other.ErrorFormat = ErrorFormatStripe
	routes := []EgressRoute{route("psp", u), other, route("down", deadURL)}
	ie := newInboundEnv(t, inboundConfig{opts: func(o *Options) { o.Egress = routes }})
	e := &egressEnv{inboundEnv: ie, psp: p, egress: httptest.NewServer(ie.srv.EgressHandler())}
	t.Cleanup(e.egress.Close)
	return e
}

// policyToken tokenizes pan under spec in e's vault.
func policyToken(t *testing.T, v *vault.Vault, pan string, spec vault.Spec) string {
	t.Helper()
	toks, err := v.Tokenize(context.Background(), []vault.Request{{Value: pan, Spec: spec}})
	if err != nil {
		t.Fatal(err)
	}
	return toks[0]
}

// reveals returns tok's reveal count.
func reveals(t *testing.T, v *vault.Vault, tok string) uint32 {
	t.Helper()
	rec, err := v.Lookup(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	n, err := v.Reveals(context.Background(), rec)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestEgressRevealPolicy pays through the routes a token is bound to and
// others: allowed reveals reach the provider until max_reveals, every
// refusal is a 422 with its code in the route's error format and sends
// the provider nothing, and an audit line names the refusal.
func TestEgressRevealPolicy(t *testing.T) {
	e := newPolicyEnv(t)
	tok := policyToken(t, e.vault, panVisa, vault.Spec{Unique: true, RevealTo: []string{"psp"}, MaxReveals: 2})
	body := `{"source":{"card":{"number":"` + tok + `"}},"amount":100}`
	for i := range 2 {
		if r := e.pay(t, "/psp/v1/charges", "application/json", body); r.StatusCode != 200 {
			t.Fatalf("payment %d through psp = %d %s, want 200", i+1, r.StatusCode, r.body)
		}
	}
	if n := len(e.psp.got()); n != 2 {
		t.Fatalf("provider got %d requests, want 2", n)
	}
	r := e.pay(t, "/psp/v1/charges", "application/json", body)
	wantError(t, r, 422, CodeRevealsExhausted)
	if got := r.Header.Get(TokErrorHeader); got != CodeRevealsExhausted {
		t.Errorf("%s = %q, want %q", TokErrorHeader, got, CodeRevealsExhausted)
	}

	// Another route: refused in that route's format (Stripe's), before the
	// count is looked at.
	fresh := policyToken(t, e.vault, panVisa, vault.Spec{Unique: true, RevealTo: []string{"psp"}, MaxReveals: 2})
	r = e.pay(t, "/other/v1/charges", "application/json", `{"source":{"card":{"number":"`+fresh+`"}}}`)
	if r.StatusCode != 422 || r.Header.Get(TokErrorHeader) != CodeRevealNotAllowed || !strings.Contains(string(r.body), `"code":"`+CodeRevealNotAllowed+`"`) {
		t.Errorf("payment through other = %d %s %s, want 422 with %s in Stripe's envelope", r.StatusCode, r.Header.Get(TokErrorHeader), r.body, CodeRevealNotAllowed)
	}
	if n := reveals(t, e.vault, fresh); n != 0 {
		t.Errorf("reveals after a refused route = %d, want 0", n)
	}
	if n := len(e.psp.got()); n != 2 {
		t.Errorf("provider got %d requests after the refusals, want still 2", n)
	}
	audit := e.audit.String()
	for _, code := range []string{CodeRevealsExhausted, CodeRevealNotAllowed} {
		if !strings.Contains(audit, `"outcome":"`+code+`"`) {
			t.Errorf("the audit log has no egress_reveal line with outcome %s:\n%s", code, audit)
		}
	}
}

// TestEgressRevealGivenBack checks that a reveal whose request never left
// tok is not spent: the provider cannot be reached (no connection), so
// the count is given back and the token still pays once elsewhere.
func TestEgressRevealGivenBack(t *testing.T) {
	e := newPolicyEnv(t)
	tok := policyToken(t, e.vault, panVisa, vault.Spec{Unique: true, RevealTo: []string{"psp", "down"}, MaxReveals: 1})
	body := `{"source":{"card":{"number":"` + tok + `"}}}`
	r := e.pay(t, "/down/v1/charges", "application/json", body)
	wantError(t, r, 502, CodeUpstreamUnavailable)
	if n := reveals(t, e.vault, tok); n != 0 {
		t.Fatalf("reveals after an unreachable provider = %d, want 0 (given back)", n)
	}
	if r := e.pay(t, "/psp/v1/charges", "application/json", body); r.StatusCode != 200 {
		t.Fatalf("payment through psp = %d %s, want 200", r.StatusCode, r.body)
	}
	if n := reveals(t, e.vault, tok); n != 1 {
		t.Errorf("reveals after a sent payment = %d, want 1", n)
	}
	wantError(t, e.pay(t, "/psp/v1/charges", "application/json", body), 422, CodeRevealsExhausted)
}

// TestMeRevealPolicy: /@me shows a token's policy to every client, and a
// full-number reveal is a reveal under it as the route "@me": refused
// when reveal_to leaves it out, counted, refused when spent or late.
func TestMeRevealPolicy(t *testing.T) {
	e := newTestEnv(t, nil)
	cih, viewer := e.login("cih"), e.login("viewer")
	tok := policyToken(t, e.vault, seedPAN, vault.Spec{Unique: true, RevealTo: []string{vault.RevealToMe, "psp"}, MaxReveals: 1, RevealWindow: time.Hour})
	until := e.clock.Now().Add(time.Hour).UTC().Format(time.RFC3339)

	r := do(t, viewer, "GET", e.auth.URL+"/@me?token="+tok, "", "")
	if r.StatusCode != 200 {
		t.Fatalf("masked lookup = %d %s", r.StatusCode, r.body)
	}
	p, _ := r.json(t)["reveal_policy"].(map[string]any)
	if p == nil || p["max_reveals"] != 1.0 || p["reveals"] != 0.0 || p["reveal_until"] != until ||
		len(p["reveal_to"].([]any)) != 2 {
		t.Errorf("masked lookup reveal_policy = %v, want reveal_to [@me psp], max_reveals 1, reveals 0, reveal_until %s", p, until)
	}
	r = do(t, cih, "GET", e.auth.URL+"/@me?token="+tok, "", "")
	if m := r.json(t); r.StatusCode != 200 || m["pan"] != seedPAN {
		t.Fatalf("reveal = %d %s", r.StatusCode, r.body)
	} else if p, _ := m["reveal_policy"].(map[string]any); p == nil || p["reveals"] != 1.0 {
		t.Errorf("reveal's reveal_policy = %v, want reveals 1", p)
	}
	wantError(t, do(t, cih, "GET", e.auth.URL+"/@me?token="+tok, "", ""), 422, CodeRevealsExhausted)

	other := policyToken(t, e.vault, seedPAN, vault.Spec{Unique: true, RevealTo: []string{"psp"}})
	wantError(t, do(t, cih, "GET", e.auth.URL+"/@me?token="+other, "", ""), 422, CodeRevealNotAllowed)

	late := policyToken(t, e.vault, seedPAN, vault.Spec{Unique: true, RevealWindow: time.Minute})
	e.clock.Advance(time.Minute)
	wantError(t, do(t, cih, "GET", e.auth.URL+"/@me?token="+late, "", ""), 422, CodeRevealWindowClosed)
	// The masked lookup still answers, and says why a reveal would not.
	if r := do(t, viewer, "GET", e.auth.URL+"/@me?token="+late, "", ""); r.StatusCode != 200 {
		t.Errorf("masked lookup of a closed token = %d %s, want 200", r.StatusCode, r.body)
	}
	// A token without a policy shows none.
	plain := policyToken(t, e.vault, seedPAN, vault.Spec{Unique: true})
	if m := do(t, cih, "GET", e.auth.URL+"/@me?token="+plain, "", "").json(t); m["reveal_policy"] != nil {
		t.Errorf("reveal_policy of a token without one = %v, want absent", m["reveal_policy"])
	}
}
