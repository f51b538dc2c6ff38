package proxy

import (
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// TestEgressReportMode: an egress route in report mode forwards to the
// provider what its reject mode refuses of the guard's decisions, recording
// each request once (listener egress) in tok_would_refuse_total and GET
// /report; what report mode must never let through is still refused and
// not recorded. TestEgressRefusals is the same route rejecting.
func TestEgressReportMode(t *testing.T) {
	e := newEgressEnv(t, nil, func(r *EgressRoute) { r.Report = true; r.RefuseUnrevealed = true })
	panTok, _ := e.checkout(t, panVisa, "737")
	key := []string{EgressKeyHeader, egressKey}
	const form = "application/x-www-form-urlencoded"
	forwarded := []struct {
		name, path, body string
		code, where, at  string
		sent             string // what the provider must receive
	}{
		{"raw card outside fields", "/psp/v1", "card[number]=" + panTok + "&note=" + panMC,
			"card_number_detected", "body", "note", "card[number]=" + panVisa + "&note=" + panMC},
		{"raw card in the query", "/psp/v1?note=" + panMC, "card[number]=" + panTok,
			"card_number_detected", "query", "note", "card[number]=" + panVisa},
		{"raw card at a field", "/psp/v1", "card[number]=" + panVisa2,
			"not_a_token", "body", "card[number]", "card[number]=" + panVisa2},
		{"token outside the fields", "/psp/v1", "card[number]=" + panTok + "&metadata[card]=" + panTok,
			"unrevealed_token", "body", "metadata[card]", "card[number]=" + panVisa + "&metadata[card]=" + panTok},
		// Two decisions in one request: recorded once, as reject refuses
		// the field before it reads the rest of the body.
		{"raw card at a field and outside", "/psp/v1", "card[number]=" + panVisa2 + "&note=" + panMC,
			"not_a_token", "body", "card[number]", "card[number]=" + panVisa2 + "&note=" + panMC},
	}
	for _, tt := range forwarded {
		t.Run(tt.name, func(t *testing.T) {
			n := len(e.psp.got())
			r := e.pay(t, tt.path, form, tt.body, key...)
			if r.StatusCode != http.StatusOK || len(e.psp.got()) != n+1 {
				t.Fatalf("POST %s = %d %s, want 200 and the request at the provider", tt.path, r.StatusCode, r.body)
			}
			if got := string(e.psp.got()[n].Body); got != tt.sent {
				t.Errorf("provider got %q, want %q", maskAll([]string{got}), maskAll([]string{tt.sent}))
			}
		})
	}
	refused := []struct {
		name, body string
		hdr        []string
		status     int
		code       string
	}{
		{"wrong key", "card[number]=" + panMC, []string{EgressKeyHeader, "nope"}, 401, "invalid_egress_key"},
		{"unknown token", "card[number]=4111110000001111&note=" + panMC, key, 422, "unknown_token"},
		{"not a token at all", "card[number]=12ab", key, 422, "invalid_token"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			n := len(e.psp.got())
			wantError(t, e.pay(t, "/psp/v1", form, tt.body, tt.hdr...), tt.status, tt.code)
			if len(e.psp.got()) != n {
				t.Error("the provider received a request report mode must refuse")
			}
		})
	}

	for code, want := range map[string]float64{"card_number_detected": 2, "not_a_token": 2, "unrevealed_token": 1, "unknown_token": 0, "invalid_token": 0} {
		var m dto.Metric
		if err := e.srv.metrics.wouldRefuse.WithLabelValues(ListenerEgress, "psp", code).Write(&m); err != nil {
			t.Fatal(err)
		}
		if got := m.GetCounter().GetValue(); got != want {
			t.Errorf("tok_would_refuse_total{listener=egress,route=psp,code=%s} = %v, want %v", code, got, want)
		}
	}
	v := e.report(t)
	if len(v.Recent) != len(forwarded) {
		t.Fatalf("GET /report lists %d decisions, want %d: %+v", len(v.Recent), len(forwarded), v.Recent)
	}
	for i, tt := range forwarded {
		d := v.Recent[len(forwarded)-1-i] // newest first
		if d.Listener != ListenerEgress || d.Route != "psp" || d.Code != tt.code || d.Where != tt.where || d.Path != tt.at {
			t.Errorf("decision for %q = %+v, want egress psp %s at %s %s", tt.name, d, tt.code, tt.where, tt.at)
		}
	}
	if logs := e.log.String(); !strings.Contains(logs, `"listener":"egress"`) || strings.Contains(logs, panMC) || strings.Contains(logs, panVisa2) {
		t.Errorf("the report log lines lack the listener or hold a card number")
	}
}
