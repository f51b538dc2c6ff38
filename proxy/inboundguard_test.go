package proxy

import (
	"net/http"
	"strings"
	"testing"

	"github.com/tokproxy/tok/proxy/rewrite"
)

// TestInboundReadsWhatAppsRead: whatever the method, path and declared
// type, a body some framework reads as JSON, a form, multipart or text is
// read as such, and a card anywhere outside the body is refused.
func TestInboundReadsWhatAppsRead(t *testing.T) {
	t.Parallel()
	e := newInboundEnv(t, inboundConfig{})
	esc := `"\u0034\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031"`
	mp := "--B\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\n" + panVisa + "\r\n--B--\r\n"
	for _, tc := range []struct {
		name, method, path, ct, body string
		hdr                          []string
	}{
		{"form that is a json string of escapes", "POST", "/checkout", "application/x-www-form-urlencoded", esc, nil},
		{"form that is an exponent number", "POST", "/profile", "application/x-www-form-urlencoded", "4.111111111111111E+15", nil},
		{"form that is json behind a comment", "POST", "/profile", "application/x-www-form-urlencoded", `/**/{"n":` + esc + `}`, nil},
		{"multipart on a sub-path", "POST", "/checkout/index.php", "multipart/form-data; boundary=B", mp, nil},
		{"multipart with PUT", "PUT", "/checkout", "multipart/form-data; boundary=B", mp, nil},
		{"text/plain with PATCH", "PATCH", "/checkout/anything", "text/plain", "card " + panVisa, nil},
		{"typeless GET body", "GET", "/checkout", "", "n=" + panVisa, nil},
		{"octet-stream read as json", "POST", "/api", "application/octet-stream", `{"n":` + esc + `}`, nil},
		{"header", "GET", "/", "", "", []string{"X-Card-Number", panVisa}},
		{"cookie", "GET", "/", "", "", []string{"Cookie", "a=1; pan=" + panVisa}},
		{"cookie, percent-encoded", "GET", "/", "", "", []string{"Cookie", "pan=%34111111111111111"}},
		{"referer query", "GET", "/", "", "", []string{"Referer", "https://shop.example/pay?card=4111+1111+1111+1111"}},
		{"path segment", "GET", "/checkout/" + panVisa, "", "", nil},
		{"path parameter", "GET", "/checkout;" + panVisa, "", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := e.up.count()
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			r := e.send(tc.method, tc.path, tc.ct, body, tc.hdr...)
			e.refused(t, r, n, http.StatusUnprocessableEntity, "card_number_detected")
		})
	}
	t.Run("ignored header", func(t *testing.T) {
		e := newInboundEnv(t, inboundConfig{opts: func(o *Options) { o.Guard.IgnoreHeaders = []string{"x-datadog-trace-id"} }})
		n := e.up.count()
		if r := e.send("GET", "/", "", nil, "X-Datadog-Trace-Id", panVisa); r.StatusCode != 200 || e.up.count() != n+1 {
			t.Errorf("status %d, want 200 and the request forwarded: the header is exempt", r.StatusCode)
		}
	})
	t.Run("trace headers and a phone pass", func(t *testing.T) {
		n := e.up.count()
		e.forwarded(t, e.send("POST", "/profile", "application/json", []byte(`{"phone":"+49 151 23456787","iban":"DK50 0040 0440 1162 43"}`),
			"Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			"X-Amzn-Trace-Id", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
			"Cookie", "_ga=GA1.2.1234567890.1234567890"), n)
	})
}

// TestInboundMethodOverride: a route for PUT applies to a POST that says
// it is a PUT, as Rails, Laravel and Express's method-override read it.
func TestInboundMethodOverride(t *testing.T) {
	t.Parallel()
	e := newInboundEnv(t, inboundConfig{opts: func(o *Options) {
		o.Routes = append(o.Routes, Route{Name: "update", Method: "PUT", Path: "/card", Fields: []RouteField{{JSON: "card.number"}}})
		o.Guard.Mode = rewrite.GuardReject
	}})
	body := []byte(`{"card":{"number":"` + panVisa + `"}}`)
	for _, hdr := range [][]string{{"X-HTTP-Method-Override", "PUT"}, {"X-HTTP-Method", "put"}, {"X-Method-Override", "PUT"}} {
		n := e.up.count()
		got, _ := e.forwarded(t, e.send("POST", "/card", "application/json", body, hdr...), n)
		if toks, _ := e.tokensIn(t, got.Body); len(toks) != 1 || strings.Contains(string(got.Body), panVisa) {
			t.Errorf("%s: the upstream received %q, want the card tokenized at the route's field", hdr[0], got.Body)
		}
	}
	n := e.up.count()
	got, _ := e.forwarded(t, e.send("POST", "/card?_method=PUT", "application/json", body), n)
	if strings.Contains(string(got.Body), panVisa) {
		t.Errorf("?_method=PUT: the upstream received the card")
	}
	// Without an override the POST is not on the route: the guard refuses.
	n = e.up.count()
	e.refused(t, e.send("POST", "/card", "application/json", body), n, http.StatusUnprocessableEntity, "card_number_detected")
}

// TestInboundUpgradeRefused: past a WebSocket upgrade the connection is a
// tunnel the guard cannot read, so upgrades are refused wherever bodies are
// read, and allowed on a route with inspect: false.
func TestInboundUpgradeRefused(t *testing.T) {
	t.Parallel()
	e := newInboundEnv(t, inboundConfig{})
	n := e.up.count()
	e.refused(t, e.send("GET", "/chat", "", nil, "Connection", "Upgrade", "Upgrade", "websocket"), n, http.StatusBadRequest, "upgrade_not_allowed")
	n = e.up.count()
	if r := e.send("GET", "/upload/ws", "", nil, "Connection", "Upgrade", "Upgrade", "websocket"); e.up.count() != n+1 {
		t.Errorf("upgrade on an uninspected route: status %d, the upstream received %d requests, want 1", r.StatusCode, e.up.count()-n)
	}
}
