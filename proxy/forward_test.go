package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/stripe/stripe-go/v82"
)

// TestStripeGoForwardProxy: stripe-go as it ships (its default base URL,
// https://api.stripe.com) with HTTPS_PROXY pointing at tok: tok tunnels to
// api.stripe.com only, presents a certificate from its own CA, reveals and
// forwards to the route's upstream (here the stand-in) with verification.
// Other hosts and a missing key are refused at CONNECT.
func TestStripeGoForwardProxy(t *testing.T) {
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
			ErrorFormat: ErrorFormatStripe, EgressKey: egressKey, Fields: []RouteField{{Form: "card[number]"}},
			Headers: map[string]string{"Authorization": "Bearer sk_live_secret"}}}
	}})
	tok := httptest.NewServer(ie.srv.EgressHandler())
	t.Cleanup(tok.Close)
	appRoots := x509.NewCertPool()
	if !appRoots.AppendCertsFromPEM(certPEM) {
		t.Fatal("tok's CA does not parse")
	}
	// The app: HTTPS_PROXY=http://tok:KEY@127.0.0.1:PORT and tok's CA in
	// its trust store; nothing else changes.
	client := func(key string) (*stripe.Client, *http.Client) {
		proxyURL, _ := url.Parse(tok.URL)
		if key != "" {
			proxyURL.User = url.UserPassword("tok", key)
		}
		hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: tlsConfigWithRoots(appRoots)}}
		bk := stripe.NewBackendsWithConfig(&stripe.BackendConfig{HTTPClient: hc, LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull}})
		return stripe.NewClient("sk_test_app", stripe.WithBackends(bk)), hc
	}
	panTok, _ := (&egressEnv{inboundEnv: ie}).checkout(t, panVisa, "737")
	sc, hc := client(egressKey)
	pm, err := sc.V1PaymentMethods.Create(t.Context(), &stripe.PaymentMethodCreateParams{Type: stripe.String("card"),
		Card: &stripe.PaymentMethodCreateCardParams{Number: stripe.String(panTok)}})
	if err != nil || pm.ID != "pm_1" {
		t.Fatalf("PaymentMethods.Create through HTTPS_PROXY = %+v, %v", pm, err)
	}
	got := p.got()
	form, _ := url.ParseQuery(string(got[0].Body))
	if len(got) != 1 || form.Get("card[number]") != panVisa || got[0].Header.Get("Authorization") != "Bearer sk_live_secret" {
		t.Fatalf("provider got %d requests (%q); want one with the card and tok's secret", len(got), maskAll([]string{string(got[0].Body)}))
	}

	// A refusal inside the tunnel is Stripe's, and is not resent.
	_, err = sc.V1PaymentMethods.Create(t.Context(), &stripe.PaymentMethodCreateParams{Type: stripe.String("card"),
		Card: &stripe.PaymentMethodCreateCardParams{Number: stripe.String("4111110000001111")}})
	var se *stripe.Error
	if !errors.As(err, &se) || se.Code != "unknown_token" || len(p.got()) != 1 {
		t.Errorf("unknown token through the tunnel: %v, provider got %d; want unknown_token and no request", err, len(p.got()))
	}

	// Deny by default: a host no route names, and another port.
	for _, u := range []string{"https://api.example.com/v1", "https://api.stripe.com:8443/v1"} {
		if _, err := hc.Get(u); err == nil || !strings.Contains(err.Error(), "Forbidden") {
			t.Errorf("GET %s through tok = %v, want the CONNECT refused (403)", u, err)
		}
	}
	// Without the egress key, no tunnel.
	_, hcNoKey := client("")
	if _, err := hcNoKey.Get("https://api.stripe.com/v1/payment_methods"); err == nil || !strings.Contains(err.Error(), "Proxy Authentication Required") {
		t.Errorf("CONNECT without the key = %v, want 407", err)
	}
	if len(p.got()) != 1 {
		t.Errorf("the provider got %d requests, want 1", len(p.got()))
	}
}

func tlsConfigWithRoots(roots *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
}

// TestForwardProxyDrains: a request in flight in a CONNECT tunnel when tok
// is told to stop finishes (the listeners' servers do not track hijacked
// connections; the tunnels are drained themselves), and no new tunnel
// opens after.
func TestForwardProxyDrains(t *testing.T) {
	certPEM, keyPEM, err := NewForwardCA()
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := LoadForwardCA(certPEM, keyPEM)
	arrived, release := make(chan struct{}), make(chan struct{})
	p := newPSP(t, func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		stripeAnswer(w, r)
	})
	up, _ := url.Parse(p.URL)
	roots := x509.NewCertPool()
	roots.AddCert(p.Certificate())
	ie := newInboundEnv(t, inboundConfig{opts: func(o *Options) {
		o.ForwardCA = ca
		o.Egress = []EgressRoute{{Name: "stripe", Host: "api.stripe.com", Path: "/*", Upstream: up, RootCAs: roots, ErrorFormat: ErrorFormatStripe}}
	}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ie.srv.Serve(ctx, map[string]net.Listener{ListenerEgress: ln}) }()
	appRoots := x509.NewCertPool()
	appRoots.AppendCertsFromPEM(certPEM)
	proxyURL, _ := url.Parse("http://" + ln.Addr().String())
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: tlsConfigWithRoots(appRoots)}}
	got := make(chan int, 1)
	go func() {
		resp, err := hc.Post("https://api.stripe.com/v1/payment_methods", "application/x-www-form-urlencoded", strings.NewReader("type=card"))
		if err != nil {
			t.Log(err)
			got <- 0
			return
		}
		resp.Body.Close()
		got <- resp.StatusCode
	}()
	<-arrived
	cancel() // SIGTERM
	close(release)
	if status := <-got; status != 200 {
		t.Errorf("the request in the tunnel = %d, want 200 (drained)", status)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve = %v", err)
	}
	if ie.srv.tunnels.add(&http.Server{}) {
		t.Error("a tunnel opened after shutdown")
	}
}
