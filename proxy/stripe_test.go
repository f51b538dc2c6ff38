package proxy

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v82"
)

// These tests drive stripe-go itself: the SDK a merchant uses,
// with its own retry rules, through tok's egress listener to a recording
// stand-in that answers in Stripe's shapes.

// stripeHost is the name the app's stripe-go calls: tok routes on it.
const stripeHost = "stripe.egress.internal"

// stripeAnswer is the stand-in's default: a payment method or intent, in
// Stripe's JSON. The payment intent carries a network transaction id that
// passes the Luhn check, as ~5% of them do.
func stripeAnswer(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Request-Id", "req_standin")
	switch {
	case strings.HasPrefix(r.URL.Path, "/v1/payment_methods"):
		io.WriteString(w, `{"id":"pm_1","object":"payment_method","type":"card","card":{"brand":"visa","last4":"1111"}}`)
	case strings.HasPrefix(r.URL.Path, "/v1/payment_intents"):
		io.WriteString(w, `{"id":"pi_1","object":"payment_intent","status":"succeeded","amount":4999,"currency":"eur",`+
			`"latest_charge":{"id":"ch_1","object":"charge","payment_method_details":{"type":"card","card":{"last4":"1111","network_transaction_id":"`+luhnNTI+`"}}}}`)
	default:
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":{"type":"invalid_request_error","message":"Unrecognized request URL"}}`)
	}
}

// luhnNTI is a network transaction id that happens to read as a card
// number: Luhn-valid, with a Visa prefix and a Visa length (a 15-digit
// 483931234567891 would not: Visa cards have 13, 16 or 19 digits).
const luhnNTI = "4839312345678914"

// stripeEnv is an egress env whose route matches stripe.egress.internal,
// speaks Stripe's form encoding and refuses in Stripe's envelope; atTok
// counts the requests that reach tok's egress listener.
type stripeEnv struct {
	*egressEnv
	atTok atomic.Int64
	addr  string // tok's egress listener
}

func newStripeEnv(t *testing.T, respond http.HandlerFunc, mutate func(*EgressRoute)) *stripeEnv {
	t.Helper()
	if respond == nil {
		respond = stripeAnswer
	}
	e := newEgressEnv(t, respond, func(r *EgressRoute) {
		u, _ := url.Parse(r.Upstream.Scheme + "://" + r.Upstream.Host) // no path: Stripe's own
		r.Name, r.Host, r.Method, r.Path, r.StripPrefix, r.Upstream = "stripe", stripeHost, "", "/*", "", u
		r.ErrorFormat = ErrorFormatStripe
		r.ResponseIgnore = []string{"latest_charge.payment_method_details.card.network_transaction_id"}
		r.Fields = []RouteField{{Form: "card[number]"}, {Form: "card[cvc]", Bind: "card[number]"},
			{Form: "payment_method_data[card][number]"}, {Form: "payment_method_data[card][cvc]", Bind: "payment_method_data[card][number]"}}
		if mutate != nil {
			mutate(r)
		}
	})
	se := &stripeEnv{egressEnv: e}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		se.atTok.Add(1)
		e.srv.EgressHandler().ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	se.addr = srv.Listener.Addr().String()
	return se
}

// client is stripe-go as an app configures it: its base URL names tok's
// egress host, its HTTP client adds the egress key (key "" sends none),
// and it keeps its default retries. The dialer stands in for the DNS
// name or /etc/hosts entry that points stripe.egress.internal at tok.
func (e *stripeEnv) client(key string) *stripe.Client {
	d := &net.Dialer{}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, e.addr)
	}}
	var rt http.RoundTripper = tr
	if key != "" {
		rt = roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			r = r.Clone(r.Context())
			r.Header.Set(EgressKeyHeader, key)
			return tr.RoundTrip(r)
		})
	}
	base := "http://" + stripeHost + ":8081"
	b := stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		URL:           &base,
		HTTPClient:    &http.Client{Transport: rt},
		LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull},
	})
	return stripe.NewClient("sk_test_app_never_sees_the_real_one", stripe.WithBackends(b))
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestStripeGoHappyPath: a payment method and a payment intent created
// with card tokens reach the provider with the card numbers, in Stripe's
// form encoding, with tok's secret; the SDK decodes the answers.
func TestStripeGoHappyPath(t *testing.T) {
	e := newStripeEnv(t, nil, nil)
	panTok, cvcTok := e.checkout(t, panVisa, "737")
	sc := e.client(egressKey)

	pm, err := sc.V1PaymentMethods.Create(t.Context(), &stripe.PaymentMethodCreateParams{
		Type: stripe.String("card"),
		Card: &stripe.PaymentMethodCreateCardParams{Number: stripe.String(panTok), CVC: stripe.String(cvcTok),
			ExpMonth: stripe.Int64(12), ExpYear: stripe.Int64(2030)},
	})
	if err != nil || pm.ID != "pm_1" {
		t.Fatalf("PaymentMethods.Create = %+v, %v", pm, err)
	}
	params := &stripe.PaymentIntentCreateParams{Amount: stripe.Int64(4999), Currency: stripe.String("eur"),
		Confirm: stripe.Bool(true), PaymentMethodData: &stripe.PaymentIntentCreatePaymentMethodDataParams{Type: stripe.String("card")}}
	params.AddExtra("payment_method_data[card][number]", panTok)
	params.AddExtra("payment_method_data[card][cvc]", cvcTok)
	params.SetIdempotencyKey("order-42")
	pi, err := sc.V1PaymentIntents.Create(t.Context(), params)
	if err != nil || pi.Status != stripe.PaymentIntentStatusSucceeded {
		t.Fatalf("PaymentIntents.Create = %+v, %v", pi, err)
	}
	// A Luhn-valid network transaction id reaches the app as it is: the
	// route exempts it (response_ignore). Card-on-file payments need it.
	if c := pi.LatestCharge.PaymentMethodDetails.Card; c.NetworkTransactionID != luhnNTI {
		t.Errorf("network_transaction_id = %q, want %q unchanged", c.NetworkTransactionID, luhnNTI)
	}
	got := e.psp.got()
	if len(got) != 2 || e.atTok.Load() != 2 {
		t.Fatalf("the provider got %d requests and tok %d, want 2 and 2", len(got), e.atTok.Load())
	}
	for i, want := range []map[string]string{
		{"card[number]": panVisa, "card[cvc]": "737", "type": "card"},
		{"payment_method_data[card][number]": panVisa, "payment_method_data[card][cvc]": "737", "amount": "4999"},
	} {
		form, err := url.ParseQuery(string(got[i].Body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range want {
			if form.Get(k) != v {
				t.Errorf("request %d: provider got %s = %q, want the revealed value", i, k, maskAll([]string{form.Get(k)}))
			}
		}
		if got[i].Header.Get("Authorization") != "Bearer sk_live_secret" || got[i].Header.Get(EgressKeyHeader) != "" {
			t.Errorf("request %d: provider headers Authorization %q, egress key %q", i, got[i].Header.Get("Authorization"), got[i].Header.Get(EgressKeyHeader))
		}
	}
	if got[0].Path != "/v1/payment_methods" || got[1].Path != "/v1/payment_intents" {
		t.Errorf("provider paths %s, %s; want Stripe's own", got[0].Path, got[1].Path)
	}
	if got[1].Header.Get("Idempotency-Key") != "order-42" {
		t.Errorf("provider got Idempotency-Key %q, want the app's", got[1].Header.Get("Idempotency-Key"))
	}
	if !strings.Contains(e.audit.String(), `"event":"egress_send"`) || !strings.Contains(e.audit.String(), `"outcome":"sent"`) {
		t.Errorf("the audit log lacks the sent line:\n%s", e.audit.String())
	}
}

// TestStripeGoRefusals: for every refusal tok makes, stripe-go makes one
// request, the provider none, and the SDK reads tok's code and field.
func TestStripeGoRefusals(t *testing.T) {
	e := newStripeEnv(t, nil, nil)
	panTok, cvcTok := e.checkout(t, panVisa, "737")
	card := func(number, cvc string) *stripe.PaymentMethodCreateParams {
		p := &stripe.PaymentMethodCreateParams{Type: stripe.String("card"), Card: &stripe.PaymentMethodCreateCardParams{}}
		if number != "" {
			p.Card.Number = stripe.String(number)
		}
		if cvc != "" {
			p.Card.CVC = stripe.String(cvc)
		}
		return p
	}
	_, otherCVC := e.checkout(t, panMC, "123")
	for _, tc := range []struct {
		name   string
		key    string
		params *stripe.PaymentMethodCreateParams
		status int
		code   string
		param  string
	}{
		{"unknown token", egressKey, card("4111110000001111", ""), 422, "unknown_token", "card[number]"},
		{"raw card", egressKey, card(panVisa2, ""), 422, "not_a_token", "card[number]"},
		{"CVC without its card", egressKey, card("", cvcTok), 422, "unbound_value", ""},
		{"CVC of another card", egressKey, card(panTok, otherCVC), 422, "unknown_token", "card[cvc]"},
		{"missing egress key", "", card(panTok, cvcTok), 401, "invalid_egress_key", ""},
		{"wrong egress key", "nope", card(panTok, cvcTok), 401, "invalid_egress_key", ""},
		{"raw card outside the fields", egressKey, func() *stripe.PaymentMethodCreateParams {
			p := card(panTok, "")
			p.AddMetadata("note", panMC)
			return p
		}(), 422, "card_number_detected", "metadata[note]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			atTok, atPSP := e.atTok.Load(), len(e.psp.got())
			_, err := e.client(tc.key).V1PaymentMethods.Create(t.Context(), tc.params)
			var se *stripe.Error
			if !errors.As(err, &se) {
				t.Fatalf("stripe-go error = %v (%T), want a *stripe.Error", err, err)
			}
			if se.HTTPStatusCode != tc.status || string(se.Code) != tc.code || se.Type != stripe.ErrorTypeInvalidRequest || se.Param != tc.param {
				t.Errorf("stripe-go error = status %d code %q type %q param %q, want %d %q invalid_request_error %q",
					se.HTTPStatusCode, se.Code, se.Type, se.Param, tc.status, tc.code, tc.param)
			}
			if n := e.atTok.Load() - atTok; n != 1 {
				t.Errorf("stripe-go sent %d requests to tok, want 1 (no retries)", n)
			}
			if n := len(e.psp.got()) - atPSP; n != 0 {
				t.Errorf("the provider got %d requests, want none", n)
			}
			if se.LastResponse == nil || se.LastResponse.Header.Get(TokErrorHeader) != tc.code ||
				se.LastResponse.Header.Get("Stripe-Should-Retry") != "false" {
				t.Errorf("refusal headers lack %s: %s and Stripe-Should-Retry: false", TokErrorHeader, tc.code)
			}
			for _, p := range inboundPANs {
				if strings.Contains(se.Msg, p) {
					t.Errorf("the SDK's error echoes a card number")
				}
			}
		})
	}
}

// TestStripeGoAnswerWithheld: when tok refuses the provider's answer after
// the provider acted, stripe-go does not resend it, and the error says the
// provider acted and names the app's idempotency key.
func TestStripeGoAnswerWithheld(t *testing.T) {
	e := newStripeEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"pi_1","object":"payment_intent","status":"succeeded",}`) // not strict JSON
	}, nil)
	panTok, cvcTok := e.checkout(t, panVisa, "737")
	params := &stripe.PaymentIntentCreateParams{Amount: stripe.Int64(4999), Currency: stripe.String("eur")}
	params.AddExtra("payment_method_data[card][number]", panTok)
	params.AddExtra("payment_method_data[card][cvc]", cvcTok)
	params.SetIdempotencyKey("order-43")
	_, err := e.client(egressKey).V1PaymentIntents.Create(t.Context(), params)
	var se *stripe.Error
	if !errors.As(err, &se) {
		t.Fatalf("stripe-go error = %v, want a *stripe.Error", err)
	}
	if se.HTTPStatusCode != 502 || se.Code != "response_uninspectable" || se.Type != stripe.ErrorTypeAPI {
		t.Errorf("stripe-go error = %d %q %q, want 502 response_uninspectable api_error", se.HTTPStatusCode, se.Code, se.Type)
	}
	for _, w := range []string{"answered 200", "may have acted", `"order-43"`} {
		if !strings.Contains(se.Msg, w) {
			t.Errorf("message %q lacks %q", se.Msg, w)
		}
	}
	if e.atTok.Load() != 1 || len(e.psp.got()) != 1 {
		t.Errorf("tok got %d requests and the provider %d, want 1 and 1", e.atTok.Load(), len(e.psp.got()))
	}
	if !strings.Contains(e.audit.String(), `"outcome":"sent_answer_withheld"`) {
		t.Errorf("the audit log does not say the answer was withheld:\n%s", e.audit.String())
	}
}

// TestStripeGoProviderDown: a provider that cannot be reached is a 502 in
// Stripe's envelope, which stripe-go does not resend: one request at tok,
// none piling up, and the audit says the revealed card was not sent.
func TestStripeGoProviderDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "https://" + ln.Addr().String()
	ln.Close()
	e := newStripeEnv(t, nil, func(r *EgressRoute) { r.Upstream, _ = url.Parse(down) })
	panTok, cvcTok := e.checkout(t, panVisa, "737")
	_, err = e.client(egressKey).V1PaymentMethods.Create(t.Context(), &stripe.PaymentMethodCreateParams{
		Type: stripe.String("card"), Card: &stripe.PaymentMethodCreateCardParams{Number: stripe.String(panTok), CVC: stripe.String(cvcTok)}})
	var se *stripe.Error
	if !errors.As(err, &se) || se.HTTPStatusCode != 502 || se.Code != "upstream_unavailable" || se.Type != stripe.ErrorTypeAPI {
		t.Fatalf("stripe-go error = %v, want 502 upstream_unavailable api_error", err)
	}
	if n := e.atTok.Load(); n != 1 {
		t.Errorf("stripe-go sent %d requests to tok, want 1", n)
	}
	if !strings.Contains(e.audit.String(), `"outcome":"not_sent"`) {
		t.Errorf("the audit log does not say the card was not sent:\n%s", e.audit.String())
	}
}

// TestStripeGoSlowProvider: a provider slower than the route's timeout is a
// 504 that says the request was sent and names the idempotency key; the
// SDK does not resend it. One slower than usual but within the timeout
// answers as usual.
func TestStripeGoSlowProvider(t *testing.T) {
	release := make(chan struct{})
	e := newStripeEnv(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/payment_intents" {
			<-release // never answers while the test runs
			return
		}
		stripeAnswer(w, r)
	}, func(r *EgressRoute) { r.Timeout = 200 * time.Millisecond })
	t.Cleanup(func() { close(release) })
	panTok, cvcTok := e.checkout(t, panVisa, "737")
	params := &stripe.PaymentIntentCreateParams{Amount: stripe.Int64(4999), Currency: stripe.String("eur")}
	params.AddExtra("payment_method_data[card][number]", panTok)
	params.AddExtra("payment_method_data[card][cvc]", cvcTok)
	params.SetIdempotencyKey("order-44")
	_, err := e.client(egressKey).V1PaymentIntents.Create(t.Context(), params)
	var se *stripe.Error
	if !errors.As(err, &se) || se.HTTPStatusCode != 504 || se.Code != "upstream_timeout" {
		t.Fatalf("stripe-go error = %v, want 504 upstream_timeout", err)
	}
	if !strings.Contains(se.Msg, `"order-44"`) || !strings.Contains(se.Msg, "may have acted") {
		t.Errorf("message %q does not say the provider may have acted, with the key", se.Msg)
	}
	if e.atTok.Load() != 1 || len(e.psp.got()) != 1 {
		t.Errorf("tok got %d requests and the provider %d, want 1 and 1", e.atTok.Load(), len(e.psp.got()))
	}
	if !strings.Contains(e.audit.String(), `"outcome":"sent_no_answer"`) {
		t.Errorf("the audit log does not say the request was sent without an answer:\n%s", e.audit.String())
	}
}

// TestStripeGoSlowButInTime: a provider slower than tok's old fixed 30 s
// would have been cut off; with the route's timeout it answers (the delay
// here is short: only the path through the timeout is tested).
func TestStripeGoSlowButInTime(t *testing.T) {
	e := newStripeEnv(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond)
		stripeAnswer(w, r)
	}, nil)
	panTok, _ := e.checkout(t, panVisa, "737")
	pm, err := e.client(egressKey).V1PaymentMethods.Create(t.Context(), &stripe.PaymentMethodCreateParams{
		Type: stripe.String("card"), Card: &stripe.PaymentMethodCreateCardParams{Number: stripe.String(panTok)}})
	if err != nil || pm.ID != "pm_1" {
		t.Fatalf("PaymentMethods.Create = %+v, %v", pm, err)
	}
	if rt := e.srv.egress.routes[0].rp.Transport.(*http.Transport); rt.ResponseHeaderTimeout != DefaultEgressTimeout {
		t.Errorf("route timeout = %s, want the default %s", rt.ResponseHeaderTimeout, DefaultEgressTimeout)
	}
}

// TestEgressHostRouting: two providers that both use /v1 are told apart by
// the host the app calls; a host route wins over a route for any host.
func TestEgressHostRouting(t *testing.T) {
	stripePSP, other := newPSP(t, nil), newPSP(t, nil)
	su, _ := url.Parse(stripePSP.URL)
	ou, _ := url.Parse(other.URL)
	roots := x509.NewCertPool()
	roots.AddCert(stripePSP.Certificate())
	roots.AddCert(other.Certificate())
	// The any-host route comes first in config order: the host route
	// still wins for its host.
	ie := newInboundEnv(t, inboundConfig{opts: func(o *Options) {
		o.Egress = []EgressRoute{
			{Name: "any", Path: "/v1/*", Upstream: ou, RootCAs: roots},
			{Name: "stripe", Host: stripeHost, Path: "/*", Upstream: su, RootCAs: roots, ErrorFormat: ErrorFormatStripe},
		}
	}})
	srv := httptest.NewServer(ie.srv.EgressHandler())
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		host string
		want *recordingUpstream
	}{{stripeHost, stripePSP}, {"STRIPE.egress.internal.:8081", stripePSP}, {"other.egress.internal", other}, {"127.0.0.1", other}} {
		n := len(tc.want.got())
		req, _ := http.NewRequest("POST", srv.URL+"/v1/charges", strings.NewReader("amount=1"))
		req.Host = tc.host
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || len(tc.want.got()) != n+1 {
			t.Errorf("Host %s: %d, want 200 from its provider", tc.host, resp.StatusCode)
		}
	}
}

// TestStripeGoUnrevealedToken: a route that names only card[number] gets a
// payment intent whose card is at payment_method_data[card][number]. The
// token would reach Stripe as it is: tok warns by default, naming the route
// and field, and with unrevealed_tokens: refuse refuses it before the
// provider is called.
func TestStripeGoUnrevealedToken(t *testing.T) {
	for _, refuse := range []bool{false, true} {
		t.Run(map[bool]string{false: "warn", true: "refuse"}[refuse], func(t *testing.T) {
			e := newStripeEnv(t, nil, func(r *EgressRoute) {
				r.Fields = r.Fields[:2] // card[number], card[cvc]
				r.RefuseUnrevealed = refuse
			})
			panTok, _ := e.checkout(t, panVisa, "737")
			params := &stripe.PaymentIntentCreateParams{Amount: stripe.Int64(4999), Currency: stripe.String("eur")}
			params.AddExtra("payment_method_data[card][number]", panTok)
			params.AddExtra("description", "4111110000001111") // token-shaped, but no token: no warning
			_, err := e.client(egressKey).V1PaymentIntents.Create(t.Context(), params)
			const field = "payment_method_data[card][number]"
			if !refuse {
				if err != nil || len(e.psp.got()) != 1 {
					t.Fatalf("PaymentIntents.Create = %v, provider got %d; want it forwarded", err, len(e.psp.got()))
				}
				if log := e.log.String(); !strings.Contains(log, "does not reveal") || !strings.Contains(log, field) || strings.Contains(log, "description") {
					t.Errorf("the log does not warn about %s alone:\n%s", field, log)
				}
				return
			}
			var se *stripe.Error
			if !errors.As(err, &se) || se.Code != "unrevealed_token" || se.Param != field || se.HTTPStatusCode != 422 {
				t.Fatalf("stripe-go error = %v, want 422 unrevealed_token at %s", err, field)
			}
			if e.atTok.Load() != 1 || len(e.psp.got()) != 0 {
				t.Errorf("tok got %d requests and the provider %d, want 1 and 0", e.atTok.Load(), len(e.psp.got()))
			}
		})
	}
}

// TestStripeGoNoRoute: a call the Stripe host has no route for (the route
// here takes only payment methods) is a 404 in Stripe's envelope: stripe-go
// does not resend it.
func TestStripeGoNoRoute(t *testing.T) {
	e := newStripeEnv(t, nil, func(r *EgressRoute) { r.Path = "/v1/payment_methods" })
	_, err := e.client(egressKey).V1Customers.Create(t.Context(), &stripe.CustomerCreateParams{Email: stripe.String("a@b.example")})
	var se *stripe.Error
	if !errors.As(err, &se) || se.HTTPStatusCode != 404 || se.Code != "no_route" {
		t.Fatalf("stripe-go error = %v, want 404 no_route", err)
	}
	if e.atTok.Load() != 1 || len(e.psp.got()) != 0 {
		t.Errorf("tok got %d requests and the provider %d, want 1 and 0", e.atTok.Load(), len(e.psp.got()))
	}
}
