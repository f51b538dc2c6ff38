package proxy

import (
	"crypto/x509"
	"errors"
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

// forwardEnv is tok in forward-proxy mode in front of a recording
// stand-in for api.stripe.com, and stripe-go as it ships (its own base
// URL) with HTTPS_PROXY pointing at tok; sent counts the requests
// stripe-go makes, retries included.
type forwardEnv struct {
	*egressEnv
	sc   *stripe.Client
	sent atomic.Int64
}

func newForwardEnv(t *testing.T, respond http.HandlerFunc, mutate func(*EgressRoute)) *forwardEnv {
	t.Helper()
	certPEM, keyPEM, err := NewForwardCA()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := LoadForwardCA(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if respond == nil {
		respond = stripeAnswer
	}
	p := newPSP(t, respond)
	up, _ := url.Parse(p.URL)
	roots := x509.NewCertPool()
	roots.AddCert(p.Certificate())
	route := EgressRoute{Name: "stripe", Host: "api.stripe.com", Path: "/*", Upstream: up, RootCAs: roots,
		ErrorFormat: ErrorFormatStripe, EgressKey: egressKey,
		Fields: []RouteField{{Form: "card[number]"}, {Form: "card[cvc]", Bind: "card[number]"},
			{Form: "payment_method_data[card][number]"}, {Form: "payment_method_data[card][cvc]", Bind: "payment_method_data[card][number]"}},
		ResponseIgnore: []string{"latest_charge.payment_method_details.card.network_transaction_id"},
		Headers:        map[string]string{"Authorization": "Bearer sk_live_secret"}}
	if mutate != nil {
		mutate(&route)
	}
	ie := newInboundEnv(t, inboundConfig{opts: func(o *Options) {
		o.ForwardCA = ca
		o.Egress = []EgressRoute{route}
	}})
	tok := httptest.NewServer(ie.srv.EgressHandler())
	t.Cleanup(tok.Close)
	appRoots := x509.NewCertPool()
	appRoots.AppendCertsFromPEM(certPEM)
	proxyURL, _ := url.Parse(tok.URL)
	proxyURL.User = url.UserPassword("tok", egressKey)
	fe := &forwardEnv{egressEnv: &egressEnv{inboundEnv: ie, psp: p}}
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: tlsConfigWithRoots(appRoots)}
	count := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		fe.sent.Add(1)
		return tr.RoundTrip(r)
	})
	bk := stripe.NewBackendsWithConfig(&stripe.BackendConfig{HTTPClient: &http.Client{Transport: count},
		LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull}})
	fe.sc = stripe.NewClient("sk_test_app", stripe.WithBackends(bk))
	return fe
}

func intentParams(panTok, cvcTok, key string) *stripe.PaymentIntentCreateParams {
	p := &stripe.PaymentIntentCreateParams{Amount: stripe.Int64(4999), Currency: stripe.String("eur"), Confirm: stripe.Bool(true),
		PaymentMethodData: &stripe.PaymentIntentCreatePaymentMethodDataParams{Type: stripe.String("card")}}
	p.AddExtra("payment_method_data[card][number]", panTok)
	if cvcTok != "" {
		p.AddExtra("payment_method_data[card][cvc]", cvcTok)
	}
	p.SetIdempotencyKey(key)
	return p
}

// TestStripeGoForwardProxyFlows: the Host-route flows again in
// forward-proxy mode (HTTPS_PROXY, stripe-go's own base URL): a payment
// intent; refusals, each one request from stripe-go and none at the
// provider; a provider down (502, one request, nothing sent); a provider
// slower than the route's timeout (504 naming the idempotency key, one
// request, sent once).
func TestStripeGoForwardProxyFlows(t *testing.T) {
	t.Run("payment intent", func(t *testing.T) {
		e := newForwardEnv(t, nil, nil)
		panTok, cvcTok := e.checkout(t, panVisa, "737")
		pi, err := e.sc.V1PaymentIntents.Create(t.Context(), intentParams(panTok, cvcTok, "order-f1"))
		if err != nil || pi.Status != stripe.PaymentIntentStatusSucceeded {
			t.Fatalf("PaymentIntents.Create = %+v, %v", pi, err)
		}
		if c := pi.LatestCharge.PaymentMethodDetails.Card; c.NetworkTransactionID != luhnNTI {
			t.Errorf("network_transaction_id = %q, want it unchanged", c.NetworkTransactionID)
		}
		got := e.psp.got()
		if len(got) != 1 || e.sent.Load() != 1 {
			t.Fatalf("stripe-go sent %d requests, the provider got %d; want 1 and 1", e.sent.Load(), len(got))
		}
		form, _ := url.ParseQuery(string(got[0].Body))
		if form.Get("payment_method_data[card][number]") != panVisa || form.Get("payment_method_data[card][cvc]") != "737" ||
			got[0].Header.Get("Idempotency-Key") != "order-f1" || got[0].Header.Get("Authorization") != "Bearer sk_live_secret" {
			t.Errorf("provider got %q with Idempotency-Key %q; want the card, CVC, key and tok's secret",
				maskAll([]string{string(got[0].Body)}), got[0].Header.Get("Idempotency-Key"))
		}
	})
	t.Run("refusals", func(t *testing.T) {
		e := newForwardEnv(t, nil, nil)
		panTok, _ := e.checkout(t, panVisa, "737")
		_, otherCVC := e.checkout(t, panMC, "123")
		for _, tc := range []struct {
			name, pan, cvc, code string
		}{
			{"unknown token", "4111110000001111", "", "unknown_token"},
			{"raw card", panVisa2, "", "not_a_token"},
			{"CVC of another card", panTok, otherCVC, "unknown_token"},
		} {
			sent, atPSP := e.sent.Load(), len(e.psp.got())
			_, err := e.sc.V1PaymentIntents.Create(t.Context(), intentParams(tc.pan, tc.cvc, "order-"+tc.code))
			var se *stripe.Error
			if !errors.As(err, &se) || se.HTTPStatusCode != 422 || string(se.Code) != tc.code {
				t.Errorf("%s: %v, want Stripe's 422 %s", tc.name, err, tc.code)
			}
			if n := e.sent.Load() - sent; n != 1 {
				t.Errorf("%s: stripe-go sent %d requests, want 1", tc.name, n)
			}
			if n := len(e.psp.got()) - atPSP; n != 0 {
				t.Errorf("%s: the provider got %d requests, want none", tc.name, n)
			}
		}
	})
	t.Run("provider down", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		down := "https://" + ln.Addr().String()
		ln.Close()
		e := newForwardEnv(t, nil, func(r *EgressRoute) { r.Upstream, _ = url.Parse(down) })
		panTok, cvcTok := e.checkout(t, panVisa, "737")
		_, err = e.sc.V1PaymentIntents.Create(t.Context(), intentParams(panTok, cvcTok, "order-f2"))
		var se *stripe.Error
		if !errors.As(err, &se) || se.HTTPStatusCode != 502 || se.Code != "upstream_unavailable" {
			t.Fatalf("stripe-go error = %v, want 502 upstream_unavailable", err)
		}
		if n := e.sent.Load(); n != 1 {
			t.Errorf("stripe-go sent %d requests, want 1", n)
		}
		if !strings.Contains(e.audit.String(), `"outcome":"not_sent"`) {
			t.Errorf("the audit log does not say the card was not sent:\n%s", e.audit.String())
		}
	})
	t.Run("slow provider", func(t *testing.T) {
		release := make(chan struct{})
		e := newForwardEnv(t, func(w http.ResponseWriter, r *http.Request) {
			<-release // never answers while the test runs
		}, func(r *EgressRoute) { r.Timeout = 200 * time.Millisecond })
		t.Cleanup(func() { close(release) })
		panTok, cvcTok := e.checkout(t, panVisa, "737")
		_, err := e.sc.V1PaymentIntents.Create(t.Context(), intentParams(panTok, cvcTok, "order-f3"))
		var se *stripe.Error
		if !errors.As(err, &se) || se.HTTPStatusCode != 504 || se.Code != "upstream_timeout" || !strings.Contains(se.Msg, `"order-f3"`) {
			t.Fatalf("stripe-go error = %v, want 504 upstream_timeout naming order-f3", err)
		}
		if e.sent.Load() != 1 || len(e.psp.got()) != 1 {
			t.Errorf("stripe-go sent %d requests and the provider got %d, want 1 and 1", e.sent.Load(), len(e.psp.got()))
		}
		if !strings.Contains(e.audit.String(), `"outcome":"sent_no_answer"`) {
			t.Errorf("the audit log does not say the request was sent without an answer:\n%s", e.audit.String())
		}
	})
}
