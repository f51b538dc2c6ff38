package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokproxy/tok/proxy/rewrite"
	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/memory"
)

// TestBoundCVCEgress is the egress side of bound fields: a bound CVC token reveals
// only with the card token it was bound to. A CVC token sent with another
// card's token, or alone, reaches the provider never.
func TestBoundCVCEgress(t *testing.T) {
	e := newEgressEnv(t, nil, nil)
	cardA, cvcA := e.checkout(t, panVisa, "737")
	cardB, cvcB := e.checkout(t, panMC, "123")
	for cvcB == cvcA { // the test needs B's CVC token to be one A has not
		cardB, cvcB = e.checkout(t, panMC, "123")
	}
	key := []string{EgressKeyHeader, egressKey}
	pay := func(body string) response {
		return e.pay(t, "/psp/v1/charges", "application/x-www-form-urlencoded", body, key...)
	}
	if r := pay("card[number]=" + cardA + "&card[cvc]=" + cvcA); r.StatusCode != 200 {
		t.Fatalf("paying with A's card and CVC tokens = %d %s", r.StatusCode, r.body)
	}
	if got, want := string(e.psp.got()[0].Body), "card[number]="+panVisa+"&card[cvc]=737"; got != want {
		t.Errorf("provider got %q, want %q", maskAll([]string{got}), maskAll([]string{want}))
	}
	// The bound CVC may come first in the body: pairing is by field.
	if r := pay("card[cvc]=" + cvcB + "&card[number]=" + cardB); r.StatusCode != 200 {
		t.Fatalf("paying with B's tokens, CVC first = %d %s", r.StatusCode, r.body)
	}
	if got, want := string(e.psp.got()[1].Body), "card[cvc]=123&card[number]="+panMC; got != want {
		t.Errorf("provider got %q, want %q", maskAll([]string{got}), maskAll([]string{want}))
	}
	refusals := []struct{ name, body, code string }{
		{"A's card with B's CVC token", "card[number]=" + cardA + "&card[cvc]=" + cvcB, "unknown_token"},
		{"the CVC token alone", "card[cvc]=" + cvcA, "unbound_value"},
		{"the CVC token twice bound to two cards", "card[number]=" + cardA + "&card[number]=" + cardB + "&card[cvc]=" + cvcA, "unbound_value"},
	}
	for _, tt := range refusals {
		n := len(e.psp.got())
		r := pay(tt.body)
		if r.StatusCode != 422 && r.StatusCode != 400 || !strings.Contains(string(r.body), tt.code) {
			t.Errorf("%s: egress = %d %s; want a refusal %s", tt.name, r.StatusCode, r.body, tt.code)
		}
		if len(e.psp.got()) != n {
			t.Errorf("%s: the provider received the request", tt.name)
		}
	}
	// A JSON number CVC token, as an app that stores CVCs as numbers sends it.
	body := `{"source":{"card":{"number":"` + cardA + `","cvc":` + cvcA + `}}}`
	if cvcA[0] == '0' {
		body = `{"source":{"card":{"number":"` + cardA + `","cvc":"` + cvcA + `"}}}`
	}
	if r := e.pay(t, "/psp/v1/charges", "application/json", body, key...); r.StatusCode != 200 {
		t.Fatalf("JSON pay = %d %s", r.StatusCode, r.body)
	}
	if audit := e.audit.String(); !strings.Contains(audit, `"bound_to":"`+cardA+`"`) {
		t.Errorf("the audit log does not name the card token a CVC was revealed with")
	}
}

// TestUnboundShortTokenEgress: on a field without bind, a short token (an
// unbound CVC, or a guess) is refused before the provider, whatever the
// volatile store holds.
func TestUnboundShortTokenEgress(t *testing.T) {
	e := newEgressEnv(t, nil, func(r *EgressRoute) { r.Fields[1].Bind = "" })
	card, cvc := e.checkout(t, panVisa, "737")
	r := e.pay(t, "/psp/v1", "application/x-www-form-urlencoded", "card[number]="+card+"&card[cvc]="+cvc, EgressKeyHeader, egressKey)
	if r.StatusCode != 422 || !strings.Contains(string(r.body), "unbound_token") {
		t.Errorf("short token at an unbound field = %d %s; want 422 unbound_token", r.StatusCode, r.body)
	}
	if n := len(e.psp.got()); n != 0 {
		t.Errorf("the provider received %d requests", n)
	}
}

// TestBoundCVCInbound: a CVC is stored only with the card it came with; a
// CVC without its card is refused before the app, and cards in a list are
// paired with the CVC at their own position.
func TestBoundCVCInbound(t *testing.T) {
	cvc := vault.Spec{Format: vault.FormatDigits, Volatile: true, TTL: time.Minute, Bound: true}
	e := newInboundEnv(t, inboundConfig{opts: func(o *Options) {
		o.Routes = append(o.Routes, Route{Name: "cart", Method: "POST", Path: "/cart", Fields: []RouteField{
			{JSON: "items.#.card.cvc", Spec: cvc, Bind: "items.#.card.number"},
			{JSON: "items.#.card.number"},
			{Form: "card[cvc]", Spec: cvc, Bind: "card[number]"},
			{Form: "card[number]"},
		}})
	}})
	for _, tt := range []struct{ path, ct, body string }{
		{"/checkout", "application/json", `{"card":{"cvc":"737"}}`},
		{"/checkout", "application/json", `{"card":{"cvc":"737"},"items":[{"card":{"number":"` + panVisa + `"}}]}`},
		{"/cart", "application/x-www-form-urlencoded", "card[cvc]=737"},
		// Two cards and one CVC at neither's position.
		{"/cart", "application/json", `{"items":[{"card":{"number":"` + panVisa + `"}},{"card":{"number":"` + panMC + `"}},{"card":{"cvc":"737"}}]}`},
	} {
		n := e.up.count()
		r := e.send("POST", tt.path, tt.ct, []byte(tt.body))
		if r.StatusCode != 422 || !strings.Contains(string(r.body), "unbound_value") {
			t.Errorf("POST %s %s = %d %s; want 422 unbound_value", tt.path, tt.body, r.StatusCode, r.body)
		}
		if e.up.count() != n {
			t.Errorf("POST %s %s reached the app", tt.path, tt.body)
		}
	}
	body := `{"items":[{"card":{"cvc":"111","number":"` + panVisa + `"}},{"card":{"number":"` + panMC + `","cvc":"2222"}}]}`
	if r := e.send("POST", "/cart", "application/json", []byte(body)); r.StatusCode != 200 {
		t.Fatalf("cart = %d %s", r.StatusCode, r.body)
	}
	var got struct {
		Items []struct{ Card struct{ Number, CVC string } }
	}
	if err := json.Unmarshal(e.up.since(e.up.count() - 1)[0].Body, &got); err != nil || len(got.Items) != 2 {
		t.Fatalf("the app got %v, %v", got, err)
	}
	for i, want := range []string{"111", "2222"} {
		it := got.Items[i].Card
		rv, err := e.vault.RevealBound(t.Context(), it.Number, it.CVC)
		if err != nil || rv.Value != want || len(it.CVC) != len(want) {
			t.Errorf("item %d: CVC token %q with its card's token reveals %q, %v; want %s", i, it.CVC, rv.Value, err, want)
		}
	}
}

func TestBindings(t *testing.T) {
	good := []RouteField{{JSON: "card.number"}, {JSON: "card.cvc", Bind: "card.number"}, {Form: "card[cvc]", Bind: "card[number]"}, {Form: "card[number]"}}
	to, err := bindings(good)
	if err != nil || !slices.Equal(to, []int{-1, 0, 3, -1}) {
		t.Errorf("bindings(good) = %v, %v; want [-1 0 3 -1]", to, err)
	}
	for _, bad := range [][]RouteField{
		{{JSON: "card.cvc", Bind: "card.number"}},
		{{JSON: "card.cvc", Bind: "card.cvc"}},
		{{Form: "card.number"}, {JSON: "card.cvc", Bind: "card.number"}}, // another kind
		{{JSON: "a", Bind: "b"}, {JSON: "b", Bind: "c"}, {JSON: "c"}},
	} {
		if _, err := bindings(bad); err == nil {
			t.Errorf("bindings(%v) succeeded", bad)
		}
	}
	for path, want := range map[string][]string{
		"items.2.card.cvc": {"2"}, "items[2][cvc]": {"2"}, "a.10.b.3": {"10", "3"}, "card.cvc": nil, "card[cvc]": nil,
	} {
		if got := positions(path); !slices.Equal(got, want) {
			t.Errorf("positions(%q) = %q, want %q", path, got, want)
		}
	}
	// A bound field without its card in the batch, and a guard hit (which
	// is never paired).
	vals := []rewrite.Value{{Field: 1, Spec: 1, Path: "card.cvc"}, {Field: -1, Spec: -1, Path: "note"}}
	if _, err := pairBound(vals, []int{-1, 0}); err == nil {
		t.Error("pairBound without the card succeeded")
	}
	vals = append(vals, rewrite.Value{Field: 0, Spec: 0, Path: "card.number"})
	if pair, err := pairBound(vals, []int{-1, 0}); err != nil || !slices.Equal(pair, []int{2, -1, -1}) {
		t.Errorf("pairBound = %v, %v; want [2 -1 -1]", pair, err)
	}
}

// TestTokenSpaceExhausted: an unbound 3-digit field that runs out of tokens
// answers its own code and 507, not vault_unavailable.
func TestTokenSpaceExhausted(t *testing.T) {
	e := newInboundEnv(t, inboundConfig{opts: func(o *Options) {
		o.Routes = []Route{{Name: "pin", Method: "POST", Path: "/pin", Fields: []RouteField{
			{JSON: "pin", Spec: vault.Spec{Format: vault.FormatDigits, Volatile: true, TTL: time.Hour}},
		}}}
	}})
	var r response
	for i := range 1000 {
		r = e.send("POST", "/pin", "application/json", fmt.Appendf(nil, `{"pin":"%03d"}`, 100+i%900))
		if r.StatusCode != 200 {
			break
		}
	}
	if r.StatusCode != 507 || !strings.Contains(string(r.body), `"token_space_exhausted"`) {
		t.Errorf("after filling the 3-digit space: %d %s; want 507 token_space_exhausted", r.StatusCode, r.body)
	}
}

// TestMeBound: /@me looks a CVC up only with its card token, and DELETE
// /@me with the card token erases the card's CVCs with it.
func TestMeBound(t *testing.T) {
	durable, volatile := memory.New(), memory.New()
	t.Cleanup(func() { durable.Close(); volatile.Close() })
	keys, err := vault.NewKeyring(vault.NewKeyringFile())
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.New(durable, keys, vault.WithVolatile(volatile))
	if err != nil {
		t.Fatal(err)
	}
	e := newTestEnv(t, durable, func(o *Options) {
		o.Vault, o.Volatile = v, volatile
		o.Clients[0].Delete = true
	})
	cvc := vault.Spec{Format: vault.FormatDigits, Volatile: true, TTL: time.Minute, Bound: true}
	toks, err := v.Tokenize(t.Context(), []vault.Request{{Value: panVisa}, {Value: "737", Spec: cvc, BindTo: 0}})
	if err != nil {
		t.Fatal(err)
	}
	card, cvcTok := toks[0], toks[1]
	c := e.login("cih")
	r := do(t, c, "GET", e.auth.URL+"/@me?token="+card+"&bound="+cvcTok, "", "")
	m := r.json(t)
	if r.StatusCode != 200 || m["pan"] != "737" || m["token"] != cvcTok || m["bound_to"] != card || m["masked_pan"] != "***" {
		t.Errorf("GET /@me bound = %d %s; want the CVC with its card token", r.StatusCode, r.body)
	}
	r = do(t, c, "POST", e.auth.URL+"/@me", "application/json", `{"token":"`+card+`","bound":"`+cvcTok+`"}`)
	if r.StatusCode != 200 || r.json(t)["pan"] != "737" {
		t.Errorf("POST /@me bound = %d %s; want the CVC", r.StatusCode, r.body)
	}
	wantError(t, do(t, c, "GET", e.auth.URL+"/@me?token="+cvcTok, "", ""), 422, "unbound_token")
	if !strings.Contains(e.audit.String(), `"bound_to":"`+card+`"`) {
		t.Error("the audit log does not name the card token of a bound lookup")
	}
	if r := do(t, c, "DELETE", e.auth.URL+"/@me?token="+card, "", ""); r.StatusCode != 200 {
		t.Fatalf("DELETE /@me card = %d %s", r.StatusCode, r.body)
	}
	wantError(t, do(t, c, "GET", e.auth.URL+"/@me?token="+card+"&bound="+cvcTok, "", ""), 404, "token_not_found")
	if n := volatile.Len(); n != 0 {
		t.Errorf("the volatile store holds %d records after the card was deleted, want 0", n)
	}
}

// TestEgressScrubsEchoedCVC: a provider that echoes the CVC it was sent
// hands the app the CVC token back, never the code, at the field's key;
// an amount with the same digits elsewhere is left alone.
func TestEgressScrubsEchoedCVC(t *testing.T) {
	var echo string
	e := newEgressEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", echo)
		cvc := "737" // what it was sent: the echo
		if echo == "application/json" {
			fmt.Fprintf(w, `{"amount":%s,"card":{"cvc":"%s","CVC":%s,"cvc_check":"pass"},"id":"ch_%s"}`, cvc, cvc, cvc, cvc)
			return
		}
		fmt.Fprintf(w, "amount=%s&card%%5Bcvc%%5D=%s&id=ch_%s", cvc, cvc, cvc)
	}, nil)
	card, cvcTok := e.checkout(t, panVisa, "737")
	for _, ct := range []string{"application/json", "application/x-www-form-urlencoded"} {
		echo = ct
		r := e.pay(t, "/psp/v1", "application/x-www-form-urlencoded", "card[number]="+card+"&card[cvc]="+cvcTok, EgressKeyHeader, egressKey)
		want := `{"amount":737,"card":{"cvc":"` + cvcTok + `","CVC":` + cvcTok + `,"cvc_check":"pass"},"id":"ch_737"}`
		if ct != "application/json" {
			want = "amount=737&card%5Bcvc%5D=" + cvcTok + "&id=ch_737"
		}
		if cvcTok[0] == '0' {
			want = strings.Replace(want, `"CVC":`+cvcTok, `"CVC":"`+cvcTok+`"`, 1)
		}
		if r.StatusCode != 200 || string(r.body) != want {
			t.Errorf("%s: the app got %d %s, want %s", ct, r.StatusCode, r.body, want)
		}
		if got := e.psp.got(); !strings.Contains(string(got[len(got)-1].Body), "card[cvc]=737") {
			t.Errorf("%s: the provider got %q, want the CVC", ct, got[len(got)-1].Body)
		}
	}
}
