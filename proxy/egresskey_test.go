package proxy

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/stripe/stripe-go/v82"
)

// These tests put the egress key where the app's SDK already sends its
// API key (egress_key_header): the app configures its SDK with the egress
// key, tok checks it and sends the provider the route's own secret.

// bearerStripe is stripe-go configured as the app would: apiKey is the
// egress key, its base URL names tok's Host route.
func bearerStripe(addr, apiKey string) *stripe.Client {
	d := &net.Dialer{}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}}
	base := "http://" + stripeHost + ":8081"
	b := stripe.NewBackendsWithConfig(&stripe.BackendConfig{URL: &base, HTTPClient: &http.Client{Transport: tr},
		LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull}})
	return stripe.NewClient(apiKey, stripe.WithBackends(b))
}

// TestStripeGoBearerKey: with egress_key_header authorization-bearer the
// app's stripe-go holds the egress key as its API key; the provider gets
// the route's secret instead. A wrong or missing key is Stripe's 401,
// sent once, and the provider never hears of it.
func TestStripeGoBearerKey(t *testing.T) {
	e := newStripeEnv(t, nil, func(r *EgressRoute) { r.EgressKeyHeader = EgressKeyBearer })
	panTok, _ := e.checkout(t, panVisa, "737")
	params := func() *stripe.PaymentMethodCreateParams {
		return &stripe.PaymentMethodCreateParams{Type: stripe.String("card"),
			Card: &stripe.PaymentMethodCreateCardParams{Number: stripe.String(panTok)}}
	}
	pm, err := bearerStripe(e.addr, egressKey).V1PaymentMethods.Create(t.Context(), params())
	if err != nil || pm.ID != "pm_1" {
		t.Fatalf("PaymentMethods.Create with the egress key as API key = %+v, %v", pm, err)
	}
	got := e.psp.got()
	if len(got) != 1 || got[0].Header.Get("Authorization") != "Bearer sk_live_secret" {
		t.Fatalf("provider got %d requests, Authorization %q; want one with the route's secret", len(got), got[0].Header.Get("Authorization"))
	}
	if form, _ := url.ParseQuery(string(got[0].Body)); form.Get("card[number]") != panVisa {
		t.Errorf("provider got card[number] %s, want the revealed card", maskAll([]string{form.Get("card[number]")}))
	}
	// The old header alone no longer opens the route: the key lives in
	// Authorization now.
	for _, key := range []string{"sk_live_guess", egressKey + "x", ""} {
		atTok, atPSP := e.atTok.Load(), len(e.psp.got())
		sc := bearerStripe(e.addr, key)
		if key == "" {
			sc = e.client(egressKey) // X-Tok-Egress-Key, and stripe-go's own made-up API key
		}
		_, err := sc.V1PaymentMethods.Create(t.Context(), params())
		var se *stripe.Error
		if !errors.As(err, &se) || se.HTTPStatusCode != 401 || se.Code != "invalid_egress_key" || !strings.Contains(se.Msg, "bearer") {
			t.Errorf("API key %q: %v, want Stripe's 401 invalid_egress_key naming the bearer token", key, err)
		}
		if n := e.atTok.Load() - atTok; n != 1 {
			t.Errorf("API key %q: stripe-go sent %d requests, want 1", key, n)
		}
		if n := len(e.psp.got()) - atPSP; n != 0 {
			t.Errorf("API key %q: the provider got %d requests", key, n)
		}
	}
	if strings.Contains(e.log.String(), egressKey) || strings.Contains(e.audit.String(), egressKey) {
		t.Error("the egress key reached a log line")
	}
}

// TestStripeGoBearerKeyForwardProxy: the same in forward-proxy mode: the
// app sets HTTPS_PROXY to tok with no password (the tunnel opens for the
// route's host) and its stripe-go's API key is the egress key, checked
// on every request inside the tunnel.
func TestStripeGoBearerKeyForwardProxy(t *testing.T) {
	certPEM, keyPEM, err := NewForwardCA()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := LoadForwardCA(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	p := newPSP(t, stripeAnswer)
	up, _ := url.Parse(p.URL)
	roots := x509.NewCertPool()
	roots.AddCert(p.Certificate())
	ie := newInboundEnv(t, inboundConfig{opts: func(o *Options) {
		o.ForwardCA = ca
		o.Egress = []EgressRoute{{Name: "stripe", Host: "api.stripe.com", Path: "/*", Upstream: up, RootCAs: roots,
			ErrorFormat: ErrorFormatStripe, EgressKey: egressKey, EgressKeyHeader: EgressKeyBearer,
			Fields: []RouteField{{Form: "card[number]"}}, Headers: map[string]string{"Authorization": "Bearer sk_live_secret"}}}
	}})
	tok := httptest.NewServer(ie.srv.EgressHandler())
	t.Cleanup(tok.Close)
	appRoots := x509.NewCertPool()
	appRoots.AppendCertsFromPEM(certPEM)
	proxyURL, _ := url.Parse(tok.URL) // no password: the key is the API key
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: tlsConfigWithRoots(appRoots)}}
	sc := func(key string) *stripe.Client {
		bk := stripe.NewBackendsWithConfig(&stripe.BackendConfig{HTTPClient: hc, LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull}})
		return stripe.NewClient(key, stripe.WithBackends(bk))
	}
	panTok, _ := (&egressEnv{inboundEnv: ie}).checkout(t, panVisa, "737")
	params := &stripe.PaymentMethodCreateParams{Type: stripe.String("card"), Card: &stripe.PaymentMethodCreateCardParams{Number: stripe.String(panTok)}}
	pm, err := sc(egressKey).V1PaymentMethods.Create(t.Context(), params)
	if err != nil || pm.ID != "pm_1" {
		t.Fatalf("PaymentMethods.Create through HTTPS_PROXY with the egress key as API key = %+v, %v", pm, err)
	}
	if got := p.got(); len(got) != 1 || got[0].Header.Get("Authorization") != "Bearer sk_live_secret" {
		t.Fatalf("provider got %d requests; want one with the route's secret", len(got))
	}
	_, err = sc("sk_live_guess").V1PaymentMethods.Create(t.Context(), params)
	var se *stripe.Error
	if !errors.As(err, &se) || se.HTTPStatusCode != 401 || se.Code != "invalid_egress_key" {
		t.Errorf("wrong API key through the tunnel: %v, want Stripe's 401 invalid_egress_key", err)
	}
	if se != nil && se.LastResponse != nil && se.LastResponse.Header.Get("Stripe-Should-Retry") != "false" {
		t.Error("the refusal lets stripe-go retry")
	}
	if n := len(p.got()); n != 1 {
		t.Errorf("the provider got %d requests, want 1", n)
	}
}

// TestEgressBasicKey: Adyen- and Braintree-style clients (requests in
// their documented shapes: their Go SDKs are not on the module proxy) log in with
// Basic user:password; with authorization-basic the user name is the
// egress key (the password is not read) and the provider gets the route's
// own Authorization. A custom header (Adyen's X-API-Key) works the same
// way. Refusals are in the route's envelope and reach no provider.
func TestEgressBasicKey(t *testing.T) {
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	adyenBody := func(tok string) string {
		return `{"amount":{"currency":"EUR","value":4999},"paymentMethod":{"type":"scheme","number":"` + tok + `"}}`
	}
	const adyenRefusal = `"errorCode":"invalid_egress_key"`
	for _, tc := range []struct {
		name, mode, format, provider string
		good, bad                    []string // header name/value pairs
		field                        RouteField
		ct                           string
		body                         func(tok string) string
		refusal                      string
	}{
		{"adyen basic", EgressKeyBasic, ErrorFormatAdyen, basic("ws@Company.Shop", "real-password"),
			[]string{"Authorization", basic(egressKey, "anything")},
			[]string{"Authorization", basic("ws@Company.Shop", egressKey), "Authorization", "Bearer " + egressKey, "Authorization", "Basic !!!", EgressKeyHeader, egressKey, "", ""},
			RouteField{JSON: "paymentMethod.number"}, "application/json", adyenBody, adyenRefusal},
		{"adyen api key header", "X-API-Key", ErrorFormatAdyen, "",
			[]string{"X-API-Key", egressKey},
			[]string{"X-API-Key", "AQE-guess", EgressKeyHeader, egressKey, "", ""},
			RouteField{JSON: "paymentMethod.number"}, "application/json", adyenBody, adyenRefusal},
		// Braintree's SDK logs in with its public key as the Basic user
		// name and sends XML.
		{"braintree basic", EgressKeyBasic, ErrorFormatBraintree, basic("real_public_key", "real_private_key"),
			[]string{"Authorization", basic(egressKey, "private_key_placeholder")},
			[]string{"Authorization", basic("real_public_key", "real_private_key"), "", ""},
			RouteField{XML: "/transaction/credit-card/number"}, "application/xml",
			func(tok string) string {
				return `<?xml version="1.0" encoding="UTF-8"?><transaction><type>sale</type><amount>10.00</amount><credit-card><number>` + tok + `</number></credit-card></transaction>`
			}, "<code>invalid_egress_key</code>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEgressEnv(t, nil, func(r *EgressRoute) {
				r.EgressKeyHeader, r.ErrorFormat = tc.mode, tc.format
				r.Fields = []RouteField{tc.field}
				if tc.provider != "" {
					r.Headers = map[string]string{"Authorization": tc.provider}
				} else {
					r.Headers = map[string]string{"X-API-Key": "AQE-real-secret"}
				}
			})
			panTok, _ := e.checkout(t, panVisa, "737")
			body := tc.body(panTok)
			r := e.pay(t, "/psp/v71/payments", tc.ct, body, tc.good...)
			if r.StatusCode != 200 {
				t.Fatalf("with the key: %d %s", r.StatusCode, r.body)
			}
			got := e.psp.got()
			if len(got) != 1 || !strings.Contains(string(got[0].Body), panVisa) {
				t.Fatalf("provider got %d requests; want one with the card", len(got))
			}
			if tc.provider != "" && got[0].Header.Get("Authorization") != tc.provider {
				t.Errorf("provider got Authorization %q, want the route's", got[0].Header.Get("Authorization"))
			}
			if tc.provider == "" && got[0].Header.Get("X-API-Key") != "AQE-real-secret" {
				t.Errorf("provider got X-API-Key %q, want the route's", got[0].Header.Get("X-API-Key"))
			}
			for i := 0; i+1 < len(tc.bad); i += 2 {
				var hdr []string
				if tc.bad[i] != "" {
					hdr = tc.bad[i : i+2]
				}
				r := e.pay(t, "/psp/v71/payments", tc.ct, body, hdr...)
				if r.StatusCode != 401 || !strings.Contains(string(r.body), tc.refusal) {
					t.Errorf("%s %q: %d %s, want 401 invalid_egress_key in %s's envelope", tc.bad[i], tc.bad[i+1], r.StatusCode, r.body, tc.format)
				}
			}
			if n := len(e.psp.got()); n != 1 {
				t.Errorf("the provider got %d requests, want 1", n)
			}
		})
	}
}
