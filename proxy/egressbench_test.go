package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v82"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/memory"
)

// BenchmarkEgressStripe measures what tok's egress adds to a payment call:
// the same stripe-go client creates a payment method against a
// TLS stand-in, directly with the card number, and through tok's Host
// route with a card token (one reveal, its audit line, the answer
// searched), both through a Host route and in forward-proxy mode
// (HTTPS_PROXY, TLS from the app to tok too). One client, one request at a
// time: the latency a checkout sees. Run:
//
//	go test -run '^$' -bench EgressStripe -benchtime 5000x ./proxy
//
// Each mode through tok reports x-direct: its time per call divided by the
// direct call's in the same run. The interleaved sub-benchmark alternates
// the three modes call by call, which keeps the ratios steady on a shared
// machine.
func BenchmarkEgressStripe(b *testing.B) {
	psp := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		stripeAnswer(w, r)
	}))
	defer psp.Close()
	roots := x509.NewCertPool()
	roots.AddCert(psp.Certificate())
	keys, err := vault.NewKeyring(vault.NewKeyringFile())
	if err != nil {
		b.Fatal(err)
	}
	store := memory.New()
	v, err := vault.New(store, keys)
	if err != nil {
		b.Fatal(err)
	}
	toks, err := v.Tokenize(b.Context(), []vault.Request{{Value: panVisa}})
	if err != nil {
		b.Fatal(err)
	}
	up, _ := url.Parse(psp.URL)
	caPEM, caKey, err := NewForwardCA()
	if err != nil {
		b.Fatal(err)
	}
	ca, err := LoadForwardCA(caPEM, caKey)
	if err != nil {
		b.Fatal(err)
	}
	route := func(name, host string) EgressRoute {
		return EgressRoute{Name: name, Host: host, Path: "/*", Upstream: up, RootCAs: roots,
			ErrorFormat: ErrorFormatStripe, Fields: []RouteField{{Form: "card[number]"}},
			Headers: map[string]string{"Authorization": "Bearer sk_test_x"}}
	}
	srv, err := New(Options{Vault: v, Store: store, Logger: slog.New(slog.DiscardHandler), Audit: io.Discard, ForwardCA: ca,
		Egress: []EgressRoute{route("stripe", stripeHost), route("stripe_forward", "api.stripe.com")}})
	if err != nil {
		b.Fatal(err)
	}
	egress := httptest.NewServer(srv.EgressHandler())
	defer egress.Close()

	// The same client both ways: stripe-go on one keep-alive transport
	// that trusts the stand-in; through tok, its dialer stands in for the
	// DNS entry naming tok.
	appRoots := x509.NewCertPool()
	appRoots.AppendCertsFromPEM(caPEM)
	forward := func() *stripe.Client { // HTTPS_PROXY=tok, stripe-go's own base URL
		proxyURL, _ := url.Parse(egress.URL)
		tr := &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: &tls.Config{RootCAs: appRoots}}
		bk := stripe.NewBackendsWithConfig(&stripe.BackendConfig{HTTPClient: &http.Client{Transport: tr},
			LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull}, EnableTelemetry: stripe.Bool(false)})
		return stripe.NewClient("sk_test_x", stripe.WithBackends(bk))
	}
	client := func(base, dialTo string) *stripe.Client {
		tr := &http.Transport{TLSClientConfig: psp.Client().Transport.(*http.Transport).TLSClientConfig}
		if dialTo != "" {
			d := &net.Dialer{}
			tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, dialTo)
			}
		}
		bk := stripe.NewBackendsWithConfig(&stripe.BackendConfig{URL: &base, HTTPClient: &http.Client{Transport: tr},
			LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull}, EnableTelemetry: stripe.Bool(false)})
		return stripe.NewClient("sk_test_x", stripe.WithBackends(bk))
	}
	var direct float64 // ns per call direct, in this run
	modes := []struct {
		name   string
		client *stripe.Client
		number string
	}{
		{"direct", client(psp.URL, ""), panVisa},
		{"tok", client("http://"+stripeHost+":8081", egress.Listener.Addr().String()), toks[0]},
		{"tok-forward", forward(), toks[0]},
	}
	// interleaved makes one call in each mode per iteration, so that the
	// load of a shared machine weighs on all three alike: its x-direct
	// figures are the ones to quote when the machine is busy.
	b.Run("interleaved", func(b *testing.B) {
		var spent [3]time.Duration
		for b.Loop() {
			for i, m := range modes {
				params := &stripe.PaymentMethodCreateParams{Type: stripe.String("card"),
					Card: &stripe.PaymentMethodCreateCardParams{Number: stripe.String(m.number)}}
				start := time.Now()
				if _, err := m.client.V1PaymentMethods.Create(b.Context(), params); err != nil {
					b.Fatal(err)
				}
				spent[i] += time.Since(start)
			}
		}
		b.ReportMetric(float64(spent[0].Nanoseconds())/float64(b.N), "direct-ns/call")
		b.ReportMetric(float64(spent[1])/float64(spent[0]), "tok-x-direct")
		b.ReportMetric(float64(spent[2])/float64(spent[0]), "forward-x-direct")
	})
	for _, bc := range modes {
		b.Run(bc.name, func(b *testing.B) {
			params := &stripe.PaymentMethodCreateParams{Type: stripe.String("card"),
				Card: &stripe.PaymentMethodCreateCardParams{Number: stripe.String(bc.number)}}
			for b.Loop() {
				if _, err := bc.client.V1PaymentMethods.Create(b.Context(), params); err != nil {
					b.Fatal(err)
				}
			}
			// The ratio to the direct call of the same run: the figure the
			// README quotes (absolute timings depend on the machine's load).
			per := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			if bc.name == "direct" {
				direct = per
			} else if direct > 0 {
				b.ReportMetric(per/direct, "x-direct")
			}
		})
	}
}
