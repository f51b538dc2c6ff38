package e2e

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tokproxy/tok/vault"
)

// TestEgressReportModeBinary rolls the egress guard out on one provider
// route through the binary: tok check warns that the route forwards what
// it would refuse; tok serve sends the provider a request whose note holds
// a card number (the card field revealed, the note as the app sent it),
// logs the decision without the number, counts it under listener egress
// and lists it in GET /report; the same request on a route left rejecting
// is refused and the provider never sees it.
func TestEgressReportModeBinary(t *testing.T) {
	dir := t.TempDir()
	got := make(chan string, 4)
	psp := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r.URL.Path + " " + string(b)
	}))
	defer psp.Close()
	caFile := writeFile(t, dir, "psp-ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: psp.Certificate().Raw})))
	keyring := newKeyring(t, dir)
	route := func(name, path, guard string) string {
		return fmt.Sprintf(`  - name: %s
    match: {method: POST, path: %s/*}
    upstream: %s
    strip_prefix: %s
    ca_file: %q
    fields: [{form: "card[number]"}]
    egress_key: env:TOK_EGRESS_KEY
    guard: %s
`, name, path, psp.URL, path, caFile, guard)
	}
	cfg := writeFile(t, dir, "tok.yaml", fmt.Sprintf(`listen: {public: "127.0.0.1:0", auth: "127.0.0.1:0", admin: "127.0.0.1:0", egress: "127.0.0.1:0"}
vault: {bolt: %q, keyring: %q}
audit: {path: "-"}
egress:
`, filepath.Join(dir, "tok.db"), keyring)+route("psp", "/psp", "report")+route("strict", "/strict", "reject"))

	code, out, errOut := tok(t, dir, "", "check", "-config", cfg)
	if code != 0 || !strings.Contains(out+errOut, "egress[0] (psp) is in report mode: it forwards what it would refuse") ||
		strings.Contains(out+errOut, "egress[1] (strict) is in report mode") {
		t.Errorf("tok check: exit %d, output %q %q; want 0 and a report-mode warning for psp only", code, out, errOut)
	}

	s := startTok(t, dir, cfg, "TOK_EGRESS_KEY=app-key")
	egress := s.egressAddr(t)
	token := s.handle(t, testPAN)
	const stray = "5555555555554444"
	body := "card[number]=" + token + "&note=" + stray
	pay := func(path string) int {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+egress+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Tok-Egress-Key", "app-key")
		status, _ := s.do(t, req, nil)
		return status
	}
	if st := pay("/psp/v1/charges"); st != http.StatusOK {
		t.Fatalf("POST /psp/v1/charges = %d, want 200: the psp route reports", st)
	}
	if g, want := <-got, "/v1/charges card[number]="+testPAN+"&note="+stray; g != want {
		t.Errorf("provider got %q, want %q", vault.Mask(g), vault.Mask(want))
	}
	if st := pay("/strict/v1/charges"); st != http.StatusUnprocessableEntity {
		t.Errorf("POST /strict/v1/charges = %d, want 422: the strict route rejects", st)
	}
	select {
	case g := <-got:
		t.Errorf("the provider received %q from the rejecting route", vault.Mask(g))
	default:
	}

	line := s.waitFor(t, "report mode: reject mode would refuse this request")
	if line["level"] != "WARN" || line["listener"] != "egress" || line["route"] != "psp" || line["code"] != "card_number_detected" || line["path"] != "note" {
		t.Errorf("decision log line %v; want WARN egress psp card_number_detected at note", line)
	}
	if n := s.wouldRefuse(t, "egress", "psp", "card_number_detected"); n != 1 {
		t.Errorf("tok_would_refuse_total{listener=egress,route=psp,code=card_number_detected} = %v, want 1", n)
	}
	status, raw := s.get2(t, "admin", "/report", nil)
	var report struct {
		Recent []struct{ Listener, Route, Code, Where, Path string }
	}
	if err := json.Unmarshal(raw, &report); err != nil || status != http.StatusOK {
		t.Fatalf("GET /report = %d %s: %v", status, raw, err)
	}
	if strings.Contains(string(raw), stray) || len(report.Recent) != 1 || report.Recent[0].Listener != "egress" ||
		report.Recent[0].Route != "psp" || report.Recent[0].Where != "body" || report.Recent[0].Path != "note" {
		t.Errorf("GET /report = %s; want one egress psp decision at note in the body, without the number", raw)
	}
	s.stop(t)
	if log := s.p.Log(); strings.Contains(log, stray) || strings.Contains(log, testPAN) {
		t.Error("tok's log holds a card number")
	}
}

// egressAddr waits for tok's egress listener and returns its address.
func (s *server) egressAddr(t *testing.T) string {
	t.Helper()
	for s.addrs["egress"] == "" {
		m, ok := <-s.logs
		if !ok {
			t.Fatal("tok exited before the egress listener was up")
		}
		if m["msg"] == "listening" && m["listener"] == "egress" {
			s.addrs["egress"], _ = m["addr"].(string)
		}
	}
	return s.addrs["egress"]
}

// wouldRefuse is tok_would_refuse_total{listener, route, code} on s's
// /metrics.
func (s *server) wouldRefuse(t *testing.T, listener, route, code string) float64 {
	t.Helper()
	status, exposition := s.getMetrics(t)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(exposition))
	if err != nil || status != http.StatusOK {
		t.Fatalf("GET /metrics = %d: %v", status, err)
	}
	var n float64
	for _, m := range families["tok_would_refuse_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["listener"] == listener && labels["route"] == route && labels["code"] == code {
			n += m.GetCounter().GetValue()
		}
	}
	return n
}
