package proxy

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/tokproxy/tok/proxy/internal/httpx"
	"github.com/tokproxy/tok/vault"
)

// newPSP is a payment-provider stand-in: the recording upstream over TLS,
// answering as a provider does unless respond is set.
func newPSP(t *testing.T, respond http.HandlerFunc) *recordingUpstream {
	t.Helper()
	if respond == nil {
		respond = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"id":"pm_1","status":"succeeded"}`)
		}
	}
	return startRecordingUpstream(t, respond, true)
}

// egressEnv is an inbound env (shop in front, volatile store for CVCs)
// plus the egress listener in front of a TLS payment provider.
type egressEnv struct {
	*inboundEnv
	psp    *recordingUpstream
	egress *httptest.Server
}

const egressKey = "k3y-for-the-app"

func newEgressEnv(t *testing.T, respond http.HandlerFunc, mutate func(*EgressRoute)) *egressEnv {
	t.Helper()
	p := newPSP(t, respond)
	u, _ := url.Parse(p.URL + "/base")
	roots := x509.NewCertPool()
	roots.AddCert(p.Certificate())
	route := EgressRoute{
		Name: "psp", Method: "POST", Path: "/psp/*", Upstream: u, StripPrefix: "/psp", RootCAs: roots,
		Fields: []RouteField{{Form: "card[number]"}, {Form: "card[cvc]", Bind: "card[number]"},
			{JSON: "source.card.number"}, {JSON: "source.card.cvc", Bind: "source.card.number"}},
		Headers:   map[string]string{"Authorization": "Bearer sk_live_secret"},
		EgressKey: egressKey,
	}
	if mutate != nil {
		mutate(&route)
	}
	ie := newInboundEnv(t, inboundConfig{opts: func(o *Options) { o.Egress = []EgressRoute{route} }})
	e := &egressEnv{inboundEnv: ie, psp: p, egress: httptest.NewServer(ie.srv.EgressHandler())}
	t.Cleanup(e.egress.Close)
	return e
}

// tokens returns the card number and CVC tokens the shop got for a checkout.
func (e *egressEnv) checkout(t *testing.T, pan, cvc string) (panTok, cvcTok string) {
	t.Helper()
	n := e.up.count()
	r := e.send("POST", "/checkout", "application/json", []byte(`{"card":{"number":"`+pan+`","cvc":"`+cvc+`"}}`))
	if r.StatusCode != 200 {
		t.Fatalf("checkout = %d %s", r.StatusCode, r.body)
	}
	var got struct{ Card struct{ Number, CVC string } }
	if err := json.Unmarshal(e.up.since(n)[0].Body, &got); err != nil {
		t.Fatal(err)
	}
	return got.Card.Number, got.Card.CVC
}

func (e *egressEnv) pay(t *testing.T, path, ct, body string, hdr ...string) response {
	t.Helper()
	return do(t, nil, "POST", e.egress.URL+path, ct, body, hdr...)
}

// TestEgressLoop is the whole loop: card in → token at the app → card at
// the provider, over TLS, byte-exact elsewhere, with the provider's secret
// header added by tok and the CVC revealed from the memory store (twice:
// a retried payment must not fail).
func TestEgressLoop(t *testing.T) {
	e := newEgressEnv(t, nil, nil)
	panTok, cvcTok := e.checkout(t, panVisa, "737")
	if panTok == panVisa || cvcTok == "737" || panTok == "" {
		t.Fatalf("the shop got %s / %s, want tokens", vault.Mask(panTok), cvcTok)
	}
	form := "amount=4999&card%5Bnumber%5D=" + panTok + "&card[cvc]=" + cvcTok + "&currency=eur"
	for attempt := range 2 {
		r := e.pay(t, "/psp/v1/payment_methods?expand=card", "application/x-www-form-urlencoded", form,
			EgressKeyHeader, egressKey, "Authorization", "Bearer from-the-app")
		if r.StatusCode != 200 {
			t.Fatalf("attempt %d: POST egress = %d %s", attempt, r.StatusCode, r.body)
		}
		got := e.psp.got()[attempt]
		want := "amount=4999&card%5Bnumber%5D=" + panVisa + "&card[cvc]=737&currency=eur"
		if string(got.Body) != want {
			t.Errorf("provider got body %q, want %q", maskAll([]string{string(got.Body)}), maskAll([]string{want}))
		}
		if got.Path != "/base/v1/payment_methods" || got.RawQuery != "expand=card" {
			t.Errorf("provider got %s?%s, want /base/v1/payment_methods?expand=card", got.Path, got.RawQuery)
		}
		if got.Header.Get("Authorization") != "Bearer sk_live_secret" || got.Header.Get(EgressKeyHeader) != "" {
			t.Errorf("provider headers: Authorization %q, egress key %q", got.Header.Get("Authorization"), got.Header.Get(EgressKeyHeader))
		}
		if got.ContentLength != int64(len(want)) {
			t.Errorf("provider Content-Length %d, want %d", got.ContentLength, len(want))
		}
	}
	// JSON bodies too, byte-exact around the fields.
	body := "{\n  \"source\": {\"card\": {\"number\": \"" + panTok + "\", \"cvc\": " + cvcTok + "}},\t\"amount\": 1}"
	r := e.pay(t, "/psp/v1/charges", "application/json", body, EgressKeyHeader, egressKey)
	if r.StatusCode != 200 {
		t.Fatalf("JSON egress = %d %s", r.StatusCode, r.body)
	}
	want := strings.NewReplacer(panTok, panVisa, cvcTok, "737").Replace(body)
	if got := string(e.psp.got()[2].Body); got != want {
		t.Errorf("provider got %q, want %q", maskAll([]string{got}), maskAll([]string{want}))
	}
	audit := e.audit.String()
	for _, w := range []string{`"event":"egress_reveal"`, `"route":"psp"`, `"field":"card[number]"`, `"token":"` + panTok + `"`, `"upstream":"` + e.psp.Listener.Addr().String() + `"`, `"outcome":"ok"`} {
		if !strings.Contains(audit, w) {
			t.Errorf("audit log lacks %s", w)
		}
	}
	if strings.Contains(audit, "sk_live_secret") {
		t.Error("the provider secret reached the audit log")
	}
}

// TestEgressRefusals: everything that must not reach the provider doesn't.
func TestEgressRefusals(t *testing.T) {
	e := newEgressEnv(t, nil, nil)
	panTok, _ := e.checkout(t, panVisa, "737")
	key := []string{EgressKeyHeader, egressKey}
	tests := []struct {
		name, path, ct, body string
		hdr                  []string
		status               int
		code                 string
	}{
		{"no route", "/other/v1", "application/x-www-form-urlencoded", "card[number]=" + panTok, key, 404, "no_route"},
		{"no key", "/psp/v1", "application/x-www-form-urlencoded", "card[number]=" + panTok, nil, 401, "invalid_egress_key"},
		{"wrong key", "/psp/v1", "application/x-www-form-urlencoded", "card[number]=" + panTok, []string{EgressKeyHeader, "nope"}, 401, "invalid_egress_key"},
		{"raw card at a field", "/psp/v1", "application/x-www-form-urlencoded", "card[number]=" + panVisa2, key, 422, "not_a_token"},
		{"raw non-Luhn PAN at a field", "/psp/v1", "application/x-www-form-urlencoded", "card[number]=" + seedPAN, key, 422, "unknown_token"},
		{"unknown token", "/psp/v1", "application/x-www-form-urlencoded", "card[number]=4111110000001111", key, 422, "unknown_token"},
		{"malformed token", "/psp/v1", "application/json", `{"source":{"card":{"number":"tok_x"}}}`, key, 422, "invalid_token"},
		{"raw card outside fields", "/psp/v1", "application/x-www-form-urlencoded", "card[number]=" + panTok + "&note=" + panMC, key, 422, "card_number_detected"},
		{"multipart", "/psp/v1", "multipart/form-data; boundary=x", "--x--", key, 415, "unsupported_media_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := len(e.psp.got())
			r := e.pay(t, tt.path, tt.ct, tt.body, tt.hdr...)
			wantError(t, r, tt.status, tt.code)
			if len(e.psp.got()) != n {
				t.Errorf("the provider received a request")
			}
			for _, p := range inboundPANs {
				if strings.Contains(string(r.body), p) {
					t.Errorf("error body echoes %s", vault.Mask(p))
				}
			}
		})
	}
	if !strings.Contains(e.audit.String(), `"outcome":"not_a_token"`) {
		t.Error("refused reveals are not audited")
	}
}

// TestEgressTLSVerified: a provider whose certificate the route does not
// trust is never sent the card.
func TestEgressTLSVerified(t *testing.T) {
	e := newEgressEnv(t, nil, func(r *EgressRoute) { r.RootCAs = x509.NewCertPool() })
	panTok, _ := e.checkout(t, panVisa, "737")
	r := e.pay(t, "/psp/v1", "application/x-www-form-urlencoded", "card[number]="+panTok, EgressKeyHeader, egressKey)
	wantError(t, r, 502, "upstream_tls")
	if len(e.psp.got()) != 0 {
		t.Error("the untrusted provider received the request")
	}
}

// TestEgressResponseGuard: a card number in the provider's answer is
// tokenized before the app sees it.
func TestEgressResponseGuard(t *testing.T) {
	e := newEgressEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"card":{"number":"`+panMC+`","last4":"4444"}}`)
	}, nil)
	panTok, _ := e.checkout(t, panVisa, "737")
	r := e.pay(t, "/psp/v1", "application/x-www-form-urlencoded", "card[number]="+panTok, EgressKeyHeader, egressKey)
	if r.StatusCode != 200 || strings.Contains(string(r.body), panMC) {
		t.Fatalf("response to the app = %d %q, want 200 without the card", r.StatusCode, maskAll([]string{string(r.body)}))
	}
	var got struct{ Card struct{ Number string } }
	json.Unmarshal(r.body, &got)
	rv, err := e.vault.Reveal(t.Context(), got.Card.Number)
	if err != nil || rv.Value != panMC {
		t.Errorf("the response's token reveals %s, %v; want %s", vault.Mask(rv.Value), err, vault.Mask(panMC))
	}
}

// TestEgressResponseUninspectable: a provider answer the guard cannot parse
// strictly (here a trailing comma) is refused with 502, never handed to
// the app with a card number the guard did not see.
func TestEgressResponseUninspectable(t *testing.T) {
	e := newEgressEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"card":{"number":"`+panMC+`"},}`)
	}, nil)
	panTok, _ := e.checkout(t, panVisa, "737")
	r := e.pay(t, "/psp/v1", "application/x-www-form-urlencoded", "card[number]="+panTok, EgressKeyHeader, egressKey)
	wantError(t, r, 502, "response_uninspectable")
	if strings.Contains(string(r.body), panMC) {
		t.Error("the provider's card number reached the app")
	}
}

// TestEgressResponseBOM: a JSON answer led by a byte-order mark (as
// Authorize.net sends them) is read, not refused after the charge: its
// card numbers are tokenized, and the mark and the rest reach the app as
// they came.
func TestEgressResponseBOM(t *testing.T) {
	e := newEgressEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, "\ufeff"+`{"card":{"number":"`+panMC+`"},"id":"ch_1"}`)
	}, nil)
	panTok, _ := e.checkout(t, panVisa, "737")
	r := e.pay(t, "/psp/v1", "application/x-www-form-urlencoded", "card[number]="+panTok, EgressKeyHeader, egressKey)
	if r.StatusCode != 200 || strings.Contains(string(r.body), panMC) {
		t.Fatalf("response = %d %q, want 200 with the card tokenized", r.StatusCode, maskAll([]string{string(r.body)}))
	}
	body, ok := strings.CutPrefix(string(r.body), "\ufeff")
	if !ok || !strings.HasSuffix(body, `"},"id":"ch_1"}`) || !json.Valid([]byte(body)) {
		t.Errorf("response body %q, want the mark, then the answer with only the card changed", maskAll([]string{string(r.body)}))
	}
}

// A card number in the path or the method of a request is not echoed in
// the error or logged (no card number reaches an error or a log): the method is a token the client
// chooses, and the path's digits may be separated.
func TestEgressErrorsEchoNoCard(t *testing.T) {
	e := newEgressEnv(t, nil, nil) // its cleanup scans the log for card numbers
	for _, path := range []string{"/x/4111-1111-1111-1111", "/x/4111%201111%201111%201111", "/x/４１１１１１１１１１１１１１１１"} {
		r := do(t, nil, "GET", e.egress.URL+path, "", "")
		wantError(t, r, http.StatusNotFound, "no_route")
		if msg := stripSeparators(string(r.body)); strings.Contains(msg, panVisa) || strings.Contains(string(r.body), "１１１１") {
			t.Errorf("GET %s: the error echoes the card number: %s", path, r.body)
		}
	}
	r := do(t, nil, panVisa, e.egress.URL+"/psp/v1", "", "")
	wantError(t, r, http.StatusNotFound, "no_route")
	if strings.Contains(string(r.body), panVisa) {
		t.Errorf("the error echoes the method: %s", r.body)
	}
	if got := httpx.SafeMethod("PATCH"); got != "PATCH" {
		t.Errorf("SafeMethod(PATCH) = %q", got)
	}
}

// TestEgressResponseRepeatsRevealed: a provider that echoes the card number
// tok just revealed, in any body type or a header, must not hand it to the
// app: written out, it is replaced by the app's token; spelled otherwise,
// the response is refused. The seed PAN fails Luhn, so only this check
// can catch it.
func TestEgressResponseRepeatsRevealed(t *testing.T) {
	for _, tc := range []struct {
		name, ct, body string
		spaced         bool // the body spells the number with spaces: refused
	}{
		{name: "json", ct: "application/json", body: `{"card":{"number":"%s","brand":"x"}}`},
		{name: "text", ct: "text/plain", body: "charged card %s, thanks"},
		{name: "html without type", ct: "", body: "<p>card %s</p>"},
		{name: "spaced", ct: "text/html", body: "<p>card %s</p>", spaced: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			echo := seedPAN
			if tc.spaced {
				echo = seedPAN[:4] + " " + seedPAN[4:8] + " " + seedPAN[8:]
			}
			e := newEgressEnv(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Card", "card="+seedPAN)
				w.Header()["Content-Type"] = []string{tc.ct}
				if tc.ct == "" {
					w.Header()["Content-Type"] = nil
				}
				fmt.Fprintf(w, tc.body, echo)
			}, nil)
			panTok, _ := e.checkout(t, seedPAN, "737")
			r := e.pay(t, "/psp/v1", "application/x-www-form-urlencoded", "card[number]="+panTok, EgressKeyHeader, egressKey)
			if tc.spaced {
				wantError(t, r, 502, "response_uninspectable")
			} else if r.StatusCode != 200 || !strings.Contains(string(r.body), panTok) || r.Header.Get("X-Card") != "card="+panTok {
				t.Errorf("response = %d, X-Card %q, body %q; want 200 with the token in place of the card number",
					r.StatusCode, maskAll([]string{r.Header.Get("X-Card")}), maskAll([]string{string(r.body)}))
			}
			if strings.Contains(digitsOf(string(r.body)), seedPAN) || strings.Contains(r.Header.Get("X-Card"), seedPAN) {
				t.Error("the revealed card number reached the app")
			}
			// Each rewrite is logged: where, and why (never the value).
			if !tc.spaced {
				for _, where := range []string{`"path":"header X-Card"`, `"path":"(body)"`} {
					if !strings.Contains(e.log.String(), where+`,"reason":"the provider echoed a card number revealed to it`) {
						t.Errorf("no WARN with %s for the echoed card:\n%s", where, e.log.String())
					}
				}
			}
		})
	}
}

// The shop's guard.ignore list exempts fields of its own requests, not of a
// provider's answer; and a card number in an egress query string is refused.
func TestEgressIgnoreAndQuery(t *testing.T) {
	e := newEgressEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"order":{"id":"`+panMC+`"}}`)
	}, nil)
	panTok, _ := e.checkout(t, panVisa, "737")
	r := e.pay(t, "/psp/v1", "application/x-www-form-urlencoded", "card[number]="+panTok, EgressKeyHeader, egressKey)
	if r.StatusCode != 200 || strings.Contains(string(r.body), panMC) {
		t.Errorf("response = %d %q, want 200 with order.id tokenized", r.StatusCode, maskAll([]string{string(r.body)}))
	}
	n := len(e.psp.got())
	r = e.pay(t, "/psp/v1?note="+panMC, "application/x-www-form-urlencoded", "card[number]="+panTok, EgressKeyHeader, egressKey)
	wantError(t, r, http.StatusUnprocessableEntity, "card_number_detected")
	if got := len(e.psp.got()); got != n {
		t.Errorf("the provider received %d requests after the refusal, want none", got-n)
	}
}

// Routes match paths case-insensitively, and so does strip_prefix: the
// provider never sees the shop's prefix.
func TestEgressStripPrefixCase(t *testing.T) {
	e := newEgressEnv(t, nil, nil)
	panTok, _ := e.checkout(t, panVisa, "737")
	r := e.pay(t, "/PSP/v1/charges", "application/x-www-form-urlencoded", "card[number]="+panTok, EgressKeyHeader, egressKey)
	if r.StatusCode != 200 {
		t.Fatalf("POST /PSP/v1/charges = %d %s", r.StatusCode, r.body)
	}
	if got := e.psp.got(); got[len(got)-1].Path != "/base/v1/charges" {
		t.Errorf("provider got %s, want /base/v1/charges", got[len(got)-1].Path)
	}
}

// A provider's 204 after a reveal passes as it is: no body to search, and
// no Content-Length added to a response that must not carry one.
func TestEgressNoContentAfterReveal(t *testing.T) {
	e := newEgressEnv(t, nil, nil)
	st := &sendState{}
	st.revealed.add(panVisa, "4111112345671111", "card[number]")
	req := httptest.NewRequest("POST", "https://psp.example/v1", nil)
	req = req.WithContext(context.WithValue(req.Context(), sendKey{}, st))
	for _, status := range []int{http.StatusNoContent, http.StatusNotModified} {
		resp := &http.Response{StatusCode: status, Header: http.Header{}, Body: http.NoBody, Request: req}
		if err := e.srv.egress.guardResponse(resp, &e.srv.egress.routes[0]); err != nil {
			t.Fatalf("guardResponse(%d) = %v", status, err)
		}
		if cl := resp.Header.Get("Content-Length"); cl != "" {
			t.Errorf("guardResponse(%d) set Content-Length %q on a response without a body", status, cl)
		}
	}
}
